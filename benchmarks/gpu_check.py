"""The GPU check: train the seed configuration on the GPU and report what ran where, how fast,
whether two runs give the same bits, and the peak GPU memory.

    .venv/bin/python benchmarks/gpu_check.py [--epochs 3]

Uses data/prepared when it exists (else random images of the same shape) and the model of
params.yaml with `train.device: gpu`. On a machine without a GPU it says so in one line.
"""

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from vaepipe.data import load_split
from vaepipe.devices import describe, select_strategy, set_up_tensorflow
from vaepipe.params import load_params
from vaepipe.tf_runtime import tf
from vaepipe.training import build_trainer, epoch_chunks

ROOT = Path(__file__).resolve().parents[1]


def training_split():
    if (ROOT / "data" / "prepared" / "train.npz").exists():
        split = load_split(ROOT / "data" / "prepared", "train")
        return split.images, split.labels
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (50000, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 50000, dtype=np.uint8))


def train_on_gpu(params, images, labels, epochs: int, jit: bool) -> dict:
    """Train `epochs` epochs; seconds per epoch after the first, devices, weights' digest."""
    params = params.model_copy(update={"train": params.train.model_copy(
        update={"device": "gpu", "strategy": "one_device", "jit_compile": jit})})
    gpus = set_up_tensorflow(params.seed)
    strategy = select_strategy(params.train, gpus, params.batch_size)
    steps = len(images) // params.batch_size
    trainer = build_trainer(params, strategy, steps)
    chunks = epoch_chunks(images, labels, params, strategy)
    tf.config.experimental.reset_memory_stats("GPU:0")
    seconds = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        trainer.train_epoch(chunks, steps, epoch)
        seconds.append(time.perf_counter() - started)
    first_bad_step, _ = trainer.train_steps(*next(chunks))
    digest = hashlib.sha256(b"".join(w.numpy().tobytes() for w in trainer.model.weights))
    return {
        "strategy": describe(strategy),
        "weights on": sorted({w.value.device for w in trainer.model.weights}),
        "optimizer state on": sorted({v.value.device for v in trainer.optimizer.variables}),
        "train step ran on": first_bad_step.device,
        "s/epoch": statistics.median(seconds[1:]) if epochs > 1 else seconds[0],
        "peak MiB": tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20,
        "weights sha256": digest.hexdigest()[:16],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if not tf.config.list_physical_devices("GPU"):
        print("no GPU visible to TensorFlow: nothing to check on this machine")
        return 0
    params = load_params(ROOT / "params.yaml")
    images, labels = training_split()
    runs = {"XLA, run 1": True, "XLA, run 2": True, "no XLA": False}
    results = {name: train_on_gpu(params, images, labels, args.epochs, jit)
               for name, jit in runs.items()}
    for name, result in results.items():
        print(f"{name}:")
        for key, value in result.items():
            print(f"  {key:<20} {value:.3f}" if isinstance(value, float) else
                  f"  {key:<20} {value}")
    same = results["XLA, run 1"]["weights sha256"] == results["XLA, run 2"]["weights sha256"]
    print(f"two XLA runs bit-identical under op determinism: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
