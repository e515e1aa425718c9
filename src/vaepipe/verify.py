"""A committed result checked without retraining: a reproduction's committed weights scored again
on this machine's test split.

    python -m vaepipe.verify NAME      (python3 tasks.py verify NAME)

`reproductions/NAME/` holds the record of `tasks.py reproduce NAME`: its full params.yaml, its
metrics.json and the trained model (`model/`). The test split is scored as the evaluate stage
scored it (the same K, batches, binarization and noise), so on the machine that made the record
the NLL is the same number; elsewhere it differs by the CPU's rounding, far less than its
standard error. Exit status 0 when the two agree within one standard error, 1 otherwise.
"""

import argparse
import json
import sys
from pathlib import Path

from vaepipe.devices import evaluation_device, set_up_tensorflow
from vaepipe.errors import PipelineError, run_stage
from vaepipe.evaluation import split_scorer
from vaepipe.model import load_model
from vaepipe.params import Params, parse_params, parse_yaml
from vaepipe.reproduce import RECIPES, recipe_params
from vaepipe.tf_runtime import tf

PREPARED = Path("data/prepared")


def committed_record(name: str) -> tuple[Path, dict]:
    """The record's folder and its committed test metrics; a record without weights is named."""
    record = RECIPES / name
    if not (record / "metrics.json").is_file():
        known = sorted(path.parent.name for path in RECIPES.glob("*/metrics.json"))
        raise PipelineError(f"{record}: no such record (there are: {', '.join(known)})")
    if not (record / "model").is_dir():
        raise PipelineError(f"{record}/model: missing; this record was made before records kept "
                            f"their weights (`python3 tasks.py reproduce {name}` makes a new one)")
    return record, json.loads((record / "metrics.json").read_text())["test"]


def record_params(text: str, source: Path) -> Params:
    """A record's params (`text`, from `source`), laid over today's params.yaml as a recipe is:
    a key added since the record was made takes its value there (new keys keep the old
    behaviour at their defaults)."""
    return parse_params(parse_yaml(recipe_params(Path("params.yaml").read_text(), text, source),
                                   source))


def prepared_test_split() -> Path:
    """The folder of this workspace's prepared splits, once its test split is there."""
    if not (PREPARED / "test.npz").is_file():
        raise PipelineError(f"{PREPARED / 'test.npz'}: missing; `python3 tasks.py repro` "
                            f"prepares MNIST")
    return PREPARED


def verify(name: str) -> bool:
    record, committed = committed_record(name)
    prepared = prepared_test_split()
    params = record_params((record / "params.yaml").read_text(), record / "params.yaml")
    device = evaluation_device(params.train, set_up_tensorflow(params.seed))
    with tf.device(device):
        here = split_scorer(params, load_model(record / "model"), device)(prepared, "test")[0]
    difference = here["nll"] - committed["nll"]
    agree = abs(difference) <= committed["nll_stderr"]
    print(f"{name}: test NLL {here['nll']:.3f} ± {here['nll_stderr']:.3f} here, "
          f"{committed['nll']:.3f} ± {committed['nll_stderr']:.3f} committed: a difference of "
          f"{difference:+.4f} nats, {'within' if agree else 'OUTSIDE'} one standard error")
    return agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a record in reproductions/ (a folder)")
    if not verify(parser.parse_args().name):
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
