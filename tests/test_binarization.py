import numpy as np

from vaepipe import family
from vaepipe.binarization import PIXEL_STREAM, Dynamic, Intensities
from vaepipe.tf_runtime import tf


def step_seed(seed, step):
    return tf.constant([seed, step], tf.int64)


def test_a_batch_is_drawn_as_bernoulli_of_its_intensities():
    intensities = np.tile(np.linspace(0, 1, 11, dtype=np.float32), (4000, 1))
    drawn = Dynamic(0).batch(tf.constant(intensities), step_seed(42, 7)).numpy()
    assert set(np.unique(drawn)) <= {0.0, 1.0}
    # 4000 draws per column: the mean is within 4 standard errors (at most 0.008) of p.
    np.testing.assert_allclose(drawn.mean(axis=0), intensities[0], atol=0.032)
    assert drawn[:, 0].max() == 0.0 and drawn[:, -1].min() == 1.0  # p = 0 and p = 1 are sure


def test_each_step_draws_afresh_and_the_same_step_draws_the_same():
    x = tf.fill([50, 784], 0.5)
    binarization = Dynamic(0)
    first, again = (binarization.batch(x, step_seed(42, 3)).numpy() for _ in range(2))
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != binarization.batch(x, step_seed(42, 4)).numpy()) > 0.4
    assert np.mean(first != binarization.batch(x, step_seed(43, 3)).numpy()) > 0.4


def test_a_split_has_one_fixed_draw_from_the_split_seed():
    images = np.random.default_rng(0).integers(0, 256, (500, 28, 28), dtype=np.uint8)
    val = Dynamic(0).split(images, "val")
    assert val.dtype == np.uint8 and set(np.unique(val)) <= {0, 255}
    np.testing.assert_array_equal(val, Dynamic(0).split(images, "val"))
    assert abs(val.mean() / 255 - images.mean() / 255) < 0.01
    assert np.any(val != Dynamic(0).split(images, "test"))
    assert np.any(val != Dynamic(1).split(images, "val"))


def test_none_leaves_the_intensities_alone():
    images = np.arange(256, dtype=np.uint8).reshape(1, 16, 16)
    binarization = family.build("binarization", {"binarization": "none"})
    assert isinstance(binarization, Intensities)
    assert binarization.split(images, "test") is images
    x = tf.constant([[0.25]])
    assert binarization.batch(x, step_seed(0, 0)) is x


def test_each_pixel_is_one_16_bit_half_of_a_philox_word_below_65536_times_its_intensity():
    """An independent numpy computation of the draw from the same 32-bit words."""
    x = np.random.default_rng(1).random((30, 7)).astype(np.float32)
    seed = step_seed(42, 9)
    drawn = Dynamic(0).batch(tf.constant(x), seed).numpy()
    words = tf.random.stateless_uniform(
        [30, 4], seed=tf.random.experimental.stateless_fold_in(seed, PIXEL_STREAM),
        minval=None, maxval=None, dtype=tf.uint32, alg="philox").numpy().astype(np.int64)
    halves = np.concatenate([words & 0xFFFF, words >> 16], axis=1)[:, :7]
    np.testing.assert_array_equal(drawn, (halves < x.astype(np.float64) * 65536).astype(np.float32))


def test_the_two_halves_of_a_word_draw_independent_pixels():
    drawn = Dynamic(0).batch(tf.fill([20000, 4], 0.5), step_seed(42, 1)).numpy()
    both = np.mean(drawn[:, 0] * drawn[:, 2])  # columns 0 and 2 share their words
    assert abs(both - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 20000)
