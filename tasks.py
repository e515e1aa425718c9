#!/usr/bin/env python3
"""Set up the project's environment if needed, then run the pipeline or the tests.

    python3 tasks.py repro [dvc repro options]   # the whole pipeline on real MNIST
    python3 tasks.py test [pytest options]       # the test suite
    python3 tasks.py check [--base REV]          # compare metrics with a base revision
    python3 tasks.py report [--diff REV...]      # the plots page, reports/html/index.html

Both create `.venv` on first use, install the exact versions in requirements.lock and the
package itself, and do nothing more on later runs unless the lock or pyproject.toml changed.
"""

import sys

if sys.version_info[:2] != (3, 11):  # before anything newer than this Python could fail
    sys.exit(f"error: vaepipe needs Python 3.11, this is {sys.version.split()[0]}")

import hashlib
import os
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


def run_in_venv(command: list) -> int:
    """Run `command` with the venv's bin first on PATH, so that dvc stages find its python.

    Ctrl-C reaches the child too (same process group): wait for it to clean up (DVC releases
    its lock) and exit with its code, without a traceback of our own.
    """
    env = {**os.environ, "PATH": f"{VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    child = subprocess.Popen([str(part) for part in command], cwd=ROOT, env=env)
    while True:
        try:
            return child.wait()
        except KeyboardInterrupt:
            continue


def main(argv) -> int:
    commands = {
        "repro": ["-m", "dvc", "repro"],
        "test": ["-m", "pytest"],
        "check": ["-m", "vaepipe.regression"],
        "report": ["-m", "vaepipe.report"],
    }
    if not argv or argv[0] not in commands:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        ensure_environment()
    except KeyboardInterrupt:
        return 130  # the next run starts the installation again: its stamp was not written
    except subprocess.CalledProcessError as error:
        return error.returncode
    return run_in_venv([VENV_PYTHON, *commands[argv[0]], *argv[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
