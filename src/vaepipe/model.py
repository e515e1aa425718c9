"""The article's conditional VAE in Keras 3 / TensorFlow 2, its family, loss terms, save / load.

Encoder q(z|x) = N(mu(x), diag(var(x))), digit classifier c(x) = softmax(logits(x)), decoder
p(x|z, c) = N(f([z, c]), decoder_std^2 I) with f ending in a sigmoid. Images are float32 rows of
784 pixel intensities in [0, 1]. The family: `likelihood` bernoulli makes f output logits
(likelihoods.py), `conditioning` none drops the classifier, so that the decoder sees z alone
(conditioning.py), `architecture` conv puts convolutions in the encoder and transposed ones in
the decoder.
"""

import json
import math
from pathlib import Path

import numpy as np

from vaepipe.conditioning import make_conditioning
from vaepipe.data import IMAGE_SHAPE, NUM_DIGITS
from vaepipe.errors import PipelineError
from vaepipe.likelihoods import make_likelihood
from vaepipe.params import NetworkConfig, validated
from vaepipe.tf_runtime import keras, tf

IMAGE_PIXELS = math.prod(IMAGE_SHAPE)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
# The article's model; a config.json without these keys (saved before the family) is that model,
# and a saved config leaves out the ones at these values, so that the article's stays as it was.
ARTICLE_FAMILY = {"likelihood": "gaussian", "conditioning": "classifier", "architecture": "mlp",
                  "conv_filters": [32, 64]}
CONV_SIDE = IMAGE_SHAPE[0] // 4  # two stride-2 convolutions halve 28 twice


def _dense(hidden_layers, activation: str) -> list:
    return [keras.layers.Dense(size, activation=activation) for size in hidden_layers]


def _mlp(hidden_layers, activation: str, output_size: int | None = None, output_activation=None,
         name: str = "") -> keras.Sequential:
    """Dense hidden layers, then an optional linear (or `output_activation`) output layer."""
    layers = _dense(hidden_layers, activation)
    if output_size is not None:
        layers.append(keras.layers.Dense(output_size, activation=output_activation))
    return keras.Sequential(layers, name=name)


def _mlp_encoder(config: dict) -> keras.Sequential:
    return _mlp(config["encoder_layers"], config["activation"], name="encoder")


def _mlp_decoder(config: dict, output_activation) -> keras.Sequential:
    return _mlp(config["decoder_layers"], config["activation"], IMAGE_PIXELS, output_activation,
                name="decoder")


def _conv_encoder(config: dict) -> keras.Sequential:
    """The keras-io VAE's encoder: two stride-2 convolutions, then `encoder_layers`."""
    activation, (first, second) = config["activation"], config["conv_filters"]
    return keras.Sequential([
        keras.layers.Reshape((*IMAGE_SHAPE, 1)),
        keras.layers.Conv2D(first, 3, strides=2, padding="same", activation=activation),
        keras.layers.Conv2D(second, 3, strides=2, padding="same", activation=activation),
        keras.layers.Flatten(),
        *_dense(config["encoder_layers"], activation),
    ], name="encoder")


def _conv_decoder(config: dict, output_activation) -> keras.Sequential:
    """The encoder mirrored: `decoder_layers`, a 7 x 7 feature map, transposed convolutions."""
    activation, (first, second) = config["activation"], config["conv_filters"]
    return keras.Sequential([
        *_dense(config["decoder_layers"], activation),
        keras.layers.Dense(CONV_SIDE * CONV_SIDE * second, activation=activation),
        keras.layers.Reshape((CONV_SIDE, CONV_SIDE, second)),
        keras.layers.Conv2DTranspose(second, 3, strides=2, padding="same", activation=activation),
        keras.layers.Conv2DTranspose(first, 3, strides=2, padding="same", activation=activation),
        keras.layers.Conv2DTranspose(1, 3, padding="same", activation=output_activation),
        keras.layers.Flatten(),
    ], name="decoder")


# Each architecture's encoder and decoder builders; they are called apart, in the order the
# model creates its layers, so that the MLP's layer names and weights stay as they were.
ARCHITECTURES = {"mlp": (_mlp_encoder, _mlp_decoder), "conv": (_conv_encoder, _conv_decoder)}


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
        self.likelihood = make_likelihood(likelihood, decoder_std)
        self.conditioning = make_conditioning(conditioning)
        build_encoder, build_decoder = ARCHITECTURES[architecture]
        # mu and the variance share the encoder's hidden layers, as in the article.
        self.encoder_net = build_encoder(self.config)
        self.mu_layer = keras.layers.Dense(z_dim, name="encoder_mu")
        self.log_var_layer = keras.layers.Dense(z_dim, name="encoder_log_var")
        self.classifier_net = self.conditioning.build_network(digit_classification_layers,
                                                              activation)
        self.decoder_net = build_decoder(self.config, self.likelihood.output_activation)
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
