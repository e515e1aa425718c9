"""The networks around the latent space: dense layers only (the article's) or convolutions.

Each architecture builds the encoder's hidden layers and the decoder from a model's config, and
says whether XLA compiles it well on a CPU (devices.use_xla asks).
"""

import math

from vaepipe.data import IMAGE_SHAPE
from vaepipe.tf_runtime import keras

IMAGE_PIXELS = math.prod(IMAGE_SHAPE)
CONV_SIDE = IMAGE_SHAPE[0] // 4  # two stride-2 convolutions halve 28 twice


def dense_layers(hidden_layers, activation: str) -> list:
    return [keras.layers.Dense(size, activation=activation) for size in hidden_layers]


class MLP:
    """The article's: dense hidden layers, then the decoder's 784 outputs."""

    xla_on_cpu = True  # XLA fuses the element-wise work of a dense step loop

    def encoder(self, config: dict) -> keras.Sequential:
        return keras.Sequential(dense_layers(config["encoder_layers"], config["activation"]),
                                name="encoder")

    def decoder(self, config: dict, output_activation) -> keras.Sequential:
        return keras.Sequential([*dense_layers(config["decoder_layers"], config["activation"]),
                                 keras.layers.Dense(IMAGE_PIXELS, activation=output_activation)],
                                name="decoder")


class Conv:
    """The keras-io VAE's: two stride-2 convolutions, then `encoder_layers`; the decoder
    mirrors it through a 7 x 7 feature map and transposed convolutions."""

    xla_on_cpu = False  # XLA's CPU convolutions made one epoch take over 12 minutes

    def __init__(self, conv_filters):
        self.first, self.second = conv_filters

    def encoder(self, config: dict) -> keras.Sequential:
        activation = config["activation"]
        return keras.Sequential([
            keras.layers.Reshape((*IMAGE_SHAPE, 1)),
            keras.layers.Conv2D(self.first, 3, strides=2, padding="same", activation=activation),
            keras.layers.Conv2D(self.second, 3, strides=2, padding="same", activation=activation),
            keras.layers.Flatten(),
            *dense_layers(config["encoder_layers"], activation),
        ], name="encoder")

    def decoder(self, config: dict, output_activation) -> keras.Sequential:
        activation, second = config["activation"], self.second
        return keras.Sequential([
            *dense_layers(config["decoder_layers"], activation),
            keras.layers.Dense(CONV_SIDE * CONV_SIDE * second, activation=activation),
            keras.layers.Reshape((CONV_SIDE, CONV_SIDE, second)),
            keras.layers.Conv2DTranspose(second, 3, strides=2, padding="same",
                                         activation=activation),
            keras.layers.Conv2DTranspose(self.first, 3, strides=2, padding="same",
                                         activation=activation),
            keras.layers.Conv2DTranspose(1, 3, padding="same", activation=output_activation),
            keras.layers.Flatten(),
        ], name="decoder")
