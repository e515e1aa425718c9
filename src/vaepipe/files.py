"""Atomic outputs: a stage that fails or is killed leaves nothing that could pass for a result."""

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_permissions(path: str | os.PathLike, directory: bool) -> None:
    """mkstemp/mkdtemp create owner-only paths; outputs get what a plain open() would give."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success it replaces `path` in one rename."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    # A run killed outright (SIGKILL, power loss) cannot clean up after itself: the next does.
    # DVC never runs a stage twice at once, so no live run owns these.
    for stale in final.parent.glob(f".{final.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        _usual_permissions(staging, directory=True)
        yield staging
        if final.exists():
            shutil.rmtree(final) if final.is_dir() else final.unlink()
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def atomic_write_bytes(path: str | os.PathLike, content: bytes) -> None:
    """Write `content` to a temporary file beside `path`, then rename it into place."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
        _usual_permissions(tmp, directory=False)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON, atomically."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=False) + "\n").encode())
