"""tasks.py, the two commands of README: what a user sees on an old Python and on Ctrl-C."""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

TASKS = PROJECT_ROOT / "tasks.py"


def other_pythons() -> list[str]:
    """Interpreters other than 3.11 on this machine (pyenv's, or on PATH)."""
    found = {shutil.which(f"python3.{minor}") for minor in (6, 7, 8, 9, 10, 12, 13)}
    found |= {str(p) for p in Path.home().glob(".pyenv/versions/3.*/bin/python3")}
    return sorted(path for path in found if path and "/3.11" not in path
                  and subprocess.run([path, "-c", "import sys; sys.exit(sys.version_info[:2] == "
                                      "(3, 11))"], capture_output=True).returncode == 0)


@pytest.mark.skipif(not other_pythons(), reason="no Python other than 3.11 on this machine")
@pytest.mark.parametrize("python", other_pythons())
def test_another_python_gets_the_version_message_not_a_traceback(python):
    result = subprocess.run([python, str(TASKS), "test"], capture_output=True, text=True)
    version = subprocess.run([python, "-c", "import sys; print(sys.version.split()[0])"],
                             capture_output=True, text=True).stdout.strip()
    assert (result.returncode, result.stderr) == (
        1, f"error: vaepipe needs Python 3.11, this is {version}\n")


CHILD = """\
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: sys.exit(7))  # as DVC does: clean up, exit its way
print("ready", flush=True)
time.sleep(60)
"""


def test_ctrl_c_waits_for_the_child_and_exits_with_its_code_quietly():
    driver = (f"import sys; sys.path.insert(0, {str(PROJECT_ROOT)!r}); import tasks; "
              f"sys.exit(tasks.run_in_venv([sys.executable, '-c', {CHILD!r}]))")
    process = subprocess.Popen([sys.executable, "-c", driver], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert process.stdout.readline() == "ready\n"
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 7
    assert stderr == ""
