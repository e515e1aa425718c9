import hashlib
import io
import json
import pickle
import re
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from vaepipe.data import (TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, load_split,
                          prepare, read_idx, write_idx)
from vaepipe.download import write_raw_files
from vaepipe.errors import PipelineError

REDOWNLOAD = "; rerun `dvc repro -f download`$"
REPREPARE = "; rerun `dvc repro prepare`$"
# sha256 (first 16 digits) of what prepare writes from `tiny_mnist` with 10 held out, seed 0
PREPARED_SHA256 = {"train": "c94938a47219edd6", "val": "016acd6a5238355e",
                   "test": "7f7fa178e91704d2"}


def naming(path: Path) -> str:
    """A pattern for an error message that starts by naming `path`."""
    return f"^{re.escape(str(path))}: "


def write_raw(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """The files as the download writes them: with their provenance.json."""
    folder.mkdir(parents=True, exist_ok=True)
    write_raw_files(folder, {name: write_idx(array) for name, array in arrays.items()}, [])
    return folder


def test_idx_round_trip(tmp_path, tiny_mnist):
    for name, array in tiny_mnist.items():
        (tmp_path / name).write_bytes(write_idx(array))
        read = read_idx(tmp_path / name)
        assert read.dtype == np.uint8 and read.shape == array.shape
        np.testing.assert_array_equal(read, array)


def test_idx_header_is_big_endian_magic_then_sizes():
    labels = np.arange(7, dtype=np.uint8)
    assert write_idx(labels) == bytes.fromhex("00000801 00000007") + bytes(range(7))
    images = np.zeros((2, 28, 28), np.uint8)
    assert write_idx(images)[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")


@pytest.mark.parametrize("array", [np.zeros((2, 28, 28), np.float32), np.zeros((2, 784), np.uint8),
                                   np.zeros((2, 27, 28), np.uint8)])
def test_write_idx_refuses_what_read_idx_would_refuse(array):
    with pytest.raises(ValueError, match="uint8 labels"):
        write_idx(array)


def images_file(tmp_path, content: bytes) -> Path:
    path = tmp_path / TRAIN_IMAGES
    path.write_bytes(content)
    return path


def test_truncated_file_is_rejected(tmp_path):
    content = write_idx(np.zeros((5, 28, 28), np.uint8))
    path = images_file(tmp_path, content[:1000])
    expected = naming(path) + "truncated: expected 3936 bytes, found 1000$"
    with pytest.raises(PipelineError, match=expected):
        read_idx(path)


def test_truncated_header_is_rejected(tmp_path):
    path = images_file(tmp_path, bytes.fromhex("00000803 00000005"))
    with pytest.raises(PipelineError, match=r"truncated: expected at least 16 bytes, found 8$"):
        read_idx(path)


def test_trailing_bytes_are_rejected(tmp_path):
    path = images_file(tmp_path, write_idx(np.zeros(3, np.uint8)) + b"\0")
    with pytest.raises(PipelineError, match=r"trailing bytes: expected 11 bytes, found 12$"):
        read_idx(path)


@pytest.mark.parametrize("magic", [0x00000802, 0x00000903, 0x1F8B0808])  # 2-D, int8, gzip
def test_wrong_magic_is_rejected(tmp_path, magic):
    path = images_file(tmp_path, struct.pack(">II", magic, 0))
    with pytest.raises(PipelineError, match=naming(path) + f"wrong magic number 0x{magic:08x}"):
        read_idx(path)


def test_images_that_are_not_28x28_are_rejected(tmp_path):
    path = images_file(tmp_path, struct.pack(">IIII", 0x803, 1, 27, 28) + bytes(27 * 28))
    with pytest.raises(PipelineError, match="dimensions: images of 27x28 pixels, expected 28x28"):
        read_idx(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(PipelineError, match=naming(tmp_path / TRAIN_IMAGES) + "cannot read"):
        read_idx(tmp_path / TRAIN_IMAGES)


def image_keys(images: np.ndarray) -> list[bytes]:
    """Each image's bytes: random 784-byte images are unique, so they identify the image."""
    return [image.tobytes() for image in images]


def test_prepare_splits_training_into_disjoint_train_and_val(tmp_path, tiny_mnist):
    prepared = tmp_path / "prepared"
    prepare(write_raw(tmp_path / "raw", tiny_mnist), prepared, 10, 0)
    train, val, test = (load_split(prepared, split) for split in ("train", "val", "test"))
    assert (len(train.labels), len(val.labels)) == (30, 10)
    assert train.images.shape == (30, 28, 28) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.uint8
    assert not set(image_keys(train.images)) & set(image_keys(val.images))
    # train + val is the original training set reordered, each image keeping its label.
    original = dict(zip(image_keys(tiny_mnist[TRAIN_IMAGES]), tiny_mnist[TRAIN_LABELS]))
    split = dict(zip(image_keys(np.concatenate([train.images, val.images])),
                     np.concatenate([train.labels, val.labels])))
    assert split == original
    np.testing.assert_array_equal(test.images, tiny_mnist[TEST_IMAGES])
    np.testing.assert_array_equal(test.labels, tiny_mnist[TEST_LABELS])


def test_prepare_writes_exactly_the_splits_and_a_summary_with_true_counts(tmp_path, tiny_mnist):
    prepare(write_raw(tmp_path / "raw", tiny_mnist), tmp_path / "prepared", 10, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared", "raw"]  # no temp left
    assert sorted(p.name for p in (tmp_path / "prepared").iterdir()) == [
        "summary.json", "test.npz", "train.npz", "val.npz"]
    summary = json.loads((tmp_path / "prepared" / "summary.json").read_text())
    for name in ("train", "val", "test"):
        counts = Counter(load_split(tmp_path / "prepared", name).labels.tolist())
        assert summary[name] == {"count": sum(counts.values()),
                                 "per_digit": [counts[digit] for digit in range(10)]}
    train_counts = Counter(tiny_mnist[TRAIN_LABELS].tolist())
    assert [a + b for a, b in zip(summary["train"]["per_digit"], summary["val"]["per_digit"])] \
        == [train_counts[digit] for digit in range(10)]


def test_prepare_is_deterministic_and_the_seed_picks_the_validation_images(tmp_path, tiny_mnist):
    raw = write_raw(tmp_path / "raw", tiny_mnist)
    for folder, seed in (("a", 7), ("b", 7), ("c", 8)):
        prepare(raw, tmp_path / folder, 10, seed)
    for name in ("train.npz", "val.npz", "test.npz", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    val_a, val_c = load_split(tmp_path / "a", "val"), load_split(tmp_path / "c", "val")
    assert set(image_keys(val_a.images)) != set(image_keys(val_c.images))


def test_validation_size_must_leave_training_images(tmp_path, tiny_mnist):
    raw = write_raw(tmp_path / "raw", tiny_mnist)
    with pytest.raises(PipelineError, match=r"data\.validation_size: must be less than the 40 "
                                            r"training images, got 40"):
        prepare(raw, tmp_path / "prepared", 40, 0)
    assert not (tmp_path / "prepared").exists()


def test_prepare_refuses_image_and_label_counts_that_disagree(tmp_path, tiny_mnist):
    raw = write_raw(tmp_path / "raw", {**tiny_mnist, TEST_LABELS: tiny_mnist[TEST_LABELS][:-1]})
    with pytest.raises(PipelineError, match=rf"{TEST_IMAGES} holds 12 images but {TEST_LABELS} "
                                            r"holds 11 labels"):
        prepare(raw, tmp_path / "prepared", 10, 0)


def test_prepare_refuses_labels_in_place_of_images(tmp_path, tiny_mnist):
    raw = write_raw(tmp_path / "raw", {**tiny_mnist, TRAIN_IMAGES: tiny_mnist[TRAIN_LABELS]})
    with pytest.raises(PipelineError, match=rf"{TRAIN_IMAGES}: holds labels, expected images"):
        prepare(raw, tmp_path / "prepared", 10, 0)


def test_load_split_names_a_missing_file(tmp_path):
    with pytest.raises(PipelineError, match=naming(tmp_path / "val.npz") + "missing"):
        load_split(tmp_path, "val")


def test_prepare_refuses_a_raw_file_whose_hash_is_not_the_recorded_one(tmp_path, tiny_mnist):
    raw = write_raw(tmp_path / "raw", tiny_mnist)
    content = bytearray((raw / TRAIN_IMAGES).read_bytes())
    content[100] ^= 1  # one flipped bit in a pixel: still a well-formed IDX file
    (raw / TRAIN_IMAGES).write_bytes(content)
    recorded = hashlib.sha256(write_idx(tiny_mnist[TRAIN_IMAGES])).hexdigest()
    expected = (f"{raw / TRAIN_IMAGES}: sha256 {hashlib.sha256(content).hexdigest()} does not "
                f"match {raw / 'provenance.json'} ({recorded})")
    with pytest.raises(PipelineError, match=f"^{re.escape(expected)}{REDOWNLOAD}"):
        prepare(raw, tmp_path / "prepared", 10, 0)
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("provenance, problem", [
    (None, "cannot read: No such file or directory"),
    (b"{\"files\": ", "not valid JSON"),
    (b"[]", 'no "files" mapping of names to sha256'),
    (b'{"files": {}}', f"no sha256 for {TRAIN_IMAGES}"),
])
def test_prepare_needs_the_recorded_hashes(tmp_path, tiny_mnist, provenance, problem):
    raw = write_raw(tmp_path / "raw", tiny_mnist)
    path = raw / "provenance.json"
    path.unlink() if provenance is None else path.write_bytes(provenance)
    with pytest.raises(PipelineError, match=naming(path) + re.escape(problem) + REDOWNLOAD):
        prepare(raw, tmp_path / "prepared", 10, 0)


def split_file(folder: Path, **arrays: np.ndarray) -> Path:
    folder.mkdir(exist_ok=True)
    np.savez(folder / "val.npz", **arrays)
    return folder / "val.npz"


IMAGES, LABELS = np.zeros((3, 28, 28), np.uint8), np.zeros(3, np.uint8)
SPLIT_PROBLEMS = {
    "pickled objects": (dict(images=np.array([None, print], object), labels=LABELS),
                        "images are object (2,), expected uint8 (n, 28, 28)"),
    "float images": (dict(images=IMAGES.astype(np.float32), labels=LABELS),
                     "images are float32 (3, 28, 28), expected uint8 (n, 28, 28)"),
    "flat images": (dict(images=IMAGES.reshape(3, 784), labels=LABELS),
                    "images are uint8 (3, 784), expected uint8 (n, 28, 28)"),
    "labels as a column": (dict(images=IMAGES, labels=LABELS[:, None]),
                           "labels are uint8 (3, 1), expected uint8 (n,)"),
    "a label short": (dict(images=IMAGES, labels=LABELS[1:]), "3 images but 2 labels"),
    "wrong keys": (dict(x=IMAGES, labels=LABELS), "holds labels, x instead of images and labels"),
}


@pytest.mark.parametrize("arrays, problem", SPLIT_PROBLEMS.values(), ids=SPLIT_PROBLEMS)
def test_load_split_refuses_what_prepare_does_not_write(tmp_path, arrays, problem):
    path = split_file(tmp_path, **arrays)
    with pytest.raises(PipelineError, match=naming(path) + re.escape(problem) + REPREPARE):
        load_split(tmp_path, "val")


def npy_bytes(array: np.ndarray) -> bytes:
    """A lone .npy file's bytes: an array, but no .npz archive."""
    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flipped_byte(path: Path) -> None:
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(content)


@pytest.mark.parametrize("damage", [
    truncated, flipped_byte,
    lambda path: path.write_bytes(b"garbage" * 100),
    lambda path: path.write_bytes(pickle.dumps({"images": IMAGES, "labels": LABELS})),
    lambda path: path.write_bytes(npy_bytes(IMAGES)),
], ids=["truncated", "flipped byte", "garbage", "pickle", "npy"])
def test_load_split_refuses_a_damaged_archive_without_numpy_advice(tmp_path, damage):
    path = split_file(tmp_path, images=IMAGES, labels=LABELS)
    damage(path)
    with pytest.raises(PipelineError) as raised:
        load_split(tmp_path, "val")
    assert str(raised.value) == (f"{path}: damaged: not a readable .npz archive; "
                                 f"rerun `dvc repro prepare`")


def test_prepared_splits_have_the_same_bytes_on_every_python(tmp_path, tiny_mnist):
    """The bytes of the prepared splits depend on their arrays alone: these hashes are the same
    under CPython 3.11.2 and 3.11.7 (np.savez's zip64 headers are not), and np.load reads them."""
    prepare(write_raw(tmp_path / "raw", tiny_mnist), tmp_path / "prepared", 10, 0)
    hashes = {name: hashlib.sha256((tmp_path / "prepared" / f"{name}.npz").read_bytes())
              .hexdigest()[:16] for name in ("train", "val", "test")}
    assert hashes == PREPARED_SHA256
    for name in hashes:
        with np.load(tmp_path / "prepared" / f"{name}.npz") as archive:
            np.testing.assert_array_equal(archive["images"], load_split(tmp_path / "prepared",
                                                                        name).images)
