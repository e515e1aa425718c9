"""TensorFlow and Keras, imported without TensorFlow's C++ start-up chatter.

Importing TensorFlow prints a dozen C++ log lines (oneDNN, CPU instructions, and on every
machine without a GPU `failed call to cuInit: ... CUDA error`, which reads like a failure).
Every module of the package imports TensorFlow from here, so that the chatter is silenced in
one place before TensorFlow loads: C++ logging is off unless the user sets
TF_CPP_MIN_LOG_LEVEL (0 shows everything, as TensorFlow does by default), and the lines that
absl prints before its logging starts, which no level controls, are filtered out of stderr
during the import. Anything else
printed then, and every Python warning and error later, still reaches the user.
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
    # Children (DVC stages run from a test, a benchmark) inherit the level set here, so only
    # an explicit 0 means "show me everything".
    show_everything = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3") == "0"
    with nullcontext() if show_everything else _startup_noise_filtered():
        import keras
        import tensorflow
        tensorflow.config.list_physical_devices("GPU")  # CUDA's probe logs on first use
    return tensorflow, keras


tf, keras = _import_quietly()
