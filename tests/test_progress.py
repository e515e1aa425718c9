import io
import sys

import pytest
import tqdm.std

from vaepipe import progress
from vaepipe.progress import progress_bar


class Clock:
    """The time tqdm reads, moved by the test."""

    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    return clock


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(clock, seconds_per_update, total=500, step=100, desc="epoch 1") -> None:
    """Work of `total` units done `step` at a time, each step taking the seconds given."""
    with progress_bar(total, desc, "step") as bar:
        for seconds in seconds_per_update:
            clock.now += seconds
            bar.update(step)


def test_in_a_log_long_work_is_a_whole_line_a_minute_and_a_word_on_how_long(clock, capsys):
    run(clock, [300, 290, 290, 290, 290])  # the first call compiles too
    lines = capsys.readouterr().err.split("\n")
    assert lines[0].startswith("epoch 1:  20%|") and lines[0].endswith(
        "| 100/500 [05:00<19:59,  3.00s/step]")  # steps done, time so far, time left, rate
    assert lines[1].endswith("| 200/500 [09:50<14:42,  2.94s/step]")
    assert lines[2] == "epoch 1: this will take about 24 minutes in all (40% done in 10 minutes)"
    assert [line.split("|")[-1] for line in lines[3:]] == [
        " 300/500 [14:40<09:44,  2.92s/step]", " 400/500 [19:30<04:51,  2.91s/step]", ""]
    assert "\r" not in "".join(lines)  # nothing redrawn in place


def test_in_a_log_short_work_prints_nothing(clock, capsys):
    run(clock, [3.0, 0.14, 0.14, 0.14, 0.14])  # the seed model's epoch, compilation first
    assert capsys.readouterr().err == ""


def test_the_rate_leaves_the_first_calls_compilation_out(clock, capsys):
    run(clock, [120, 1, 1, 1, 1], total=5000, step=1000, desc="evaluating test")
    assert "this will take" not in capsys.readouterr().err  # 124 s, not 10 minutes


def test_on_a_terminal_the_bar_is_redrawn_in_place_and_the_word_stays(clock, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run(clock, [300, 290, 290, 290, 290])
    out = terminal.getvalue()
    assert "\r" in out and "200/500 [09:50<14:42,  2.94s/step]" in out
    assert "epoch 1: this will take about 24 minutes in all (40% done in 10 minutes)\n" in out
    assert out.count("this will take") == 1


def test_a_transfer_of_unknown_size_counts_its_bytes(clock, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_SECONDS", 0)
    with progress_bar(None, "train-images-idx3-ubyte.gz", "B", unit_scale=True) as bar:
        for _ in range(2):
            clock.now += 2
            bar.update(2**20)
    assert capsys.readouterr().err.splitlines() == [
        "train-images-idx3-ubyte.gz: 1.05MB [00:02, 524kB/s]",
        "train-images-idx3-ubyte.gz: 2.10MB [00:04, 524kB/s]"]


@pytest.mark.parametrize("seconds, said", [
    (0.4, "under a second"), (1.2, "1 second"), (42, "42 seconds"), (119.4, "119 seconds"),
    (5700, "95 minutes"), (9000, "2.5 hours")])
def test_a_duration_is_said_in_the_unit_a_person_would_use(seconds, said):
    assert progress.duration(seconds) == said
