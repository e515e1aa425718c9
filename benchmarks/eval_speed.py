"""Seconds to evaluate test images' importance-weighted bound: this project's evaluation, a JAX
reference, and the machine's floor.

    .venv/bin/python benchmarks/eval_speed.py [--images 10000] [--samples K] [--recipe NAME] [-S KEY=VALUE]
    .venv/bin/python -m pip install -e '.[bench]'   # once, for the jax_scan reference

Evaluates the first --images test images of data/prepared (else random images of the same
shape), binarized as the evaluate stage binarizes them, at K = --samples importance samples
(default: evaluate.iwae_samples), with the params of params.yaml, or of a reproduction
(`--recipe iwae_vae_warmup`), and any param set with `-S` as in train_speed.py. The weights:
the record's (`reproductions/NAME/model`) when it has them, else models/vae for params.yaml,
else a fresh model built from the params and their seed (the same in every process; speed does
not depend on the weights' values). Each measurement runs in its own process:
- project: `Evaluator` as the evaluate stage uses it (evaluate.batch_size images per call);
- jax_scan: the same weights copied into JAX, one jitted call per evaluate.batch_size images
  that maps over chunks of images of at most JAX_CHUNK_ROWS decoder rows (images x K); it
  implements one stochastic layer and dense layers, either likelihood, with or without the
  classifier;
- floor: the decoder's float32 matmul FLOPs for images x K samples / this machine's measured
  matmul throughput (train_speed.py's).
"first call s" is the first batch with its compilation, done before the timed pass. The check
compares the mean bounds; each process draws its own samples, so they differ by Monte Carlo
noise, which shrinks as 1/sqrt(images): with 200 images it reaches 0.05 nats at times, so check
with the default 10000.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from train_speed import (ROOT, add_param_options, benchmark_params, checked_params, jax_decode,
                         jax_encode, jax_reconstruction, matmul_gflops, missing_packages,
                         param_arguments, params_source)

# Decoder rows (images x samples) per JAX chunk: of 1000, 5000 and 10000, 5000 was the fastest
# on a 2-core CPU busy with a training run (0.96, 0.69, 0.71 s for 200 images at K = 1000).
JAX_CHUNK_ROWS = 5000
TOLERANCE = 0.05  # nats per image
LOG_2PI = math.log(2 * math.pi)


def test_images(params, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` test images, binarized as the evaluate stage binarizes them."""
    from vaepipe import family
    prepared = ROOT / "data" / "prepared"
    if (prepared / "test.npz").exists():
        from vaepipe.data import load_split
        split = load_split(prepared, "test")
        images, labels = split.images[:count], split.labels[:count]
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count).astype(np.uint8)
    return family.build("binarization", params).split(images, "test"), labels


def weights_source(recipe: str | None) -> str | None:
    """Where the evaluated weights come from: a record's model, models/vae, or None (fresh)."""
    record = ROOT / "reproductions" / str(recipe) / "model"
    workspace = ROOT / "models" / "vae"
    if recipe is not None:
        return str(record) if (record / "config.json").exists() else None
    return str(workspace) if (workspace / "config.json").exists() else None


def evaluated_model(params, recipe: str | None):
    from vaepipe.devices import set_up_tensorflow
    from vaepipe.model import VAE, load_model
    set_up_tensorflow(params.seed)  # a fresh model gets the same weights in every process
    source = weights_source(recipe)
    return VAE(**params.network_config()) if source is None else load_model(source)


def time_project(params, recipe, images, labels, samples: int) -> dict:
    from vaepipe.devices import evaluation_device, set_up_tensorflow, use_xla
    from vaepipe.evaluation import Evaluator
    from vaepipe.tf_runtime import tf
    batch = params.evaluate.batch_size
    device = evaluation_device(params.train, set_up_tensorflow(params.seed))
    with tf.device(device):
        model = evaluated_model(params, recipe)
        evaluator = Evaluator(model, samples, batch, params.seed,
                              use_xla(params.train.jit_compile, model, device=device)[0])
        started = time.perf_counter()
        evaluator.evaluate(images[:batch], labels[:batch])
        first = time.perf_counter() - started
        started = time.perf_counter()
        metrics, _ = evaluator.evaluate(images, labels)
    return {"seconds": time.perf_counter() - started, "first": first, "bound": metrics["iwae"]}


def time_jax_scan(params, recipe, images, samples: int) -> dict:
    import jax
    import jax.numpy as jnp
    model = evaluated_model(params, recipe)
    config = model.config
    if len(model.latent_sizes) > 1 or config["architecture"] != "mlp":
        return {"skipped": "it implements one stochastic layer and dense layers"}
    weights = {
        "encoder": [layer.get_weights() for layer in model.encoder_net.layers],
        "mu": [model.mu_layer.get_weights()], "log_var": [model.log_var_layer.get_weights()],
        "decoder": [layer.get_weights() for layer in model.decoder_net.layers]}
    if model.classifier_net is not None:
        weights["classifier"] = [layer.get_weights() for layer in model.classifier_net.layers]
    weights = jax.device_put(weights)
    activation = getattr(jax.nn, config["activation"])
    batch = params.evaluate.batch_size
    # Images per chunk: the largest divisor of the batch whose chunk fits JAX_CHUNK_ROWS.
    chunk = max(c for c in range(1, batch + 1) if batch % c == 0
                and (c == 1 or c * samples <= JAX_CHUNK_ROWS))

    def chunk_bounds(weights, x, key):  # (chunk, 784) -> the IWAE bound of each image
        mu, var, logits = jax_encode(weights, x, activation)
        eps = jax.random.normal(key, (chunk, samples, model.z_dim))
        z = mu[:, None] + jnp.sqrt(var)[:, None] * eps
        probs = (None if logits is None else
                 jnp.broadcast_to(jax.nn.softmax(logits)[:, None], (chunk, samples, 10)))
        log_likelihood = -jax_reconstruction(params, x[:, None],
                                             jax_decode(weights, z, probs, activation))
        log_prior = -0.5 * jnp.sum(z**2 + LOG_2PI, axis=-1)
        log_posterior = -0.5 * jnp.sum(eps**2 + jnp.log(var)[:, None] + LOG_2PI, axis=-1)
        log_w = log_likelihood + log_prior - log_posterior
        return jax.nn.logsumexp(log_w, axis=1) - math.log(samples)

    @jax.jit
    def batch_bounds(weights, images, key):  # (batch, 784) uint8 -> (batch,)
        chunks = (images.astype(jnp.float32) / 255).reshape(batch // chunk, chunk, -1)
        keys = jax.random.split(key, batch // chunk)
        return jax.lax.map(lambda args: chunk_bounds(weights, *args), (chunks, keys)).reshape(-1)

    def bounds(images):  # a short last batch is padded, so that every call has one shape
        padded = np.zeros((-(-len(images) // batch) * batch, 784), np.uint8)
        padded[:len(images)] = images.reshape(len(images), -1)
        key = jax.random.key(params.seed)
        parts = [batch_bounds(weights, padded[start:start + batch], jax.random.fold_in(key, i))
                 for i, start in enumerate(range(0, len(padded), batch))]
        return np.concatenate(jax.device_get(parts))[:len(images)]

    started = time.perf_counter()
    bounds(images[:batch])
    first = time.perf_counter() - started
    started = time.perf_counter()
    values = bounds(images)
    return {"seconds": time.perf_counter() - started, "first": first,
            "bound": float(np.mean(values, dtype=np.float64))}


def decoder_flops(model, rows: int) -> float:
    sizes = [model.latent_sizes[0] + model.conditioning.width, *model.config["decoder_layers"], 784]
    return 2 * rows * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def measure(mode: str, count: int, samples: int | None, recipe: str | None,
            sets: list[str]) -> dict:
    params = benchmark_params(recipe, sets)
    samples = samples or params.evaluate.iwae_samples
    images, labels = test_images(params, count)
    if mode == "floor":
        gflops = matmul_gflops()
        flops = decoder_flops(evaluated_model(params, recipe), len(images) * samples)
        return {"seconds": flops / (gflops * 1e9), "gflops": gflops, "gflop": flops / 1e9,
                "images": len(images), "samples": samples}
    if mode == "project":
        return time_project(params, recipe, images, labels, samples)
    return time_jax_scan(params, recipe, images, samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--samples", type=int, help="K (default: evaluate.iwae_samples)")
    add_param_options(parser)
    parser.add_argument("--mode", choices=("project", "jax_scan", "floor"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.images, args.samples, args.recipe, args.set)))
        return
    checked_params(args)
    weights = weights_source(args.recipe)
    print(f"params: {params_source(args)}; weights: "
          f"{Path(weights).relative_to(ROOT) if weights else 'fresh, from the params seed'}")
    passed = param_arguments(args)
    results, notes = {}, []
    for mode in ("project", "jax_scan", "floor"):
        if why := missing_packages(mode):
            notes.append(f"{mode}: skipped ({why})")
            continue
        command = [sys.executable, __file__, "--mode", mode, "--images", str(args.images),
                   *passed]
        if args.samples:
            command += ["--samples", str(args.samples)]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if "skipped" in result:
            notes.append(f"{mode}: skipped ({result['skipped']})")
        else:
            results[mode] = result
    floor = results["floor"]
    print(f"matmul throughput: {floor['gflops']:.0f} GFLOP/s; decoder: {floor['gflop']:.1f} "
          f"GFLOP for {floor['images']} images x {floor['samples']} samples")
    print(f"{'eval':<10}{'s':>9}{'x floor':>9}{'first call s':>14}{'mean bound':>12}")
    for mode, r in results.items():
        first = f"{r['first']:14.2f}" if "first" in r else f"{'':14}"
        bound = f"{r['bound']:12.3f}" if "bound" in r else f"{'':12}"
        print(f"{mode:<10}{r['seconds']:9.2f}{r['seconds'] / floor['seconds']:9.2f}{first}{bound}")
    for note in notes:
        print(note)
    if "project" in results and "jax_scan" in results:
        difference = results["jax_scan"]["bound"] - results["project"]["bound"]
        verdict = "ok" if abs(difference) <= TOLERANCE else f"more than {TOLERANCE}"
        print(f"check: mean bound, jax_scan - project: {difference:+.3f} nats per image "
              f"({verdict})")


if __name__ == "__main__":
    main()
