"""The article's conditional VAE in Keras 3 / TensorFlow 2, its family, loss terms, save / load.

Encoder q(z|x) = N(mu(x), diag(var(x))), digit classifier c(x) = softmax(logits(x)), decoder
p(x|z, c) = N(f([z, c]), decoder_std^2 I) with f ending in a sigmoid. Images are float32 rows of
784 pixel intensities in [0, 1]. The family (family.py): `likelihood` bernoulli makes f output
logits (likelihoods.py), `conditioning` none drops the classifier, so that the decoder sees z
alone (conditioning.py), `architecture` conv puts convolutions in the encoder and transposed
ones in the decoder (architectures.py).

Several stochastic layers (`z_dim: [100, 50]`, the IWAE paper's two-layer model) chain Gaussians
with the encoder's variance form: q(z1|x) q(z2|z1) ... up, p(z_L) = N(0, I) and p(z1|z2) ...
down, each conditional through `latent_hidden_layers`; the decoder reads z1. Noise for one
sample of every layer is one row of `noise_dim` numbers, z1's first; `z_dim` is then the size of
z_L, the latent that the prior draws and the figures sweep.
"""

import json
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np

from vaepipe import family
from vaepipe.architectures import IMAGE_PIXELS, dense_layers
from vaepipe.data import NUM_DIGITS
from vaepipe.errors import PipelineError
from vaepipe.params import LATENT_HIDDEN_UNREAD, NetworkConfig, validated
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
ARTICLE_FAMILY = {**{key: _as_saved(family.article_value(key))
                     for key in ("likelihood", "conditioning", "architecture", "conv_filters")},
                  "latent_hidden_layers": list(LATENT_HIDDEN_UNREAD)}


class GaussianLayer(keras.layers.Layer):
    """A stochastic layer given the one beside it: N(mu(h), diag(1e-5 + exp(log_var(h)))), h
    from dense hidden layers over its input (the encoder's form of q(z|x))."""

    def __init__(self, hidden_layers, activation: str, size: int, **kwargs):
        super().__init__(**kwargs)
        self.hidden = dense_layers(hidden_layers, activation)  # each on the last axis of any
        # rank: (n, c, size) samples as well as (n, size)
        self.mu_layer = keras.layers.Dense(size)
        self.log_var_layer = keras.layers.Dense(size)

    def build(self, input_shape):
        for dense in self.hidden:
            dense.build(input_shape)
            input_shape = dense.compute_output_shape(input_shape)
        self.mu_layer.build(input_shape)
        self.log_var_layer.build(input_shape)

    def call(self, z):
        h = z
        for dense in self.hidden:
            h = dense(h)
        return self.mu_layer(h), 1e-5 + tf.exp(self.log_var_layer(h))

    def held(self, z):
        """`call` with this layer's weights held fixed (gradients reach z alone), for DReG."""
        def apply(dense, h):
            return dense.activation(tf.tensordot(h, tf.stop_gradient(dense.kernel), axes=1)
                                    + tf.stop_gradient(dense.bias))
        h = z
        for dense in self.hidden:
            h = apply(dense, h)
        return apply(self.mu_layer, h), 1e-5 + tf.exp(apply(self.log_var_layer, h))


class VAE(keras.Model):
    """The article's model. `config` holds the hyperparameters it was built with."""

    def __init__(self, encoder_layers, decoder_layers, digit_classification_layers,
                 activation: str, decoder_std: float, z_dim: int,
                 likelihood: str = ARTICLE_FAMILY["likelihood"],
                 conditioning: str = ARTICLE_FAMILY["conditioning"],
                 architecture: str = ARTICLE_FAMILY["architecture"],
                 conv_filters=ARTICLE_FAMILY["conv_filters"],
                 latent_hidden_layers=ARTICLE_FAMILY["latent_hidden_layers"], **kwargs):
        super().__init__(**kwargs)
        self.config = {
            "encoder_layers": list(encoder_layers),
            "decoder_layers": list(decoder_layers),
            "digit_classification_layers": list(digit_classification_layers),
            "activation": activation,
            "decoder_std": float(decoder_std),
            "z_dim": int(z_dim) if isinstance(z_dim, int) else [int(size) for size in z_dim],
            "likelihood": likelihood,
            "conditioning": conditioning,
            "architecture": architecture,
            "conv_filters": [int(size) for size in conv_filters],
            "latent_hidden_layers": [int(size) for size in latent_hidden_layers],
        }
        self.latent_sizes = (int(z_dim),) if isinstance(z_dim, int) else tuple(self.config["z_dim"])
        self.z_dim = self.latent_sizes[-1]  # the prior's: what sampling draws
        self.noise_dim = sum(self.latent_sizes)
        self.below_top_dim = self.noise_dim - self.z_dim  # drawn under z_L by ancestral sampling
        # With one layer the KL has a closed form (the article's); with several it is sampled.
        self.closed_form_kl = len(self.latent_sizes) == 1
        self.decoder_std = float(decoder_std)
        self.likelihood = family.build("likelihood", self.config)
        self.conditioning = family.build("conditioning", self.config)
        self.architecture = family.build("architecture", self.config)
        # Built in this order, so that the article's layer names and weights stay as they were.
        # mu and the variance share the encoder's hidden layers, as in the article.
        self.encoder_net = self.architecture.encoder(self.config)
        self.mu_layer = keras.layers.Dense(self.latent_sizes[0], name="encoder_mu")
        self.log_var_layer = keras.layers.Dense(self.latent_sizes[0], name="encoder_log_var")
        self.classifier_net = self.conditioning.build_network(digit_classification_layers,
                                                              activation)
        self.decoder_net = self.architecture.decoder(self.config,
                                                     self.likelihood.output_activation)
        if not self.closed_form_kl:  # only then, so that the article's weights file stays
            above = list(zip(self.latent_sizes, self.latent_sizes[1:]))
            self.posterior_layers = [  # q(z_{l+1} | z_l)
                GaussianLayer(latent_hidden_layers, activation, upper, name=f"q_z{l + 2}")
                for l, (_, upper) in enumerate(above)]
            self.prior_layers = [  # p(z_l | z_{l+1})
                GaussianLayer(latent_hidden_layers, activation, lower, name=f"p_z{l + 1}")
                for l, (lower, _) in enumerate(above)]
        self.build_all()

    def build_all(self) -> None:
        """Create every weight now, so that weights load into a fresh model at once."""
        self.encoder_net.build((None, IMAGE_PIXELS))
        hidden = self.encoder_net.compute_output_shape((None, IMAGE_PIXELS))
        self.mu_layer.build(hidden)
        self.log_var_layer.build(hidden)
        if self.classifier_net is not None:
            self.classifier_net.build((None, IMAGE_PIXELS))
        self.decoder_net.build((None, self.latent_sizes[0] + self.conditioning.width))
        for q, p, (lower, upper) in zip(self.upward, self.downward,
                                        zip(self.latent_sizes, self.latent_sizes[1:])):
            q.build((None, lower))
            p.build((None, upper))
        self.built = True

    @property
    def upward(self) -> list:
        """q(z2|z1), q(z3|z2), ...: none with one stochastic layer."""
        return [] if self.closed_form_kl else self.posterior_layers

    @property
    def downward(self) -> list:
        """p(z1|z2), p(z2|z3), ...: none with one stochastic layer."""
        return [] if self.closed_form_kl else self.prior_layers

    @property
    def output_bias(self):
        """The decoder's last biases: one per pixel (784,) in the MLP's last dense layer."""
        return self.decoder_net.layers[-1].bias

    def encode(self, x):
        """q(z1|x): the mean and the diagonal variance, each (n, the size of z1)."""
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

    def decode(self, z, digit_probs=None, noise=None):
        """The mean image E[x|z, c] (n, 784) for latents z (n, z_dim) and digit probabilities
        c. With several stochastic layers z is z_L, taken down through p(z_l | z_{l+1}): a draw
        z_l = mean + sqrt(var) * noise of each, given `noise` (n, below_top_dim; z1's part
        first), so that the images are the model's samples; else its means."""
        for layer, eps in zip(reversed(self.downward), reversed(self._noise_below_top(noise))):
            mean, var = layer(z)
            z = mean if eps is None else mean + tf.sqrt(var) * eps
        return self.mean_image(z, digit_probs)

    def mean_image(self, z1, digit_probs=None):
        """E[x|z1, c] (n, 784): what the decoder makes of the bottom layer's z1."""
        return self.likelihood.mean(self.decoder_output(z1, digit_probs))

    def _noise_below_top(self, noise) -> list:
        """`noise` split into one part per layer under the top one, z1's first; Nones (the
        means) without noise."""
        if noise is None or not self.downward:
            return [None] * len(self.downward)
        return tf.split(noise, self.latent_sizes[:-1], axis=-1)

    def ancestral_noise(self, rng: np.random.Generator, count: int) -> np.ndarray:
        """Standard normals (count, below_top_dim) for `decode` to draw the layers under the
        top one: none with one stochastic layer, which leaves `rng` where it was."""
        return rng.standard_normal((count, self.below_top_dim)).astype(np.float32)

    def top_mean(self, x):
        """Each image's latent (n, z_dim): the mean of q(z|x), or with several stochastic
        layers that of q(z_L|z_{L-1}), up through the means of q."""
        z, _ = self.encode(x)
        for layer in self.upward:
            z, _ = layer(z)
        return z

    def call(self, x, eps):
        """Per-image reconstruction NLL, KL and digit logits, with z = mu + sqrt(var) * eps;
        eps (n, noise_dim)."""
        mu, var = self.encode(x)
        logits = self.classify(x)
        if not self.closed_form_kl:
            weights = log_weights(self, x, mu, var, tf.nn.softmax(logits), eps[:, None, :])
            return -weights.log_likelihood[:, 0], weights.kl[:, 0], logits
        z = mu + tf.sqrt(var) * eps
        output = self.decoder_output(z, tf.nn.softmax(logits))
        return -self.likelihood.log_prob(x, output), kl_to_standard_normal(mu, var), logits

    def kl(self, mu, var, sampled):
        """Per-image KL(q(z|x) || p(z)): in closed form with one stochastic layer, else the
        mean of log q - log p over the samples (n, c) of `sampled`."""
        if self.closed_form_kl:
            return kl_to_standard_normal(mu, var)
        return tf.reduce_mean(sampled, axis=1)


def kl_to_standard_normal(mu, var):
    """KL(N(mu, diag(var)) || N(0, I)) in closed form, one value per row."""
    return -0.5 * tf.reduce_sum(1.0 + tf.math.log(var) - tf.square(mu) - var, axis=-1)


class Weights(NamedTuple):
    """Per sample (n, c): the log weight log p(x|z, c) + log p(z) - log q(z|x), log p(x|z, c),
    and log q(z|x) - log p(z) (the KL's sampled form)."""
    log_w: tf.Tensor
    log_likelihood: tf.Tensor
    kl: tf.Tensor


def log_weights(model: "VAE", x, mu, var, digit_probs, eps, kl_scale=None) -> Weights:
    """For images x (n, 784) with q(z1|x)'s mu, var (n, z1) and digit probabilities (n, 10) or
    (n, 0), and noise eps (n, c, noise_dim): each sample's `Weights`. With `kl_scale`,
    log p(z) - log q(z|x) is weighted by it (a KL weight or warm-up)."""
    zs, log_posterior = sample_latents(model, mu, var, eps)
    return weigh_samples(model, x, zs, log_posterior, digit_probs, kl_scale)


def noise_log_density(eps, var):
    """log N(z; mu, var) of z = mu + sqrt(var) * eps, summed over the last axis."""
    return -0.5 * tf.reduce_sum(tf.square(eps) + tf.math.log(var) + LOG_2PI, axis=-1)


def sample_latents(model: "VAE", mu, var, eps):
    """Every stochastic layer's samples [(n, c, size)], z1 first, by reparameterisation from
    noise (n, c, noise_dim), and their log q(z|x) (n, c)."""
    noise = tf.split(eps, model.latent_sizes, axis=-1) if model.upward else [eps]
    zs = [mu[:, None, :] + tf.sqrt(var)[:, None, :] * noise[0]]  # (n, c, z1)
    log_posterior = noise_log_density(noise[0], var[:, None, :])
    for layer, layer_noise in zip(model.upward, noise[1:]):
        layer_mu, layer_var = layer(zs[-1])
        zs.append(layer_mu + tf.sqrt(layer_var) * layer_noise)
        log_posterior += noise_log_density(layer_noise, layer_var)
    return zs, log_posterior


def log_prior(model: "VAE", zs):
    """log p(z_L) + sum_l log p(z_l | z_{l+1}) of the samples zs of every layer, (n, c)."""
    log_p = -0.5 * tf.reduce_sum(tf.square(zs[-1]) + LOG_2PI, axis=-1)
    for layer, z, z_above in zip(model.downward, zs, zs[1:]):
        mu, var = layer(z_above)
        log_p += noise_log_density((z - mu) / tf.sqrt(var), var)
    return log_p


def weigh_samples(model: "VAE", x, zs, log_posterior, digit_probs, kl_scale=None) -> Weights:
    """`log_weights` of the samples zs of every layer ((n, c, size) each) whose log q(z|x) is
    given (n, c)."""
    z = zs[0]
    n, c, z_dim = tf.shape(z)[0], tf.shape(z)[1], tf.shape(z)[2]
    output = model.decoder_output(tf.reshape(z, [n * c, z_dim]), tf.repeat(digit_probs, c, axis=0))
    log_likelihood = model.likelihood.log_prob(x[:, None, :], tf.reshape(output, [n, c, -1]))
    prior = log_prior(model, zs)
    kl = log_posterior - prior
    if kl_scale is None:  # as evaluation has always summed it
        return Weights(log_likelihood + prior - log_posterior, log_likelihood, kl)
    return Weights(log_likelihood + kl_scale * (prior - log_posterior), log_likelihood, kl)


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
