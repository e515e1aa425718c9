"""The decoder's likelihood p(x|z): what its output means and how it scores an image.

Each likelihood says which activation ends the decoder, log p(x|decoder output) per image and
the mean image E[x|z] that figures draw, and what its NLL means on the data each binarization
gives (keyed by binarization). family.py picks one.
"""

import math

from vaepipe.tf_runtime import tf


class Gaussian:
    """The article's N(f(z), std^2 I): the decoder outputs the mean through a sigmoid."""

    output_activation = "sigmoid"
    data_meaning = {
        "dynamic": "binary pixels under a Gaussian density: not comparable with the papers",
        "none": "pixel intensities under a Gaussian density: not comparable with the "
                "binarized-MNIST papers",
    }

    def __init__(self, decoder_std: float):
        self.std = float(decoder_std)

    def log_prob(self, x, output):
        return -gaussian_nll(x, output, self.std)

    def mean(self, output):
        return output


class Bernoulli:
    """Independent Bernoulli pixels: the decoder outputs logits l, so that log p is computed
    from them without ever rounding sigmoid(l) to 0 or 1."""

    output_activation = None
    data_meaning = {
        "dynamic": "binary pixels (one fixed Bernoulli draw of the split) under a Bernoulli "
                   "likelihood: comparable with the VAE and IWAE papers' binarized-MNIST NLL",
        "none": "pixel intensities in [0, 1] scored by a Bernoulli likelihood (not a normalised "
                "density of them): not comparable with the papers",
    }

    def log_prob(self, x, output):
        # x log sigmoid(l) + (1 - x) log sigmoid(-l) = -(max(l, 0) - l x + log(1 + e^-|l|));
        # the op does not broadcast, and evaluation scores one x against K outputs.
        x = tf.broadcast_to(x, tf.shape(output))
        return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=output),
                              axis=-1)

    def mean(self, output):
        return tf.sigmoid(output)


def gaussian_nll(x, mean, std: float):
    """-sum over pixels of log N(x; mean, std^2), one value per image."""
    log_norm = 0.5 * math.log(2.0 * math.pi * std * std)
    return tf.reduce_sum(log_norm + tf.square(x - mean) / (2.0 * std * std), axis=-1)
