"""The stage scripts: what each imports is what dvc.yaml says it depends on, and it is imported
from the checkout the stage runs in."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vaepipe import family

from conftest import PROJECT_ROOT

STAGE_SCRIPTS = sorted(path.stem for path in (PROJECT_ROOT / "stages").glob("[!_]*.py"))
# Imports a stage script as a module (its main() does not run) and prints the files of the
# checkout that this loaded: those under stages/ and src/ of the folder given.
IMPORTED_FILES = """
import importlib.util, json, sys
from pathlib import Path
root, stage = Path(sys.argv[1]).resolve(), sys.argv[2]
sys.path.insert(0, str(root / "stages"))
spec = importlib.util.spec_from_file_location("stage", root / "stages" / f"{stage}.py")
spec.loader.exec_module(importlib.util.module_from_spec(spec))
files = {root / "stages" / f"{stage}.py"} | {
    Path(module.__file__).resolve() for module in list(sys.modules.values())
    if getattr(module, "__file__", None)}
print(json.dumps(sorted(str(path.relative_to(root)) for path in files
                        if path.is_relative_to(root / "stages") or path.is_relative_to(root / "src"))))
"""


def imported_files(root: Path, stage: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", IMPORTED_FILES, str(root), stage],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def code_deps(stage: str) -> list[str]:
    deps = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"][stage]["deps"]
    return sorted(dep for dep in deps if dep.startswith(("stages/", "src/")))


def test_every_stage_script_is_a_stage_of_dvc_yaml():
    stages = yaml.safe_load((PROJECT_ROOT / "dvc.yaml").read_text())["stages"]
    assert sorted(stages) == STAGE_SCRIPTS
    for stage in STAGE_SCRIPTS:
        assert stages[stage]["cmd"] == f"python stages/{stage}.py"


@pytest.mark.parametrize("stage", STAGE_SCRIPTS)
def test_a_stage_depends_on_exactly_the_modules_it_imports(stage):
    """Otherwise an edit to a module left out would leave `dvc status` clean while the stage's
    results were made by the old code."""
    assert code_deps(stage) == imported_files(PROJECT_ROOT, stage)


@pytest.mark.parametrize("stage", ["train", "evaluate", "render"])
def test_a_stage_that_builds_the_model_imports_every_piece_the_params_can_choose(stage):
    """Pieces are built by name (family.py): a module imported only when first built would be
    left out of the deps, and a change to it would not rerun the stage."""
    pieces = {f"src/{module.replace('.', '/')}.py" for module in family.piece_modules()}
    assert pieces == {"src/vaepipe/architectures.py", "src/vaepipe/binarization.py",
                      "src/vaepipe/conditioning.py", "src/vaepipe/likelihoods.py",
                      "src/vaepipe/objectives.py", "src/vaepipe/output_bias.py"}
    assert pieces <= set(imported_files(PROJECT_ROOT, stage))


def test_a_stage_imports_the_package_of_its_own_checkout(tmp_path):
    """As in a queued or temporary experiment: DVC runs the stage in a copy of the repository,
    while the environment's editable install points at the workspace."""
    for folder in ("stages", "src"):
        shutil.copytree(PROJECT_ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    assert imported_files(tmp_path, "prepare") == code_deps("prepare")  # all from the copy
