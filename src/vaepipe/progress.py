"""How far long work is, on stderr: an epoch's steps, an evaluation's images, a download's bytes.

On a terminal, tqdm's bar redrawn in place (steps done, rate, time left), gone when the work
ends. In a log (stderr no terminal), the same as a whole line at most once a minute, so that
short work, such as the article's sub-second epochs, prints nothing more. Either way, work that
will take long is said so once, in a line of its own that stays.
"""

import sys

from tqdm import tqdm

LINE_EVERY_SECONDS = 60  # in a log: a line at most this often
LONG_SECONDS = 600  # work that will take longer is said so


def duration(seconds: float) -> str:
    """A span of time as a person says it: 42 seconds, 95 minutes, 2.5 hours."""
    if seconds < 120:
        whole = round(seconds)
        return "under a second" if whole == 0 else f"{whole} second{'s' * (whole != 1)}"
    if seconds < 7200:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds / 3600:.1f} hours"


class WorkBar(tqdm):
    """tqdm that says once how long its work will take in all, when that is long.

    The rate is measured from the first update on: the first call of a compiled function takes
    its compilation too, which says nothing of the calls after it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._first = None  # (time, units done) at the first update
        self._told = False

    def update(self, n: float = 1) -> bool | None:
        shown = super().update(n)
        if not self._told and self.total and self.n < self.total:
            self._tell_if_long()
        return shown

    def _tell_if_long(self) -> None:
        now = self._time()
        if self._first is None:
            self._first = now, self.n
            return
        then, done = self._first
        if self.n == done:
            return
        elapsed = now - self.start_t
        projected = elapsed + (self.total - self.n) * (now - then) / (self.n - done)
        if projected >= LONG_SECONDS:
            self._told = True
            self._say(f"{self.desc}: this will take about {duration(projected)} in all "
                      f"({self.n / self.total:.0%} done in {duration(elapsed)})")

    def _say(self, line: str) -> None:
        self.write(line, file=self.fp)  # above the bar, which is redrawn below it


class _LogLines(WorkBar):
    """The bar as whole lines, at most every `mininterval` seconds: a log keeps every carriage
    return of a bar redrawn in place."""

    monitor_interval = 0  # no thread that redraws it between updates

    def display(self, msg=None, pos=None) -> None:
        started, ended = self.n == 0, self.total is not None and self.n >= self.total
        if msg is None and not started and not ended:  # the line of the work under way
            self._say(self.format_meter(**self.format_dict))

    def _say(self, line: str) -> None:
        self.fp.write(line + "\n")
        self.fp.flush()


def progress_bar(total: int | None, desc: str, unit: str, **options) -> WorkBar:
    """How far the work of `total` units (None: unknown) is, shown as fits stderr."""
    if sys.stderr.isatty():
        return WorkBar(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                       **options)
    return _LogLines(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr,
                     mininterval=LINE_EVERY_SECONDS, **options)
