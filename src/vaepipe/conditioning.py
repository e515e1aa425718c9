"""What the decoder sees besides z: the article's digit classifier c(x), or nothing.

Each variant is one class behind the same interface, picked in one place (family.py, from
`conditioning` in params.yaml); the model, training, evaluation and the figures ask it
rather than test which one it is.
"""

import itertools
from collections.abc import Iterator

import numpy as np

from vaepipe.data import NUM_DIGITS
from vaepipe.tf_runtime import keras, tf


def digit_cross_entropy(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32),
                                                          logits=logits)


def one_hot(digits) -> np.ndarray:
    return np.eye(NUM_DIGITS, dtype=np.float32)[np.asarray(digits)]


class Classifier:
    """The article's: a classifier c(x) trained on the labels beside the VAE, its digit
    probabilities given to the decoder with z; so p(x|z, c) can be told which digit to draw."""

    width = NUM_DIGITS  # decoder inputs besides z
    digits = tuple(range(NUM_DIGITS))  # what the decoder can be told to draw
    loss_terms = ("reconstruction", "KL", "classifier cross-entropy")
    split_metrics = ("vae_loss", "classifier_loss", "accuracy")  # logged per measured epoch
    nll_target = "-log p(x | c(x)), conditional on the classifier's c(x)"

    def build_network(self, hidden_layers, activation: str) -> keras.Sequential:
        layers = [keras.layers.Dense(size, activation=activation) for size in hidden_layers]
        return keras.Sequential([*layers, keras.layers.Dense(NUM_DIGITS)],
                                name="digit_classifier")

    def training_loss(self, vae_loss, logits, labels, weight: float):
        """The article's loss, mean(VAE loss) + weight * mean(cross-entropy), and the terms
        watched for divergence."""
        cross_entropy = digit_cross_entropy(labels, logits)
        loss = tf.reduce_mean(vae_loss) + weight * tf.reduce_mean(cross_entropy)
        return loss, [cross_entropy]

    def per_image_measures(self, vae_loss, logits, labels) -> tuple:
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32),
                           tf.cast(labels, tf.int32))
        return vae_loss, digit_cross_entropy(labels, logits), correct

    def split_measures(self, columns: list[np.ndarray], weight: float) -> dict:
        """Split means (float64) of `per_image_measures`' columns, named as logged."""
        vae, cross_entropy, correct = columns
        return {"vae_loss": float(np.mean(vae, dtype=np.float64)),
                "classifier_loss": weight * float(np.mean(cross_entropy, dtype=np.float64)),
                "accuracy": float(np.mean(correct, dtype=np.float64))}

    def predictions(self, model, x) -> tuple:
        """The classifier's digit for each image, as a one-element tuple."""
        return (tf.argmax(model.classify(x), axis=1, output_type=tf.int32),)

    def decoder_input(self, digits) -> np.ndarray:
        return one_hot(digits)

    def sample_rows(self, model, seed: int, rows_done: int) -> Iterator[np.ndarray]:
        """One new z (and the noise of the layers under it) per row, drawn as digits 0-9,
        after the `rows_done` rows already drawn."""
        rng = np.random.default_rng(seed)
        for row in itertools.count():
            z = rng.standard_normal(model.z_dim).astype(np.float32)
            noise = model.ancestral_noise(rng, 1)
            if row >= rows_done:
                yield model.decode(np.tile(z, (NUM_DIGITS, 1)), one_hot(self.digits),
                                   np.tile(noise, (NUM_DIGITS, 1))).numpy()


class Unconditioned:
    """No classifier and no labels: the decoder sees z alone, the bound is one of log p(x)."""

    width = 0
    digits = ()
    loss_terms = ("reconstruction", "KL")
    split_metrics = ("vae_loss",)
    nll_target = "-log p(x)"

    def build_network(self, hidden_layers, activation: str) -> None:
        return None

    def training_loss(self, vae_loss, logits, labels, weight: float):
        return tf.reduce_mean(vae_loss), []

    def per_image_measures(self, vae_loss, logits, labels) -> tuple:
        return (vae_loss,)

    def split_measures(self, columns: list[np.ndarray], weight: float) -> dict:
        return {"vae_loss": float(np.mean(columns[0], dtype=np.float64))}

    def predictions(self, model, x) -> tuple:
        return ()

    def decoder_input(self, digits) -> None:
        return None

    def sample_rows(self, model, seed: int, rows_done: int) -> Iterator[np.ndarray]:
        """The same ten z's (and noise under them) in every row, so that the rows show
        training progress."""
        rng = np.random.default_rng(seed)
        latents = rng.standard_normal((NUM_DIGITS, model.z_dim)).astype(np.float32)
        noise = model.ancestral_noise(rng, NUM_DIGITS)
        while True:
            yield model.decode(latents, noise=noise).numpy()
