"""Seconds per training epoch: this project's loop, the article's loop, and the machine's floor.

    .venv/bin/python benchmarks/train_speed.py [--epochs 5]

Runs on data/prepared when it exists (else random images of the same shape), with the model
hyperparameters of params.yaml. Each measurement runs in its own process (the article's loop
needs TensorFlow's graph mode, which is global) and reports its peak resident memory:
- project: `Trainer` as the train stage uses it (XLA, `steps_per_execution` steps per call);
- article: the article's loop ported literally to tf.compat.v1: placeholders, one
  `sess.run(train_op, feed_dict)` per batch;
- floor: the model's float32 FLOPs per epoch / this machine's measured matmul throughput.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def training_images(params) -> tuple[np.ndarray, np.ndarray]:
    prepared = ROOT / "data" / "prepared"
    if (prepared / "train.npz").exists():
        from vaepipe.data import load_split
        split = load_split(prepared, "train")
        return split.images, split.labels
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (50000, 28, 28), dtype=np.uint8),
            rng.integers(0, 10, 50000).astype(np.uint8))


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def time_project(params, epochs: int) -> list[float]:
    from vaepipe.devices import select_strategy, set_up_tensorflow
    from vaepipe.training import build_trainer, epoch_chunks
    images, labels = training_images(params)
    set_up_tensorflow(params.seed)
    strategy = select_strategy(params.train, [], params.batch_size)
    steps = len(images) // params.batch_size
    trainer = build_trainer(params, strategy, steps)
    chunks = epoch_chunks(images, labels, params, strategy)
    times = []
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        trainer.train_epoch(chunks, steps, epoch)
        times.append(time.perf_counter() - started)
    return times


def time_article(params, epochs: int) -> list[float]:
    """The article's graph, placeholders and feed_dict loop (tf.layers.dense written out)."""
    import tensorflow as tf
    v1 = tf.compat.v1
    v1.disable_eager_execution()
    v1.set_random_seed(params.seed)
    activation = getattr(tf.nn, params.activation)

    def dense(x, units, act=None):
        w = v1.get_variable(f"w{dense.count}", [x.shape[1], units],
                            initializer=v1.glorot_uniform_initializer())
        b = v1.get_variable(f"b{dense.count}", [units], initializer=v1.zeros_initializer())
        dense.count += 1
        y = tf.matmul(x, w) + b
        return act(y) if act else y
    dense.count = 0

    def mlp(x, layers):
        for size in layers:
            x = dense(x, size, activation)
        return x

    images = v1.placeholder(tf.float32, [None, 784])
    digits = v1.placeholder(tf.int32, [None])
    h = mlp(images, params.encoder_layers)
    mu, var = dense(h, params.z_dim), 1e-5 + tf.exp(dense(h, params.z_dim))
    z = mu + tf.sqrt(var) * v1.random_normal([tf.shape(images)[0], params.z_dim])
    logits = dense(mlp(images, params.digit_classification_layers), 10)
    decoded = tf.nn.sigmoid(dense(mlp(tf.concat([z, tf.nn.softmax(logits)], 1),
                                      params.decoder_layers), 784))
    std = params.decoder_std
    reconstruction = tf.reduce_sum(0.5 * np.log(2 * np.pi * std * std)
                                   + tf.square(images - decoded) / (2 * std * std), axis=1)
    kl = -0.5 * tf.reduce_sum(1 + tf.math.log(var) - mu**2 - var, axis=1)
    loss = (tf.reduce_mean(reconstruction + kl) + params.digit_classification_weight
            * tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=digits,
                                                                            logits=logits)))
    train_op = v1.train.AdamOptimizer(params.learning_rate).minimize(loss)
    x_all, y_all = training_images(params)
    x_all = x_all.reshape(len(x_all), -1).astype(np.float32) / 255
    rng = np.random.default_rng(params.seed)
    times = []
    with v1.Session() as sess:
        sess.run(v1.global_variables_initializer())
        for _ in range(epochs):
            started = time.perf_counter()
            order = rng.permutation(len(x_all))
            for start in range(0, len(order) - params.batch_size + 1, params.batch_size):
                batch = order[start:start + params.batch_size]
                sess.run(train_op, feed_dict={images: x_all[batch], digits: y_all[batch]})
            times.append(time.perf_counter() - started)
    return times


def matmul_gflops(repeats: int = 20) -> float:
    """Best float32 matmul throughput over large square products (GFLOP/s)."""
    import tensorflow as tf
    n = 2048
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    product = tf.function(lambda: tf.reduce_sum(tf.matmul(a, b)))
    product()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        product().numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * n**3 / best / 1e9


def flops_per_epoch(params, images: int) -> float:
    """Dense-layer FLOPs for forward + backward (3x forward) over one epoch of images."""
    def mlp_macs(sizes):
        return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    encoder = mlp_macs([784, *params.encoder_layers]) + 2 * params.encoder_layers[-1] * params.z_dim
    classifier = mlp_macs([784, *params.digit_classification_layers, 10])
    decoder = mlp_macs([params.z_dim + 10, *params.decoder_layers, 784])
    steps = images // params.batch_size
    return 3 * 2 * (encoder + classifier + decoder) * steps * params.batch_size


def measure(mode: str, epochs: int) -> dict:
    from vaepipe.params import load_params
    params = load_params(ROOT / "params.yaml")
    if mode == "floor":
        gflops = matmul_gflops()
        flops = flops_per_epoch(params, len(training_images(params)[0]))
        return {"seconds": flops / (gflops * 1e9), "gflops": gflops, "gflop_per_epoch": flops / 1e9}
    times = (time_project if mode == "project" else time_article)(params, epochs)
    # The first epoch includes tracing and compilation: leave it out of the median.
    return {"seconds": statistics.median(times[1:]), "first": times[0],
            "peak_mb": peak_memory_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--mode", choices=("project", "article", "floor"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.epochs)))
        return
    results = {}
    for mode in ("project", "article", "floor"):
        out = subprocess.run([sys.executable, __file__, "--mode", mode, "--epochs",
                              str(args.epochs)], capture_output=True, text=True, check=True)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    floor = results["floor"]
    print(f"matmul throughput: {floor['gflops']:.0f} GFLOP/s; model: "
          f"{floor['gflop_per_epoch']:.1f} GFLOP per epoch (forward + backward)")
    print(f"{'loop':<10}{'s/epoch':>9}{'x floor':>9}{'first epoch s':>15}{'peak MB':>9}")
    for mode in ("project", "article", "floor"):
        r = results[mode]
        first = f"{r['first']:15.2f}" if "first" in r else f"{'':15}"
        peak = f"{r['peak_mb']:9.0f}" if "peak_mb" in r else f"{'':9}"
        print(f"{mode:<10}{r['seconds']:9.2f}{r['seconds'] / floor['seconds']:9.2f}{first}{peak}")


if __name__ == "__main__":
    main()
