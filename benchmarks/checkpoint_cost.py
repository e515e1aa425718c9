"""Seconds and bytes per training checkpoint, for the seed configuration and a larger model.

    .venv/bin/python benchmarks/checkpoint_cost.py

Saves five checkpoints of a freshly built model and Adam (with 20 sample rows and the
committed reports/train as dvclive's folder) and prints the median time and the size.
"""

import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from vaepipe.checkpoint import Checkpoints, Position
from vaepipe.params import load_params
from vaepipe.devices import select_strategy, set_up_tensorflow
from vaepipe.training import build_trainer

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "seed configuration": {},
    "784-1024-1024, z_dim 50": dict(encoder_layers=(1024, 1024), decoder_layers=(1024, 1024),
                                    digit_classification_layers=(1024,), z_dim=50),
}


def measure(params, folder: Path, saves: int = 5) -> tuple[float, int, int]:
    set_up_tensorflow(params.seed)
    trainer = build_trainer(params, select_strategy(params.train, [], params.batch_size),
                            steps_per_epoch=1)
    live = folder / "live"
    shutil.copytree(ROOT / "reports" / "train", live)
    data = [folder / "train.npz", folder / "val.npz"]
    for path in data:
        path.write_bytes(b"")
    checkpoints = Checkpoints(folder / "checkpoint", params, data)
    samples = [np.zeros((10, 784), np.float32)] * 20
    seconds = []
    for epoch in range(1, saves + 1):
        started = time.perf_counter()
        checkpoints.save(trainer.model, trainer.optimizer, Position(epoch), samples, live)
        seconds.append(time.perf_counter() - started)
    size = sum(f.stat().st_size for f in checkpoints.folder.rglob("*") if f.is_file())
    return statistics.median(seconds), size, trainer.model.count_params()


def main() -> None:
    base = load_params(ROOT / "params.yaml")
    print(f"{'model':<26}{'weights':>11}{'s/checkpoint':>14}{'MiB':>7}")
    for name, change in MODELS.items():
        with tempfile.TemporaryDirectory() as folder:
            seconds, size, weights = measure(base.model_copy(update=change), Path(folder))
        print(f"{name:<26}{weights:>11,}{seconds:>14.3f}{size / 2**20:>7.1f}")


if __name__ == "__main__":
    main()
