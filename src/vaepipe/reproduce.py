"""Long runs kept beside the pipeline: a published result, reproduced from a committed recipe.

    python -m vaepipe.reproduce NAME      (python3 tasks.py reproduce NAME)

`reproductions/NAME.yaml` holds the params that differ from params.yaml. The run happens in
`.reproductions/NAME/`, a clone of the current commit, by `dvc repro`, so it never touches this
workspace's outputs; its params.yaml is made anew on every run from the commit's params.yaml
and the commit's recipe, so the record is exactly what the commit names. It resumes from its
checkpoint when stopped and run again. When it is done, its metrics, params, dvc.lock, three
figures and the trained model are copied to `reproductions/NAME/`, to be committed.
"""

import argparse
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

from ruamel.yaml import YAML

from vaepipe.errors import PipelineError, run_stage
from vaepipe.files import atomic_dir
from vaepipe.params import parse_params, parse_yaml

RECIPES = Path("reproductions")
WORKSPACES = Path(".reproductions")
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


def recipe_params(params_text: str, recipe_text: str, recipe: Path) -> str:
    """params.yaml's text with the recipe laid over it (its comments kept), checked as the
    stages check it; a problem is one line naming the recipe."""
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
        parse_params(YAML(typ="safe").load(_dumped(yaml, params)))
    except PipelineError as error:
        raise PipelineError(f"{recipe}: {str(error).removeprefix('params.yaml: ')}") from None
    return _dumped(yaml, params)


def git(*args: str, cwd: Path = Path(".")) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise PipelineError(f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1]}")
    return done.stdout.strip()


def prepare_workspace(name: str, commit: str) -> Path:
    """A clone of `commit` in .reproductions/NAME that shares this repository's DVC cache. One
    made before at this commit is kept as it is (its dvc.lock says what is done); one at
    another commit is moved to this one (its checkpoint is taken up again only where the
    params, data and package code it was made with are unchanged)."""
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
    """dvc in the workspace (its stages import the workspace's own package)."""
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=workspace)
    if done.returncode != 0:
        raise PipelineError(f"`dvc {' '.join(args)}` failed in {workspace} (exit "
                            f"{done.returncode}); run the same command again to resume")


def keep_results(name: str, workspace: Path, commit: str) -> Path:
    with atomic_dir(RECIPES / name) as staging:
        for source, kept in RESULTS.items():
            (staging / kept).parent.mkdir(exist_ok=True)
            shutil.copyfile(workspace / source, staging / kept)
        (staging / "commit.txt").write_text(f"{commit}\n")
    return RECIPES / name


def reproduce(name: str) -> None:
    recipe = RECIPES / f"{name}.yaml"
    if not recipe.is_file():
        known = sorted(path.stem for path in RECIPES.glob("*.yaml"))
        raise PipelineError(f"{recipe}: no such recipe (there are: {', '.join(known)})")
    commit = git("rev-parse", "HEAD")
    params = recipe_params(committed_text(commit, Path("params.yaml")),
                           committed_recipe(recipe, commit), recipe)
    if git("status", "--porcelain", "--untracked-files=no", "src", "stages", "dvc.yaml",
           "params.yaml"):
        print("note: the run uses the committed code and params, not this workspace's changes",
              file=sys.stderr)
    workspace = prepare_workspace(name, commit)
    (workspace / "params.yaml").write_text(params)
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
