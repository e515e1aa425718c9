import numpy as np
import pytest

from vaepipe import family
from vaepipe.conditioning import Classifier, Unconditioned, digit_cross_entropy
from vaepipe.model import VAE
from vaepipe.tf_runtime import tf

REC, KL = tf.constant([10.0, 20.0]), tf.constant([1.0, 3.0])


def tiny_vae(conditioning: str) -> VAE:
    tf.keras.utils.set_random_seed(0)
    return VAE([8], [8], [8], "sigmoid", 0.5, 3, conditioning=conditioning)


def test_each_params_choice_builds_its_variant():
    assert isinstance(family.build("conditioning", {"conditioning": "classifier"}), Classifier)
    assert isinstance(family.build("conditioning", {"conditioning": "none"}), Unconditioned)


def test_cross_entropy_matches_numpy():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    labels = np.array([0, 2])
    log_softmax = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -log_softmax[np.arange(2), labels]
    np.testing.assert_allclose(digit_cross_entropy(labels, tf.constant(logits)).numpy(), expected)


def test_the_classifier_loss_is_the_articles_weighted_sum():
    logits = tf.constant([[3.0, 0.0] + [0.0] * 8, [0.0] * 10])
    labels = np.array([0, 5])
    cross_entropy = digit_cross_entropy(labels, logits).numpy()
    loss, terms = Classifier().training_loss(REC + KL, logits, labels, 10.0)
    assert loss.numpy() == pytest.approx(17.0 + 10.0 * cross_entropy.mean(), rel=1e-6)
    np.testing.assert_allclose(terms[0].numpy(), cross_entropy)


def test_without_conditioning_the_loss_is_the_negative_elbo_alone():
    loss, terms = Unconditioned().training_loss(REC + KL, tf.zeros([2, 0]), np.zeros(2), 10.0)
    assert loss.numpy() == pytest.approx(17.0) and terms == []


def test_split_measures_average_per_image_values_and_weigh_the_cross_entropy():
    columns = [np.array([100.0, 102.0]), np.array([0.2, 0.4]), np.array([True, False])]
    measures = Classifier().split_measures(columns, 10.0)
    assert measures == pytest.approx({"vae_loss": 101.0, "classifier_loss": 3.0,
                                      "accuracy": 0.5})
    assert list(measures) == list(Classifier.split_metrics)
    assert Unconditioned().split_measures(columns[:1], 10.0) == {"vae_loss": 101.0}


def test_classifier_sample_rows_draw_a_new_z_per_row_as_each_digit():
    model = tiny_vae("classifier")
    rows = Classifier().sample_rows(model, 7, rows_done=0)
    first, second = next(rows), next(rows)
    z = np.random.default_rng(7).standard_normal((2, 3)).astype(np.float32)
    for row, latent in ((first, z[0]), (second, z[1])):
        expected = model.decode(np.tile(latent, (10, 1)), np.eye(10, dtype=np.float32)).numpy()
        np.testing.assert_array_equal(row, expected)
    resumed = Classifier().sample_rows(model, 7, rows_done=1)
    np.testing.assert_array_equal(next(resumed), second)


def test_unconditional_sample_rows_are_ten_fixed_latents():
    model = tiny_vae("none")
    rows = Unconditioned().sample_rows(model, 42, rows_done=0)
    first, second = next(rows), next(rows)
    assert first.shape == (10, 784)
    np.testing.assert_array_equal(first, second)  # same z's, same weights
    assert np.any(first[0] != first[1])
    resumed = Unconditioned().sample_rows(model, 42, rows_done=5)
    np.testing.assert_array_equal(next(resumed), first)


def test_only_the_classifier_predicts_digits_and_tells_the_decoder_one():
    x = np.random.default_rng(0).random((4, 784)).astype(np.float32)
    model = tiny_vae("classifier")
    (predicted,) = Classifier().predictions(model, x)
    np.testing.assert_array_equal(predicted.numpy(), np.argmax(model.classify(x).numpy(), axis=1))
    np.testing.assert_array_equal(Classifier().decoder_input([2]), np.eye(10)[[2]])
    assert Unconditioned().predictions(tiny_vae("none"), x) == ()
    assert Unconditioned().decoder_input([2]) is None


def two_layer_vae_whose_top_layer_is_unused(conditioning: str) -> VAE:
    """p(z1|z2) the same Gaussian whatever z2 (its hidden kernel zero): a collapsed top layer."""
    tf.keras.utils.set_random_seed(2)
    model = VAE([8], [8], [8], "tanh", 0.5, [4, 3], likelihood="bernoulli",
                conditioning=conditioning, latent_hidden_layers=[5])
    hidden = model.prior_layers[0].hidden[0]
    hidden.kernel.assign(tf.zeros_like(hidden.kernel))
    return model


def test_classifier_sample_rows_draw_every_layer_so_rows_differ_under_a_collapsed_top():
    model = two_layer_vae_whose_top_layer_is_unused("classifier")
    rows = Classifier().sample_rows(model, 9, rows_done=0)
    first, second = next(rows), next(rows)
    assert np.all(np.any(first != second, axis=1))  # the means of p would repeat the row
    rng = np.random.default_rng(9)
    for row in (first, second):  # one z and its noise per row, as each digit
        z, noise = rng.standard_normal((1, 3)).astype(np.float32), model.ancestral_noise(rng, 1)
        expected = model.decode(np.tile(z, (10, 1)), np.eye(10, dtype=np.float32),
                                np.tile(noise, (10, 1))).numpy()
        np.testing.assert_array_equal(row, expected)
    np.testing.assert_array_equal(next(Classifier().sample_rows(model, 9, rows_done=1)), second)


def test_unconditional_sample_rows_draw_every_layer_so_a_collapsed_top_shows_ten_images():
    model = two_layer_vae_whose_top_layer_is_unused("none")
    row = next(Unconditioned().sample_rows(model, 9, rows_done=0))
    assert len({image.tobytes() for image in row}) == 10  # the means of p: one image ten times
    rng = np.random.default_rng(9)
    z = rng.standard_normal((10, 3)).astype(np.float32)
    np.testing.assert_array_equal(row, model.decode(z, noise=model.ancestral_noise(rng, 10)))
