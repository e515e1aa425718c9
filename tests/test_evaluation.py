import json
import math

import numpy as np
import pytest
import tensorflow as tf

from vaepipe import progress
from vaepipe.evaluation import (Evaluator, confusion_matrix, evaluate_stage, latent_units,
                                per_image_bounds, samples_per_group, summarize)
from vaepipe.model import VAE, save_model
from vaepipe.params import load_params

from conftest import PROJECT_PARAMS


@pytest.fixture(scope="module")
def model() -> VAE:
    tf.keras.utils.set_random_seed(0)
    return VAE([16], [16], [16], "sigmoid", 0.5, 3)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return (np.random.default_rng(0).random((12, 28, 28)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def bernoulli_model() -> VAE:
    """The IWAE paper's kind: a Bernoulli decoder, no classifier."""
    tf.keras.utils.set_random_seed(1)
    return VAE([16], [16], [16], "tanh", 0.5, 3, likelihood="bernoulli", conditioning="none")


def numpy_log_likelihood(model, x, output):
    """log p(x|z) of each row in float64, from the decoder's outputs (n, k, 784)."""
    if model.config["likelihood"] == "bernoulli":  # outputs are logits l: x l - log(1 + e^l)
        return (x[:, None] * output - np.logaddexp(0, output)).sum(-1)
    std = model.config["decoder_std"]  # outputs are the means
    return (-0.5 * ((x[:, None] - output) / std) ** 2
            - math.log(std * math.sqrt(2 * math.pi))).sum(-1)


def numpy_log_weights(model, x, eps, kl_scale=1.0):
    """log p(x|z,c) + kl_scale (log p(z) - log q(z|x)) written out in numpy, float64."""
    mu, var = (np.asarray(t, dtype=np.float64) for t in model.encode(x))
    logits = np.asarray(model.classify(x), dtype=np.float64)  # (n, 0) without the classifier
    probs = np.exp(logits - logits.max(axis=1, keepdims=True, initial=-np.inf))
    probs /= probs.sum(axis=1, keepdims=True)
    n, k, d = eps.shape
    z = mu[:, None] + np.sqrt(var)[:, None] * eps
    decoder_input = np.concatenate([z, np.repeat(probs[:, None], k, axis=1)], axis=-1)
    output = np.asarray(model.decoder_net(decoder_input.reshape(n * k, -1).astype(np.float32)),
                        dtype=np.float64).reshape(n, k, -1)
    log_lik = numpy_log_likelihood(model, x, output)
    log_prior = (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(-1)
    log_q = (-0.5 * (z - mu[:, None]) ** 2 / var[:, None]
             - 0.5 * np.log(2 * math.pi * var[:, None])).sum(-1)
    return log_lik + kl_scale * (log_prior - log_q), log_lik, mu, var


def numpy_iwae(log_w):
    """log (1/k) sum_i exp(log w_i) of each row, in float64."""
    top = log_w.max(axis=1)
    return top + np.log(np.mean(np.exp(log_w - top[:, None]), axis=1))


def test_bounds_match_an_independent_numpy_computation(model, images):
    x = images.reshape(12, 784).astype(np.float32) / 255
    eps = np.random.default_rng(1).standard_normal((12, 50, 3)).astype(np.float32)
    log_w, log_lik, mu, var = numpy_log_weights(model, x, eps.astype(np.float64))
    expected_iwae = numpy_iwae(log_w)
    expected_kl = 0.5 * (mu**2 + var - 1 - np.log(var)).sum(axis=1)
    iwae, reconstruction, kl = (t.numpy() for t in per_image_bounds(model, x, eps))
    np.testing.assert_allclose(iwae, expected_iwae, rtol=1e-5)
    np.testing.assert_allclose(reconstruction, -log_lik.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-4, atol=1e-5)


def test_bernoulli_bounds_match_an_independent_numpy_computation(bernoulli_model, images):
    # binary pixels, as evaluation scores them under the Bernoulli likelihood
    x = (np.random.default_rng(4).random((12, 784)) < images.reshape(12, 784) / 255)
    x = x.astype(np.float32)
    eps = np.random.default_rng(5).standard_normal((12, 50, 3)).astype(np.float32)
    log_w, log_lik, _, _ = numpy_log_weights(bernoulli_model, x, eps.astype(np.float64))
    iwae, reconstruction, _ = (t.numpy() for t in per_image_bounds(bernoulli_model, x, eps))
    np.testing.assert_allclose(iwae, numpy_iwae(log_w), rtol=1e-5)
    np.testing.assert_allclose(reconstruction, -log_lik.mean(axis=1), rtol=1e-5)
    assert np.all(iwae > log_w.mean(axis=1))  # above the 50-sample ELBO


@pytest.fixture(scope="module")
def two_layer_model() -> VAE:
    """The IWAE paper's two-layer kind, small: z1 of 4, z2 of 3, 5 hidden units between."""
    tf.keras.utils.set_random_seed(3)
    return VAE([16], [16], [16], "tanh", 0.5, [4, 3], likelihood="bernoulli",
               conditioning="none", latent_hidden_layers=[5])


def numpy_gaussian_layer(layer, z):
    """A stochastic layer's mean and variance in numpy float64, from its weights: tanh hidden
    layers, then the mean and 1e-5 + exp(log variance)."""
    *hidden, (mu_kernel, mu_bias), (log_var_kernel, log_var_bias) = [
        [np.asarray(w, dtype=np.float64) for w in dense.get_weights()]
        for dense in [*layer.hidden, layer.mu_layer, layer.log_var_layer]]
    for kernel, bias in hidden:
        z = np.tanh(z @ kernel + bias)
    return z @ mu_kernel + mu_bias, 1e-5 + np.exp(z @ log_var_kernel + log_var_bias)


def log_normal(z, mu, var):
    return (-0.5 * (z - mu) ** 2 / var - 0.5 * np.log(2 * math.pi * var)).sum(-1)


def test_two_layer_bounds_match_an_independent_numpy_computation(two_layer_model, images):
    """log w = log p(x|z1) + log p(z1|z2) + log p(z2) - log q(z1|x) - log q(z2|z1), each
    stochastic layer's net written out in numpy."""
    model = two_layer_model
    x = (np.random.default_rng(4).random((12, 784)) < images.reshape(12, 784) / 255)
    x = x.astype(np.float32)
    eps = np.random.default_rng(5).standard_normal((12, 50, 7)).astype(np.float32)
    mu, var = (np.asarray(t, dtype=np.float64)[:, None] for t in model.encode(x))
    z1 = mu + np.sqrt(var) * eps[..., :4]
    mu2, var2 = numpy_gaussian_layer(model.posterior_layers[0], z1)
    z2 = mu2 + np.sqrt(var2) * eps[..., 4:]
    prior_mu, prior_var = numpy_gaussian_layer(model.prior_layers[0], z2)
    output = np.asarray(model.decoder_net(z1.reshape(-1, 4).astype(np.float32)),
                        dtype=np.float64).reshape(12, 50, -1)
    log_lik = numpy_log_likelihood(model, x, output)
    log_q = log_normal(z1, mu, var) + log_normal(z2, mu2, var2)
    log_p = log_normal(z1, prior_mu, prior_var) + log_normal(z2, 0.0, 1.0)
    iwae, reconstruction, kl = (t.numpy() for t in per_image_bounds(model, x, eps))
    np.testing.assert_allclose(iwae, numpy_iwae(log_lik + log_p - log_q), rtol=1e-5)
    np.testing.assert_allclose(reconstruction, -log_lik.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(kl, (log_q - log_p).mean(axis=1), rtol=1e-4, atol=1e-4)
    # in groups, as evaluation runs it, the same numbers
    grouped = per_image_bounds(model, x, eps, group_rows=12 * 10)
    np.testing.assert_array_equal(grouped[0].numpy(), iwae)


def test_compiled_bounds_with_k_5000_match_numpy_in_float64(model, images):
    # XLA's float32 reductions over many samples drift; the compiled evaluation must not.
    x = images[:4].reshape(4, 784).astype(np.float32) / 255
    eps = np.random.default_rng(3).standard_normal((4, 5000, 3)).astype(np.float32)
    _, log_lik, _, _ = numpy_log_weights(model, x, eps.astype(np.float64))
    compiled = tf.function(lambda x, eps: per_image_bounds(model, x, eps), jit_compile=True)
    _, reconstruction, _ = compiled(x, eps)
    np.testing.assert_allclose(reconstruction.numpy(), -log_lik.mean(axis=1), rtol=1e-6)


def test_single_sample_bound_is_the_single_sample_elbo(model, images):
    x = images.reshape(12, 784).astype(np.float32) / 255
    eps = np.random.default_rng(2).standard_normal((12, 1, 3)).astype(np.float32)
    log_w, *_ = numpy_log_weights(model, x, eps.astype(np.float64))
    iwae, _, _ = per_image_bounds(model, x, eps)
    np.testing.assert_allclose(iwae.numpy(), log_w[:, 0], rtol=1e-5)


def test_iwae_is_above_the_elbo_and_rises_with_k(model, images):
    labels = np.arange(12) % 10
    results = {k: Evaluator(model, k, batch_size=5, seed=3).evaluate(images, labels)[0]
               for k in (1, 10, 200)}
    assert results[1]["iwae"] < results[10]["iwae"] < results[200]["iwae"]
    for metrics in results.values():
        assert metrics["iwae"] >= metrics["elbo"] - 3 * metrics["iwae_stderr"]
    assert results[200]["iwae"] > results[200]["elbo"]
    # The ELBO estimate averages over K samples: K = 200 varies little from seed to seed.
    again = Evaluator(model, 200, batch_size=5, seed=4).evaluate(images, labels)[0]
    assert again["elbo"] == pytest.approx(results[200]["elbo"], abs=0.1)


def test_same_seed_same_numbers(model, images):
    labels = np.arange(12) % 10
    first = Evaluator(model, 20, batch_size=4, seed=5).evaluate(images, labels)
    second = Evaluator(model, 20, batch_size=4, seed=5).evaluate(images, labels)
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])


def test_accuracy_and_confusion_matrix_agree():
    labels = np.array([0, 0, 1, 1, 1, 2, 9])
    predictions = np.array([0, 1, 1, 1, 2, 2, 9])
    counts = confusion_matrix(labels, predictions)
    assert counts.sum() == 7 and counts[0, 1] == 1 and counts[1, 2] == 1 and counts[9, 9] == 1
    metrics = summarize(np.zeros(7), np.ones(7), np.ones(7), labels, predictions)
    assert metrics["accuracy"] == pytest.approx(5 / 7) == pytest.approx(np.trace(counts) / 7)
    assert metrics["accuracy_per_digit"]["1"] == pytest.approx(2 / 3)
    assert metrics["accuracy_per_digit"]["3"] == 0.0  # no such digit: reported, not a crash
    assert metrics["elbo"] == -2.0


def test_stderr_is_the_standard_error_of_the_per_image_bound():
    iwae = np.array([-100.0, -110.0, -90.0, -104.0])
    metrics = summarize(iwae, np.zeros(4), np.zeros(4), np.zeros(4, int), np.zeros(4, int))
    assert metrics["iwae"] == pytest.approx(-101.0)
    assert metrics["iwae_stderr"] == pytest.approx(np.std(iwae, ddof=1) / 2)


@pytest.mark.parametrize("images_, samples, rows, expected", [
    (50, 1000, 1000, 20), (20, 5000, 1000, 50), (3, 7, 10, 1), (3, 7, 100, 7), (1, 12, 5, 4)])
def test_samples_per_group_divides_k_and_fits_the_rows(images_, samples, rows, expected):
    assert samples_per_group(images_, samples, rows) == expected


def test_bounds_in_groups_equal_the_whole_computation_bit_for_bit(model, images):
    x = images[:6].reshape(6, 784).astype(np.float32) / 255
    eps = np.random.default_rng(4).standard_normal((6, 60, 3)).astype(np.float32)
    for jit in (False, True):
        bounds = tf.function(lambda x, eps, rows: per_image_bounds(model, x, eps, rows),
                             jit_compile=jit)
        whole = [t.numpy() for t in bounds(x, eps, None)]
        grouped = [t.numpy() for t in bounds(x, eps, 6 * 12)]  # 5 groups of 12 samples
        for a, b in zip(whole, grouped):
            np.testing.assert_array_equal(a, b)


def run_the_stage(model, images, folder, **evaluate) -> None:
    """The evaluate stage on `model`, with `images` as both splits and `evaluate` settings;
    its outputs in `folder`."""
    save_model(model, folder / "vae")
    (folder / "prepared").mkdir()
    for split in ("test", "val"):
        np.savez(folder / "prepared" / f"{split}.npz", images=images,
                 labels=np.arange(12, dtype=np.uint8) % 10)
    params = load_params(PROJECT_PARAMS)
    params = params.model_copy(update={"evaluate": params.evaluate.model_copy(update=evaluate)})
    evaluate_stage(params, folder / "vae", folder / "prepared", folder / "metrics.json",
                   folder / "predictions.csv", folder / "units.json")


def test_the_stage_in_a_log_shows_the_images_done_once_a_batch(model, images, tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY_SECONDS", 0)  # as if every batch took a minute
    run_the_stage(model, images, tmp_path, iwae_samples=10, batch_size=5)
    lines = capsys.readouterr().err.splitlines()
    for split in ("test", "val"):  # 12 images, 5 a batch: the lines of the first two
        shown = [line.split("|")[2].split(" [")[0] for line in lines
                 if line.startswith(f"evaluating {split}: ")]
        assert shown == [" 5/12", " 10/12"]


def test_latent_units_follow_the_papers_definition_against_numpy(images):
    tf.keras.utils.set_random_seed(2)
    model = VAE([16], [16], [16], "sigmoid", 0.5, 4)
    kernel, bias = model.mu_layer.get_weights()
    kernel[:, 1] = 0.0  # unit 2's posterior mean is its bias for every image: inactive
    model.mu_layer.set_weights([kernel, bias])
    x = np.random.default_rng(8).random((2500, 784)).astype(np.float32)  # 3 groups to encode
    units = latent_units(model, x)
    # Encoded at once here and in groups there: on some CPUs (AMD's) a float32 matrix product
    # rounds differently with the number of rows, by ~1e-9 of these sums.
    mu, var = (np.asarray(t, dtype=np.float64) for t in model.encode(x))
    activity = np.cov(mu.T).diagonal()
    np.testing.assert_allclose(units["activity"], activity, rtol=1e-7)
    assert units["activity"][1] == 0.0
    assert units["active_units"] == int(np.sum(activity > 0.01)) and units["units"] == 4
    kl = 0.5 * (mu**2 + var - 1 - np.log(var)).mean(axis=0)
    np.testing.assert_allclose(units["kl"], kl, rtol=1e-7)
    # the units' KLs sum to the mean per-image KL of the bound
    _, _, per_image_kl = per_image_bounds(model, x[:100], np.zeros((100, 1, 4), np.float32))
    assert sum(latent_units(model, x[:100])["kl"]) == pytest.approx(
        float(np.mean(per_image_kl.numpy())), rel=1e-5)


def test_latent_units_of_two_layers_follow_the_papers_code_against_numpy(two_layer_model):
    """Above z1, a unit's posterior mean is q's mean given one sample of the layer below; the
    top layer's KL is against N(0, 1), z1's is log q - log p(z1|z2) at the samples."""
    model = two_layer_model
    x = np.random.default_rng(8).random((1500, 784)).astype(np.float32)
    z1_units, z2_units = latent_units(model, x, seed=11)
    mu, var = (np.asarray(t, dtype=np.float64) for t in model.encode(x))
    rng = np.random.default_rng(11)  # one draw per layer for each group of 1000 images
    noise = [[rng.standard_normal((rows, size), dtype=np.float32) for size in (4, 3)]
             for rows in (1000, 500)]
    z1 = mu + np.sqrt(var) * np.concatenate([group[0] for group in noise]).astype(np.float64)
    mu2, var2 = numpy_gaussian_layer(model.posterior_layers[0], z1)
    z2 = mu2 + np.sqrt(var2) * np.concatenate([group[1] for group in noise]).astype(np.float64)
    prior_mu, prior_var = numpy_gaussian_layer(model.prior_layers[0], z2)
    np.testing.assert_allclose(z1_units["activity"], np.cov(mu.T).diagonal(),
                               rtol=1e-7)  # as above
    np.testing.assert_allclose(z2_units["activity"], np.cov(mu2.T).diagonal(), rtol=1e-4)
    z1_kl = (-0.5 * (z1 - mu) ** 2 / var - 0.5 * np.log(var)
             + 0.5 * (z1 - prior_mu) ** 2 / prior_var + 0.5 * np.log(prior_var)).mean(axis=0)
    np.testing.assert_allclose(z1_units["kl"], z1_kl, rtol=1e-3, atol=1e-4)
    z2_kl = 0.5 * (mu2**2 + var2 - 1 - np.log(var2)).mean(axis=0)
    np.testing.assert_allclose(z2_units["kl"], z2_kl, rtol=1e-3, atol=1e-5)
    assert (z1_units["units"], z2_units["units"]) == (4, 3)
    assert z2_units["active_units"] == int(np.sum(np.cov(mu2.T).diagonal() > 0.01))


def test_the_stage_writes_the_test_splits_latent_units(model, images, tmp_path):
    run_the_stage(model, images, tmp_path, iwae_samples=3, batch_size=6)
    [written] = json.loads((tmp_path / "units.json").read_text()).values()
    expected = latent_units(model, images.reshape(12, 784).astype(np.float32) / 255)
    for key in ("activity", "kl"):
        np.testing.assert_allclose(written.pop(key), expected.pop(key), rtol=1e-6)
    assert written == expected
