"""Long runs kept beside the pipeline: a published result, reproduced from a committed recipe.

    python -m vaepipe.reproduce NAME      (python3 tasks.py reproduce NAME)

`reproductions/NAME.yaml` holds the params that differ from params.yaml. The run happens in
`.reproductions/NAME/`, a clone of the current commit, by `dvc repro`, so it never touches this
workspace's outputs; its params.yaml is made anew on every run from the commit's params.yaml
and the commit's recipe, so the record is exactly what the commit names. It resumes from its
checkpoint when stopped and run again. When it is done, its metrics, params, dvc.lock, three
figures, the trained model and the wall time of its training (`timing.json`, every sitting) are
copied to `reproductions/NAME/`, to be committed.

    python -m vaepipe.reproduce NAME --park

A run longer than one machine's stay is carried on elsewhere: `--park` copies its latest
checkpoint and commit to `reproductions/under_way/NAME/`, to be committed; `reproduce NAME` on
any clone then continues that run at that commit (so its record still names the code that
ran), and removes the parked copy once the run is done.

    python -m vaepipe.reproduce NAME --seed N

The same recipe with `seed: N` laid over it, to measure the spread of a result across seeds: the
run, its workspace, parked copy and record are named NAME-seedN.
"""

import argparse
import io
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ruamel.yaml import YAML

from vaepipe.errors import PipelineError, run_stage
from vaepipe.files import TRAIN_CHECKPOINTS, atomic_dir
from vaepipe.params import parse_params, parse_yaml

RECIPES = Path("reproductions")
WORKSPACES = Path(".reproductions")
UNDER_WAY = RECIPES / "under_way"  # parked runs: NAME/commit.txt and NAME/checkpoint/
CHECKPOINT_STATE = "state.json"  # rewritten, with the position, by every save
TIMING = "timing.json"  # the train stage's sittings; in a workspace, a parked run and a record
RESULTS = {  # what is kept of a run: workspace path -> name in reproductions/NAME/
    "reports/metrics.json": "metrics.json",
    "reports/train/metrics.json": "train_metrics.json",
    "params.yaml": "params.yaml",
    "dvc.lock": "dvc.lock",
    "reports/figures/sample_grid.png": "sample_grid.png",
    "reports/figures/loss_curves.png": "loss_curves.png",
    "reports/evaluate/latent_units.json": "latent_units.json",
    "reports/figures/latent_units.png": "latent_units.png",
    # the trained model, so that `tasks.py verify NAME` can score it again (vaepipe.verify)
    "models/vae/config.json": "model/config.json",
    "models/vae/model.weights.h5": "model/model.weights.h5",
}


def merged(base, overrides):
    """`base` (ruamel's round-trip mapping, comments kept) with `overrides` laid over it."""
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged(base[key], value)
        elif key not in base:
            raise PipelineError(f"{key}: not a key of params.yaml")
        else:
            base[key] = value
    return base


def recipe_params(params_text: str, recipe_text: str, recipe: Path, check: bool = True) -> str:
    """params.yaml's text with the recipe laid over it (its comments kept), checked as the
    stages check it unless `check` is false; a problem is one line naming the recipe."""
    overrides = parse_yaml(recipe_text, recipe)
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise PipelineError(f"{recipe}: must map keys of params.yaml to values, got a "
                            f"{type(overrides).__name__}")
    yaml = YAML()  # round trip: the comments of params.yaml stay, and its layout
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.preserve_quotes, yaml.width = True, 4096
    params = yaml.load(params_text)
    try:
        merged(params, overrides)
        if check:
            parse_params(YAML(typ="safe").load(_dumped(yaml, params)))
    except PipelineError as error:
        raise PipelineError(f"{recipe}: {str(error).removeprefix('params.yaml: ')}") from None
    return _dumped(yaml, params)


def git(*args: str, cwd: Path = Path(".")) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


def prepare_workspace(name: str, commit: str, parked: Path | None = None) -> Path:
    """A clone of `commit` in .reproductions/NAME that shares this repository's DVC cache. One
    made before at this commit is kept as it is (its dvc.lock says what is done, its checkpoint
    how far training got); one at another commit is moved to this one (its checkpoint is taken
    up again only where the params, data and package code it was made with are unchanged), and
    a new or moved one starts from the `parked` checkpoint where there is one."""
    workspace = WORKSPACES / name
    fresh = not (workspace / ".git").exists()
    if fresh:
        shutil.rmtree(workspace, ignore_errors=True)
        git("clone", "--quiet", "--no-checkout", ".", str(workspace))
    if fresh or git("rev-parse", "HEAD", cwd=workspace) != commit:
        git("fetch", "--quiet", "origin", cwd=workspace)
        git("checkout", "--quiet", "--force", "--detach", commit, cwd=workspace)
        if parked is not None:
            shutil.rmtree(workspace / TRAIN_CHECKPOINTS, ignore_errors=True)
            shutil.copytree(parked / "checkpoint", workspace / TRAIN_CHECKPOINTS)
            copy_timing(parked, workspace)
    cache = Path(".dvc/cache").resolve()
    (workspace / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {cache}\n")
    return workspace


def run_name(recipe: str, seed: int | None) -> str:
    """A run's name, which its workspace, parked copy and record take: the recipe's, or
    NAME-seedN for the recipe run with another seed."""
    return recipe if seed is None else f"{recipe}-seed{seed}"


def park(recipe: str, seed: int | None = None) -> Path:
    """Copy the latest checkpoint of a run, and its commit, to reproductions/under_way/RUN/ (to
    be committed). The run may go on meanwhile: a copy that a new save overtook is taken
    again."""
    recipe_path(recipe)
    name = run_name(recipe, seed)
    seed_option = "" if seed is None else f" --seed {seed}"
    workspace = WORKSPACES / name
    checkpoint = workspace / TRAIN_CHECKPOINTS
    if not (checkpoint / CHECKPOINT_STATE).is_file():
        raise PipelineError(f"{checkpoint}: no checkpoint to park (`tasks.py reproduce "
                            f"{recipe}{seed_option}` makes one)")
    commit = git("rev-parse", "HEAD", cwd=workspace)
    UNDER_WAY.mkdir(parents=True, exist_ok=True)
    with atomic_dir(UNDER_WAY / name) as staging:
        position = _copy_whole(checkpoint, staging / "checkpoint")
        (staging / "commit.txt").write_text(f"{commit}\n")
        copy_timing(workspace, staging)
    print(f"{UNDER_WAY / name}/: {name} after {position['epochs_done']} epochs, at commit "
          f"{commit[:10]}; commit it, and `tasks.py reproduce {recipe}{seed_option}` on any "
          f"clone goes on from there", file=sys.stderr)
    return UNDER_WAY / name


def _copy_whole(checkpoint: Path, copy: Path, tries: int = 3) -> dict:
    """Copy a checkpoint that a running save may replace; its state file, rewritten by every
    save, is the same before, in and after a copy that no save overtook. Its position."""
    for _ in range(tries):
        before = (checkpoint / CHECKPOINT_STATE).read_bytes()
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(checkpoint, copy)
        if before == (copy / CHECKPOINT_STATE).read_bytes() == (
                checkpoint / CHECKPOINT_STATE).read_bytes():
            return json.loads(before)
    raise PipelineError(f"{checkpoint}: replaced during every copy; stop the run and park again")


def parked_commit(parked: Path) -> str:
    """The commit a parked run was made with; one this repository lacks is one line."""
    commit = (parked / "commit.txt").read_text().strip()
    known = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"],
                           capture_output=True).returncode == 0
    if not known:
        raise PipelineError(f"{parked}/commit.txt: {commit[:10]} is not a commit of this "
                            f"repository (fetch it, or remove {parked}/ to start afresh)")
    return commit


def committed_text(commit: str, path: Path) -> str | None:
    """The file at `path` as `commit` holds it, or None where it holds no such file."""
    done = subprocess.run(["git", "show", f"{commit}:{path.as_posix()}"], capture_output=True,
                          text=True)
    return done.stdout if done.returncode == 0 else None


def committed_recipe(recipe: Path, commit: str) -> str:
    """The recipe as `commit` holds it; one that differs in the working tree is refused, since
    the record would name a commit that does not hold what ran."""
    committed = committed_text(commit, recipe)
    if committed is None:
        raise PipelineError(f"{recipe}: not committed; commit it first (a run records the "
                            f"commit whose recipe it ran)")
    if recipe.read_text() != committed:
        raise PipelineError(f"{recipe}: differs from commit {commit[:10]}; commit it or "
                            f"`git checkout {recipe}` first (a run records the commit whose "
                            f"recipe it ran)")
    return committed


def _dumped(yaml: YAML, data) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def run_dvc(workspace: Path, *args: str) -> None:
    """dvc in the workspace (its stages import the workspace's own package). Ctrl-C reaches dvc
    and its stage too: dvc is waited for, not killed, so that the train stage's checkpoint is
    saved before anything reads how far it got."""
    with subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=workspace) as child:
        try:
            returncode = child.wait()
        except KeyboardInterrupt:
            child.wait()
            raise
    if returncode != 0:
        raise PipelineError(f"`dvc {' '.join(args)}` failed in {workspace} (exit "
                            f"{returncode}); run the same command again to resume")


def copy_timing(source: Path, folder: Path) -> None:
    """A run's TIMING along with it, where it has one (runs begun before it existed do not)."""
    if (source / TIMING).is_file():
        shutil.copyfile(source / TIMING, folder / TIMING)


def epochs_done(workspace: Path) -> int:
    """How far the workspace's checkpoint says training got (0 without one)."""
    state = workspace / TRAIN_CHECKPOINTS / CHECKPOINT_STATE
    return json.loads(state.read_text())["epochs_done"] if state.is_file() else 0


def timed_training(workspace: Path, epochs: int) -> None:
    """`dvc repro train` where the train stage is not done; the sitting's wall time and the
    epochs it took the run from and to (as far as its last checkpoint, when stopped) added to
    the workspace's TIMING, also when it fails or is stopped. A sitting from epoch 0 starts the
    timing afresh."""
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", "train"],
                            cwd=workspace, capture_output=True, text=True)
    if status.returncode == 0 and json.loads(status.stdout or "{}") == {}:
        return  # trained in an earlier sitting
    start, started, finished = epochs_done(workspace), time.monotonic(), False
    try:
        run_dvc(workspace, "repro", "train")
        finished = True
    finally:
        kept = workspace / TIMING
        sittings = json.loads(kept.read_text())["sittings"] if start and kept.is_file() else []
        sittings.append({"from_epoch": start,
                         "to_epoch": epochs if finished else epochs_done(workspace),
                         "seconds": round(time.monotonic() - started, 1)})
        kept.write_text(json.dumps({
            "train_seconds": round(sum(sitting["seconds"] for sitting in sittings), 1),
            "epochs_timed": sum(sitting["to_epoch"] - sitting["from_epoch"]
                                for sitting in sittings),
            "measures": "wall time of `dvc repro train` (the train stage, and any stage before "
                        "it not yet done) in each sitting of `tasks.py reproduce`, from and to "
                        "the epochs it trained; epochs_timed of the run's epochs are covered "
                        "(sittings from before timing.json existed are not)",
            "sittings": sittings}, indent=2) + "\n")


def keep_results(name: str, workspace: Path, commit: str) -> Path:
    with atomic_dir(RECIPES / name) as staging:
        for source, kept in RESULTS.items():
            (staging / kept).parent.mkdir(exist_ok=True)
            shutil.copyfile(workspace / source, staging / kept)
        copy_timing(workspace, staging)
        (staging / "commit.txt").write_text(f"{commit}\n")
    return RECIPES / name


def recipe_path(name: str) -> Path:
    recipe = RECIPES / f"{name}.yaml"
    if not recipe.is_file():
        known = sorted(path.stem for path in RECIPES.glob("*.yaml"))
        raise PipelineError(f"{recipe}: no such recipe (there are: {', '.join(known)})")
    return recipe


def run_params(recipe: Path, commit: str, seed: int | None = None) -> str:
    """What a run of `recipe` at `commit` trains with: the commit's params.yaml with the recipe
    (and the seed) laid over it. Checked here only at HEAD: at an older commit (a parked run)
    this code may require keys that the commit's params lack, and the commit's own stages check
    its params before they start."""
    check = commit == git("rev-parse", "HEAD")
    params = recipe_params(committed_text(commit, Path("params.yaml")),
                           committed_recipe(recipe, commit), recipe, check)
    if seed is not None:
        params = recipe_params(params, json.dumps({"seed": seed}), Path(f"--seed {seed}"), check)
    return params


def reproduce(recipe_name: str, seed: int | None = None) -> None:
    recipe = recipe_path(recipe_name)
    name = run_name(recipe_name, seed)
    parked = UNDER_WAY / name if (UNDER_WAY / name / "commit.txt").is_file() else None
    commit = parked_commit(parked) if parked else git("rev-parse", "HEAD")
    params = run_params(recipe, commit, seed)
    if parked:
        print(f"note: going on with the run parked in {parked}/, at its commit",
              file=sys.stderr)
    elif git("status", "--porcelain", "--untracked-files=no", "src", "stages", "dvc.yaml",
             "params.yaml"):
        print("note: the run uses the committed code and params, not this workspace's changes",
              file=sys.stderr)
    workspace = prepare_workspace(name, commit, parked)
    (workspace / "params.yaml").write_text(params)
    print(f"reproducing {name} at commit {commit[:10]} in {workspace}/", file=sys.stderr)
    run_dvc(workspace, "checkout", "--quiet", "--allow-missing")
    timed_training(workspace, YAML(typ="safe").load(params)["epochs"])
    run_dvc(workspace, "repro")
    kept = keep_results(name, workspace, commit)
    if parked:
        shutil.rmtree(parked)
        print(f"{parked}/: removed, the run being done (commit its removal)", file=sys.stderr)
    metrics = json.loads((kept / "metrics.json").read_text())
    print(json.dumps(metrics, indent=2))
    print(f"results in {kept}/ (commit them)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a recipe in reproductions/, without .yaml")
    parser.add_argument("--seed", type=int, metavar="N",
                        help="run the recipe with seed N; the run and its record are NAME-seedN")
    parser.add_argument("--park", action="store_true",
                        help=f"copy the run's latest checkpoint to {UNDER_WAY}/NAME/ (or "
                             f"NAME-seedN/), to be committed and continued on another clone")
    args = parser.parse_args()
    if args.park:
        park(args.name, args.seed)
    else:
        reproduce(args.name, args.seed)


if __name__ == "__main__":
    run_stage(main)
