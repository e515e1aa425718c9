"""The training objectives against their definitions, written out in numpy float64."""

import numpy as np
import pytest

from vaepipe import family
from vaepipe.objectives import DoublyReparameterized, Elbo, ImportanceWeighted
from vaepipe.tf_runtime import tf

from vaepipe.model import VAE

from test_evaluation import (bernoulli_model, images, model, numpy_iwae,  # noqa: F401
                             numpy_log_weights, two_layer_model)

K = 4


def batch(images, k: int):
    """12 binarized images and k noise rows per image, stacked image by image."""
    x = (np.random.default_rng(6).random((12, 784)) < images.reshape(12, 784) / 255)
    eps = np.random.default_rng(7).standard_normal((12, k, 3)).astype(np.float32)
    return x.astype(np.float32), eps


def kl_closed_form(mu, var):
    return 0.5 * (mu**2 + var - 1 - np.log(var)).sum(axis=1)


@pytest.mark.parametrize("kl_scale", [None, 0.3])
def test_the_k_sample_elbo_averages_k_reconstructions_and_adds_the_weighted_kl(
        bernoulli_model, images, kl_scale):
    x, eps = batch(images, K)
    _, log_lik, mu, var = numpy_log_weights(bernoulli_model, x, eps.astype(np.float64))
    loss, (reconstruction, kl), _ = Elbo(K).per_image(bernoulli_model, x, eps.reshape(12 * K, 3),
                                                      kl_scale)
    expected_kl = kl_closed_form(mu, var)
    np.testing.assert_allclose(reconstruction.numpy(), -log_lik.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(kl.numpy(), expected_kl, rtol=1e-4, atol=1e-5)
    weight = 1.0 if kl_scale is None else kl_scale
    np.testing.assert_allclose(loss.numpy(), -log_lik.mean(axis=1) + weight * expected_kl,
                               rtol=1e-5)


def test_the_one_sample_elbo_is_the_articles_loss(model, images):
    x, eps = batch(images, 1)
    eps = eps.reshape(12, 3)
    loss, (reconstruction, kl), logits = Elbo(1).per_image(model, x, eps)
    article_reconstruction, article_kl, article_logits = model(x, eps)
    np.testing.assert_array_equal(reconstruction.numpy(), article_reconstruction.numpy())
    np.testing.assert_array_equal(loss.numpy(), (article_reconstruction + article_kl).numpy())
    np.testing.assert_array_equal(logits.numpy(), article_logits.numpy())


@pytest.mark.parametrize("kl_scale", [None, 0.3])
def test_the_iwae_loss_is_minus_the_log_mean_of_the_k_weights(bernoulli_model, images,
                                                              kl_scale):
    x, eps = batch(images, K)
    log_w, log_lik, _, _ = numpy_log_weights(bernoulli_model, x, eps.astype(np.float64),
                                             1.0 if kl_scale is None else kl_scale)
    loss, (reconstruction, _), _ = ImportanceWeighted(K).per_image(
        bernoulli_model, x, eps.reshape(12 * K, 3), kl_scale)
    np.testing.assert_allclose(loss.numpy(), -numpy_iwae(log_w), rtol=1e-5)
    np.testing.assert_allclose(reconstruction.numpy(), -log_lik.mean(axis=1), rtol=1e-5)


def test_the_iwae_loss_is_below_the_elbos_and_equals_it_at_one_sample(bernoulli_model, images):
    x, eps = batch(images, K)
    log_w, _, _, _ = numpy_log_weights(bernoulli_model, x, eps.astype(np.float64))
    iwae, _, _ = ImportanceWeighted(K).per_image(bernoulli_model, x, eps.reshape(12 * K, 3))
    assert np.all(iwae.numpy() < -log_w.mean(axis=1))  # Jensen: log mean w >= mean log w
    one, _, _ = ImportanceWeighted(1).per_image(bernoulli_model, x, eps[:, 0])
    np.testing.assert_allclose(one.numpy(), -log_w[:, 0], rtol=1e-5)


def test_the_objective_key_builds_its_piece_with_train_samples():
    for value, piece in (("elbo", Elbo), ("iwae", ImportanceWeighted)):
        built = family.build("objective", {"objective": value, "train_samples": 5})
        assert isinstance(built, piece) and built.samples == 5


def test_a_k_sample_objective_has_a_gradient_for_every_weight(bernoulli_model, images):
    x, eps = batch(images, K)
    for objective in (Elbo(K), ImportanceWeighted(K)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(objective.per_image(bernoulli_model, x,
                                                      eps.reshape(12 * K, 3), 0.5)[0])
        gradients = tape.gradient(loss, bernoulli_model.trainable_variables)
        assert all(g is not None and np.all(np.isfinite(g.numpy())) for g in gradients)


def gradients(model, loss_of_weights) -> dict:
    """The gradient of loss_of_weights() for each of the model's weights, by path."""
    with tf.GradientTape() as tape:
        loss = loss_of_weights()
    weights = model.trainable_variables
    return {w.path: g.numpy() for w, g in zip(weights, tape.gradient(loss, weights))}


def test_dreg_keeps_the_decoders_iwae_gradient_and_weighs_the_encoders_by_w_squared(
        bernoulli_model, images):
    """Against the definition, each log weight differentiated on its own: the decoder gets
    sum_i w~_i d log w_i, the encoder sum_i w~_i^2 d log w_i / d z_i dz_i, q's parameters held
    fixed in log q."""
    model = bernoulli_model
    x, eps = batch(images, K)
    x, noise = x[:2], eps[:2]  # 2 images, K samples each
    dreg = gradients(model, lambda: tf.reduce_sum(DoublyReparameterized(K).per_image(
        model, x, noise.reshape(2 * K, 3))[0]))
    iwae = gradients(model, lambda: tf.reduce_sum(ImportanceWeighted(K).per_image(
        model, x, noise.reshape(2 * K, 3))[0]))

    def log_weight(image: int, sample: int):
        mu, var = model.encode(x[image:image + 1])
        z = mu + tf.sqrt(var) * noise[image, sample]
        fixed_mu, fixed_var = tf.stop_gradient(mu), tf.stop_gradient(var)
        output = model.decoder_output(z)
        log_lik = model.likelihood.log_prob(x[image:image + 1], output)
        log_prior = -0.5 * tf.reduce_sum(tf.square(z) + np.log(2 * np.pi), axis=-1)
        log_q = -0.5 * tf.reduce_sum(tf.square(z - fixed_mu) / fixed_var
                                     + tf.math.log(fixed_var) + np.log(2 * np.pi), axis=-1)
        return tf.reduce_sum(log_lik + log_prior - log_q)

    expected = dreg_expected(model, log_weight, lambda path: "decoder" in path)
    for path in dreg:
        np.testing.assert_allclose(-dreg[path], expected[path], rtol=2e-4, atol=1e-5)
        if "decoder" in path:
            np.testing.assert_allclose(dreg[path], iwae[path], rtol=2e-4, atol=1e-5)
    encoder = [path for path in dreg if "decoder" not in path]
    assert encoder and not all(np.allclose(dreg[p], iwae[p]) for p in encoder)


def dreg_expected(model, log_weight, generative) -> dict:
    """DReG's gradient from each log weight of two images differentiated on its own: the sum
    over samples of the normalised weight (generative weights) or its square (the rest) times
    that sample's gradient."""
    expected = {}
    for image in range(2):
        log_w = np.array([float(log_weight(image, i)) for i in range(K)])
        normalized = np.exp(log_w - log_w.max()) / np.exp(log_w - log_w.max()).sum()
        for sample in range(K):
            for path, g in gradients(model, lambda: log_weight(image, sample)).items():
                term = normalized[sample] ** (1 if generative(path) else 2) * g
                expected[path] = expected.get(path, 0) + term
    return expected


def tf_log_normal(z, mu, var):
    return tf.reduce_sum(-0.5 * tf.square(z - mu) / var - 0.5 * tf.math.log(2 * np.pi * var),
                         axis=-1)


def test_dreg_with_two_stochastic_layers_holds_every_q_layer_fixed(two_layer_model, images):
    """With z1 and z2, log q(z1|x) + log q(z2|z1) is taken with q's weights held fixed (here:
    a copy of the model with the same weights, not differentiated); p(z1|z2) is generative,
    like the decoder, and keeps the IWAE's gradient."""
    model = two_layer_model
    held = VAE(**model.config)
    held.set_weights(model.get_weights())
    x, _ = batch(images, K)
    x = x[:2]
    noise = np.random.default_rng(9).standard_normal((2, K, 7)).astype(np.float32)
    dreg = gradients(model, lambda: tf.reduce_sum(DoublyReparameterized(K).per_image(
        model, x, noise.reshape(2 * K, 7))[0]))

    def log_weight(image: int, sample: int):
        x_i, eps = x[image:image + 1], noise[image, sample][None]
        mu, var = model.encode(x_i)
        z1 = mu + tf.sqrt(var) * eps[:, :4]
        mu2, var2 = model.posterior_layers[0](z1)
        z2 = mu2 + tf.sqrt(var2) * eps[:, 4:]
        log_q = (tf_log_normal(z1, *held.encode(x_i))
                 + tf_log_normal(z2, *held.posterior_layers[0](z1)))
        log_p = tf_log_normal(z1, *model.prior_layers[0](z2)) + tf_log_normal(z2, 0.0, 1.0)
        log_lik = model.likelihood.log_prob(x_i, model.decoder_output(z1))
        return tf.reduce_sum(log_lik + log_p - log_q)

    def generative(path: str) -> bool:
        return path.startswith(("decoder", "p_z"))

    expected = dreg_expected(model, log_weight, generative)
    assert any(path.startswith("q_z2") for path in dreg)
    assert any(path.startswith("p_z1") for path in dreg)
    for path in dreg:
        np.testing.assert_allclose(-dreg[path], expected[path], rtol=2e-4, atol=1e-5)
