"""Figures of the render stage: numpy / pandas in, PNG out, the same bytes for the same inputs.

Each `plot_*` function saves the Figure its `*_figure` twin builds, so tests can inspect the
figure without parsing pixels. Images are float arrays in [0, 1] of shape (..., 784).
"""

import io
import math
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never needs a display

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.textpath import TextPath
from matplotlib.ticker import MaxNLocator

from vaepipe.data import IMAGE_SHAPE, NUM_DIGITS
from vaepipe.files import atomic_write_bytes


DPI = 100
IMAGE_CMAP = "Greys_r"
DIGIT_CMAP = "tab10"
MAX_SAMPLE_ROWS = 20  # rows of the sample grid (the article's 20 epochs)

# Image grids are laid out in inches so that every 28x28 panel has the same size on the page.
PANEL_INCHES = 0.75
GAP_INCHES = 0.06
MARGIN_INCHES = 0.15
SUPTITLE_BAND_INCHES = 0.55
COLUMN_TITLE_BAND_INCHES = 0.3
ROW_LABEL_PAD_INCHES = 0.15

SUPTITLE_FONTSIZE = 14
ROW_LABEL_FONTSIZE = 12
COLUMN_TITLE_FONTSIZE = 11
AXIS_LABEL_FONTSIZE = 12


def save_png(fig: Figure, path: str | os.PathLike) -> None:
    """Render `fig` to PNG bytes and write them atomically; no version or time in the file."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def text_width_inches(text: str, fontsize: float) -> float:
    """Width of `text` in the default font, measured without rendering anything."""
    return TextPath((0, 0), text, size=fontsize).get_extents().width / 72


def image_grid_figure(images: np.ndarray, title: str, row_labels: Sequence[str] | None = None,
                      column_titles: Sequence[str] | None = None) -> Figure:
    """Draw images (rows, cols, 784) as a grid of equal square panels, labels on the left."""
    images = np.asarray(images)
    rows, cols = images.shape[:2]
    panels = images.reshape(rows, cols, *IMAGE_SHAPE)
    label_width = (max(text_width_inches(label, ROW_LABEL_FONTSIZE) for label in row_labels)
                   + ROW_LABEL_PAD_INCHES) if row_labels else 0.0
    grid_width = cols * PANEL_INCHES + (cols - 1) * GAP_INCHES
    grid_height = rows * PANEL_INCHES + (rows - 1) * GAP_INCHES
    top_band = SUPTITLE_BAND_INCHES + (COLUMN_TITLE_BAND_INCHES if column_titles else 0.0)
    # The figure is widened when the title is longer than the grid; the grid stays centred.
    content_width = max(label_width + grid_width, text_width_inches(title, SUPTITLE_FONTSIZE))
    width = content_width + 2 * MARGIN_INCHES
    height = top_band + grid_height + MARGIN_INCHES
    grid_left = (width - label_width - grid_width) / 2 + label_width

    fig = Figure(figsize=(width, height))
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
        left=grid_left / width, right=(grid_left + grid_width) / width,
        bottom=MARGIN_INCHES / height, top=1 - top_band / height,
        wspace=GAP_INCHES / PANEL_INCHES, hspace=GAP_INCHES / PANEL_INCHES))
    for ax, panel in zip(axes.flat, panels.reshape(-1, *IMAGE_SHAPE)):
        ax.imshow(panel, cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, label in zip(axes[:, 0], row_labels or ()):
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=ROW_LABEL_FONTSIZE)
    for ax, column_title in zip(axes[0], column_titles or ()):
        ax.set_title(column_title, fontsize=COLUMN_TITLE_FONTSIZE)
    fig.suptitle(title, fontsize=SUPTITLE_FONTSIZE, va="center",
                 y=1 - SUPTITLE_BAND_INCHES / 2 / height)
    return fig


def digit_titles() -> list[str]:
    return [str(digit) for digit in range(NUM_DIGITS)]


def sample_grid_figure(samples: np.ndarray, conditional: bool = True,
                       epochs: Sequence[int] | None = None) -> Figure:
    """samples (rows, 10, 784), one row per measured epoch (`epochs`, by default 1, 2, ...):
    the images decoded from one z per epoch as digits 0-9, or, for an unconditional model, from
    the same ten z's every epoch. Of more than MAX_SAMPLE_ROWS rows, evenly spaced ones are
    drawn, the first and the last among them."""
    epochs = np.arange(1, len(samples) + 1) if epochs is None else np.asarray(epochs)
    shown = np.unique(np.linspace(0, len(samples) - 1, min(len(samples), MAX_SAMPLE_ROWS))
                      .round().astype(int))
    samples, row_labels = np.asarray(samples)[shown], [f"epoch {e}" for e in epochs[shown]]
    if not conditional:
        return image_grid_figure(samples, "Samples per epoch: the same ten z's in every row",
                                 row_labels=row_labels)
    return image_grid_figure(samples, "Samples per epoch: one z per row, digits 0-9",
                             row_labels=row_labels, column_titles=digit_titles())


def plot_sample_grid(samples: np.ndarray, path: str | os.PathLike, conditional: bool = True,
                     epochs: Sequence[int] | None = None) -> None:
    save_png(sample_grid_figure(samples, conditional, epochs), path)


def samples_figure(samples: np.ndarray, digits: Sequence[int]) -> Figure:
    """samples (count, len(digits), 784): sample i is one z drawn as each of `digits`; no
    digits (a model without conditioning): (count, 1, 784).

    Several digits: one z per row and one digit per column, so each row shows one style. A
    single digit's samples, or a model's without digits, would make one tall column, so they
    fill a near-square grid row by row instead, and the cells left over in its last row stay
    empty.
    """
    samples = np.asarray(samples)
    if len(digits) > 1:
        return image_grid_figure(samples, "Samples: one z per row, drawn as each digit",
                                 column_titles=[str(digit) for digit in digits])
    count = len(samples)
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    cells = np.zeros((rows * columns, samples.shape[-1]), dtype=samples.dtype)
    cells[:count] = samples[:, 0]
    fig = image_grid_figure(cells.reshape(rows, columns, -1),
                            f"Samples of digit {digits[0]}" if digits else "Samples")
    for ax in fig.axes[count:]:
        ax.set_visible(False)
    return fig


def plot_samples(samples: np.ndarray, digits: Sequence[int], path: str | os.PathLike) -> None:
    save_png(samples_figure(samples, digits), path)


def reconstructions_figure(originals: np.ndarray, reconstructions: np.ndarray) -> Figure:
    """originals and reconstructions (n, 784): each original above its reconstruction."""
    return image_grid_figure(np.stack([originals, reconstructions]),
                             "Reconstructions: each image above its reconstruction",
                             row_labels=["original", "reconstruction"])


def plot_reconstructions(originals: np.ndarray, reconstructions: np.ndarray,
                         path: str | os.PathLike) -> None:
    save_png(reconstructions_figure(originals, reconstructions), path)


def style_transfer_figure(originals: np.ndarray, redrawn: np.ndarray) -> Figure:
    """originals (n, 784), redrawn (n, 10, 784): each image, then its style drawn as 0-9."""
    panels = np.concatenate([np.asarray(originals)[:, None], redrawn], axis=1)
    return image_grid_figure(panels, "Style transfer: each image's style redrawn as digits 0-9",
                             column_titles=["original", *digit_titles()])


def plot_style_transfer(originals: np.ndarray, redrawn: np.ndarray,
                        path: str | os.PathLike) -> None:
    save_png(style_transfer_figure(originals, redrawn), path)


def sweep_value_title(value: float) -> str:
    """Up to two decimals, at least one: -3.0, -2.25, 0.75, so no two steps look alike."""
    return np.format_float_positional(value, precision=2, unique=True, trim="0")


def latent_traversals_figure(images: np.ndarray, values: np.ndarray, digit: int | None) -> Figure:
    """images (z_dim, steps, 784): row i sweeps latent dimension i over `values` (steps,), with
    `digit` given to the decoder (None: an unconditional model)."""
    of_digit = f" of digit {digit}" if digit is not None else ""
    return image_grid_figure(
        images, f"Latent traversals{of_digit}: row z[i] sweeps dimension i",
        row_labels=[f"z[{dim}]" for dim in range(len(images))],
        column_titles=[sweep_value_title(value) for value in values])


def plot_latent_traversals(images: np.ndarray, values: np.ndarray, digit: int | None,
                           path: str | os.PathLike) -> None:
    save_png(latent_traversals_figure(images, values, digit), path)


def latent_manifold_figure(images: np.ndarray, values: np.ndarray, digit: int | None) -> Figure:
    """images (steps, steps, 784) decoded over a grid of z = (z[0], z[1]): row i has
    z[1] = values[-1 - i], column j z[0] = values[j]; one canvas, as keras-io's VAE example
    draws it."""
    steps = len(values)
    side = IMAGE_SHAPE[0]
    canvas = np.asarray(images).reshape(steps, steps, *IMAGE_SHAPE).transpose(0, 2, 1, 3)
    fig = Figure(figsize=(8, 8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(canvas.reshape(steps * side, steps * side), cmap=IMAGE_CMAP, vmin=0.0, vmax=1.0,
              interpolation="nearest")
    centres = side // 2 + side * np.arange(steps)
    ax.set_xticks(centres, [sweep_value_title(value) for value in values])
    ax.set_yticks(centres, [sweep_value_title(value) for value in values[::-1]])
    ax.set_xlabel("z[0]", fontsize=AXIS_LABEL_FONTSIZE)
    ax.set_ylabel("z[1]", fontsize=AXIS_LABEL_FONTSIZE)
    of_digit = f" of digit {digit}" if digit is not None else ""
    fig.suptitle(f"Latent manifold{of_digit}: images decoded over a grid of z",
                 fontsize=SUPTITLE_FONTSIZE)
    return fig


def plot_latent_manifold(images: np.ndarray, values: np.ndarray, digit: int | None,
                         path: str | os.PathLike) -> None:
    save_png(latent_manifold_figure(images, values, digit), path)


def draw_train_and_val(ax, history: pd.DataFrame, metric: str, title: str, ylabel: str) -> None:
    """Plot `train/<metric>` and `val/<metric>` against the epoch on one panel."""
    for split in ("train", "val"):
        # Markers keep a one-epoch history visible.
        ax.plot(history["epoch"], history[f"{split}/{metric}"], marker="o", markersize=3,
                label=split)
    label_history_axes(ax, title, ylabel)
    ax.legend()


def label_history_axes(ax, title: str, ylabel: str) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch", fontsize=AXIS_LABEL_FONTSIZE)
    ax.set_ylabel(ylabel, fontsize=AXIS_LABEL_FONTSIZE)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def loss_curves_figure(history: pd.DataFrame) -> Figure:
    """history: one row per epoch (`epoch` from 1) with train/val losses and val/accuracy; the
    VAE loss alone for an unconditional model (no classifier)."""
    if "val/accuracy" not in history:
        fig = Figure(figsize=(6, 4.5), layout="constrained")
        draw_train_and_val(fig.subplots(), history, "vae_loss", "VAE loss (negative ELBO)",
                           "loss (nats/image)")
        fig.suptitle("Training history", fontsize=SUPTITLE_FONTSIZE)
        return fig
    fig = Figure(figsize=(14, 4.5), layout="constrained")
    vae_ax, classifier_ax, accuracy_ax = fig.subplots(1, 3)
    draw_train_and_val(vae_ax, history, "vae_loss", "VAE loss (negative ELBO)",
                       "loss (nats/image)")
    # The train stage logs this term as it enters the total loss: weighted cross-entropy.
    draw_train_and_val(classifier_ax, history, "classifier_loss", "Digit classifier loss",
                       "weight × cross-entropy (nats/image)")
    accuracy_ax.plot(history["epoch"], 100 * history["val/accuracy"], marker="o", markersize=3,
                     color="tab:green")
    label_history_axes(accuracy_ax, "Validation accuracy of the classifier", "accuracy (%)")
    fig.suptitle("Training history", fontsize=SUPTITLE_FONTSIZE)
    return fig


def plot_loss_curves(history: pd.DataFrame, path: str | os.PathLike) -> None:
    save_png(loss_curves_figure(history), path)


def latent_units_figure(layers: list[dict]) -> Figure:
    """layers: per stochastic layer, each latent unit's activity Cov_x(E_q[u]) and mean KL, and
    the threshold above which a unit counts as active; a column of two panels per layer, one
    bar per unit in each panel, the inactive ones grey."""
    sizes = [len(layer["activity"]) for layer in layers]
    width = (max(6.0, 2.0 + 0.16 * sizes[0]) if len(layers) == 1
             else sum(max(4.5, 1.5 + 0.16 * size) for size in sizes))  # titles on two lines
    fig = Figure(figsize=(width, 6.5), layout="constrained")
    axes = fig.subplots(2, len(layers), sharex="col", squeeze=False,
                        width_ratios=[max(4.5, 1.5 + 0.16 * size) for size in sizes])
    for l, (layer, (activity_ax, kl_ax)) in enumerate(zip(layers, axes.T)):
        named = f"z{l + 1}: " if len(layers) > 1 else ""
        kl_of = (f"q(u|{'x' if l == 0 else 'z below'}) || "
                 f"{'N(0, 1)' if l == len(layers) - 1 else 'p(u|z above)'}")
        _latent_unit_panels(layer, activity_ax, kl_ax, named, kl_of)
    fig.suptitle("Latent units on the test images", fontsize=SUPTITLE_FONTSIZE)
    return fig


def _latent_unit_panels(layer: dict, activity_ax, kl_ax, named: str, kl_of: str) -> None:
    activity, kl, threshold = layer["activity"], layer["kl"], layer["activity_threshold"]
    active = activity > threshold
    unit = np.arange(1, len(activity) + 1)
    colors = np.where(active, "tab:blue", "tab:gray")
    activity_ax.bar(unit, activity, color=colors)
    activity_ax.axhline(threshold, color="tab:red", linestyle="--")
    activity_ax.set_yscale("log")
    sep = "\n" if named else " "  # a layer's column is narrow: its titles take two lines
    activity_ax.set_title(f"{named}{int(active.sum())} of {len(unit)} units active{sep}"
                          f"(activity above {threshold:g}, dashed)")
    activity_ax.set_ylabel("Cov_x(E_q[u]), log scale", fontsize=AXIS_LABEL_FONTSIZE)
    kl_ax.bar(unit, kl, color=colors)
    kl_ax.set_title(f"{named}KL({kl_of}),{sep}mean over images: {kl.sum():.2f} "
                    f"nats in all")
    kl_ax.set_ylabel("KL (nats/image)", fontsize=AXIS_LABEL_FONTSIZE)
    kl_ax.set_xlabel("latent unit", fontsize=AXIS_LABEL_FONTSIZE)
    kl_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in (activity_ax, kl_ax):
        ax.grid(alpha=0.3, axis="y")


def plot_latent_units(layers: list[dict], path: str | os.PathLike) -> None:
    save_png(latent_units_figure(layers), path)


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of x (n, d) on their first two principal components.

    Returns the projections (n, 2) and each component's share of the total variance (2,).
    Components beyond the data's rank (d = 1, n = 1) are zeros. Each component's sign is fixed
    so its largest loading is positive, which keeps the picture stable across LAPACK builds.
    """
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, singular_values, components = np.linalg.svd(centred, full_matrices=False)
    largest = np.abs(components).argmax(axis=1)
    components *= np.sign(components[np.arange(len(components)), largest])[:, None]
    variances = singular_values ** 2
    total = variances.sum()
    ratios = variances / total if total > 0 else np.zeros_like(variances)
    projected = np.zeros((len(x), 2))
    kept = min(2, len(components))
    projected[:, :kept] = centred @ components[:kept].T
    explained = np.zeros(2)
    explained[:kept] = ratios[:kept]
    return projected, explained


def latent_pca_figure(latent_means: np.ndarray, labels: np.ndarray) -> Figure:
    """Scatter the latent means (n, z_dim) on their first two principal components by digit."""
    latent_means = np.asarray(latent_means)
    labels = np.asarray(labels, dtype=np.int64)  # integers index tab10's colours directly
    projected, explained = pca_2d(latent_means)
    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.subplots()
    ax.set_xlabel(f"PC1 ({100 * explained[0]:.1f}% of variance)", fontsize=AXIS_LABEL_FONTSIZE)
    if latent_means.shape[1] == 1:
        # One dimension has no second component: spread the points by digit instead.
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(labels))
        y = labels + jitter
        ax.set_yticks(range(NUM_DIGITS))
        ax.set_ylabel("digit (jittered)", fontsize=AXIS_LABEL_FONTSIZE)
    else:
        y = projected[:, 1]
        ax.set_ylabel(f"PC2 ({100 * explained[1]:.1f}% of variance)",
                      fontsize=AXIS_LABEL_FONTSIZE)
    scatter_by_digit(ax, projected[:, 0], y, labels)
    fig.suptitle(f"Latent means of {len(labels)} images on their principal components",
                 fontsize=SUPTITLE_FONTSIZE)
    return fig


def scatter_by_digit(ax, x: np.ndarray, y: np.ndarray, labels: np.ndarray) -> None:
    """Points coloured by digit, with a legend of the ten colours."""
    digit_colours = colormaps[DIGIT_CMAP]
    # One scatter in data order, so no digit is systematically drawn over the others.
    ax.scatter(x, y, c=digit_colours(labels), s=3, alpha=0.6, linewidths=0)
    handles = [Line2D([], [], marker="o", linestyle="", color=digit_colours(digit),
                      label=str(digit)) for digit in range(NUM_DIGITS)]
    ax.legend(handles=handles, title="digit", loc="center left", bbox_to_anchor=(1.01, 0.5))


def latent_scatter_figure(latent_means: np.ndarray, labels: np.ndarray) -> Figure:
    """Scatter 2-dimensional latent means (n, 2) on their own axes, coloured by digit, as
    keras-io's VAE example draws them."""
    latent_means = np.asarray(latent_means)
    labels = np.asarray(labels, dtype=np.int64)  # integers index tab10's colours directly
    fig = Figure(figsize=(7.5, 6), layout="constrained")
    ax = fig.subplots()
    scatter_by_digit(ax, latent_means[:, 0], latent_means[:, 1], labels)
    ax.set_xlabel("z[0]", fontsize=AXIS_LABEL_FONTSIZE)
    ax.set_ylabel("z[1]", fontsize=AXIS_LABEL_FONTSIZE)
    fig.suptitle(f"Latent means of {len(labels)} images", fontsize=SUPTITLE_FONTSIZE)
    return fig


def plot_latent_scatter(latent_means: np.ndarray, labels: np.ndarray,
                        path: str | os.PathLike) -> None:
    save_png(latent_scatter_figure(latent_means, labels), path)


def plot_latent_pca(latent_means: np.ndarray, labels: np.ndarray,
                    path: str | os.PathLike) -> None:
    save_png(latent_pca_figure(latent_means, labels), path)
