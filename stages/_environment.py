"""Imported first by every stage script: the stage runs the package of the checkout it runs in.

DVC runs queued and temporary experiments in copies of the repository, while `.venv` holds an
editable install of the workspace's `src/`. With this checkout's `src/` first on `sys.path`,
every stage imports the code of the commit that its record names, whoever installed what.

A stage run by a Python that lacks the project's dependencies (`dvc repro` with a dvc installed
elsewhere and .venv not activated) stops with one line that says what to do, not a
ModuleNotFoundError.
"""

import signal

# Threads start with the signal mask of the thread that starts them: those the imports start
# (numpy's BLAS pool, TensorFlow's) never take SIGTERM, so a stage can hold it off while it
# waits inside TensorFlow (devices.awaiting_peers). errors.run_stage lets it in again.
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

import importlib.util  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

SOURCE = Path(__file__).resolve().parent.parent / "src"
sys.path.insert(0, str(SOURCE))

# Every stage needs these; finding them imports none (TensorFlow would take seconds).
DEPENDENCIES = ("numpy", "pydantic", "ruamel", "tensorflow")
missing = [name for name in DEPENDENCIES if importlib.util.find_spec(name) is None]
if missing:
    sys.exit(f"error: {sys.executable} cannot import {', '.join(missing)}: activate the "
             f"project's environment first (`source .venv/bin/activate`), or run "
             f"`python3 tasks.py repro`, which creates it")
