"""MNIST's IDX files, read strictly, and the train / validation / test splits prepared from them."""

import math
import struct
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vaepipe.errors import PipelineError
from vaepipe.files import atomic_dir, write_json
from vaepipe.params import ParamError

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
MNIST_FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension
DIMENSIONS_BY_MAGIC = {IMAGES_MAGIC: 3, LABELS_MAGIC: 1}
IMAGE_SHAPE = (28, 28)
NUM_DIGITS = 10
SPLITS = ("train", "val", "test")


class Split(NamedTuple):
    images: np.ndarray  # uint8, (n, 28, 28)
    labels: np.ndarray  # uint8, (n,)


def _require_size(path: Path, content: bytes, expected: int, at_least: bool = False) -> None:
    found = len(content)
    if found < expected or (found > expected and not at_least):
        problem = "truncated" if found < expected else "trailing bytes"
        bound = "at least " if at_least else ""
        raise PipelineError(f"{path}: {problem}: expected {bound}{expected} bytes, found {found}")


def read_idx(path: str | Path) -> np.ndarray:
    """A uint8 IDX file as an array: labels (n,) or images (n, 28, 28); anything else is refused."""
    path = Path(path)
    try:
        content = path.read_bytes()
    except OSError as error:
        raise PipelineError(f"{path}: cannot read: {error.strerror}") from None
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


def _read_raw_split(raw_dir: Path, images_name: str, labels_name: str) -> Split:
    images, labels = read_idx(raw_dir / images_name), read_idx(raw_dir / labels_name)
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


def prepare(raw_dir: str | Path, out_dir: str | Path, validation_size: int,
            split_seed: int) -> None:
    """Read the four raw IDX files; write train/val/test .npz files and summary.json to out_dir."""
    raw_dir = Path(raw_dir)
    train, val = _split_train_val(_read_raw_split(raw_dir, TRAIN_IMAGES, TRAIN_LABELS),
                                  validation_size, split_seed)
    test = _read_raw_split(raw_dir, TEST_IMAGES, TEST_LABELS)
    splits = {"train": train, "val": val, "test": test}
    with atomic_dir(out_dir) as staging:
        for name, split in splits.items():
            np.savez_compressed(staging / f"{name}.npz", images=split.images, labels=split.labels)
        write_json(staging / "summary.json",
                   {name: {"count": len(split.labels), "per_digit": _digit_counts(split.labels)}
                    for name, split in splits.items()})
    counts = ", ".join(f"{name} {len(split.labels)}" for name, split in splits.items())
    print(f"{out_dir}: {counts} images")


def load_split(prepared_dir: str | Path, name: str) -> Split:
    """One prepared split (train, val or test), as written by `prepare`."""
    if name not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
    path = Path(prepared_dir) / f"{name}.npz"
    if not path.is_file():
        raise PipelineError(f"{path}: missing; run the prepare stage (dvc repro prepare)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return Split(archive["images"], archive["labels"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise PipelineError(f"{path}: unreadable ({error}); rerun the prepare stage") from None
