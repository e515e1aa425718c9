import os
import stat

import pytest

from vaepipe.files import atomic_dir, atomic_write_bytes, write_json


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


def test_atomic_dir_removes_what_a_killed_run_left(tmp_path):
    leftover = tmp_path / ".out.abc123.tmp"
    leftover.mkdir()
    (leftover / "half.bin").write_bytes(b"half")
    unrelated = tmp_path / ".other.abc123.tmp"
    unrelated.mkdir()
    with atomic_dir(tmp_path / "out") as staging:
        (staging / "whole.bin").write_bytes(b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.abc123.tmp", "out"]
