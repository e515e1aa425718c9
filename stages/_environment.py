"""Imported first by every stage script: a stage run by a Python that lacks the project's
environment (`dvc repro` with a dvc installed elsewhere and .venv not activated) stops with one
line that says what to do, not a ModuleNotFoundError."""

import importlib.util
import sys

if importlib.util.find_spec("vaepipe") is None:
    sys.exit(f"error: {sys.executable} cannot import vaepipe: activate the project's environment "
             f"first (`source .venv/bin/activate`), or run `python3 tasks.py repro`, which "
             f"creates it")
