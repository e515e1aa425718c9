"""Where the decoder's output biases start, and that training starts there."""

import math

import numpy as np
import pytest

from vaepipe import family
from vaepipe.model import VAE
from vaepipe.training import train

from test_training import tiny_params, write_prepared

# Three kinds of pixel: always off, always on, and on in one image of four.
OFF, ON, QUARTER = 0, 1, 2


def images_with_known_means(n=8) -> np.ndarray:
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    images[:, 0, ON] = 255
    images[::4, 0, QUARTER] = 255
    return images


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def tiny_model(likelihood: str) -> VAE:
    return VAE(encoder_layers=[8], decoder_layers=[8], digit_classification_layers=[8],
               activation="tanh", decoder_std=0.5, z_dim=2, likelihood=likelihood,
               conditioning="none")


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_data_mean_starts_each_bias_at_the_logit_of_its_pixels_clipped_mean(likelihood):
    model = tiny_model(likelihood)
    family.build("output_bias_init", {"output_bias_init": "data_mean"}).initialise(
        model, images_with_known_means())
    bias = model.output_bias.numpy()
    np.testing.assert_allclose(bias[[OFF, ON, QUARTER]],
                               [logit(0.001), logit(0.999), logit(0.25)], rtol=1e-6)
    # The decoder's mean image is the data's mean where its last weights give nothing.
    model.decoder_net.layers[-1].kernel.assign(np.zeros_like(model.decoder_net.layers[-1].kernel))
    mean_image = model.mean_image(np.zeros((1, 2), np.float32)).numpy()[0]
    np.testing.assert_allclose(mean_image[[OFF, ON, QUARTER]], [0.001, 0.999, 0.25], rtol=1e-5)


def test_zeros_leaves_kerass_zero_biases():
    model = tiny_model("bernoulli")
    family.build("output_bias_init", {"output_bias_init": "zeros"}).initialise(
        model, images_with_known_means())
    assert not model.output_bias.numpy().any()


@pytest.mark.parametrize("init, expected", [("zeros", [0, 0, 0]),
                                            ("data_mean", [logit(0.001), logit(0.999),
                                                           logit(0.25)])])
def test_training_starts_from_the_chosen_biases(tmp_path, init, expected):
    # A rate so small that one epoch moves no bias by 1e-6: what training ends with is where it
    # started.
    images = images_with_known_means(n=40)
    write_prepared(tmp_path / "prepared", images, np.zeros(len(images), np.uint8))
    params = tiny_params(epochs=1, learning_rate=1e-9, likelihood="bernoulli",
                         conditioning="none", output_bias_init=init)
    model = train(params, tmp_path / "prepared", tmp_path / "model", tmp_path / "samples.npy",
                  tmp_path / "live", tmp_path / "checkpoint")
    np.testing.assert_allclose(model.output_bias.numpy()[[OFF, ON, QUARTER]], expected,
                               atol=1e-6)
