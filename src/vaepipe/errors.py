"""User-facing errors: one line naming the problem, never a bare stack trace."""

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


def run_stage(main: Callable[[], None]) -> None:
    """Run an entry point, turning user errors, file-system errors and Ctrl-C into one line
    and an exit code."""
    # Ctrl-C stops a stage even when it was started with SIGINT ignored, as a child of a
    # process that ignores it inherits.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:
        print(f"error: {describe_os_error(error)}; the previous outputs are left as they were",
              file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: the previous outputs are left as they were", file=sys.stderr)
        sys.exit(130)
