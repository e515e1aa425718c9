import numpy as np
import pytest
import tensorflow as tf

from vaepipe.conditioning import Classifier
from vaepipe.errors import PipelineError, run_stage
from vaepipe.model import VAE, save_model
from vaepipe.params import load_params
from vaepipe.render import (latent_manifold, latent_traversals, read_history, read_latent_units,
                            reconstruct, redraw_as_every_digit, render_stage)

from conftest import PROJECT_PARAMS
from test_conditioning import two_layer_vae_whose_top_layer_is_unused

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


@pytest.mark.parametrize("good, bad, message", [
    ("2\t102\n", "2", r"line 4: expected a step and a vae_loss separated by a tab, got '2'"),
    ("2\t102\n", "2\t", r"line 4: vae_loss: not a finite number: ''"),
    ("1\t101", "1\tabc", r"line 3: vae_loss: not a finite number: 'abc'"),
    ("1\t101", "1\tnan", r"line 3: vae_loss: not a finite number: 'nan'"),
    ("1\t101", "one\t101", r"line 3: step: not a whole number: 'one'"),
    ("1\t101", "1\t101\t7", r"line 3: expected a step and a vae_loss separated by a tab, "
                             r"got '1\\t101\\t7'"),
    ("step\tvae_loss", "step,vae_loss", r"line 1: expected the header 'step<TAB>vae_loss', got "
                                       r"'step,vae_loss'"),
    ("2\t102\n", "", r"holds other epochs than .*train/vae_loss.tsv"),  # a whole line lost
])
def test_a_damaged_history_file_is_one_line_naming_the_file_and_line(tmp_path, good, bad,
                                                                     message):
    write_live_history(tmp_path)
    path = tmp_path / "plots" / "metrics" / "val" / "vae_loss.tsv"
    path.write_text(path.read_text().replace(good, bad))
    with pytest.raises(PipelineError, match=rf"^{path}: {message}; rerun `dvc repro train`$"):
        read_history(tmp_path, Classifier.split_metrics)


def test_render_refuses_a_damaged_history_and_keeps_the_figures(model, tmp_path, capsys):
    write_live_history(tmp_path / "live")
    metric = tmp_path / "live" / "plots" / "metrics" / "train" / "classifier_loss.tsv"
    metric.write_text(metric.read_text().replace("1\t201", "1\t2O1"))
    save_model(model, tmp_path / "vae")
    np.save(tmp_path / "samples.npy", np.zeros((3, 10, 784), np.float32))
    rng = np.random.default_rng(0)
    (tmp_path / "prepared").mkdir()
    np.savez(tmp_path / "prepared" / "test.npz",
             images=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             labels=rng.integers(0, 10, 20, dtype=np.uint8))
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "loss_curves.png").write_bytes(b"the previous figure")
    with pytest.raises(SystemExit) as stop:
        run_stage(lambda: render_stage(load_params(PROJECT_PARAMS), tmp_path / "vae",
                                       tmp_path / "samples.npy", tmp_path / "live",
                                       tmp_path / "prepared", tmp_path / "units.json",
                                       figures))
    assert stop.value.code == 1
    assert capsys.readouterr().err == (f"error: {metric}: line 3: classifier_loss: not a finite "
                                       f"number: '2O1'; rerun `dvc repro train`\n")
    assert [p.name for p in figures.iterdir()] == ["loss_curves.png"]
    assert (figures / "loss_curves.png").read_bytes() == b"the previous figure"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures", "live", "prepared",
                                                          "samples.npy", "vae"]


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


def test_reconstruction_with_several_layers_decodes_z1s_mean_whatever_the_top_layer_does():
    model = two_layer_vae_whose_top_layer_is_unused("none")
    x = np.random.default_rng(2).random((3, 784)).astype(np.float32)
    z1_mean = model.encode(x)[0]
    expected = tf.sigmoid(model.decoder_net(z1_mean)).numpy()
    reconstructed = reconstruct(model, x)
    np.testing.assert_allclose(reconstructed, expected, rtol=1e-6)
    assert len({image.tobytes() for image in reconstructed}) == 3  # up to z2 and down: one image


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


@pytest.mark.parametrize("content, problem", [
    (None, "missing (run `dvc repro evaluate`)"),
    ('{"test": {"activity": [1.0], "kl": [0.5]}}', "not evaluation's latent units (KeyError: "
     "'activity_threshold'); rerun `dvc repro evaluate`"),
    ('{"test": {"activity": [1.0, 2.0], "kl": [0.5], "activity_threshold": 0.01}}',
     "activity and kl must be lists of finite numbers, one per unit; rerun `dvc repro evaluate`"),
    ("not json", "not evaluation's latent units (JSONDecodeError: "),
])
def test_damaged_latent_units_are_one_line_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "latent_units.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PipelineError) as error:
        read_latent_units(path)
    assert str(error.value).startswith(f"{path}: {problem}")
