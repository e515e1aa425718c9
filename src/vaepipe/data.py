"""MNIST's IDX files, read strictly, and the train / validation / test splits prepared from them."""

import hashlib
import io
import json
import math
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from vaepipe.errors import PipelineError
from vaepipe.files import atomic_dir, write_json
from vaepipe.params import ParamError

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)
PROVENANCE = "provenance.json"  # written beside them by the download: their SHA-256 among others

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
DIMENSIONS_BY_MAGIC = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
IMAGE_SHAPE = (28, 28)
NUM_DIGITS = 10
SPLITS = ("train", "val", "test")
PREPARED_SHAPES = {"images": (None, *IMAGE_SHAPE), "labels": (None,)}  # uint8; None: any length


class Split(NamedTuple):
    images: np.ndarray  # uint8, (n, 28, 28)
    labels: np.ndarray  # uint8, (n,)


def _require_size(path: Path, content: bytes, expected: int, at_least: bool = False) -> None:
    found = len(content)
    if found < expected or (found > expected and not at_least):
        problem = "truncated" if found < expected else "trailing bytes"
        bound = "at least " if at_least else ""
        raise PipelineError(f"{path}: {problem}: expected {bound}{expected} bytes, found {found}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read: {error.strerror}") from None


def read_idx(path: str | Path) -> np.ndarray:
    """A uint8 IDX file as an array: labels (n,) or images (n, 28, 28); anything else is refused."""
    path = Path(path)
    return _parse_idx(path, _read_bytes(path))


def _parse_idx(path: Path, content: bytes) -> np.ndarray:
    _require_size(path, content, 4, at_least=True)
    magic = int.from_bytes(content[:4], "big")
    if magic not in DIMENSIONS_BY_MAGIC:
        raise PipelineError(f"{path}: wrong magic number 0x{magic:08x}: expected "
                            f"0x{IMAGES_MAGIC:08x} (images) or 0x{LABELS_MAGIC:08x} (labels)")
    ndim = DIMENSIONS_BY_MAGIC[magic]
    header_size = 4 + 4 * ndim
    _require_size(path, content, header_size, at_least=True)
    shape = struct.unpack(f">{ndim}I", content[4:header_size])
    if ndim == 3 and shape[1:] != IMAGE_SHAPE:
        raise PipelineError(f"{path}: wrong dimensions: images of {shape[1]}x{shape[2]} pixels, "
                            f"expected {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}")
    _require_size(path, content, header_size + math.prod(shape))
    # A copy, so callers get an ordinary writable array rather than a view of immutable bytes.
    return np.frombuffer(content, np.uint8, offset=header_size).reshape(shape).copy()


def write_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of uint8 labels (n,) or images (n, 28, 28): the inverse of read_idx."""
    magic = {1: LABELS_MAGIC, 3: IMAGES_MAGIC}.get(array.ndim)
    images_of_wrong_size = array.ndim == 3 and array.shape[1:] != IMAGE_SHAPE
    if array.dtype != np.uint8 or magic is None or images_of_wrong_size:
        raise ValueError(f"IDX holds uint8 labels (n,) or images (n, 28, 28), got {array.dtype} "
                         f"{array.shape}")
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def _redownload(path: Path, problem: str) -> PipelineError:
    return PipelineError(f"{path}: {problem}; rerun `dvc repro -f download`")


def _recorded_sha256(raw_dir: Path) -> dict[str, str]:
    """Each raw file's SHA-256 as provenance.json records it (the download checked them against
    its pins before writing them)."""
    path = raw_dir / PROVENANCE
    try:
        provenance = json.loads(path.read_bytes())
    except OSError as error:
        raise _redownload(path, f"cannot read: {error.strerror}") from None
    except ValueError:
        raise _redownload(path, "not valid JSON") from None
    recorded = provenance.get("files") if isinstance(provenance, dict) else None
    if not isinstance(recorded, dict):
        raise _redownload(path, 'no "files" mapping of names to sha256')
    for name in MNIST_FILES:
        if not isinstance(recorded.get(name), str):
            raise _redownload(path, f"no sha256 for {name}")
    return {name: recorded[name] for name in MNIST_FILES}


def _read_raw_verified(raw_dir: Path) -> dict[str, np.ndarray]:
    """The four raw files, each read once and parsed only once its SHA-256 matches."""
    arrays = {}
    for name, expected in _recorded_sha256(raw_dir).items():
        path = raw_dir / name
        content = _read_bytes(path)
        actual = hashlib.sha256(content).hexdigest()
        if actual != expected:
            raise _redownload(path, f"sha256 {actual} does not match {raw_dir / PROVENANCE} "
                                    f"({expected})")
        arrays[name] = _parse_idx(path, content)
    return arrays


def _raw_split(raw_dir: Path, arrays: dict[str, np.ndarray], images_name: str,
               labels_name: str) -> Split:
    images, labels = arrays[images_name], arrays[labels_name]
    if images.ndim != 3:
        raise PipelineError(f"{raw_dir / images_name}: holds labels, expected images")
    if labels.ndim != 1:
        raise PipelineError(f"{raw_dir / labels_name}: holds images, expected labels")
    if len(images) != len(labels):
        raise PipelineError(f"{raw_dir}: {images_name} holds {len(images)} images but "
                            f"{labels_name} holds {len(labels)} labels")
    if len(labels) and labels.max() >= NUM_DIGITS:
        raise PipelineError(f"{raw_dir / labels_name}: label {labels.max()} is not a digit")
    return Split(images, labels)


def _split_train_val(train: Split, validation_size: int, split_seed: int) -> tuple[Split, Split]:
    """Hold out `validation_size` random training images; each part keeps the files' order."""
    if validation_size >= len(train.labels):
        raise ParamError("data.validation_size", f"must be less than the {len(train.labels)} "
                         f"training images, got {validation_size}")
    order = np.random.default_rng(split_seed).permutation(len(train.labels))
    val_indices, train_indices = np.sort(order[:validation_size]), np.sort(order[validation_size:])
    return (Split(train.images[train_indices], train.labels[train_indices]),
            Split(train.images[val_indices], train.labels[val_indices]))


def _digit_counts(labels: np.ndarray) -> list[int]:
    return np.bincount(labels, minlength=NUM_DIGITS).tolist()


def write_npz(path: Path, split: Split) -> None:
    """The split as an .npz that `np.load` reads, in bytes that depend on the arrays alone.

    Not `np.savez`: it asks zipfile for zip64 headers, which CPython's patch releases write
    differently (3.11.2 and 3.11.7 do), and a compressed member would depend on the zlib build.
    Each member is stored whole, with the header fields fixed.
    """
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in split._asdict().items():
            member = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            member.create_system, member.external_attr = 3, 0o644 << 16  # Unix, rw-r--r--
            content = io.BytesIO()
            np.lib.format.write_array(content, array, allow_pickle=False)
            archive.writestr(member, content.getvalue())


def prepare(raw_dir: str | Path, out_dir: str | Path, validation_size: int,
            split_seed: int) -> None:
    """Check the four raw IDX files against provenance.json and read them; write train/val/test
    .npz files and summary.json to out_dir."""
    raw_dir = Path(raw_dir)
    arrays = _read_raw_verified(raw_dir)
    train, val = _split_train_val(_raw_split(raw_dir, arrays, TRAIN_IMAGES, TRAIN_LABELS),
                                  validation_size, split_seed)
    test = _raw_split(raw_dir, arrays, TEST_IMAGES, TEST_LABELS)
    splits = {"train": train, "val": val, "test": test}
    with atomic_dir(out_dir) as staging:
        for name, split in splits.items():
            write_npz(staging / f"{name}.npz", split)
        write_json(staging / "summary.json",
                   {name: {"count": len(split.labels), "per_digit": _digit_counts(split.labels)}
                    for name, split in splits.items()})
    counts = ", ".join(f"{name} {len(split.labels)}" for name, split in splits.items())
    print(f"{out_dir}: {counts} images")


def _rerun_prepare(path: Path, problem: str) -> PipelineError:
    return PipelineError(f"{path}: {problem}; rerun `dvc repro prepare`")


def _shape_text(shape: tuple) -> str:
    """A shape as numpy prints it, with n for a length left open: (n, 28, 28), (n,)."""
    sizes = ["n" if size is None else str(size) for size in shape]
    return f"({', '.join(sizes)}{',' if len(sizes) == 1 else ''})"


def _npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    shape, _, dtype = readers[np.lib.format.read_magic(stream)](stream)
    return shape, dtype


def _read_prepared_array(path: Path, archive: zipfile.ZipFile, key: str) -> np.ndarray:
    expected = PREPARED_SHAPES[key]
    # The header is checked before the data is read: an object array would need unpickling.
    with archive.open(f"{key}.npy") as stream:
        shape, dtype = _npy_header(stream)
    if dtype != np.uint8 or len(shape) != len(expected) or shape[1:] != expected[1:]:
        raise _rerun_prepare(path, f"{key} are {dtype} {_shape_text(shape)}, expected uint8 "
                                   f"{_shape_text(expected)}")
    with archive.open(f"{key}.npy") as stream:
        return np.lib.format.read_array(stream, allow_pickle=False)


def _read_prepared(path: Path) -> Split:
    with zipfile.ZipFile(path) as archive:
        keys = sorted(name.removesuffix(".npy") for name in archive.namelist())
        if keys != sorted(PREPARED_SHAPES):
            raise _rerun_prepare(path, f"holds {', '.join(keys) or 'nothing'} instead of "
                                       f"{' and '.join(PREPARED_SHAPES)}")
        split = Split(*(_read_prepared_array(path, archive, key) for key in Split._fields))
    if len(split.images) != len(split.labels):
        raise _rerun_prepare(path, f"{len(split.images)} images but {len(split.labels)} labels")
    return split


def load_split(prepared_dir: str | Path, name: str) -> Split:
    """One prepared split (train, val or test), as written by `prepare`; anything else is refused
    in one line, and nothing in the file is unpickled."""
    if name not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
    path = Path(prepared_dir) / f"{name}.npz"
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run the prepare stage (dvc repro prepare)")
    try:
        return _read_prepared(path)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error):
        raise _rerun_prepare(path, "damaged: not a readable .npz archive") from None
