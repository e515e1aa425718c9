"""The article's conditional VAE in Keras 3 / TensorFlow 2, its family, loss terms, save / load.

Encoder q(z|x) = N(mu(x), diag(var(x))), digit classifier c(x) = softmax(logits(x)), decoder
p(x|z, c) = N(f([z, c]), decoder_std^2 I) with f ending in a sigmoid. Images are float32 rows of
784 pixel intensities in [0, 1]. The family (family.py): `likelihood` bernoulli makes f output
logits (likelihoods.py), `conditioning` none drops the classifier, so that the decoder sees z
alone (conditioning.py), `architecture` conv puts convolutions in the encoder and transposed
ones in the decoder (architectures.py).
"""

import json
import math
from pathlib import Path

import numpy as np

from vaepipe import family
from vaepipe.architectures import IMAGE_PIXELS
from vaepipe.data import NUM_DIGITS
from vaepipe.errors import PipelineError
from vaepipe.params import NetworkConfig, validated
from vaepipe.tf_runtime import keras, tf

LOG_2PI = math.log(2.0 * math.pi)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"


def _as_saved(value):
    """A value as config.json holds it: lists for tuples."""
    return list(value) if isinstance(value, tuple) else value


# The keys the family added to config.json, at the article's values: a config without them
# (saved before the family) is the article's model, and a saved config leaves out the ones at
# these values, so that the article's stays as it was.
ARTICLE_FAMILY = {key: _as_saved(family.article_value(key))
                  for key in ("likelihood", "conditioning", "architecture", "conv_filters")}


class VAE(keras.Model):
    """The article's model. `config` holds the hyperparameters it was built with."""

    def __init__(self, encoder_layers, decoder_layers, digit_classification_layers,
                 activation: str, decoder_std: float, z_dim: int,
                 likelihood: str = ARTICLE_FAMILY["likelihood"],
                 conditioning: str = ARTICLE_FAMILY["conditioning"],
                 architecture: str = ARTICLE_FAMILY["architecture"],
                 conv_filters=ARTICLE_FAMILY["conv_filters"], **kwargs):
        super().__init__(**kwargs)
        self.config = {
            "encoder_layers": list(encoder_layers),
            "decoder_layers": list(decoder_layers),
            "digit_classification_layers": list(digit_classification_layers),
            "activation": activation,
            "decoder_std": float(decoder_std),
            "z_dim": int(z_dim),
            "likelihood": likelihood,
            "conditioning": conditioning,
            "architecture": architecture,
            "conv_filters": [int(size) for size in conv_filters],
        }
        self.z_dim = int(z_dim)
        self.decoder_std = float(decoder_std)
        self.likelihood = family.build("likelihood", self.config)
        self.conditioning = family.build("conditioning", self.config)
        self.architecture = family.build("architecture", self.config)
        # Built in this order, so that the article's layer names and weights stay as they were.
        # mu and the variance share the encoder's hidden layers, as in the article.
        self.encoder_net = self.architecture.encoder(self.config)
        self.mu_layer = keras.layers.Dense(z_dim, name="encoder_mu")
        self.log_var_layer = keras.layers.Dense(z_dim, name="encoder_log_var")
        self.classifier_net = self.conditioning.build_network(digit_classification_layers,
                                                              activation)
        self.decoder_net = self.architecture.decoder(self.config,
                                                     self.likelihood.output_activation)
        self.build_all()

    def build_all(self) -> None:
        """Create every weight now, so that weights load into a fresh model at once."""
        self.encoder_net.build((None, IMAGE_PIXELS))
        hidden = self.encoder_net.compute_output_shape((None, IMAGE_PIXELS))
        self.mu_layer.build(hidden)
        self.log_var_layer.build(hidden)
        if self.classifier_net is not None:
            self.classifier_net.build((None, IMAGE_PIXELS))
        self.decoder_net.build((None, self.z_dim + self.conditioning.width))
        self.built = True

    def encode(self, x):
        """q(z|x): the mean and the diagonal variance, each (n, z_dim)."""
        h = self.encoder_net(x)
        return self.mu_layer(h), 1e-5 + tf.exp(self.log_var_layer(h))

    def classify(self, x):
        """Digit logits (n, 10); an unconditional model has no classifier: (n, 0)."""
        if self.classifier_net is None:
            return tf.zeros([tf.shape(x)[0], 0], x.dtype)
        return self.classifier_net(x)

    def digit_probs(self, x):
        """c(x): the classifier's probabilities of the 10 digits (n, 10), or (n, 0)."""
        return tf.nn.softmax(self.classify(x))

    def decoder_output(self, z, digit_probs=None):
        """What the decoder outputs for latents z and digit probabilities c (none for an
        unconditional model): the likelihood's parameters (n, 784)."""
        if digit_probs is not None:
            z = tf.concat([z, tf.cast(digit_probs, z.dtype)], axis=1)
        return self.decoder_net(z)

    def decode(self, z, digit_probs=None):
        """The mean image E[x|z, c] (n, 784) for latents z and digit probabilities c."""
        return self.likelihood.mean(self.decoder_output(z, digit_probs))

    def call(self, x, eps):
        """Per-image reconstruction NLL, KL and digit logits, with z = mu + sqrt(var) * eps."""
        mu, var = self.encode(x)
        z = mu + tf.sqrt(var) * eps
        logits = self.classify(x)
        output = self.decoder_output(z, tf.nn.softmax(logits))
        return -self.likelihood.log_prob(x, output), kl_to_standard_normal(mu, var), logits


def kl_to_standard_normal(mu, var):
    """KL(N(mu, diag(var)) || N(0, I)) in closed form, one value per row."""
    return -0.5 * tf.reduce_sum(1.0 + tf.math.log(var) - tf.square(mu) - var, axis=-1)


def log_weights(model: "VAE", x, mu, var, digit_probs, eps, kl_scale=None):
    """For images x (n, 784) with posterior mu, var (n, z_dim) and digit probabilities (n, 10)
    or (n, 0), and noise eps (n, c, z_dim): each sample's log weight, log p(x|z, c) + log p(z)
    - log q(z|x), and its log p(x|z, c), each (n, c). With `kl_scale`, log p(z) - log q(z|x)
    is weighted by it (a KL weight or warm-up)."""
    z = mu[:, None, :] + tf.sqrt(var)[:, None, :] * eps  # (n, c, z_dim)
    log_posterior = -0.5 * tf.reduce_sum(
        tf.square(eps) + tf.math.log(var)[:, None, :] + LOG_2PI, axis=-1)
    return weigh_samples(model, x, z, log_posterior, digit_probs, kl_scale)


def weigh_samples(model: "VAE", x, z, log_posterior, digit_probs, kl_scale=None):
    """`log_weights` of latent samples z (n, c, z_dim) whose log q(z|x) is given (n, c)."""
    n, c, z_dim = tf.shape(z)[0], tf.shape(z)[1], tf.shape(z)[2]
    output = model.decoder_output(tf.reshape(z, [n * c, z_dim]), tf.repeat(digit_probs, c, axis=0))
    log_likelihood = model.likelihood.log_prob(x[:, None, :], tf.reshape(output, [n, c, -1]))
    log_prior = -0.5 * tf.reduce_sum(tf.square(z) + LOG_2PI, axis=-1)
    if kl_scale is None:  # as evaluation has always summed it
        return log_likelihood + log_prior - log_posterior, log_likelihood
    return log_likelihood + kl_scale * (log_prior - log_posterior), log_likelihood


def to_float_images(images: np.ndarray) -> np.ndarray:
    """uint8 images of any shape (n, 28, 28) or (n, 784) to float32 rows in [0, 1]."""
    return (np.asarray(images, dtype=np.float32) / 255.0).reshape(len(images), IMAGE_PIXELS)


def save_model(model: VAE, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {key: value for key, value in model.config.items()
              if ARTICLE_FAMILY.get(key, ...) != value}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    model.save_weights(directory / WEIGHTS_FILE)


def load_model(directory: str | Path) -> VAE:
    """Load a model saved by the train stage (e.g. `vaepipe.load_model("models/vae")`).

    A missing, truncated or corrupt file, or a config that does not match the weights, is a
    one-line PipelineError naming the file.
    """
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file():
        raise PipelineError(f"{directory}: no trained model here (run `dvc repro train`)")
    rerun = "rerun `dvc repro train` or `dvc checkout models/vae`"
    model = VAE(**_read_config(config_path, rerun))
    if not weights_path.is_file():
        raise PipelineError(f"{weights_path}: missing; {rerun}")
    try:
        model.load_weights(weights_path)
    except Exception as error:  # h5py and Keras raise many kinds for damaged or mismatched files
        raise PipelineError(f"{weights_path}: cannot load the weights of the model that "
                            f"{CONFIG_FILE} describes ({_first_line(error)}); {rerun}") from None
    return model


def _read_config(path: Path, rerun: str) -> dict:
    """A saved config.json, held to the bounds of params.yaml before any layer is built."""
    try:
        raw = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not valid JSON ({error}); {rerun}") from None
    if isinstance(raw, dict):  # the keys left out are at the article's values
        raw = {**ARTICLE_FAMILY, **raw}
    try:
        return validated(NetworkConfig, raw, str(path)).model_dump()
    except PipelineError as error:
        raise PipelineError(f"{error}; {rerun}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# Last, once this module's names exist (the pieces import them): whatever the params choose is
# then among the modules a stage imports, and so among its deps in dvc.yaml.
family.import_pieces()
