"""What a training step minimises for each image: the negative ELBO (the article's), averaged over
k samples of z, or the negative k-sample importance-weighted bound (the IWAE paper's).

Each is one class behind the same interface, picked in one place (family.py, from `objective`
in params.yaml) and built with `train_samples` (k). `per_image` takes the model, a batch and k
noise rows per image, stacked sample by sample within each image ((n * k, noise_dim)), and the KL
term's weight (None for 1, so that the article's loss stays op for op); it returns the
per-image loss, the terms watched for divergence (reconstruction and KL, per image) and the
classifier's logits. The per-image loss is the one whose gradient trains the model (for
`iwae_dreg`, a surrogate with the bound's gradient estimated otherwise).
"""

from vaepipe.model import log_weights, noise_log_density, sample_latents, weigh_samples
from vaepipe.tf_runtime import tf


def _weighted(kl, kl_scale):
    return kl if kl_scale is None else kl_scale * kl


def _k_samples(model, x, eps, samples: int, kl_scale):
    """Each image's k log weights and log-likelihoods (n, k), its KL and its digit logits."""
    mu, var = model.encode(x)
    logits = model.classify(x)
    noise = tf.reshape(eps, [tf.shape(x)[0], samples, model.noise_dim])
    weights = log_weights(model, x, mu, var, tf.nn.softmax(logits), noise, kl_scale)
    return (weights.log_w, weights.log_likelihood, model.kl(mu, var, weights.kl), logits)


class Elbo:
    """The VAE's: -(E_q[log p(x|z)] - KL(q(z|x) || p(z))), the expectation averaged over k
    samples and the KL in closed form (the article's form; the same expectation as k sampled
    ELBO terms, with less noise)."""

    def __init__(self, train_samples: int):
        self.samples = train_samples

    def per_image(self, model, x, eps, kl_scale=None):
        if self.samples == 1:  # the article's loss, op for op
            reconstruction, kl, logits = model(x, eps)
        else:
            _, log_likelihood, kl, logits = _k_samples(model, x, eps, self.samples, None)
            reconstruction = -tf.reduce_mean(log_likelihood, axis=1)
        return reconstruction + _weighted(kl, kl_scale), [reconstruction, kl], logits


class ImportanceWeighted:
    """The IWAE's: -log (1/k) sum_i w_i, log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x);
    with a KL weight b < 1, log w_i = log p(x|z_i) + b (log p(z_i) - log q(z_i|x)). k = 1 is
    the ELBO with a sampled KL."""

    def __init__(self, train_samples: int):
        self.samples = train_samples

    def per_image(self, model, x, eps, kl_scale=None):
        log_w, log_likelihood, kl, logits = _k_samples(model, x, eps, self.samples, kl_scale)
        bound = (tf.reduce_logsumexp(log_w, axis=1)
                 - tf.math.log(tf.cast(self.samples, log_w.dtype)))
        return -bound, [-tf.reduce_mean(log_likelihood, axis=1), kl], logits


class DoublyReparameterized:
    """The IWAE bound with the doubly reparameterised gradient (Tucker et al. 2019, DReG): the
    encoder's gradient is sum_i (normalised w_i)^2 d log w_i / d z_i d z_i / d phi, with the
    score term of log q (its direct dependence on the encoder) dropped; the decoder's (and the
    classifier's) is the IWAE's, sum_i (normalised w_i) d log w_i. The per-image loss is the
    surrogate -sum_i [w~_i A_i(stop z) + w~_i^2 (A_i(z) - A_i(stop z))], A the log weight with
    q's parameters held fixed: its value is -sum_i w~_i log w_i, not the bound."""

    def __init__(self, train_samples: int):
        self.samples = train_samples

    def per_image(self, model, x, eps, kl_scale=None):
        mu, var = model.encode(x)
        logits = model.classify(x)
        digit_probs = tf.nn.softmax(logits)
        noise = tf.reshape(eps, [tf.shape(x)[0], self.samples, model.noise_dim])
        zs, _ = sample_latents(model, mu, var, noise)
        fixed_mu, fixed_var = (tf.stop_gradient(t)[:, None, :] for t in (mu, var))

        def log_w(zs):  # q's parameters held fixed: the encoder is reached through z alone
            log_posterior = _held_log_density(zs[0], fixed_mu, fixed_var)
            for layer, z, z_below in zip(model.upward, zs[1:], zs):
                log_posterior += _held_log_density(z, *layer.held(z_below))
            return weigh_samples(model, x, zs, log_posterior, digit_probs, kl_scale)

        moving = log_w(zs)
        log_w_fixed = log_w([tf.stop_gradient(z) for z in zs]).log_w
        normalized = tf.stop_gradient(tf.nn.softmax(moving.log_w, axis=1))
        surrogate = tf.reduce_sum(normalized * log_w_fixed
                                  + tf.square(normalized) * (moving.log_w - log_w_fixed), axis=1)
        return (-surrogate, [-tf.reduce_mean(moving.log_likelihood, axis=1),
                             model.kl(mu, var, moving.kl)], logits)


def _held_log_density(z, mu, var):
    """log N(z; mu, var), summed over the last axis."""
    return noise_log_density((z - mu) / tf.sqrt(var), var)
