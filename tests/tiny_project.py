"""The project as a throwaway git + DVC repository on tiny data, driven as users drive it.

The copy differs from the project in two ways only: tiny params, and a `download` stage that
writes tiny generated IDX files (the real one verifies the canonical MNIST hashes).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import PROJECT_ROOT

PROJECT_FILES = ("dvc.yaml", "params.yaml", "regression.yaml", ".gitignore", "stages", "src")
# The classifier's keys keep params.yaml's values, so that `-S conditioning=none` is accepted.
TINY_PARAMS = {"encoder_layers": [16], "decoder_layers": [16], "z_dim": 2, "epochs": 2,
               "batch_size": 10}
TINY_GROUPS = {
    "data": {"validation_size": 20},
    "train": {"steps_per_execution": 2},
    "evaluate": {"iwae_samples": 5, "batch_size": 10},
    "render": {"reconstructions": 3, "traversal_steps": 3},
}
MAKE_TINY_RAW = """\
import numpy as np
from vaepipe.data import MNIST_FILES, write_idx
from vaepipe.download import write_raw_files
from vaepipe.files import atomic_dir

rng = np.random.default_rng(0)
sizes = (80, 80, 20, 20)
files = {}
for name, n in zip(MNIST_FILES, sizes):
    shape = (n, 28, 28) if "images" in name else (n,)
    high = 256 if "images" in name else 10
    files[name] = write_idx(rng.integers(0, high, shape, dtype=np.uint8))
with atomic_dir("data/raw") as out:
    write_raw_files(out, files, ["make_tiny_raw.py"])
"""
STAGES = ("check_params", "download", "prepare", "train", "evaluate", "render")


class Repo:
    """A git + DVC repository in a folder, driven through the commands users type."""

    def __init__(self, root: Path):
        self.root = root
        venv_bin = str(Path(sys.executable).parent)
        # TensorFlow's log level as a user's shell has it: unset, whatever this process chose.
        inherited = {name: value for name, value in os.environ.items()
                     if name != "TF_CPP_MIN_LOG_LEVEL"}
        self.env = {**inherited, "PATH": f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
                    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=self.root, env=self.env, capture_output=True,
                                text=True)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def dvc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check)

    def commit(self, message: str) -> str:
        self.run("git", "add", "-A")
        self.run("git", "commit", "-q", "-m", message)
        return self.run("git", "rev-parse", "HEAD").stdout.strip()

    def metrics(self) -> dict:
        return json.loads((self.root / "reports" / "metrics.json").read_text())


def ran_stages(output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in output]


def tiny_params(path: Path) -> None:
    params = yaml.safe_load(path.read_text())
    params.update(TINY_PARAMS)
    for group, values in TINY_GROUPS.items():
        params[group].update(values)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def tiny_download_stage(path: Path) -> None:
    pipeline = yaml.safe_load(path.read_text())
    pipeline["stages"]["download"] = {"cmd": "python make_tiny_raw.py",
                                      "deps": ["make_tiny_raw.py"], "outs": ["data/raw"]}
    path.write_text(yaml.safe_dump(pipeline, sort_keys=False))


def build(root: Path) -> Repo:
    """A throwaway copy of the project in `root` after `dvc repro`, committed."""
    for name in PROJECT_FILES:
        source = PROJECT_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    (root / "make_tiny_raw.py").write_text(MAKE_TINY_RAW)
    tiny_params(root / "params.yaml")
    tiny_download_stage(root / "dvc.yaml")
    project = Repo(root)
    project.run("git", "init", "-q", "-b", "main")
    project.dvc("init", "-q")
    project.dvc("config", "core.analytics", "false")
    project.commit("tiny pipeline")
    result = project.dvc("repro")
    assert ran_stages(result.stdout) == list(STAGES)
    project.first_repro = result
    project.commit("tiny pipeline's results")
    return project
