"""Binarized MNIST: each pixel drawn as Bernoulli(intensity), the IWAE paper's protocol.

`dynamic` draws every training batch afresh from stateless noise keyed by (seed, step[,
replica]), so a rerun or a resumed run draws the same pixels. Measurement splits (train, val,
test) get one fixed draw keyed by `data.split_seed` and the split, the same whatever the model's
seed, so that every model's numbers are measured on the same binary images.
"""

import numpy as np

from vaepipe.tf_runtime import tf

# Folded into the train step's seed: the pixels' noise is a stream apart from the latent noise.
PIXEL_STREAM = 1
SPLIT_STREAMS = {"train": 0, "val": 1, "test": 2}


class Intensities:
    """No binarization: pixels are the intensities in [0, 1], as in the article."""

    def batch(self, x, seed):
        return x

    def split(self, images: np.ndarray, split: str) -> np.ndarray:
        return images


class Dynamic:
    """A new Bernoulli(intensity) draw of every training batch; one fixed draw per split."""

    def __init__(self, split_seed: int):
        self.split_seed = split_seed

    def batch(self, x, seed):
        """x (n, pixels) in [0, 1] drawn as 0 or 1; `seed` the train step's stateless seed.

        Each pixel is 1 when a uniform 16-bit integer u < 65536 x, so with probability within
        1/65536 of x (exactly 0 and 1 at x = 0 and 1). One 32-bit Philox word gives two pixels'
        integers: half the random numbers of a float per pixel (benchmarks/README.md).
        """
        pixels = x.shape[-1]
        # Philox named: XLA's CPU default (auto_select) takes 6x as long for the same draw.
        words = tf.random.stateless_uniform(
            [tf.shape(x)[0], -(-pixels // 2)],
            seed=tf.random.experimental.stateless_fold_in(seed, PIXEL_STREAM),
            minval=None, maxval=None, dtype=tf.uint32, alg="philox")
        halves = tf.concat([tf.bitwise.bitwise_and(words, 0xFFFF),
                            tf.bitwise.right_shift(words, 16)], axis=1)[:, :pixels]
        return tf.cast(tf.cast(halves, x.dtype) < x * 65536.0, x.dtype)

    def split(self, images: np.ndarray, split: str) -> np.ndarray:
        """uint8 images drawn once as 0 or 255, a function of data.split_seed and the split."""
        rng = np.random.default_rng([self.split_seed, SPLIT_STREAMS[split]])
        draw = rng.random(images.shape) < images / 255.0
        return (draw * 255).astype(np.uint8)
