"""Evaluation: the ELBO, the importance-weighted bound and the classifier's accuracy.

With K samples z_k ~ q(z|x) per image, log w_k = log p(x|z_k, c) + log p(z_k) - log q(z_k|x):
- IWAE bound (Burda et al. 2015): log (1/K) sum_k w_k, by log-sum-exp; K = 1 gives the ELBO.
- ELBO: -(reconstruction + KL), reconstruction = mean_k -log p(x|z_k, c) (the same K samples,
  which average the Monte Carlo noise away), KL in closed form.
All values are nats per image; per-image values are averaged in float64. With a classifier,
p(x|z, c) is conditioned on its c(x), so the bound is one of -log p(x | c(x)), not of -log p(x).
"""

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from vaepipe import family
from vaepipe.data import load_split
from vaepipe.devices import evaluation_device, set_up_tensorflow, use_xla
from vaepipe.files import staged_outputs, write_json
from vaepipe.model import NUM_DIGITS, VAE, load_model, log_weights, to_float_images
from vaepipe.params import Params
from vaepipe.progress import WorkBar, progress_bar
from vaepipe.tf_runtime import tf

# Decoder rows (image-sample pairs) per group of samples: small enough that a group's 784
# outputs a row stay in a 2-core CPU's cache (benchmarks/eval_speed.py chose it).
GROUP_ROWS = 1000


def samples_per_group(images: int, samples: int, rows: int) -> int:
    """The largest divisor of `samples` whose group of images x samples decoder rows is at most
    `rows` (at least 1)."""
    fitting = [c for c in range(1, samples + 1) if samples % c == 0 and images * c <= rows]
    return max(fitting, default=1)


def per_image_bounds(model: VAE, x, eps, group_rows: int | None = None):
    """For images x (n, 784) and noise eps (n, K, noise_dim): per-image IWAE, reconstruction,
    KL.

    The K samples are decoded `group_rows` decoder rows at a time (all at once when None):
    the likelihood then reads each group's K x 784 outputs while they are in the CPU's cache,
    instead of writing all of them out first. Every sample's log weight is the same either way.
    """
    n, k = x.shape[0], eps.shape[1]
    mu, var = model.encode(x)
    digit_probs = model.digit_probs(x)

    def sample_log_weights(eps):  # (n, c, noise_dim) -> log w, log p(x|z), log q/p: (n, c)
        return tuple(log_weights(model, x, mu, var, digit_probs, eps))

    c = k if group_rows is None else samples_per_group(n, k, group_rows)
    if c == k:
        log_w, log_likelihood, sampled_kl = sample_log_weights(eps)
    else:  # groups of c samples, (n, K/c, c, noise_dim) -> (K/c, n, c, noise_dim), in turn
        groups = tf.transpose(tf.reshape(eps, [n, k // c, c, -1]), [1, 0, 2, 3])
        per_group = tf.map_fn(sample_log_weights, groups,
                              fn_output_signature=(tf.float32,) * 3)
        log_w, log_likelihood, sampled_kl = (tf.reshape(tf.transpose(t, [1, 0, 2]), [n, k])
                                             for t in per_group)
    iwae = tf.reduce_logsumexp(log_w, axis=1) - tf.math.log(tf.cast(k, log_w.dtype))
    # The mean of K values near -200 in float32 drifts under XLA's CPU reductions (by 0.07
    # nats at K = 1000, 0.27 at K = 5000): average them in float64.
    reconstruction = -tf.reduce_mean(tf.cast(log_likelihood, tf.float64), axis=1)
    return iwae, reconstruction, model.kl(mu, var, sampled_kl)


ACTIVITY_THRESHOLD = 0.01  # the IWAE paper's: a unit is active when Cov_x(E_q[u]) exceeds it
ENCODE_ROWS = 1000  # images encoded at a time for the latent units


def latent_units(model: VAE, x: np.ndarray, seed: int = 0) -> dict | list[dict]:
    """Each latent unit's activity, Cov_x(E_q(u|x)[u]) over the images x (the variance of its
    posterior mean, ddof 1 as yburda/iwae's np.cov), and its mean KL, with the number of active
    units: one such record, or one per stochastic layer, z1 first. Above z1, E_q[u] is taken
    given one sample of the layer below (as yburda/iwae does, drawn from `seed`) and the KL is
    KL(q(u|.) || N(0, 1)) for the top layer, log q(u) - log p(u|z above) sampled under it."""
    rng = np.random.default_rng(seed)
    chunks = [_layer_terms(model, x[start:start + ENCODE_ROWS], rng)
              for start in range(0, len(x), ENCODE_ROWS)]
    units = [_unit_record(*(np.concatenate([chunk[layer][part] for chunk in chunks])
                            for part in range(len(chunks[0][layer]))))
             for layer in range(len(model.latent_sizes))]
    return units[0] if len(units) == 1 else units


def _layer_terms(model: VAE, x: np.ndarray, rng: np.random.Generator) -> list[tuple]:
    """Per stochastic layer, in float64: q's mean and variance; under the top layer also the
    layer's sample and p's mean and variance given the sample above it."""
    mu, var = model.encode(x)
    posteriors, samples = [(mu, var)], []
    for layer in [*model.upward, None]:
        samples.append(mu + tf.sqrt(var) * rng.standard_normal(mu.shape, dtype=np.float32))
        if layer is not None:
            mu, var = layer(samples[-1])
            posteriors.append((mu, var))
    terms = [tuple(map(_float64, posterior)) for posterior in posteriors]
    for l, layer in enumerate(model.downward):
        terms[l] += tuple(map(_float64, (samples[l], *layer(samples[l + 1]))))
    return terms


def _float64(tensor) -> np.ndarray:
    return np.asarray(tensor, dtype=np.float64)


def _unit_record(mu, var, z=None, prior_mu=None, prior_var=None) -> dict:
    activity = np.var(mu, axis=0, ddof=1)
    if z is None:  # the top layer, under N(0, I)
        kl = 0.5 * (np.square(mu) + var - 1.0 - np.log(var))
    else:
        kl = 0.5 * (np.square(z - prior_mu) / prior_var + np.log(prior_var)
                    - np.square(z - mu) / var - np.log(var))
    return {"active_units": int(np.sum(activity > ACTIVITY_THRESHOLD)), "units": len(activity),
            "activity_threshold": ACTIVITY_THRESHOLD, "activity": activity.tolist(),
            "kl": kl.mean(axis=0).tolist()}


def active_units_line(units: dict | list[dict]) -> str:
    """`a of b latent units active`, per stochastic layer when there are several."""
    layers = [units] if isinstance(units, dict) else units
    counts = [f"{layer['active_units']} of {layer['units']}" for layer in layers]
    named = counts if len(counts) == 1 else [f"z{l + 1}: {c}" for l, c in enumerate(counts)]
    return (f"{', '.join(named)} latent units active (Cov_x E_q[u] > {ACTIVITY_THRESHOLD})")


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    """counts[actual, predicted] over the 10 digits."""
    counts = np.zeros((NUM_DIGITS, NUM_DIGITS), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predictions.astype(np.int64)), 1)
    return counts


class Evaluator:
    """Compiled per-batch evaluation of one model with K importance samples per image."""

    def __init__(self, model: VAE, iwae_samples: int, batch_size: int, seed: int,
                 jit_compile: bool = True, group_rows: int | None = GROUP_ROWS):
        self.model = model
        self.group_rows = group_rows
        self.iwae_samples = iwae_samples
        self.batch_size = batch_size
        self.seed = seed
        # The noise is drawn by TensorFlow's own kernel, outside XLA: XLA's CPU normal
        # sampler took ten times as long, as long as the rest of the evaluation.
        self._noise = tf.function(self._batch_noise, jit_compile=False)
        self._bounds = tf.function(self._batch_bounds, jit_compile=jit_compile)

    def _batch_noise(self, images, batch_index):
        seed = tf.stack([tf.constant(self.seed, tf.int64), batch_index])
        return tf.random.stateless_normal([images, self.iwae_samples, self.model.noise_dim],
                                          seed=seed)

    def _batch_bounds(self, x, eps):
        return (*per_image_bounds(self.model, x, eps, self.group_rows),
                *self.model.conditioning.predictions(self.model, x))

    def evaluate(self, images: np.ndarray, labels: np.ndarray, stream: int = 0,
                 bar: WorkBar | None = None) -> tuple[dict, np.ndarray | None]:
        """Metrics for one split, and the classifier's prediction for each image (None for an
        unconditional model).

        `stream` keeps the noise of different splits apart while staying a function of the seed;
        `bar` counts the images, once a batch.
        """
        columns = [[], [], [], []]
        for batch, start in enumerate(range(0, len(images), self.batch_size)):
            x = to_float_images(images[start:start + self.batch_size])
            index = tf.constant(stream * 2**32 + batch, tf.int64)
            eps = self._noise(tf.constant(len(x)), index)
            for column, values in zip(columns, self._bounds(x, eps)):
                column.append(values.numpy())
            if bar is not None:
                bar.update(len(x))
        iwae, reconstruction, kl, predictions = (np.concatenate(c) if c else None
                                                 for c in columns)
        return summarize(iwae, reconstruction, kl, labels, predictions), predictions


def summarize(iwae: np.ndarray, reconstruction: np.ndarray, kl: np.ndarray,
              labels: np.ndarray, predictions: np.ndarray | None) -> dict:
    """Split-level metrics from per-image values (means in float64); the accuracy only when
    there are predictions."""
    iwae, reconstruction, kl = (np.asarray(a, dtype=np.float64) for a in (iwae, reconstruction, kl))
    metrics = {
        "elbo": float(-(reconstruction.mean() + kl.mean())),
        "reconstruction": float(reconstruction.mean()),
        "kl": float(kl.mean()),
        "iwae": float(iwae.mean()),
        "iwae_stderr": float(iwae.std(ddof=1) / math.sqrt(len(iwae))) if len(iwae) > 1 else 0.0,
    }
    if predictions is not None:
        counts = confusion_matrix(labels, predictions)
        per_digit = np.diag(counts) / np.maximum(counts.sum(axis=1), 1)
        metrics["accuracy"] = float(np.trace(counts) / counts.sum())
        metrics["accuracy_per_digit"] = {str(d): float(a) for d, a in enumerate(per_digit)}
    return metrics


def nll_measures(model: VAE, binarization: str, iwae_samples: int) -> str:
    """What `nll` of metrics.json is, in words."""
    return (f"{model.conditioning.nll_target}, estimated as -(IWAE bound at K = "
            f"{iwae_samples}), an upper bound, in nats per image; "
            f"{model.likelihood.data_meaning[binarization]}")


def with_nll(metrics: dict, measures: str) -> dict:
    """The split's metrics with the test NLL = -IWAE bound, its standard error and its meaning."""
    return {**metrics, "nll": -metrics["iwae"], "nll_stderr": metrics["iwae_stderr"],
            "nll_measures": measures}


def predictions_table(labels: np.ndarray, predicted: np.ndarray | None) -> pd.DataFrame:
    """The actual and predicted digit of each image; no rows for an unconditional model, which
    has no classifier (the confusion-matrix plot is then empty)."""
    if predicted is None:
        return pd.DataFrame({"actual": [], "predicted": []}, dtype=np.int64)
    return pd.DataFrame({"actual": labels, "predicted": predicted})


SPLITS = ("test", "val")  # in this order: each split's noise stream is its index


def split_scorer(params: Params, model: VAE, device: str, first: int | None = None):
    """A function scoring `model` on one split of prepared data (its first `first` images, or
    all) as the evaluate stage does: (metrics, predictions, the split's labels and scored
    images). The first images of a split get the same noise as in the whole split."""
    xla, why = use_xla(params.train.jit_compile, model, device=device)
    print(f"XLA: {'on' if xla else 'off'} ({why})", file=sys.stderr)
    evaluator = Evaluator(model, params.evaluate.iwae_samples, params.evaluate.batch_size,
                          params.seed, xla)
    binarization = family.build("binarization", params)
    measures = nll_measures(model, params.binarization, params.evaluate.iwae_samples)

    def score(prepared_dir: str | Path, split: str):
        data = load_split(prepared_dir, split)  # drawn whole: a Bernoulli draw is the split's
        images, labels = binarization.split(data.images, split)[:first], data.labels[:first]
        with progress_bar(len(images), f"evaluating {split}", "image") as bar:
            metrics, predicted = evaluator.evaluate(images, labels, SPLITS.index(split), bar)
        m = with_nll(metrics, measures)
        accuracy = f"  accuracy {m['accuracy']:.4f}" if "accuracy" in m else ""
        print(f"{split}: elbo {m['elbo']:.2f}  iwae {m['iwae']:.2f} ± {m['iwae_stderr']:.2f} "
              f"(K={params.evaluate.iwae_samples}){accuracy}", file=sys.stderr)
        return m, predicted, labels, images
    return score


def evaluate_stage(params: Params, model_dir: str | Path, prepared_dir: str | Path,
                   metrics_path: str | Path, predictions_path: str | Path,
                   units_path: str | Path) -> dict:
    """Evaluate the trained model on the test and validation splits, and its latent units on
    the test split; write metrics, predictions and units together, or none."""
    device = evaluation_device(params.train, set_up_tensorflow(params.seed))
    paths = [metrics_path, predictions_path, units_path]
    with staged_outputs(files=paths) as outputs, tf.device(device):
        model = load_model(model_dir)
        score = split_scorer(params, model, device)
        metrics = {}
        for split in SPLITS:
            metrics[split], predicted, labels, images = score(prepared_dir, split)
            if split == "test":
                predictions = predictions_table(labels, predicted)
                units = latent_units(model, to_float_images(images), params.seed)
        print(f"test: {active_units_line(units)}", file=sys.stderr)
        write_json(outputs[metrics_path], metrics)
        outputs[predictions_path].write_bytes(predictions.to_csv(index=False).encode())
        write_json(outputs[units_path], {"test": units})
    return metrics
