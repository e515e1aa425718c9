"""User-facing errors: one line naming the problem, never a bare stack trace."""

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """A problem the user can fix (bad params, bad data, unreachable sources)."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage entry point, turning PipelineError and Ctrl-C into one line and an exit code."""
    try:
        main()
    except PipelineError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: the previous outputs are left as they were", file=sys.stderr)
        sys.exit(130)
