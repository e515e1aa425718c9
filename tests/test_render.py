import numpy as np
import pytest
import tensorflow as tf

from vaepipe.conditioning import Classifier
from vaepipe.errors import PipelineError
from vaepipe.model import VAE
from vaepipe.render import (latent_manifold, latent_traversals, read_history, reconstruct,
                            redraw_as_every_digit)

HISTORY_METRICS = ["train/vae_loss", "val/vae_loss", "train/classifier_loss",
                   "val/classifier_loss", "train/accuracy", "val/accuracy"]


@pytest.fixture(scope="module")
def model() -> VAE:
    tf.keras.utils.set_random_seed(0)
    return VAE([16], [16], [16], "sigmoid", 0.5, 3)


def write_live_history(root, epochs=3):
    for i, metric in enumerate(HISTORY_METRICS):
        path = root / "plots" / "metrics" / f"{metric}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        name = metric.split("/")[-1]
        rows = [f"{step}\t{100 * i + step}" for step in range(epochs)]
        path.write_text(f"step\t{name}\n" + "\n".join(rows) + "\n")


def test_read_history_joins_dvclive_files_by_epoch(tmp_path):
    write_live_history(tmp_path)
    history = read_history(tmp_path, Classifier.split_metrics)
    assert list(history.columns) == ["epoch", *HISTORY_METRICS]
    assert history["epoch"].tolist() == [1, 2, 3]
    assert history["val/vae_loss"].tolist() == [100, 101, 102]
    assert history["val/accuracy"].tolist() == [500, 501, 502]


def test_read_history_names_a_missing_file(tmp_path):
    write_live_history(tmp_path)
    (tmp_path / "plots" / "metrics" / "val" / "accuracy.tsv").unlink()
    with pytest.raises(PipelineError, match=r"val/accuracy.tsv: missing"):
        read_history(tmp_path, Classifier.split_metrics)


def test_traversals_move_one_dimension_per_row(model):
    images, values = latent_traversals(model, steps=5, digit=7)
    assert images.shape == (3, 5, 784)
    np.testing.assert_allclose(values, [-3, -1.5, 0, 1.5, 3])
    seven = np.eye(10, dtype=np.float32)[[7]]
    centre = model.decode(np.zeros((1, 3), np.float32), seven).numpy()[0]
    for dim in range(3):
        np.testing.assert_allclose(images[dim, 2], centre, rtol=1e-5)  # value 0: z = 0
        z = np.zeros((1, 3), np.float32)
        z[0, dim] = 3.0
        np.testing.assert_allclose(images[dim, 4], model.decode(z, seven).numpy()[0], rtol=1e-5)


def test_style_transfer_keeps_z_and_sets_each_digit(model):
    x = np.random.default_rng(0).random((2, 784)).astype(np.float32)
    redrawn = redraw_as_every_digit(model, x)
    assert redrawn.shape == (2, 10, 784)
    mu = model.encode(x)[0].numpy()
    expected = model.decode(mu[[1]], np.eye(10, dtype=np.float32)[[4]]).numpy()[0]
    np.testing.assert_allclose(redrawn[1, 4], expected, rtol=1e-5)


def test_reconstruction_decodes_the_mean_with_the_predicted_digit(model):
    x = np.random.default_rng(1).random((4, 784)).astype(np.float32)
    mu = model.encode(x)[0]
    expected = model.decode(mu, tf.nn.softmax(model.classify(x))).numpy()
    np.testing.assert_allclose(reconstruct(model, x), expected, rtol=1e-6)


def test_an_unconditional_models_history_has_only_the_vae_loss(tmp_path):
    write_live_history(tmp_path)
    history = read_history(tmp_path)
    assert list(history.columns) == ["epoch", "train/vae_loss", "val/vae_loss"]


def test_the_latent_manifold_decodes_a_grid_of_z_with_z1_falling_down_the_rows():
    tf.keras.utils.set_random_seed(0)
    model = VAE([16], [16], [16], "sigmoid", 0.5, 2, likelihood="bernoulli", conditioning="none")
    images, values = latent_manifold(model, 5, digit=3)
    assert images.shape == (5, 5, 784)
    top_right = model.decode(np.array([[values[-1], values[-1]]], np.float32)).numpy()[0]
    bottom_left = model.decode(np.array([[values[0], values[0]]], np.float32)).numpy()[0]
    np.testing.assert_allclose(images[0, -1], top_right, rtol=1e-5)
    np.testing.assert_allclose(images[-1, 0], bottom_left, rtol=1e-5)
    assert 0 < images.min() and images.max() < 1  # Bernoulli means: sigmoids of the logits
