"""TensorFlow and Keras, imported without TensorFlow's C++ start-up chatter.

Importing TensorFlow prints a dozen C++ log lines (oneDNN, CPU instructions, and on every
machine without a GPU `failed call to cuInit: ... CUDA error`, which reads like a failure).
Every module of the package imports TensorFlow from here, so that the chatter is handled in one
place: C++ logging starts at warnings (TF_CPP_MIN_LOG_LEVEL=1: TensorFlow's and XLA's
informational lines are hidden, their warnings and errors are not), and the known start-up
lines, which no level controls, are filtered out of stderr during the import. Anything else
printed then, and every warning and error later, reaches the user. A level the user sets wins
(0 shows everything, as TensorFlow does by default); the one set here is not passed on to
child processes, which choose their own.
"""

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

STARTUP_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWE]\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard|cuda_platform)\.cc:\d+\]"
    r"|To enable the following instructions: )")


@contextmanager
def _startup_noise_filtered() -> Iterator[None]:
    """Send file descriptor 2 to a temporary file, then replay it without the known noise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            for line in captured.read().decode(errors="replace").splitlines(keepends=True):
                if not STARTUP_NOISE.match(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


def _import_quietly():
    chosen = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = chosen or "1"
    try:
        with nullcontext() if chosen == "0" else _startup_noise_filtered():
            import keras
            import tensorflow
            tensorflow.config.list_physical_devices("GPU")  # CUDA's probe logs on first use
    finally:
        if chosen is None:  # TensorFlow has read it by now
            del os.environ["TF_CPP_MIN_LOG_LEVEL"]
    return tensorflow, keras


tf, keras = _import_quietly()
