"""A long run scored from its latest checkpoint, to judge it before its last hours are spent.

    python -m vaepipe.score NAME [--seed N] [--count N] [--beside RECORD]
                                        (python3 tasks.py score NAME ...)

The latest checkpoint of `tasks.py reproduce NAME` (its workspace's on this machine, else the
one parked in reproductions/under_way/) is put into the network of the run's params and scored
on this workspace's test split as the evaluate stage scores it: the run's K, batches,
binarization and noise, by this commit's code. `--count N` scores the first N test images
alone (a tenth of the time for 1000), and `--beside RECORD` scores a committed record's weights
on the same images with the same noise: the first images are easier or harder than the whole
split, so a run is compared on them with a record scored on them, not with the record's
number for the whole split.
"""

import argparse
from pathlib import Path

from vaepipe.checkpoint import load_weights
from vaepipe.devices import evaluation_device, set_up_tensorflow
from vaepipe.errors import PipelineError, run_stage
from vaepipe.evaluation import split_scorer
from vaepipe.files import TRAIN_CHECKPOINTS
from vaepipe.model import VAE, load_model
from vaepipe.params import Params
from vaepipe.reproduce import (CHECKPOINT_STATE, UNDER_WAY, WORKSPACES, parked_commit,
                               recipe_path, run_name, run_params)
from vaepipe.tf_runtime import tf
from vaepipe.verify import committed_record, prepared_test_split, record_params


def latest_checkpoint(recipe: str, seed: int | None) -> tuple[Path, Params]:
    """The folder of a run's latest checkpoint, and the params the run trains with."""
    recipe_file, name = recipe_path(recipe), run_name(recipe, seed)
    workspace, parked = WORKSPACES / name, UNDER_WAY / name
    if (workspace / TRAIN_CHECKPOINTS / CHECKPOINT_STATE).is_file():
        params = workspace / "params.yaml"
        return workspace / TRAIN_CHECKPOINTS, record_params(params.read_text(), params)
    if (parked / "checkpoint" / CHECKPOINT_STATE).is_file():
        text = run_params(recipe_file, parked_commit(parked), seed)
        return parked / "checkpoint", record_params(text, recipe_file)
    raise PipelineError(f"{name}: no run under way (no checkpoint in "
                        f"{workspace / TRAIN_CHECKPOINTS}/ or {parked / 'checkpoint'}/)")


def score_line(what: str, metrics: dict, images: str) -> str:
    return (f"{what}: test NLL {metrics['nll']:.3f} ± {metrics['nll_stderr']:.3f}, ELBO "
            f"{metrics['elbo']:.3f} ({images})")


def score(recipe: str, seed: int | None, count: int | None, beside: str | None) -> None:
    if count is not None and count < 1:
        raise PipelineError(f"--count: must be at least 1, got {count}")
    folder, params = latest_checkpoint(recipe, seed)
    record = committed_record(beside)[0] if beside else None
    prepared = prepared_test_split()
    device = evaluation_device(params.train, set_up_tensorflow(params.seed))
    images = "the whole test split" if count is None else f"the first {count} test images"
    images += f", K = {params.evaluate.iwae_samples}"
    with tf.device(device):
        model = VAE(**params.network_config())
        position = load_weights(folder, model)
        run = split_scorer(params, model, device, count)(prepared, "test")[0]
        print(score_line(f"{run_name(recipe, seed)} after {position.epochs_done} of "
                         f"{params.epochs} epochs", run, images), flush=True)
        if record is not None:
            other = split_scorer(params, load_model(record / "model"), device, count)
            print(score_line(f"{beside}, committed", other(prepared, "test")[0],
                             "the same images and noise"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a recipe in reproductions/, without .yaml")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="the run of the recipe with seed N (NAME-seedN)")
    parser.add_argument("--count", type=int, metavar="N",
                        help="the first N test images (default: all)")
    parser.add_argument("--beside", metavar="RECORD",
                        help="also score this record in reproductions/ on the same images")
    args = parser.parse_args()
    score(args.name, args.seed, args.count, args.beside)


if __name__ == "__main__":
    run_stage(main)
