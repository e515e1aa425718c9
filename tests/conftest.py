import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from vaepipe.data import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_PARAMS = PROJECT_ROOT / "params.yaml"

# A private user and mount namespace: where root can mount a read-only folder or a tiny disk,
# since root's permission bits alone stop no write.
NAMESPACE = ["unshare", "--user", "--map-root-user", "--mount"]


def _namespaces_available() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        [*NAMESPACE, "true"], capture_output=True).returncode == 0


needs_namespaces = pytest.mark.skipif(not _namespaces_available(),
                                      reason="unprivileged user namespaces are disabled here")


def free_ports(count: int) -> list[int]:
    """Ports of 127.0.0.1 free a moment ago, for worker processes to listen on."""
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def tiny_mnist() -> dict[str, np.ndarray]:
    """A tiny MNIST: each canonical file name mapped to a small random uint8 array."""
    rng = np.random.default_rng(1234)
    return {
        TRAIN_IMAGES: rng.integers(0, 256, (40, 28, 28), dtype=np.uint8),
        TRAIN_LABELS: rng.integers(0, 10, 40, dtype=np.uint8),
        TEST_IMAGES: rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        TEST_LABELS: rng.integers(0, 10, 12, dtype=np.uint8),
    }


@dataclass(frozen=True)
class LocalServer:
    root: Path  # the folder served
    url: str  # http://127.0.0.1:<port>/


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass


@pytest.fixture
def http_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalServer]:
    """An HTTP server on 127.0.0.1, on a port the system picks, serving a fresh empty folder."""
    for variable in ("no_proxy", "NO_PROXY"):  # a proxy set up for the internet must not see it
        monkeypatch.setenv(variable, "127.0.0.1")
    root = tmp_path / "served"
    root.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(root)))
    # A short poll interval, so that shutting it down takes milliseconds rather than half a second.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield LocalServer(root, f"http://127.0.0.1:{server.server_port}/")
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """The project after `dvc repro` on tiny data, committed; one per test module."""
    from tiny_project import build  # here: tiny_project imports this module's PROJECT_ROOT
    return build(tmp_path_factory.mktemp("project"))
