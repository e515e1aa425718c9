import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from vaepipe.errors import PipelineError
from conftest import PROJECT_ROOT
from vaepipe.params import read_yaml
from vaepipe.reproduce import (committed_recipe, merged, recipe_params, reproduce,
                               run_params)

PARAMS = """\
z_dim: 10          # size of the latent space
epochs: 20
train:
  device: auto
  measure_every: 1 # epochs between measurements
"""


def test_a_recipe_is_laid_over_the_params_keeping_their_comments(tmp_path):
    params = YAML().load(PARAMS)
    merged(params, {"z_dim": 50, "train": {"measure_every": 41}})
    path = tmp_path / "params.yaml"
    with open(path, "w") as out:
        YAML().dump(params, out)
    assert path.read_text() == PARAMS.replace("10          #", "50          #").replace(
        "measure_every: 1 #", "measure_every: 41 #")


@pytest.mark.parametrize("recipe, key", [({"z_dimm": 2}, "z_dimm"),
                                         ({"train": {"measure_evry": 2}}, "measure_evry")])
def test_a_key_the_params_lack_is_named(recipe, key):
    with pytest.raises(PipelineError, match=rf"^{key}: not a key of params.yaml$"):
        merged(YAML().load(PARAMS), recipe)


def test_an_unknown_recipe_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproductions").mkdir()
    (tmp_path / "reproductions" / "iwae_vae.yaml").write_text("epochs: 1\n")
    with pytest.raises(PipelineError, match=r"reproductions/iwae.yaml: no such recipe \(there "
                                            r"are: iwae_vae\)"):
        reproduce("iwae")


PROJECT_PARAMS = (PROJECT_ROOT / "params.yaml").read_text()
RECIPE = Path("reproductions/bad.yaml")


@pytest.mark.parametrize("recipe, problem", [
    ("z_dim: 0\n", "z_dim: must be at least 1, got 0"),
    ("- z_dim: 3\n", "must map keys of params.yaml to values, got a list"),
    ("7\n", "must map keys of params.yaml to values, got a int"),
    ("z_dim: [3\n", "not valid YAML at line 2: expected ',' or ']', but got '<stream end>'"),
    ("train: 3\n", "train: "),
])
def test_a_recipe_that_makes_bad_params_is_named_in_one_line(recipe, problem):
    with pytest.raises(PipelineError, match=rf"^{re.escape(f'{RECIPE}: {problem}')}"):
        recipe_params(PROJECT_PARAMS, recipe, RECIPE)


def test_an_empty_recipe_is_the_params_as_they_are():
    assert recipe_params(PROJECT_PARAMS, "", RECIPE) == PROJECT_PARAMS


@pytest.mark.parametrize("recipe", sorted((PROJECT_ROOT / "reproductions").glob("*.yaml")),
                         ids=lambda path: path.stem)
def test_every_committed_recipe_makes_valid_params_holding_its_values(recipe):
    written = YAML(typ="safe").load(recipe_params(PROJECT_PARAMS, recipe.read_text(), recipe))
    for key, value in read_yaml(recipe).items():
        if isinstance(value, dict):
            assert {name: written[key][name] for name in value} == value
        else:
            assert written[key] == value


RECORDS = sorted(path.parent for path in (PROJECT_ROOT / "reproductions").glob("*/metrics.json"))


def table_row(record: Path) -> list[str]:
    """The cells of the row of reproductions/README.md's table that links `record`."""
    link = f"({record.name}/metrics.json)"
    rows = [line for line in (record.parent / "README.md").read_text().splitlines()
            if line.startswith("|") and link in line]
    assert len(rows) == 1, f"one table row should link {link}"
    return [cell.strip().strip("*") for cell in rows[0].strip("|").split("|")]


@pytest.mark.parametrize("record", RECORDS, ids=lambda path: path.name)
def test_each_records_table_row_shows_its_committed_nll_and_active_units(record):
    _, _, nll, units, _ = table_row(record)
    test = json.loads((record / "metrics.json").read_text())["test"]
    assert nll.startswith(f"{test['nll']:.2f} ± {test['nll_stderr']:.2f}")
    if (record / "latent_units.json").exists():
        layers = json.loads((record / "latent_units.json").read_text())["test"]
        layers = layers if isinstance(layers, list) else [layers]
        assert units.startswith("+".join(str(layer["active_units"]) for layer in layers))
    else:
        assert units == "not recorded"


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
                           *args], cwd=root, check=True, capture_output=True,
                          text=True).stdout.strip()


def committed_recipe_repository(root: Path, recipe_text: str) -> tuple[Path, str]:
    """A git repository at `root`, the working directory, holding what is there and
    reproductions/long.yaml, committed: the recipe and the commit."""
    git(root, "init", "-q")
    recipe = Path("reproductions/long.yaml")
    recipe.parent.mkdir()
    recipe.write_text(recipe_text)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "a recipe")
    return recipe, git(root, "rev-parse", "HEAD")


def test_only_the_committed_recipe_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe, head = committed_recipe_repository(tmp_path, "epochs: 3\n")
    assert committed_recipe(recipe, head) == "epochs: 3\n"
    recipe.write_text("epochs: 4\n")
    with pytest.raises(PipelineError, match=rf"^reproductions/long.yaml: differs from commit "
                                            rf"{head[:10]}; commit it or `git checkout "):
        committed_recipe(recipe, head)
    new = Path("reproductions/new.yaml")
    new.write_text("epochs: 4\n")
    with pytest.raises(PipelineError, match=r"^reproductions/new.yaml: not committed; "):
        committed_recipe(new, head)


def test_a_run_parked_before_a_key_existed_goes_on_with_its_commits_params(tmp_path,
                                                                          monkeypatch):
    # this code requires output_bias_init; the parked run's commit predates it, and its own
    # stages (which check its params) do not know the key
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text("".join(
        line for line in PROJECT_PARAMS.splitlines(keepends=True)
        if not line.startswith("output_bias_init:")))
    recipe, parked = committed_recipe_repository(tmp_path, "z_dim: 3\n")
    with pytest.raises(PipelineError, match=r"^reproductions/long.yaml: output_bias_init: "
                                            r"missing$"):
        run_params(recipe, parked)  # at HEAD, this code checks them
    Path("README.md").write_text("later work\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "later work")
    params = YAML(typ="safe").load(run_params(recipe, parked, seed=4))
    assert "output_bias_init" not in params and (params["z_dim"], params["seed"]) == (3, 4)
    assert params["epochs"] == read_yaml(PROJECT_ROOT / "params.yaml")["epochs"]


def test_a_record_made_before_a_key_existed_verifies_with_its_default(tmp_path, monkeypatch):
    from vaepipe.verify import record_params
    monkeypatch.chdir(PROJECT_ROOT)
    old = read_yaml(PROJECT_ROOT / "params.yaml")
    for key in ("objective", "train_samples", "kl_weight"):
        del old[key]
    del old["train"]["peer_timeout_seconds"]
    old["z_dim"] = 7
    record = tmp_path / "params.yaml"
    YAML().dump(old, record)
    params = record_params(record.read_text(), record)
    assert (params.z_dim, params.objective, params.train_samples, params.kl_weight,
            params.train.peer_timeout_seconds) == (7, "elbo", 1, 1.0, 120.0)


SLOW_TO_STOP_DVC = """
import pathlib, signal, sys, time
def stop(*_):  # as the train stage on Ctrl-C: a checkpoint, saved after a while
    time.sleep(1)
    pathlib.Path("saved").touch()
    sys.exit(1)
signal.signal(signal.SIGINT, stop)
pathlib.Path("started").touch()
time.sleep(60)
"""


def test_ctrl_c_waits_for_dvc_to_finish_its_stage_before_going_on(tmp_path):
    # Ctrl-C reaches the whole process group; what runs after run_dvc (the sitting's timing
    # reads the checkpoint) must find the stage's checkpoint saved, not dvc killed under it.
    workspace = tmp_path / "workspace"
    (workspace / "dvc").mkdir(parents=True)
    (workspace / "dvc" / "__init__.py").touch()  # a package: `python -m dvc` runs this one
    (workspace / "dvc" / "__main__.py").write_text(SLOW_TO_STOP_DVC)
    script = ("import sys; from pathlib import Path; from vaepipe.reproduce import run_dvc\n"
              "try:\n    run_dvc(Path(sys.argv[1]), 'repro')\n"
              "except KeyboardInterrupt:\n"
              "    print((Path(sys.argv[1]) / 'saved').exists())\n")
    process = subprocess.Popen([sys.executable, "-c", script, str(workspace)],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 30
    while not (workspace / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGINT)
    out, _ = process.communicate(timeout=30)
    assert out == "True\n"
