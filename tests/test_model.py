import json
import math

import numpy as np
import pytest

import vaepipe
from vaepipe.errors import PipelineError
from vaepipe.likelihoods import gaussian_nll
from vaepipe.model import VAE, kl_to_standard_normal, load_model, save_model, to_float_images
from vaepipe.tf_runtime import tf

from test_evaluation import numpy_gaussian_layer


def small_vae(z_dim=3, layers=(16,)) -> VAE:
    tf.keras.utils.set_random_seed(0)
    return VAE(layers, layers, layers, "sigmoid", 0.5, z_dim)


def test_gaussian_nll_matches_the_density_formula():
    rng = np.random.default_rng(0)
    x, mean = rng.random((4, 784)), rng.random((4, 784))
    std = 0.5
    density = np.exp(-(x - mean) ** 2 / (2 * std**2)) / (std * math.sqrt(2 * math.pi))
    expected = -np.log(density).sum(axis=1)
    got = gaussian_nll(tf.constant(x), tf.constant(mean), std).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_kl_closed_form_agrees_with_monte_carlo():
    rng = np.random.default_rng(1)
    mu = np.array([[0.5, -1.0, 0.0]])
    var = np.array([[0.3, 2.0, 1.0]])
    z = mu + np.sqrt(var) * rng.standard_normal((400_000, 3))
    log_q = -0.5 * (((z - mu) ** 2) / var + np.log(2 * np.pi * var)).sum(axis=1)
    log_p = -0.5 * (z**2 + np.log(2 * np.pi)).sum(axis=1)
    monte_carlo = np.mean(log_q - log_p)
    closed_form = kl_to_standard_normal(tf.constant(mu), tf.constant(var)).numpy()[0]
    assert closed_form == pytest.approx(monte_carlo, abs=0.01)
    assert kl_to_standard_normal(tf.zeros((1, 3)), tf.ones((1, 3))).numpy()[0] == 0.0


@pytest.mark.parametrize("z_dim, layers", [(1, (8,)), (10, (32, 16)), (20, (4,))])
def test_shapes(z_dim, layers):
    model = small_vae(z_dim, layers)
    x = np.random.default_rng(2).random((5, 784)).astype(np.float32)
    mu, var = model.encode(x)
    assert mu.shape == var.shape == (5, z_dim)
    assert np.all(var.numpy() >= 1e-5)
    assert model.classify(x).shape == (5, 10)
    decoded = model.decode(mu, model.digit_probs(x)).numpy()
    assert decoded.shape == (5, 784)
    assert decoded.min() >= 0.0 and decoded.max() <= 1.0
    reconstruction, kl, logits = model(x, tf.zeros((5, z_dim)))
    assert reconstruction.shape == kl.shape == (5,) and logits.shape == (5, 10)


def test_call_uses_the_reparameterised_sample():
    model = small_vae()
    x = np.random.default_rng(3).random((2, 784)).astype(np.float32)
    eps = np.random.default_rng(4).standard_normal((2, 3)).astype(np.float32)
    mu, var = model.encode(x)
    expected = gaussian_nll(x, model.decode(mu + tf.sqrt(var) * eps, model.digit_probs(x)), 0.5)
    np.testing.assert_allclose(model(x, eps)[0].numpy(), expected.numpy(), rtol=1e-6)


def test_save_and_load_round_trip_exactly(tmp_path):
    model = small_vae(z_dim=4, layers=(8, 6))
    save_model(model, tmp_path / "vae")
    loaded = vaepipe.load_model(tmp_path / "vae")
    assert loaded.config == model.config
    assert len(loaded.weights) == len(model.weights)
    for before, after in zip(model.weights, loaded.weights):
        np.testing.assert_array_equal(before.numpy(), after.numpy())


def test_load_model_without_a_model_names_the_folder(tmp_path):
    with pytest.raises(PipelineError, match=r"no trained model here"):
        vaepipe.load_model(tmp_path)


def test_to_float_images_scales_uint8_to_unit_interval():
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    images[0, 0, :3] = [255, 51, 102]
    images[1, 27, 27] = 255
    floats = to_float_images(images)
    assert floats.shape == (2, 784) and floats.dtype == np.float32
    np.testing.assert_allclose(floats[0, :4], [1.0, 0.2, 0.4, 0.0], rtol=1e-6)
    assert floats[1, 783] == 1.0 and floats.sum() == pytest.approx(2.6)


def damage(folder, case):
    """Damage a saved model the way disks, editors and copies do."""
    weights, config = folder / "model.weights.h5", folder / "config.json"
    if case == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:2000])
    elif case == "garbage weights":
        weights.write_bytes(b"\x00not hdf5" * 100)
    elif case == "missing weights":
        weights.unlink()
    elif case == "malformed config":
        config.write_text('{"z_dim": 4,')
    elif case == "config with another z_dim":
        config.write_text(config.read_text().replace('"z_dim": 4', '"z_dim": 5'))
    elif case == "config with an unknown key":
        config.write_text(config.read_text().replace('"z_dim"', '"z_dimm"'))
    elif case in CONFIG_EDITS:
        config.write_text(json.dumps(CONFIG_EDITS[case](json.loads(config.read_text()))))


CONFIG_EDITS = {  # a hand-edited config.json, each past what params.yaml accepts
    "config past a bound": lambda config: {**config, "z_dim": 300},
    "config of a wider layer than params.yaml allows":
        lambda config: {**config, "encoder_layers": [4097]},
    "config with an unknown activation": lambda config: {**config, "activation": "relux"},
    "config that is no mapping": lambda config: [8, 8],
}


@pytest.mark.parametrize("case, message", [
    ("truncated weights", r"model.weights.h5: cannot load the weights of the model that "
                          r"config.json describes \(.*truncated file.*\)"),
    ("garbage weights", r"model.weights.h5: cannot load the weights .*\(.*signature"),
    ("missing weights", r"model.weights.h5: missing"),
    ("malformed config", r"config.json: not valid JSON \("),
    ("config with another z_dim", r"model.weights.h5: cannot load the weights of the model that "
                                  r"config.json describes"),
    ("config with an unknown key", r"config.json: z_dim: missing"),
    ("config past a bound", r"config.json: z_dim: must be at most 256 \(the latent-traversal "
                            r"figure draws one row per dimension\), got 300"),
    ("config of a wider layer than params.yaml allows",
     r"config.json: encoder_layers\[0\]: must be at most 4096 \(wider or deeper MLPs take hours "
     r"per epoch on a CPU\), got 4097"),
    ("config with an unknown activation", r"config.json: activation: must be one of sigmoid, "
                                          r"relu, .*; got 'relux'"),
    ("config that is no mapping", r"config.json: must be a mapping of keys, got \[8, 8\]"),
])
def test_a_damaged_model_is_one_line_naming_the_file(tmp_path, case, message):
    save_model(small_vae(z_dim=4), tmp_path / "vae")
    damage(tmp_path / "vae", case)
    with pytest.raises(PipelineError, match=rf"^{tmp_path}/vae/{message}.*; rerun `dvc repro "
                                            rf"train` or `dvc checkout models/vae`$") as error:
        vaepipe.load_model(tmp_path / "vae")
    assert "\n" not in str(error.value)


def test_the_articles_config_file_is_as_before_and_an_old_one_loads_as_the_article(tmp_path):
    save_model(small_vae(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert not {"likelihood", "conditioning", "architecture", "conv_filters"} & set(config)
    loaded = load_model(tmp_path)
    assert (loaded.config["likelihood"], loaded.config["conditioning"]) == ("gaussian",
                                                                           "classifier")
    assert (loaded.config["architecture"], loaded.config["conv_filters"]) == ("mlp", [32, 64])


@pytest.mark.parametrize("likelihood, conditioning", [("bernoulli", "none"),
                                                      ("bernoulli", "classifier"),
                                                      ("gaussian", "none")])
def test_each_member_of_the_family_saves_and_loads_exactly(tmp_path, likelihood, conditioning):
    model = VAE([8], [8], [8], "sigmoid", 0.5, 2, likelihood=likelihood,
                conditioning=conditioning)
    save_model(model, tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.config == model.config
    x = np.random.default_rng(0).random((3, 784)).astype(np.float32)
    eps = np.zeros((3, 2), np.float32)
    for got, expected in zip(loaded(x, eps), model(x, eps)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    means = loaded.decode(np.zeros((1, 2), np.float32),
                          loaded.conditioning.decoder_input([3]))
    assert means.shape == (1, 784) and 0 <= float(np.min(means)) <= float(np.max(means)) <= 1


def test_an_unconditional_model_has_no_classifier_and_decodes_z_alone():
    model = VAE([8], [8], [8], "sigmoid", 0.5, 2, conditioning="none")
    assert model.classifier_net is None and model.conditioning.digits == ()
    assert not any("classifier" in weight.path for weight in model.weights)
    assert model.decoder_net.layers[0].kernel.shape == (2, 8)


def tiny_conv_vae(likelihood="gaussian", conditioning="classifier") -> VAE:
    tf.keras.utils.set_random_seed(0)
    return VAE([8], [8], [8], "relu", 0.5, 2, likelihood=likelihood, conditioning=conditioning,
               architecture="conv", conv_filters=[2, 3])


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["gaussian", "bernoulli"])
def test_each_architecture_encodes_and_decodes_to_the_image_shapes(architecture, likelihood):
    model = VAE([8], [8], [8], "relu", 0.5, 2, likelihood=likelihood, architecture=architecture,
                conv_filters=[2, 3])
    x = np.random.default_rng(5).random((4, 784)).astype(np.float32)
    mu, var = model.encode(x)
    assert mu.shape == var.shape == (4, 2) and np.all(var.numpy() > 0)
    output = model.decoder_output(mu, model.digit_probs(x)).numpy()
    means = model.decode(mu, model.digit_probs(x)).numpy()
    assert output.shape == means.shape == (4, 784)
    assert 0 <= means.min() <= means.max() <= 1
    if likelihood == "bernoulli":  # logits: the mean is their sigmoid
        np.testing.assert_allclose(means, tf.sigmoid(output).numpy(), rtol=1e-6)


def test_conv_has_convolutions_and_other_parameters_than_the_mlp():
    conv, mlp = tiny_conv_vae(), VAE([8], [8], [8], "relu", 0.5, 2)
    kinds = {type(layer).__name__ for net in (conv.encoder_net, conv.decoder_net)
             for layer in net.layers}
    assert {"Conv2D", "Conv2DTranspose"} <= kinds
    assert not any("conv" in weight.path for weight in mlp.weights)
    assert conv.count_params() != mlp.count_params()
    assert conv.classifier_net.layers[0].kernel.shape == (784, 8)  # the classifier stays an MLP


@pytest.mark.parametrize("likelihood, conditioning", [("gaussian", "classifier"),
                                                      ("bernoulli", "none")])
def test_conv_saves_and_loads_exactly(tmp_path, likelihood, conditioning):
    model = tiny_conv_vae(likelihood, conditioning)
    save_model(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["architecture"], config["conv_filters"]) == ("conv", [2, 3])
    loaded = load_model(tmp_path)
    assert loaded.config == model.config
    for before, after in zip(model.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(before.numpy(), after.numpy())
    x = np.random.default_rng(6).random((3, 784)).astype(np.float32)
    eps = np.zeros((3, 2), np.float32)
    for got, expected in zip(loaded(x, eps), model(x, eps)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_an_unknown_architecture_in_a_config_is_one_line(tmp_path):
    save_model(small_vae(), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "architecture": "rnn"}))
    with pytest.raises(PipelineError, match=r"config.json: architecture: must be one of mlp, "
                                            r"conv; got 'rnn'; rerun `dvc repro train`"):
        load_model(tmp_path)


def test_decode_draws_each_layer_under_the_top_from_its_noise_or_takes_the_means():
    tf.keras.utils.set_random_seed(4)
    model = VAE([8], [8], [8], "tanh", 0.5, [4, 3, 2], likelihood="bernoulli",
                conditioning="none", latent_hidden_layers=[5])
    rng = np.random.default_rng(0)
    z3 = rng.standard_normal((6, 2))
    noise = model.ancestral_noise(rng, 6)
    assert noise.shape == (6, 7) and noise.dtype == np.float32

    def numpy_decode(draw: bool) -> np.ndarray:
        z2_mean, z2_var = numpy_gaussian_layer(model.prior_layers[1], z3)
        z2 = z2_mean + draw * np.sqrt(z2_var) * noise[:, 4:]
        z1_mean, z1_var = numpy_gaussian_layer(model.prior_layers[0], z2)
        z1 = z1_mean + draw * np.sqrt(z1_var) * noise[:, :4]
        (kernel, bias), (out_kernel, out_bias) = [
            [np.asarray(w, np.float64) for w in dense.get_weights()]
            for dense in model.decoder_net.layers]
        return 1 / (1 + np.exp(-(np.tanh(z1 @ kernel + bias) @ out_kernel + out_bias)))

    z3 = z3.astype(np.float32)
    np.testing.assert_allclose(model.decode(z3, noise=noise).numpy(), numpy_decode(True),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.decode(z3).numpy(), numpy_decode(False), rtol=1e-4, atol=1e-6)


def test_a_single_layer_draws_no_noise_and_leaves_the_generator_where_it_was():
    model = small_vae()
    rng = np.random.default_rng(5)
    assert model.ancestral_noise(rng, 4).shape == (4, 0)
    np.testing.assert_array_equal(rng.standard_normal(3), np.random.default_rng(5).standard_normal(3))
    z = np.ones((4, 3), np.float32)
    digits = model.conditioning.decoder_input([1, 2, 3, 4])
    np.testing.assert_array_equal(model.decode(z, digits, np.zeros((4, 0), np.float32)).numpy(),
                                  model.decode(z, digits).numpy())
