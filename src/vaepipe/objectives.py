"""What a training step minimises for each image: the negative ELBO (the article's), averaged over
k samples of z, or the negative k-sample importance-weighted bound (the IWAE paper's).

Each is one class behind the same interface, picked in one place (family.py, from `objective`
in params.yaml) and built with `train_samples` (k). `per_image` takes the model, a batch and k
noise rows per image, stacked sample by sample within each image ((n * k, z_dim)), and the KL
term's weight (None for 1, so that the article's loss stays op for op); it returns the
per-image loss, the terms watched for divergence (reconstruction and KL, per image) and the
classifier's logits.
"""

from vaepipe.model import kl_to_standard_normal, log_weights
from vaepipe.tf_runtime import tf


def _weighted(kl, kl_scale):
    return kl if kl_scale is None else kl_scale * kl


def _k_samples(model, x, eps, samples: int, kl_scale):
    """Each image's k log weights and log-likelihoods (n, k), its KL and its digit logits."""
    mu, var = model.encode(x)
    logits = model.classify(x)
    noise = tf.reshape(eps, [tf.shape(x)[0], samples, model.z_dim])
    log_w, log_likelihood = log_weights(model, x, mu, var, tf.nn.softmax(logits), noise,
                                        kl_scale)
    return log_w, log_likelihood, kl_to_standard_normal(mu, var), logits


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
