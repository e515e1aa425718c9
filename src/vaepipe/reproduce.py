"""Long runs kept beside the pipeline: a published result, reproduced from a committed recipe.

    python -m vaepipe.reproduce NAME      (python3 tasks.py reproduce NAME)

`reproductions/NAME.yaml` holds the params that differ from params.yaml. The run happens in
`.reproductions/NAME/`, a clone of the current commit with those params, by `dvc repro`, so it
never touches this workspace's outputs; it resumes from its checkpoint when stopped and run
again. When it is done, its metrics, params, dvc.lock and two figures are copied to
`reproductions/NAME/`, to be committed.
"""

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from vaepipe.errors import PipelineError, run_stage
from vaepipe.files import atomic_dir
from vaepipe.params import parse_params, read_yaml

RECIPES = Path("reproductions")
WORKSPACES = Path(".reproductions")
RESULTS = {  # what is kept of a run: workspace path -> name in reproductions/NAME/
    "reports/metrics.json": "metrics.json",
    "reports/train/metrics.json": "train_metrics.json",
    "params.yaml": "params.yaml",
    "dvc.lock": "dvc.lock",
    "reports/figures/sample_grid.png": "sample_grid.png",
    "reports/figures/loss_curves.png": "loss_curves.png",
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


def git(*args: str, cwd: Path = Path(".")) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


def prepare_workspace(name: str, commit: str) -> Path:
    """A clone of `commit` in .reproductions/NAME that shares this repository's DVC cache. One
    made before at this commit is kept as it is (its dvc.lock says what is done); one at
    another commit is moved to this one (its checkpoint then no longer fits)."""
    workspace = WORKSPACES / name
    fresh = not (workspace / ".git").exists()
    if fresh:
        shutil.rmtree(workspace, ignore_errors=True)
        git("clone", "--quiet", "--no-checkout", ".", str(workspace))
    if fresh or git("rev-parse", "HEAD", cwd=workspace) != commit:
        git("fetch", "--quiet", "origin", cwd=workspace)
        git("checkout", "--quiet", "--force", "--detach", commit, cwd=workspace)
    cache = Path(".dvc/cache").resolve()
    (workspace / ".dvc" / "config.local").write_text(f"[cache]\n    dir = {cache}\n")
    return workspace


def write_params(workspace: Path, recipe: Path) -> None:
    """The workspace's params.yaml with the recipe laid over it, checked before it is written."""
    yaml = YAML()  # round trip: the comments of params.yaml stay
    params = yaml.load((workspace / "params.yaml").read_text())
    try:
        merged(params, read_yaml(recipe) or {})
        parse_params(YAML(typ="safe").load(_dumped(yaml, params)))
    except PipelineError as error:
        raise PipelineError(f"{recipe}: {str(error).removeprefix('params.yaml: ')}") from None
    (workspace / "params.yaml").write_text(_dumped(yaml, params))


def _dumped(yaml: YAML, data) -> str:
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def run_dvc(workspace: Path, *args: str) -> None:
    """dvc in the workspace, importing the workspace's own vaepipe, not this one's."""
    env = {**os.environ, "PYTHONPATH": str((workspace / "src").resolve())}
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=workspace, env=env)
    if done.returncode != 0:
        raise PipelineError(f"`dvc {' '.join(args)}` failed in {workspace} (exit "
                            f"{done.returncode}); run the same command again to resume")


def keep_results(name: str, workspace: Path, commit: str) -> Path:
    with atomic_dir(RECIPES / name) as staging:
        for source, kept in RESULTS.items():
            shutil.copyfile(workspace / source, staging / kept)
        (staging / "commit.txt").write_text(f"{commit}\n")
    return RECIPES / name


def reproduce(name: str) -> None:
    recipe = RECIPES / f"{name}.yaml"
    if not recipe.is_file():
        known = sorted(path.stem for path in RECIPES.glob("*.yaml"))
        raise PipelineError(f"{recipe}: no such recipe (there are: {', '.join(known)})")
    commit = git("rev-parse", "HEAD")
    if git("status", "--porcelain", "--untracked-files=no", "src", "stages", "dvc.yaml",
           "params.yaml"):
        print("note: the run uses the committed code and params, not this workspace's changes",
              file=sys.stderr)
    workspace = prepare_workspace(name, commit)
    write_params(workspace, recipe)
    print(f"reproducing {name} at commit {commit[:10]} in {workspace}/", file=sys.stderr)
    run_dvc(workspace, "checkout", "--quiet", "--allow-missing")
    run_dvc(workspace, "repro")
    kept = keep_results(name, workspace, commit)
    metrics = json.loads((kept / "metrics.json").read_text())
    print(json.dumps(metrics, indent=2))
    print(f"results in {kept}/ (commit them)", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="a recipe in reproductions/, without .yaml")
    reproduce(parser.parse_args().name)


if __name__ == "__main__":
    run_stage(main)
