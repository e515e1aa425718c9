import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from vaepipe.errors import PipelineError
from conftest import PROJECT_ROOT
from tiny_project import TINY_GROUPS
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


def check_verify(repo, committed: Path) -> None:
    """`vaepipe.verify` scores the committed weights to the committed NLL on the machine that
    made them, and fails, saying so, against an NLL moved by more than its standard error."""
    verify = (sys.executable, "-m", "vaepipe.verify", "tiny")
    metrics = json.loads(committed.read_text())
    nll, stderr = metrics["test"]["nll"], metrics["test"]["nll_stderr"]
    agreed = repo.run(*verify)
    assert agreed.stdout == (f"tiny: test NLL {nll:.3f} ± {stderr:.3f} here, {nll:.3f} ± "
                             f"{stderr:.3f} committed: a difference of +0.0000 nats, within one "
                             f"standard error\n")
    metrics["test"]["nll"] = nll - 2 * stderr
    committed.write_text(json.dumps(metrics))
    moved = repo.run(*verify, check=False)
    assert moved.returncode == 1 and moved.stdout.endswith("nats, OUTSIDE one standard error\n")
    missing = repo.run(sys.executable, "-m", "vaepipe.verify", "nothing", check=False)
    assert (missing.returncode, missing.stderr) == (
        1, "error: reproductions/nothing: no such record (there are: tiny)\n")


def test_reproduce_runs_a_recipe_in_its_own_clone_and_keeps_its_record(repo):
    watched = ("reports/metrics.json", "dvc.lock", "params.yaml", "models/vae/model.weights.h5")
    before = {name: (repo.root / name).read_bytes() for name in watched}
    base = repo.run("git", "rev-parse", "HEAD").stdout.strip()
    recipe = repo.root / "reproductions" / "tiny.yaml"
    recipe.parent.mkdir()
    recipe.write_text("z_dim: 3\nevaluate:\n  iwae_samples: 7\n")
    reproduce = (sys.executable, "-m", "vaepipe.reproduce", "tiny")
    kept = repo.root / "reproductions" / "tiny"
    try:
        refused = repo.run(*reproduce, check=False)
        assert (refused.returncode, refused.stderr) == (1, (
            "error: reproductions/tiny.yaml: not committed; commit it first (a run records the "
            "commit whose recipe it ran)\n"))
        head = repo.commit("a recipe")
        repo.run(*reproduce)
        assert sorted(path.name for path in kept.iterdir()) == [
            "commit.txt", "dvc.lock", "latent_units.json", "latent_units.png", "loss_curves.png",
            "metrics.json", "model", "params.yaml", "sample_grid.png", "timing.json",
            "train_metrics.json"]
        epochs = yaml.safe_load((kept / "params.yaml").read_text())["epochs"]
        timing = json.loads((kept / "timing.json").read_text())
        [sitting] = timing["sittings"]
        assert (sitting["from_epoch"], sitting["to_epoch"]) == (0, epochs)
        assert 0 < sitting["seconds"] == timing["train_seconds"]
        assert timing["epochs_timed"] == epochs
        workspace_model = repo.root / ".reproductions" / "tiny" / "models" / "vae"
        for name in ("config.json", "model.weights.h5"):
            assert (kept / "model" / name).read_bytes() == (workspace_model / name).read_bytes()
        params = yaml.safe_load((kept / "params.yaml").read_text())
        assert (params["z_dim"], params["evaluate"]["iwae_samples"]) == (3, 7)
        metrics = json.loads((kept / "metrics.json").read_text())
        assert "at K = 7" in metrics["test"]["nll_measures"]
        assert (kept / "commit.txt").read_text() == f"{head}\n"
        assert {name: (repo.root / name).read_bytes() for name in watched} == before
        again = repo.run(*reproduce)
        assert "Running stage" not in again.stdout  # done: nothing reruns
        assert json.loads((kept / "timing.json").read_text()) == timing  # and no sitting
        check_verify(repo, kept / "metrics.json")

        # A key taken out of the recipe is gone from the next run, in the same workspace.
        recipe.write_text("z_dim: 3\n")
        assert "differs from commit" in repo.run(*reproduce, check=False).stderr
        head = repo.commit("the recipe without its K")
        third = repo.run(*reproduce)
        assert "Running stage 'evaluate'" in third.stdout
        params = yaml.safe_load((kept / "params.yaml").read_text())
        assert params["evaluate"] == TINY_GROUPS["evaluate"]
        assert (kept / "commit.txt").read_text() == f"{head}\n"
    finally:
        repo.run("git", "reset", "-q", "--hard", base)
        shutil.rmtree(repo.root / "reproductions", ignore_errors=True)
        shutil.rmtree(repo.root / ".reproductions", ignore_errors=True)


def test_reproduce_with_another_seed_keeps_a_record_of_its_own(repo):
    base = repo.run("git", "rev-parse", "HEAD").stdout.strip()
    recipes = repo.root / "reproductions"
    recipes.mkdir()
    (recipes / "tiny.yaml").write_text("z_dim: 3\nepochs: 2\n")
    reproduce = (sys.executable, "-m", "vaepipe.reproduce", "tiny")
    try:
        head = repo.commit("a recipe")
        assert repo.run(*reproduce, "--seed", "5", "--park", check=False).stderr == (
            "error: .reproductions/tiny-seed5/.checkpoints/train: no checkpoint to park "
            "(`tasks.py reproduce tiny --seed 5` makes one)\n")
        ran = repo.run(*reproduce, "--seed", "5")
        assert f"reproducing tiny-seed5 at commit {head[:10]}" in ran.stderr
        kept = recipes / "tiny-seed5"
        params = yaml.safe_load((kept / "params.yaml").read_text())
        assert (params["seed"], params["z_dim"], params["epochs"]) == (5, 3, 2)
        assert (kept / "commit.txt").read_text() == f"{head}\n"
        assert not (recipes / "tiny").exists()
        workspace = yaml.safe_load(
            (repo.root / ".reproductions" / "tiny-seed5" / "params.yaml").read_text())
        assert workspace["seed"] == 5
        assert repo.run(sys.executable, "-m", "vaepipe.verify", "tiny-seed5").stdout.startswith(
            "tiny-seed5: test NLL ")
        refused = repo.run(*reproduce, "--seed", "-1", check=False)
        assert refused.returncode == 1 and refused.stderr.startswith("error: --seed -1: seed")
    finally:
        repo.run("git", "reset", "-q", "--hard", base)
        shutil.rmtree(recipes, ignore_errors=True)
        shutil.rmtree(repo.root / ".reproductions", ignore_errors=True)


def test_a_parked_run_goes_on_in_a_new_clone_at_its_commit_to_the_same_bytes(repo):
    """Stopped, parked and committed, then continued where no workspace is left (a new
    machine): the record names the run's commit and holds the weights of an unbroken run."""
    base = repo.run("git", "rev-parse", "HEAD").stdout.strip()
    recipes = repo.root / "reproductions"
    recipes.mkdir()
    for name in ("long", "unbroken"):
        (recipes / f"{name}.yaml").write_text("epochs: 5\ntrain:\n  checkpoint_every: 1\n")
    reproduce = (sys.executable, "-m", "vaepipe.reproduce")
    parked = recipes / "under_way" / "long"
    try:
        started = repo.commit("two recipes")
        assert repo.run(*reproduce, "long", "--park", check=False).stderr == (
            "error: .reproductions/long/.checkpoints/train: no checkpoint to park "
            "(`tasks.py reproduce long` makes one)\n")
        process = subprocess.Popen([*reproduce, "long"], cwd=repo.root, env=repo.env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True)
        epochs = 0
        for line in process.stderr:
            epochs += line.startswith("epoch ")
            if epochs == 3:
                break
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the train stage saves a checkpoint
        process.communicate(timeout=60)
        assert process.returncode != 0
        assert "after 3 epochs" in repo.run(*reproduce, "long", "--park").stderr
        assert (parked / "commit.txt").read_text() == f"{started}\n"
        [stopped] = json.loads((parked / "timing.json").read_text())["sittings"]
        assert (stopped["from_epoch"], stopped["to_epoch"]) == (0, 3)
        repo.commit("the run of long, parked")
        shutil.rmtree(repo.root / ".reproductions")

        went_on = repo.run(*reproduce, "long")
        assert f"going on with the run parked in {parked.relative_to(repo.root)}/" in (
            went_on.stderr)
        assert "resuming at epoch 4 " in went_on.stderr
        assert not parked.exists()
        assert (recipes / "long" / "commit.txt").read_text() == f"{started}\n"
        timing = json.loads((recipes / "long" / "timing.json").read_text())
        assert [(sitting["from_epoch"], sitting["to_epoch"]) for sitting in
                timing["sittings"]] == [(0, 3), (3, 5)]
        assert timing["epochs_timed"] == 5
        assert timing["train_seconds"] == pytest.approx(
            sum(sitting["seconds"] for sitting in timing["sittings"]), abs=0.1)
        repo.run(*reproduce, "unbroken")
        for kept in ("model/model.weights.h5", "train_metrics.json", "metrics.json"):
            assert (recipes / "long" / kept).read_bytes() == (
                recipes / "unbroken" / kept).read_bytes()
    finally:
        repo.run("git", "reset", "-q", "--hard", base)
        shutil.rmtree(recipes, ignore_errors=True)
        shutil.rmtree(repo.root / ".reproductions", ignore_errors=True)

