"""A stage's outputs, replaced all together or not at all.

Each output is written into a staging path beside it (`.NAME.PID.XXXX.tmp`, PID the writing
process), flushed to disk, and only when every output of the stage is whole are they renamed
into place, one after the other, each old one kept aside (`.NAME.PID.old`) until all have moved,
so that a failure on the way puts every old output back. A run killed outright leaves staging
paths, and, in the microseconds between two renames, an old output set aside: whatever later
writes into the same folder, and every stage for every output of dvc.yaml, removes the first
and puts the second back, once the process that made them is gone.
"""

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vaepipe.errors import PipelineError, run_stage
from vaepipe.params import read_yaml

# `.NAME.PID.XXXX.tmp` or `.NAME.PID.old` (tempfile's XXXX holds no dot)
LEFTOVER = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.(?:[^.]+\.tmp|old)")
TRAIN_CHECKPOINTS = Path(".checkpoints/train")  # the train stage's, kept out of DVC's outputs


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_permissions(path: str | os.PathLike, directory: bool) -> None:
    """mkstemp/mkdtemp create owner-only paths; outputs get what a plain open() would give."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


def _staging_prefix(name: str) -> str:
    return f".{name}.{os.getpid()}."


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    return True


def remove_leftovers(folder: Path) -> None:
    """Undo what runs killed outright left in `folder`: their staging paths are removed, an old
    output set aside is put back where no new one replaced it. Only those of processes that are
    gone: a live one may still be writing."""
    for path in folder.glob(".*"):
        made_by = LEFTOVER.fullmatch(path.name)
        if made_by is None or _is_running(int(made_by["pid"])):
            continue
        final = folder / made_by["name"]
        if path.suffix == ".old" and not (final.exists() or final.is_symlink()):
            path.rename(final)  # killed between moving the old output aside and the new one in
        else:
            _remove(path)


def _output_folders(dvc_yaml: Path) -> set[Path]:
    """The folders that hold an output of a stage of `dvc_yaml` (outs, metrics or plots)."""
    folders = set()
    for stage in (read_yaml(dvc_yaml) or {}).get("stages", {}).values():
        for kind in ("outs", "metrics", "plots"):
            for output in stage.get(kind, []):  # a path, or {path: options}
                path = output if isinstance(output, str) else next(iter(output))
                folders.add(dvc_yaml.parent / Path(path).parent)
    return folders


def remove_pipeline_leftovers(dvc_yaml: str | os.PathLike = "dvc.yaml") -> None:
    """`remove_leftovers` beside every output of the pipeline, whichever stage writes it: a stage
    killed outright and then found up to date would otherwise leave its staging paths for
    ever. Nothing without a dvc.yaml (a stage's script run by hand elsewhere)."""
    dvc_yaml = Path(dvc_yaml)
    for folder in _output_folders(dvc_yaml) if dvc_yaml.is_file() else ():
        if folder.is_dir():
            remove_leftovers(folder)


def run_pipeline_stage(main: Callable[[], None]) -> None:
    """A DVC stage's entry point: first the leftovers of runs killed outright are removed, then
    `main` runs; any problem of either is one line (errors.run_stage)."""
    def cleaned_then_main() -> None:
        remove_pipeline_leftovers()
        main()
    run_stage(cleaned_then_main)


def require_writable(folder: Path) -> None:
    """Fail now, naming the folder, rather than after the whole computation."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=_staging_prefix("write-probe"), suffix=".tmp",
                                     dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise PipelineError(f"{folder}: cannot write outputs here: {error.strerror}") from None


def _fsync_tree(path: Path) -> None:
    """Flush a file, or a folder and everything in it, to disk before it is renamed."""
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        _fsync(item)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # folders too: their entries must reach the disk
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _swap_in(swaps: list[tuple[Path, Path]]) -> None:
    """Rename each staged path onto its final path; on any failure, put every old one back."""
    done: list[tuple[Path, Path | None]] = []  # (final, where its old version was set aside)
    try:
        for staged, final in swaps:
            old = None
            if final.exists() or final.is_symlink():
                old = final.parent / f"{_staging_prefix(final.name)}old"
                final.rename(old)
            done.append((final, old))
            staged.rename(final)
    except BaseException:
        for final, old in reversed(done):
            if old is not None:
                if final.exists():
                    _remove(final)
                old.rename(final)
        raise
    for final, old in done:
        if old is not None:
            _remove(old)
    for parent in {final.parent for _, final in swaps}:
        _fsync(parent)


class StagedOutputs:
    """Where a stage writes its outputs until they all replace the old ones together."""

    def __init__(self, folders: Iterable[str | os.PathLike], files: Iterable[str | os.PathLike]):
        self.folders = [Path(p) for p in folders]
        self.files = [Path(p) for p in files]
        self._staging: dict[Path, Path] = {}  # final -> staging folder beside it

    def __getitem__(self, final: str | os.PathLike) -> Path:
        """The path to write `final`'s new content to: a folder, or a file in a folder."""
        final = Path(final)
        staging = self._staging[final]
        return staging if final in self.folders else staging / final.name

    def __str__(self) -> str:
        return ", ".join(str(final) for final in [*self.folders, *self.files])

    def open(self) -> None:
        for final in [*self.folders, *self.files]:
            require_writable(final.parent)
            remove_leftovers(final.parent)
            staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(final.name), suffix=".tmp",
                                            dir=final.parent))
            _usual_permissions(staging, directory=True)
            self._staging[final] = staging

    def commit(self) -> None:
        swaps = [(self[final], final) for final in self._staging]
        for staged, final in swaps:
            if not staged.exists():
                raise RuntimeError(f"{final}: the stage wrote nothing to replace it with")
            _fsync_tree(staged)
        _swap_in(swaps)

    def discard(self) -> None:
        for staging in self._staging.values():
            shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_outputs(folders: Iterable[str | os.PathLike] = (),
                   files: Iterable[str | os.PathLike] = ()) -> Iterator[StagedOutputs]:
    """Check that every output can be written, yield where to write them, and on success
    replace them all together. An exception inside leaves every old output as it was."""
    outputs = StagedOutputs(folders, files)
    try:
        outputs.open()
        yield outputs
        outputs.commit()
    except OSError as error:
        if error.filename:
            raise
        # A write to a full disk says which device, not which file: name the outputs.
        raise PipelineError(f"writing {outputs}: "
                            f"{error.strerror or error}; the previous outputs are left as they "
                            f"were") from None
    finally:
        outputs.discard()


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty folder beside `path`; on success it replaces `path` in one rename."""
    with staged_outputs(folders=[path]) as outputs:
        yield outputs[path]


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> None:
    """Write `content` to a temporary file beside `path` (in a folder that exists), flush it,
    then rename it into place."""
    final = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(final.name), suffix=".tmp",
                               dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        _usual_permissions(tmp, directory=False)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented, strict JSON (no NaN or Infinity, which JSON readers refuse)."""
    try:
        content = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    except ValueError:
        raise PipelineError(f"{path}: refusing to write a non-finite number (NaN or infinity)"
                            ) from None
    atomic_write_bytes(path, content.encode())


if __name__ == "__main__":  # python -m vaepipe.files: what `tasks.py repro` runs before dvc repro
    run_stage(remove_pipeline_leftovers)
