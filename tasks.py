#!/usr/bin/env python3
"""Set up the project's environment if needed, then run the pipeline or the tests.

    python3 tasks.py repro [dvc repro options]   # the whole pipeline on real MNIST
    python3 tasks.py test [pytest options]       # the test suite
    python3 tasks.py check [--base REV]          # compare metrics with a base revision
    python3 tasks.py report [--diff REV...]      # the plots page, reports/html/index.html
    python3 tasks.py reproduce NAME              # a long run from reproductions/NAME.yaml
    python3 tasks.py reproduce NAME --park       # its checkpoint, to commit and go on elsewhere
    python3 tasks.py reproduce NAME --seed N     # the same recipe with seed N: record NAME-seedN
    python3 tasks.py verify NAME                 # its committed weights scored again here
    python3 tasks.py score NAME [--count N]      # a run under way scored from its checkpoint

Each creates `.venv` on first use, installs the exact versions in requirements.lock and the
package itself, and does nothing more on later runs unless the lock or pyproject.toml changed;
`test` also installs Debian's chromium when it is missing (as root), for the plots-page test.
"""

import sys

if sys.version_info[:2] != (3, 11):  # before anything newer than this Python could fail
    sys.exit(f"error: vaepipe needs Python 3.11, this is {sys.version.split()[0]}")

import hashlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".vaepipe-installed"
INSTALL_INPUTS = ("requirements.lock", "pyproject.toml")


def install_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in INSTALL_INPUTS:
        digest.update((ROOT / name).read_bytes())
    return digest.hexdigest()


def run(*command) -> None:
    subprocess.run([str(part) for part in command], cwd=ROOT, check=True)


def ensure_environment() -> None:
    """Create .venv and install the locked dependencies, unless already done for this lock."""
    fingerprint = install_fingerprint()
    if STAMP.exists() and STAMP.read_text() == fingerprint and VENV_PYTHON.exists():
        return
    if not VENV_PYTHON.exists():
        print("creating .venv", file=sys.stderr)
        run(sys.executable, "-m", "venv", VENV)
    print("installing the locked dependencies into .venv", file=sys.stderr)
    run(VENV_PYTHON, "-m", "pip", "install", "--quiet", "--upgrade", "pip==26.3")
    run(VENV_PYTHON, "-m", "pip", "install", "--quiet", "-r", ROOT / "requirements.lock")
    run(VENV_PYTHON, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ROOT)
    STAMP.write_text(fingerprint)


def ensure_browser() -> None:
    """The tests open the plots page in Debian's headless Chromium: install it when missing
    (as root with apt), or say how."""
    if shutil.which("chromium"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("the plots-page test needs Debian's chromium: sudo apt-get install chromium",
              file=sys.stderr)
        return
    print("installing chromium (for the plots-page test)", file=sys.stderr)
    run("apt-get", "update", "-qq")
    run("apt-get", "install", "-y", "-qq", "chromium")


def run_in_venv(command: list) -> int:
    """Run `command` with the venv's bin first on PATH, so that dvc stages find its python.

    Ctrl-C reaches the child too (same process group): this process ignores it and waits for
    the child to clean up (DVC releases its lock), then exits with the child's code, without a
    traceback of its own. The child starts with Ctrl-C's default action whatever this
    process ignores.
    """
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = subprocess.Popen([str(part) for part in command], cwd=ROOT, env=env,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        return child.wait()
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv) -> int:
    commands = {
        "repro": ["-m", "dvc", "repro"],
        "test": ["-m", "pytest"],
        "check": ["-m", "vaepipe.regression"],
        "report": ["-m", "vaepipe.report"],
        "reproduce": ["-m", "vaepipe.reproduce"],
        "verify": ["-m", "vaepipe.verify"],
        "score": ["-m", "vaepipe.score"],
    }
    if not argv or argv[0] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        ensure_environment()
        if argv[0] == "test":
            ensure_browser()
    except KeyboardInterrupt:
        return 130  # the next run starts the installation again: its stamp was not written
    except subprocess.CalledProcessError as error:
        return error.returncode
    if argv[0] == "repro":  # a repro that finds every stage up to date runs none of them, so
        # none would remove what runs killed outright left beside the outputs
        run_in_venv([VENV_PYTHON, "-m", "vaepipe.files"])
    return run_in_venv([VENV_PYTHON, *commands[argv[0]], *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
