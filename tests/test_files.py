import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from vaepipe.errors import PipelineError
from vaepipe.files import (atomic_dir, atomic_write_bytes, remove_leftovers,
                           remove_pipeline_leftovers, staged_outputs, write_json)

from conftest import NAMESPACE, PROJECT_ROOT, needs_namespaces


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_dir_replaces_the_old_folder_on_success(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic_dir(target) as staging:
        (staging / "new.txt").write_text("new")
        assert (target / "old.txt").exists()  # the old result stays until the new one is whole
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_dir_keeps_the_old_folder_and_no_temp_on_failure(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as staging:
            (staging / "half.txt").write_text("half")
            raise RuntimeError("interrupted")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "x.bin", "not bytes")
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_creates_no_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "x.bin", b"content")
    assert list(tmp_path.iterdir()) == []


def test_outputs_get_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as staging:
            (staging / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 1\n}\n'
    assert mode(tmp_path / "m.json") == 0o644
    assert mode(tmp_path / "d") == 0o755


def ended_process() -> int:
    """The id of a process that has ended."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_atomic_dir_removes_what_a_killed_run_left(tmp_path):
    leftover = tmp_path / f".out.{ended_process()}.abc123.tmp"
    leftover.mkdir()
    (leftover / "half.bin").write_bytes(b"half")
    with atomic_dir(tmp_path / "out") as staging:
        (staging / "whole.bin").write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_only_the_leftovers_of_ended_processes_are_removed(tmp_path):
    ended, running = ended_process(), os.getpid()
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "weights.bin").write_bytes(b"new weights")
    (tmp_path / f".model.{ended}.old").mkdir()  # the new output had moved in: the old one goes
    (tmp_path / f".samples.npy.{ended}.old").write_bytes(b"old samples")  # the new one had not
    (tmp_path / f".metrics.json.{ended}.x1_y2.tmp").write_bytes(b"half")
    (tmp_path / f".model.{ended}.abc123.tmp").mkdir()
    kept = [f".model.{running}.abc123.tmp", f".metrics.json.{running}.x1_y2.tmp",
            ".model.abc123.tmp", ".notes.tmp"]  # a live run's, and names of no run
    for name in kept:
        (tmp_path / name).write_bytes(b"kept")
    remove_leftovers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", "samples.npy", *kept])
    assert (tmp_path / "samples.npy").read_bytes() == b"old samples"


PIPELINE = """
stages:
  train:
    cmd: python train.py
    outs: [models/vae, {models/samples.npy: {persist: true}}]
    metrics: [{reports/train/metrics.json: {cache: false}}]
"""


def test_the_pipelines_leftovers_are_removed_beside_every_output(tmp_path):
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    ended = ended_process()
    leftovers = [tmp_path / "models" / f".vae.{ended}.abc.tmp",
                 tmp_path / "reports" / "train" / f".metrics.json.{ended}.abc.tmp"]
    elsewhere = tmp_path / "notes" / f".draft.{ended}.abc.tmp"
    for path in [*leftovers, elsewhere]:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half")
    remove_pipeline_leftovers(tmp_path / "dvc.yaml")
    assert [path.exists() for path in leftovers] == [False, False]
    assert elsewhere.exists()  # no output of the pipeline is there


def test_any_stage_removes_what_a_killed_run_of_another_stage_left(tmp_path):
    """As after `kill -9` of the train stage and a `dvc repro` that found it up to date: the
    next stage that runs, whichever it is, removes its staging folders."""
    for folder in ("stages", "src"):
        shutil.copytree(PROJECT_ROOT / folder, tmp_path / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(PROJECT_ROOT / name, tmp_path / name)
    staging = tmp_path / "models" / f".vae.{ended_process()}.k7x2_q9a.tmp"
    staging.mkdir(parents=True)
    (staging / "model.weights.h5").write_bytes(b"half written")
    (tmp_path / "models" / "samples.npy").write_bytes(b"the previous samples")
    subprocess.run([sys.executable, "stages/check_params.py"], cwd=tmp_path, check=True,
                   capture_output=True)
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["samples.npy"]
    assert (tmp_path / "models" / "samples.npy").read_bytes() == b"the previous samples"


def write_old_outputs(root):
    (root / "model").mkdir()
    (root / "model" / "weights.bin").write_bytes(b"old weights")
    (root / "samples.npy").write_bytes(b"old samples")
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def contents(root):
    return {p.relative_to(root): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_staged_outputs_replace_every_output_together(tmp_path):
    write_old_outputs(tmp_path)
    with staged_outputs(folders=[tmp_path / "model"], files=[tmp_path / "samples.npy"]) as out:
        (out[tmp_path / "model"] / "weights.bin").write_bytes(b"new weights")
        out[tmp_path / "samples.npy"].write_bytes(b"new samples")
        assert (tmp_path / "samples.npy").read_bytes() == b"old samples"
    assert contents(tmp_path) == {Path("model/weights.bin"): b"new weights",
                                  Path("samples.npy"): b"new samples"}


def test_a_failure_after_the_first_output_is_staged_keeps_every_old_output(tmp_path):
    before = write_old_outputs(tmp_path)
    with pytest.raises(PipelineError, match=r"^writing .*/model, .*/samples.npy: disk full; the "
                                            r"previous outputs are left as they were$"):
        with staged_outputs(folders=[tmp_path / "model"], files=[tmp_path / "samples.npy"]) as out:
            (out[tmp_path / "model"] / "weights.bin").write_bytes(b"new weights")
            raise OSError(28, "disk full")
    assert contents(tmp_path) == before


def test_a_failed_rename_puts_the_already_moved_outputs_back(tmp_path, monkeypatch):
    before = write_old_outputs(tmp_path)
    real_rename = Path.rename

    def rename_failing_on_the_second_output(self, target):
        if Path(target) == tmp_path / "samples.npy" and self.parent.name.endswith(".tmp"):
            raise OSError(30, "Read-only file system", str(target))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", rename_failing_on_the_second_output)
    with pytest.raises(OSError, match="Read-only"):
        with staged_outputs(folders=[tmp_path / "model"], files=[tmp_path / "samples.npy"]) as out:
            (out[tmp_path / "model"] / "weights.bin").write_bytes(b"new weights")
            out[tmp_path / "samples.npy"].write_bytes(b"new samples")
    assert contents(tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "samples.npy"]


def test_an_old_output_set_aside_by_a_killed_run_is_put_back(tmp_path):
    set_aside = tmp_path / f".model.{ended_process()}.old"
    set_aside.mkdir()
    (set_aside / "weights.bin").write_bytes(b"old weights")
    with pytest.raises(RuntimeError):
        with staged_outputs(folders=[tmp_path / "model"]):
            raise RuntimeError("stopped")
    assert contents(tmp_path) == {Path("model/weights.bin"): b"old weights"}


def test_write_json_refuses_nan_and_writes_nothing(tmp_path):
    (tmp_path / "m.json").write_text('{"elbo": -224.0}\n')
    for value in (float("nan"), float("inf")):
        with pytest.raises(PipelineError, match=r"m.json: refusing to write a non-finite number"):
            write_json(tmp_path / "m.json", {"test": {"elbo": value}})
    assert (tmp_path / "m.json").read_text() == '{"elbo": -224.0}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


# A real read-only folder and a real full disk: a tmpfs mounted in a private user and mount
# namespace (root's permission bits alone would not stop a write).
WRITE_TWO_OUTPUTS = """
import sys
from vaepipe.errors import run_stage
from vaepipe.files import staged_outputs

def main():
    with staged_outputs(folders=["out/model"], files=["out/samples.npy"]) as out:
        print("working", flush=True)
        (out["out/model"] / "weights.bin").write_bytes(b"n" * int(sys.argv[1]))
        out["out/samples.npy"].write_bytes(b"new samples")

run_stage(main)
"""
def run_in_tmpfs(tmp_path, mount_options: str, size: int) -> subprocess.CompletedProcess:
    """Old outputs on a tmpfs (mounted with `mount_options` after they are written), then
    the script that replaces them with a `size`-byte model."""
    script = tmp_path / "write.py"
    script.write_text(WRITE_TWO_OUTPUTS)
    (tmp_path / "out").mkdir()
    shell = (f"mount -t tmpfs -o size=64k none out && mkdir out/model && "
             f"printf old > out/model/weights.bin && printf old > out/samples.npy && "
             f"mount -o remount,{mount_options} out && "
             f"{sys.executable} {script} {size}; echo \"exit $?\"; "
             f"cat out/model/weights.bin out/samples.npy; echo; ls -a out")
    return subprocess.run([*NAMESPACE, "sh", "-c", shell], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)


@needs_namespaces
def test_a_read_only_folder_fails_before_any_work_in_one_line(tmp_path):
    result = run_in_tmpfs(tmp_path, "ro", size=10)
    assert result.stderr == "error: out: cannot write outputs here: Read-only file system\n"
    assert "working" not in result.stdout
    assert result.stdout.splitlines() == ["exit 1", "oldold", ".", "..", "model", "samples.npy"]


@needs_namespaces
def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_old_outputs(tmp_path):
    result = run_in_tmpfs(tmp_path, "rw", size=100_000)
    [line] = result.stderr.splitlines()
    assert line == ("error: writing out/model, out/samples.npy: No space left on device; "
                    "the previous outputs are left as they were")
    assert result.stdout.splitlines() == ["working", "exit 1", "oldold", ".", "..", "model",
                                          "samples.npy"]


def test_the_command_tasks_repro_runs_first_removes_the_leftovers(tmp_path):
    """`tasks.py repro` runs it before `dvc repro`, which runs no stage when all are up to date."""
    (tmp_path / "dvc.yaml").write_text(PIPELINE)
    leftover = tmp_path / "models" / f".vae.{ended_process()}.abc.tmp"
    leftover.mkdir(parents=True)
    done = subprocess.run([sys.executable, "-m", "vaepipe.files"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert not leftover.exists()
