"""User-facing errors: one line naming the problem, never a bare stack trace."""

import re
import signal
import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem the user can fix (bad params, bad data, unreachable sources)."""


def describe_os_error(error: OSError) -> str:
    """A full disk, a read-only folder or a permission error, as one line naming the path."""
    path = error.filename or "(unnamed file)"
    reason = error.strerror or str(error).splitlines()[0]
    return f"{path}: {reason}"


def is_tensorflow_error(error: Exception) -> bool:
    """One of TensorFlow's own errors (an allocation that failed, a kernel that cannot run),
    told apart without importing TensorFlow where nothing else has."""
    tensorflow = sys.modules.get("tensorflow")
    return tensorflow is not None and isinstance(error, tensorflow.errors.OpError)


def describe_tensorflow_error(error: Exception) -> str:
    """The line of TensorFlow's message that says what went wrong, without the frames of the
    graph that led there."""
    lines = [re.sub(r"^\{\{function_node [^}]*\}\}\s*", "", line)
             for line in error.message.splitlines()]
    causes = [line.strip() for line in lines if line.strip() and not line[0].isspace()
              and not line.startswith(("Graph execution error:", "Detected at node "))]
    cause = re.sub(r"\s+name:\s*$", "", (causes or [error.message])[0].strip())  # eager ops
    return f"TensorFlow: {type(error).__name__}: {cause}"


def run_stage(main: Callable[[], None]) -> None:
    """Run an entry point, turning user errors, file-system errors, TensorFlow's errors and
    Ctrl-C into one line and an exit code."""
    # Ctrl-C stops a stage even when it was started with SIGINT ignored, as a child of a
    # process that ignores it inherits. A SIGTERM held off while the stage imported
    # (stages/_environment.py) ends it now.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        print(f"error: {describe_os_error(error)}; the previous outputs are left as they were",
              file=sys.stderr)
        sys.exit(1)
    except Exception as error:
        if not is_tensorflow_error(error):
            raise
        print(f"error: {describe_tensorflow_error(error)}; the previous outputs are left as "
              f"they were", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: the previous outputs are left as they were", file=sys.stderr)
        sys.exit(130)
