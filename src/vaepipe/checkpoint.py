"""Training checkpoints: a stopped or killed run resumes where it stopped, to the same bytes.

A checkpoint holds what the rest of the run depends on: the weights and the optimizer's
variables (its step counter among them, which keys the reparameterisation noise), how far
training got (epochs done, and chunks done in the epoch under way), the per-epoch sample rows
so far and dvclive's folder. The shuffling order is a function of the seed and the chunk
number, so it is not stored: the input pipeline skips the chunks already trained on.

Each checkpoint records a fingerprint of what the result depends on (the params the train
stage tracks, the prepared data, the code and library versions); one with another fingerprint
is not resumed. It is written whole into a staging folder and renamed into place, so a kill
during the write leaves the previous checkpoint usable.
"""

import hashlib
import json
import shutil
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import vaepipe
from vaepipe.errors import PipelineError
from vaepipe.files import atomic_dir
from vaepipe.params import Params
from vaepipe.tf_runtime import keras, tf

STATE_FILE = "state.json"
VARIABLES_FILE = "variables.npz"
SAMPLES_FILE = "samples.npy"
LIVE_DIR = "live"
# Knobs that decide when checkpoints are made, not what training computes.
NOT_IN_FINGERPRINT = ("resume", "checkpoint_every", "checkpoint_minutes", "peer_timeout_seconds")


@dataclass(frozen=True)
class Position:
    """How far training got: whole epochs, and chunks of the epoch under way."""

    epochs_done: int
    chunks_done: int = 0  # in the epoch under way


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(params: Params, data_files: list[Path]) -> dict:
    """What the trained result depends on, part by part, so that a mismatch can say which."""
    tracked = params.model_dump(mode="json", exclude={"data", "evaluate", "render"})
    for key in NOT_IN_FINGERPRINT:
        tracked["train"].pop(key)
    code = hashlib.sha256()
    for source in sorted(Path(vaepipe.__file__).parent.glob("*.py")):
        code.update(source.name.encode() + source.read_bytes())
    code.update(f"tensorflow {tf.__version__} keras {keras.__version__} "
                f"numpy {np.__version__}".encode())
    return {"params": tracked,
            "data": {path.name: _sha256_file(path) for path in data_files},
            "code": code.hexdigest()}


def _flat(params: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in params.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(saved: dict, current: dict) -> str:
    """Why a checkpoint does not fit this run, in words."""
    reasons = []
    old, new = _flat(saved["params"]), _flat(current["params"])
    changed = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    if changed:
        reasons.append(f"other params ({', '.join(changed)})")
    if saved["data"] != current["data"]:
        reasons.append("other prepared data")
    if saved["code"] != current["code"]:
        reasons.append("other code or library versions")
    return " and ".join(reasons)


class Checkpoints:
    """The train stage's checkpoint folder: when to save, what to save, and resuming."""

    def __init__(self, folder: str | Path | None, params: Params, data_files: list[Path]):
        # None for a worker process of several: each would need the same checkpoint back.
        self.enabled = folder is not None
        self.folder = Path(folder) if folder is not None else None
        self.every_epochs = params.train.checkpoint_every
        self.every_seconds = params.train.checkpoint_minutes * 60
        self.resume = params.train.resume
        self.params = params
        self.fingerprint = fingerprint(params, data_files)
        self.last_saved = time.monotonic()

    def _say(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def discard(self, reason: str) -> None:
        self._say(f"starting afresh: {reason}; removed it")
        self.remove()

    def remove(self) -> None:
        if self.enabled:
            shutil.rmtree(self.folder, ignore_errors=True)

    def restore(self, model, optimizer, live_dir: Path) -> tuple[Position, list[np.ndarray]]:
        """Load the checkpoint into the model, the optimizer and `live_dir` if it fits this
        run; the position it records and the sample rows so far (none for a fresh start)."""
        fresh = Position(0), []
        if not self.enabled or not (self.folder / STATE_FILE).exists():
            return fresh
        if not self.resume:
            self.discard(f"train.resume is false, so the checkpoint in {self.folder} is unused")
            return fresh
        try:
            state = json.loads((self.folder / STATE_FILE).read_text())
            if state["fingerprint"] != self.fingerprint:
                self.discard(f"the checkpoint in {self.folder} was made with "
                             f"{_differences(state['fingerprint'], self.fingerprint)}")
                return fresh
            position = Position(state["epochs_done"], state["chunks_done"])
            with np.load(self.folder / VARIABLES_FILE, allow_pickle=False) as saved:
                _assign(model.weights, saved, "model")
                _assign(optimizer.variables, saved, "optimizer")
            samples = list(np.load(self.folder / SAMPLES_FILE, allow_pickle=False))
            if len(samples) != self.params.measured_epochs(position.epochs_done):
                raise ValueError(f"{len(samples)} sample rows for {position.epochs_done} epochs")
            shutil.copytree(self.folder / LIVE_DIR, live_dir, dirs_exist_ok=True)
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
            self._say(f"warning: the checkpoint in {self.folder} cannot be used "
                      f"({type(error).__name__}: {error}); starting afresh")
            self.remove()
            return fresh
        where = f" (chunk {position.chunks_done + 1})" if position.chunks_done else ""
        self._say(f"resuming at epoch {position.epochs_done + 1}{where} from {self.folder}")
        return position, samples

    def due(self, position: Position, total_epochs: int) -> bool:
        """At every `checkpoint_every` epochs (not the last: the outputs follow at once), and
        whenever `checkpoint_minutes` have passed since the last save."""
        if not self.enabled or position.epochs_done >= total_epochs:
            return False
        at_epoch = position.chunks_done == 0 and position.epochs_done % self.every_epochs == 0
        return at_epoch or time.monotonic() - self.last_saved >= self.every_seconds

    def save(self, model, optimizer, position: Position, samples: list[np.ndarray],
             live_dir: Path) -> None:
        if not self.enabled:
            return
        with atomic_dir(self.folder) as staging:
            variables = {**_named(model.weights, "model"), **_named(optimizer.variables,
                                                                     "optimizer")}
            np.savez(staging / VARIABLES_FILE, **variables)
            np.save(staging / SAMPLES_FILE, np.asarray(samples, np.float32))
            shutil.copytree(live_dir, staging / LIVE_DIR)
            state = {"epochs_done": position.epochs_done, "chunks_done": position.chunks_done,
                     "fingerprint": self.fingerprint}
            (staging / STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")
        self.last_saved = time.monotonic()


def load_weights(folder: Path, model) -> Position:
    """The model weights of the checkpoint in `folder` put into `model` (the network of the run
    that saved it), and how far that run had got; one line naming the folder where there is no
    checkpoint or it does not fit the network."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        with np.load(folder / VARIABLES_FILE, allow_pickle=False) as saved:
            _assign(model.weights, saved, "model")
        return Position(state["epochs_done"], state["chunks_done"])
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as error:
        raise PipelineError(f"{folder}: no checkpoint of this network "
                            f"({type(error).__name__}: {error})") from None


def _named(variables, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}/{i}": v.numpy() for i, v in enumerate(variables)}


def _assign(variables, saved, prefix: str) -> None:
    """Set each variable to its saved value, bit for bit; refuse any that does not fit."""
    count = sum(1 for key in saved.files if key.startswith(f"{prefix}/"))
    if count != len(variables):
        raise ValueError(f"{count} {prefix} variables saved, {len(variables)} expected")
    for i, variable in enumerate(variables):
        value = saved[f"{prefix}/{i}"]
        if value.shape != tuple(variable.shape) or value.dtype != variable.dtype:
            raise ValueError(f"{prefix} variable {i} is {value.dtype} {value.shape}, "
                             f"expected {variable.dtype} {tuple(variable.shape)}")
        variable.assign(value)
