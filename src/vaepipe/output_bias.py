"""Where the decoder's output biases start: Keras's zeros, or the training images' mean.

The IWAE paper's code (yburda/iwae) starts them at the logits of the training images' mean
pixel values, so that the untrained decoder already draws about the mean image. Both
likelihoods end the decoder in a sigmoid (the Gaussian's mean, the Bernoulli's probability), so
the same logits serve both. family.py picks one; training applies it to a fresh model, before a
checkpoint, if any, replaces every weight.
"""

import numpy as np

MEAN_CLIP = 0.001  # as the paper's code: a pixel that is always 0 starts at logit -6.9, not -inf


class Zeros:
    """Keras's initialisation, the article's: nothing to change."""

    def initialise(self, model, images: np.ndarray) -> None:
        pass  # Keras built the biases at zero


class DataMean:
    """logit(each pixel's mean intensity over `images`), the mean clipped to [0.001, 0.999]."""

    def initialise(self, model, images: np.ndarray) -> None:
        """`images`: a prepared split's uint8 images (n, 28, 28)."""
        mean = images.reshape(len(images), -1).mean(axis=0, dtype=np.float64) / 255.0
        mean = np.clip(mean, MEAN_CLIP, 1 - MEAN_CLIP)
        model.output_bias.assign((np.log(mean) - np.log1p(-mean)).astype(np.float32))
