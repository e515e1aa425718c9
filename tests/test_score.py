import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vaepipe.checkpoint import Checkpoints, Position
from vaepipe.data import Split, write_npz
from vaepipe.devices import select_strategy
from vaepipe.errors import PipelineError
from vaepipe.evaluation import split_scorer
from vaepipe.model import load_model, save_model
from vaepipe.reproduce import recipe_params
from vaepipe.score import score
from vaepipe.training import build_trainer
from vaepipe.verify import record_params

from conftest import PROJECT_PARAMS
from test_reproduce import committed_recipe_repository

RECIPE = ("encoder_layers: [16]\ndecoder_layers: [16]\nz_dim: 3\nlikelihood: bernoulli\n"
          "binarization: dynamic\nconditioning: none\nepochs: 5\n"
          "evaluate:\n  iwae_samples: 20\n  batch_size: 4\n")
WORKSPACE_CHECKPOINT = Path(".reproductions/long/.checkpoints/train")
PARKED = Path("reproductions/under_way/long")
RECIPE_FILE = Path("reproductions/long.yaml")


@pytest.fixture
def commit(tmp_path, monkeypatch) -> str:
    """A clone's working directory with params.yaml, the recipe `long` and 10 prepared test
    images, committed: the commit."""
    monkeypatch.chdir(tmp_path)
    shutil.copyfile(PROJECT_PARAMS, "params.yaml")
    Path("data/prepared").mkdir(parents=True)
    images = (np.random.default_rng(0).random((10, 28, 28)) * 255).astype(np.uint8)
    write_npz(Path("data/prepared/test.npz"), Split(images, np.arange(10, dtype=np.uint8)))
    return committed_recipe_repository(tmp_path, RECIPE)[1]


def recipe_text(recipe: str = RECIPE) -> str:
    """params.yaml with `recipe` laid over it, as a run's workspace holds it."""
    return recipe_params(Path("params.yaml").read_text(), recipe, RECIPE_FILE)


def parsed(text: str):
    return record_params(text, RECIPE_FILE)


def save_run(folder: Path, params, record: str | None = None) -> None:
    """A checkpoint in `folder` of weights that no fresh network of `params` has, and a record
    `record` of the same weights."""
    trainer = build_trainer(params, select_strategy(params.train, [], params.batch_size), 1)
    rng = np.random.default_rng(7)
    for weight in trainer.model.weights:
        weight.assign(weight + rng.normal(0, 0.3, weight.shape).astype(np.float32))
    live = folder.parent / "live"
    live.mkdir(parents=True, exist_ok=True)
    Checkpoints(folder, params, []).save(trainer.model, trainer.optimizer, Position(2, 1), [],
                                         live)
    if record is not None:
        save_model(trainer.model, Path("reproductions", record, "model"))
        Path("reproductions", record, "metrics.json").write_text(json.dumps({"test": {}}))


def scored(params, model_dir: Path, images: int) -> str:
    """The NLL, its standard error and the ELBO of the model in `model_dir` on a prepared test
    split of the first `images` test images alone."""
    split = Path("data/prepared/test.npz")
    with np.load(split) as whole:
        first = Split(whole["images"][:images], whole["labels"][:images])
    alone = Path(f"first-{images}")
    alone.mkdir()
    write_npz(alone / "test.npz", first)
    metrics = split_scorer(params, load_model(model_dir), "/cpu:0")(alone, "test")[0]
    return (f"test NLL {metrics['nll']:.3f} ± {metrics['nll_stderr']:.3f}, "
            f"ELBO {metrics['elbo']:.3f}")


def test_a_run_is_scored_from_its_workspace_checkpoint_beside_a_record_on_its_first_images(
        commit, capsys):
    params = parsed(recipe_text())
    Path(".reproductions/long").mkdir(parents=True)
    Path(".reproductions/long/params.yaml").write_text(recipe_text())
    save_run(WORKSPACE_CHECKPOINT, params, record="same")
    capsys.readouterr()
    score("long", None, 6, "same")
    expected = scored(params, Path("reproductions/same/model"), 6)
    assert capsys.readouterr().out.splitlines() == [
        f"long after 2 of 5 epochs: {expected} (the first 6 test images, K = 20)",
        f"same, committed: {expected} (the same images and noise)"]


def test_a_parked_run_is_scored_on_the_whole_split(commit, capsys):
    params = parsed(recipe_text())
    save_run(PARKED / "checkpoint", params, record="same")
    (PARKED / "commit.txt").write_text(f"{commit}\n")
    capsys.readouterr()
    score("long", None, None, None)
    assert capsys.readouterr().out == (f"long after 2 of 5 epochs: "
                                       f"{scored(params, Path('reproductions/same/model'), 10)} "
                                       f"(the whole test split, K = 20)\n")


def test_a_checkpoint_of_another_network_is_refused_in_one_line(commit):
    save_run(PARKED / "checkpoint", parsed(recipe_text(RECIPE.replace("z_dim: 3", "z_dim: 4"))))
    (PARKED / "commit.txt").write_text(f"{commit}\n")
    with pytest.raises(PipelineError, match=re.escape(
            f"{PARKED / 'checkpoint'}: no checkpoint of this network (ValueError: model "
            f"variable ")):
        score("long", None, None, None)


def test_no_run_under_way_and_a_count_below_one_are_one_line_each(commit):
    with pytest.raises(PipelineError, match=re.escape(
            "long: no run under way (no checkpoint in .reproductions/long/.checkpoints/train/ "
            "or reproductions/under_way/long/checkpoint/)")):
        score("long", None, None, None)
    done = subprocess.run([sys.executable, "-m", "vaepipe.score", "long", "--count", "0"],
                          capture_output=True, text=True)
    assert (done.returncode, done.stderr) == (1, "error: --count: must be at least 1, got 0\n")
