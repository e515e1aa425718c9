import numpy as np
import pytest

from vaepipe import family
from vaepipe.likelihoods import Bernoulli, Gaussian, gaussian_nll
from vaepipe.tf_runtime import tf


def numpy_bernoulli_log_prob(x, logits):
    """sum x log sigmoid(l) + (1 - x) log sigmoid(-l) in float64; log sigmoid(l) = -log(1 + e^-l)
    and log sigmoid(-l) = -log(1 + e^l), each by logaddexp."""
    x, logits = np.asarray(x, np.float64), np.asarray(logits, np.float64)
    log_sigmoid = -np.logaddexp(0.0, -logits)
    log_one_minus = -np.logaddexp(0.0, logits)
    return np.sum(x * log_sigmoid + (1.0 - x) * log_one_minus, axis=-1)


def test_bernoulli_log_prob_matches_the_closed_form_at_the_edges():
    x = np.array([[0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.3, 0.7],
                  [1.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.0, 1.0]], np.float32)
    logits = np.array([[-200.0, 200.0, 88.0, -88.0, 0.0, 0.0, 3.5, -3.5],
                       [1e4, -1e4, -1e4, 1e4, 20.0, -20.0, -1e-3, 1e-3]], np.float32)
    got = Bernoulli().log_prob(tf.constant(x), tf.constant(logits)).numpy()
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, numpy_bernoulli_log_prob(x, logits), rtol=1e-6)


def test_bernoulli_log_prob_of_a_sure_pixel_is_zero_and_of_an_impossible_one_is_minus_the_logit():
    got = Bernoulli().log_prob(tf.constant([[1.0], [0.0]]), tf.constant([[1e4], [1e4]])).numpy()
    np.testing.assert_allclose(got, [0.0, -1e4])


def test_bernoulli_mean_is_the_sigmoid_of_the_logits():
    logits = np.linspace(-30, 30, 13, dtype=np.float32)[None]
    np.testing.assert_allclose(Bernoulli().mean(tf.constant(logits)).numpy(),
                               1 / (1 + np.exp(-logits.astype(np.float64))), rtol=1e-6)


def test_gaussian_is_the_articles_density_and_its_mean_is_the_output():
    x, mean = tf.constant([[0.0, 1.0, 0.25]]), tf.constant([[0.5, 0.5, 0.25]])
    gaussian = Gaussian(0.5)
    np.testing.assert_array_equal(gaussian.log_prob(x, mean).numpy(),
                                  -gaussian_nll(x, mean, 0.5).numpy())
    assert gaussian.mean(mean) is mean


@pytest.mark.parametrize("name, kind, activation", [("gaussian", Gaussian, "sigmoid"),
                                                    ("bernoulli", Bernoulli, None)])
def test_the_family_builds_each_likelihood_with_the_decoders_output(name, kind, activation):
    likelihood = family.build("likelihood", {"likelihood": name, "decoder_std": 0.25})
    assert isinstance(likelihood, kind)
    assert likelihood.output_activation == activation
    assert getattr(likelihood, "std", 0.25) == 0.25  # the Gaussian's is decoder_std
