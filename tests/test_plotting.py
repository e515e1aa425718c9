from functools import partial
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

from vaepipe import plotting

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 3


def constant_images(intensities: np.ndarray) -> np.ndarray:
    """One flat 28x28 image per intensity: shape intensities.shape + (784,)."""
    return np.repeat(np.asarray(intensities, dtype=np.float32)[..., None], 784, axis=-1)


def sample_intensity(epochs: int) -> np.ndarray:
    """A distinct grey for each (epoch, digit), so each panel's position can be read back."""
    return (np.arange(epochs * 10).reshape(epochs, 10) + 1) / (epochs * 10 + 1)


def random_images(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.uniform(size=(*shape, 784)).astype(np.float32)


def history(epochs: int) -> pd.DataFrame:
    epoch = np.arange(1, epochs + 1)
    return pd.DataFrame({
        "epoch": epoch,
        "train/vae_loss": 200 / epoch, "val/vae_loss": 210 / epoch,
        "train/classifier_loss": 1 / epoch, "val/classifier_loss": 1.1 / epoch,
        "val/accuracy": 1 - 0.1 / epoch,
    })


def latent_means(rng: np.random.Generator, n: int, z_dim: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, 10, n)
    means = rng.normal(size=(n, z_dim)) * np.linspace(3, 0.5, z_dim) + labels[:, None] * 0.2
    return means, labels


# Five units, two of them inactive (activity at or below the threshold).
UNITS = {"activity": np.array([0.5, 0.002, 1.2, 0.01, 0.3]),
         "kl": np.array([2.0, 0.01, 3.5, 0.02, 1.0]), "activity_threshold": 0.01}
SECOND_LAYER_UNITS = {"activity": np.array([0.001, 0.4]), "kl": np.array([0.0, 1.5]),
                      "activity_threshold": 0.01}


def figure_cases() -> dict[str, tuple]:
    """name -> (plot function, figure builder, arguments): every figure, from synthetic data."""
    rng = np.random.default_rng(0)
    return {
        "sample_grid": (plotting.plot_sample_grid, plotting.sample_grid_figure,
                        (constant_images(sample_intensity(EPOCHS)),)),
        "loss_curves": (plotting.plot_loss_curves, plotting.loss_curves_figure, (history(5),)),
        "reconstructions": (plotting.plot_reconstructions, plotting.reconstructions_figure,
                            (random_images(rng, 4), random_images(rng, 4))),
        "style_transfer": (plotting.plot_style_transfer, plotting.style_transfer_figure,
                           (random_images(rng, 2), random_images(rng, 2, 10))),
        "latent_pca": (plotting.plot_latent_pca, plotting.latent_pca_figure,
                       latent_means(rng, 500, 4)),
        "latent_traversals": (plotting.plot_latent_traversals, plotting.latent_traversals_figure,
                              (random_images(rng, 3, 5), np.linspace(-3, 3, 5), 7)),
        "unconditional_sample_grid": (partial(plotting.plot_sample_grid, conditional=False),
                                      partial(plotting.sample_grid_figure, conditional=False),
                                      (random_images(rng, EPOCHS, 10),)),
        "vae_loss_curve": (plotting.plot_loss_curves, plotting.loss_curves_figure,
                           (history(5)[["epoch", "train/vae_loss", "val/vae_loss"]],)),
        "latent_manifold": (plotting.plot_latent_manifold, plotting.latent_manifold_figure,
                            (random_images(rng, 4, 4), np.linspace(-3, 3, 4), None)),
        "latent_scatter": (plotting.plot_latent_scatter, plotting.latent_scatter_figure,
                           latent_means(rng, 500, 2)),
        "latent_units": (plotting.plot_latent_units, plotting.latent_units_figure,
                         ([UNITS],)),
        "two_layer_latent_units": (plotting.plot_latent_units, plotting.latent_units_figure,
                                   ([UNITS, SECOND_LAYER_UNITS],)),
    }


CASES = figure_cases()


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    return matplotlib.image.imread(path)


def pixel_size(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches() * plotting.DPI
    return round(height), round(width)


def image_arrays(fig) -> list[np.ndarray]:
    return [ax.images[0].get_array() for ax in fig.axes]


@pytest.mark.parametrize("name", CASES)
def test_each_figure_is_a_titled_png_of_its_figure_size(name, tmp_path):
    plot, build, args = CASES[name]
    path = tmp_path / f"{name}.png"
    plot(*args, path)
    fig = build(*args)
    assert read_png(path).shape[:2] == pixel_size(fig)
    assert fig.get_suptitle()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


@pytest.mark.parametrize("name", CASES)
def test_each_figure_renders_to_the_same_bytes_twice(name, tmp_path):
    plot, _, args = CASES[name]
    plot(*args, tmp_path / "first.png")
    plot(*args, tmp_path / "second.png")
    assert (tmp_path / "first.png").read_bytes() == (tmp_path / "second.png").read_bytes()


@pytest.mark.parametrize("name", ["sample_grid", "reconstructions", "style_transfer",
                                  "latent_traversals", "unconditional_sample_grid"])
def test_image_grids_have_square_panels_of_fixed_size_without_ticks(name):
    _, build, args = CASES[name]
    fig = build(*args)
    width, height = fig.get_size_inches()
    for ax in fig.axes:
        box = ax.get_position()
        assert box.width * width == pytest.approx(plotting.PANEL_INCHES, rel=1e-6)
        assert box.height * height == pytest.approx(plotting.PANEL_INCHES, rel=1e-6)
        assert not ax.get_xticks().size and not ax.get_yticks().size
        assert ax.images[0].get_cmap().name == "Greys_r"
        assert ax.images[0].get_clim() == (0.0, 1.0)


def test_image_grids_grow_by_one_panel_per_row_and_column():
    step = plotting.PANEL_INCHES + plotting.GAP_INCHES
    rng = np.random.default_rng(4)
    one_row = plotting.style_transfer_figure(random_images(rng, 1), random_images(rng, 1, 10))
    five_rows = plotting.style_transfer_figure(random_images(rng, 5), random_images(rng, 5, 10))
    np.testing.assert_allclose(five_rows.get_size_inches() - one_row.get_size_inches(),
                               [0, 4 * step])
    nine_steps, twelve_steps = (
        plotting.latent_traversals_figure(random_images(rng, 2, steps), np.zeros(steps), 1)
        for steps in (9, 12))
    np.testing.assert_allclose(twelve_steps.get_size_inches() - nine_steps.get_size_inches(),
                               [3 * step, 0])


def test_sample_grid_has_one_row_per_epoch_and_one_column_per_digit():
    samples = constant_images(sample_intensity(EPOCHS))
    fig = plotting.sample_grid_figure(samples)
    assert len(fig.axes) == EPOCHS * 10
    rows = np.array(fig.axes).reshape(EPOCHS, 10)
    assert [ax.get_ylabel() for ax in rows[:, 0]] == ["epoch 1", "epoch 2", "epoch 3"]
    assert [ax.get_title() for ax in rows[0]] == [str(d) for d in range(10)]
    for drawn, sample in zip(image_arrays(fig), samples.reshape(-1, 784)):
        np.testing.assert_array_equal(drawn, sample.reshape(28, 28))


def test_sample_grid_png_shows_each_epoch_and_digit_in_its_panel(tmp_path):
    intensity = sample_intensity(EPOCHS)
    samples = constant_images(intensity)
    path = tmp_path / "grid.png"
    plotting.plot_sample_grid(samples, path)
    pixels = read_png(path)
    height, width = pixels.shape[:2]
    fig = plotting.sample_grid_figure(samples)
    greys = colormaps["Greys_r"]
    for ax, value in zip(fig.axes, intensity.flat):
        centre_x, centre_y = ax.get_position().transformed(fig.transFigure).get_points().mean(0)
        row, col = round(height - centre_y), round(centre_x)
        np.testing.assert_allclose(pixels[row, col, :3], greys(value)[:3], atol=2 / 255)


def test_reconstructions_put_each_original_above_its_reconstruction():
    originals, reconstructions = CASES["reconstructions"][2]
    fig = plotting.reconstructions_figure(originals, reconstructions)
    rows = np.array(fig.axes).reshape(2, len(originals))
    assert [ax.get_ylabel() for ax in rows[:, 0]] == ["original", "reconstruction"]
    drawn = np.array(image_arrays(fig)).reshape(2, len(originals), 784)
    np.testing.assert_array_equal(drawn, np.stack([originals, reconstructions]))


def test_style_transfer_shows_the_original_then_digits_0_to_9():
    originals, redrawn = CASES["style_transfer"][2]
    fig = plotting.style_transfer_figure(originals, redrawn)
    rows = np.array(fig.axes).reshape(len(originals), 11)
    assert [ax.get_title() for ax in rows[0]] == ["original"] + [str(d) for d in range(10)]
    drawn = np.array(image_arrays(fig)).reshape(len(originals), 11, 784)
    np.testing.assert_array_equal(drawn[:, 0], originals)
    np.testing.assert_array_equal(drawn[:, 1:], redrawn)


def test_latent_traversals_label_dimensions_and_values():
    images, values, digit = CASES["latent_traversals"][2]
    fig = plotting.latent_traversals_figure(images, values, digit)
    rows = np.array(fig.axes).reshape(images.shape[:2])
    assert [ax.get_ylabel() for ax in rows[:, 0]] == ["z[0]", "z[1]", "z[2]"]
    assert [ax.get_title() for ax in rows[0]] == ["-3.0", "-1.5", "0.0", "1.5", "3.0"]
    assert str(digit) in fig.get_suptitle()
    drawn = np.array(image_arrays(fig)).reshape(images.shape)
    np.testing.assert_array_equal(drawn, images)


def test_latent_traversal_values_keep_the_decimals_that_tell_steps_apart():
    values = np.linspace(-3, 3, 9, dtype=np.float32)
    assert [plotting.sweep_value_title(value) for value in values] == [
        "-3.0", "-2.25", "-1.5", "-0.75", "0.0", "0.75", "1.5", "2.25", "3.0"]


def test_loss_curves_show_train_and_val_losses_and_accuracy():
    data = history(4)
    fig = plotting.loss_curves_figure(data)
    vae_ax, classifier_ax, accuracy_ax = fig.axes
    for ax, metric in [(vae_ax, "vae_loss"), (classifier_ax, "classifier_loss")]:
        assert [text.get_text() for text in ax.get_legend().get_texts()] == ["train", "val"]
        for line, split in zip(ax.get_lines(), ["train", "val"]):
            np.testing.assert_array_equal(line.get_ydata(), data[f"{split}/{metric}"])
    assert "nats/image" in vae_ax.get_ylabel()
    np.testing.assert_allclose(accuracy_ax.get_lines()[0].get_ydata(), 100 * data["val/accuracy"])
    assert all(ax.get_xlabel() == "epoch" and ax.get_title() for ax in fig.axes)


def test_loss_curves_draw_a_single_epoch():
    line = plotting.loss_curves_figure(history(1)).axes[0].get_lines()[0]
    assert line.get_marker() == "o"


def test_pca_2d_matches_an_eigendecomposition_of_the_covariance():
    x, _ = latent_means(np.random.default_rng(1), 300, 5)
    projected, explained = plotting.pca_2d(x)
    centred = x - x.mean(axis=0)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(centred, rowvar=False))
    top_two = np.argsort(eigenvalues)[::-1][:2]
    np.testing.assert_allclose(explained, eigenvalues[top_two] / eigenvalues.sum())
    expected = centred @ eigenvectors[:, top_two]
    for component in range(2):
        sign = np.sign(expected[:, component] @ projected[:, component])
        np.testing.assert_allclose(projected[:, component], sign * expected[:, component],
                                   atol=1e-9)


def test_pca_2d_of_one_dimension_keeps_it_whole():
    x = np.random.default_rng(2).normal(size=(50, 1))
    projected, explained = plotting.pca_2d(x)
    np.testing.assert_allclose(np.abs(projected[:, 0]), np.abs(x[:, 0] - x.mean()))
    np.testing.assert_array_equal(projected[:, 1], 0)
    np.testing.assert_allclose(explained, [1.0, 0.0])


def test_pca_2d_of_identical_points_is_all_zeros():
    projected, explained = plotting.pca_2d(np.ones((4, 3)))
    np.testing.assert_array_equal(projected, 0)
    np.testing.assert_array_equal(explained, 0)


@pytest.mark.parametrize("z_dim", [1, 2])
def test_latent_pca_renders_small_latent_spaces(z_dim, tmp_path):
    means, labels = latent_means(np.random.default_rng(3), 200, z_dim)
    plotting.plot_latent_pca(means, labels, tmp_path / "pca.png")
    read_png(tmp_path / "pca.png")
    ax = plotting.latent_pca_figure(means, labels).axes[0]
    assert ax.get_xlabel().startswith("PC1 (") and ax.get_xlabel().endswith("% of variance)")
    assert ax.get_ylabel().startswith("digit (jittered)" if z_dim == 1 else "PC2 (")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [str(d) for d in range(10)]


def test_an_unconditional_sample_grid_has_no_digit_columns():
    fig = plotting.sample_grid_figure(constant_images(sample_intensity(EPOCHS)), False)
    assert len(fig.axes) == EPOCHS * 10
    assert not any(ax.get_title() for ax in fig.axes)
    assert "the same ten z's" in fig.get_suptitle()


def test_latent_manifold_is_one_canvas_with_z1_falling_down_the_rows():
    steps = 3
    images = constant_images(np.arange(steps * steps).reshape(steps, steps) / 10)
    fig = plotting.latent_manifold_figure(images, np.array([-1.0, 0.0, 1.0]), 3)
    canvas = fig.axes[0].images[0].get_array()
    assert canvas.shape == (28 * steps, 28 * steps)
    assert canvas[0, 28 * 2] == pytest.approx(0.2) and canvas[28 * 2, 0] == pytest.approx(0.6)
    labels = [tick.get_text() for tick in fig.axes[0].get_yticklabels()]
    assert labels == ["1.0", "0.0", "-1.0"]
    assert fig.axes[0].get_xlabel() == "z[0]" and "digit 3" in fig.get_suptitle()


def test_latent_scatter_draws_the_means_on_their_own_axes():
    means, labels = latent_means(np.random.default_rng(0), 50, 2)
    fig = plotting.latent_scatter_figure(means, labels)
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), means)


def test_the_latent_units_figure_greys_the_inactive_units_and_counts_the_active_ones():
    activity_ax, kl_ax = plotting.latent_units_figure([UNITS]).axes
    assert activity_ax.get_title() == "3 of 5 units active (activity above 0.01, dashed)"
    for ax, values in ((activity_ax, UNITS["activity"]), (kl_ax, UNITS["kl"])):
        bars = ax.patches
        np.testing.assert_allclose([bar.get_height() for bar in bars], values)
        grey = [bar.get_facecolor() == matplotlib.colors.to_rgba("tab:gray") for bar in bars]
        assert grey == [False, True, False, True, False]
    assert kl_ax.get_title().endswith("6.53 nats in all")


def test_the_latent_units_figure_of_two_layers_has_a_column_per_layer():
    z1_activity, z2_activity, z1_kl, z2_kl = plotting.latent_units_figure(
        [UNITS, SECOND_LAYER_UNITS]).axes  # row-major: the activity row, then the KL row
    assert z1_activity.get_title().startswith("z1: 3 of 5 units active")
    assert z2_activity.get_title().startswith("z2: 1 of 2 units active")
    assert z1_kl.get_title().startswith("z1: KL(q(u|x) || p(u|z above))")
    assert z2_kl.get_title().startswith("z2: KL(q(u|z below) || N(0, 1))")
    np.testing.assert_allclose([bar.get_height() for bar in z2_kl.patches], [0.0, 1.5])
    assert z2_kl.get_title().endswith("1.50 nats in all")
