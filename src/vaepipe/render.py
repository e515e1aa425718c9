"""The render stage: what each figure shows, computed from the trained model, then drawn."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from vaepipe import plotting
from vaepipe.conditioning import one_hot
from vaepipe.data import load_split
from vaepipe.errors import PipelineError
from vaepipe.files import atomic_dir
from vaepipe.model import IMAGE_PIXELS, NUM_DIGITS, VAE, load_model, to_float_images
from vaepipe.params import Params

TRAVERSAL_RANGE = 3.0
MANIFOLD_STEPS = 15  # points per axis of the latent-manifold grid of a 2-dimensional z


def read_history(live_dir: str | Path, split_metrics=("vae_loss",)) -> pd.DataFrame:
    """Per-epoch metrics from the dvclive files of the train stage, one row per measured epoch
    (from 1): each of `split_metrics` (a conditioning's) on the train and val splits."""
    columns, steps = {}, None
    for metric in [f"{split}/{name}" for name in split_metrics for split in ("train", "val")]:
        path = Path(live_dir) / "plots" / "metrics" / f"{metric}.tsv"
        its_steps, columns[metric] = _read_metric(path, metric.split("/")[-1])
        if steps is None:
            steps, first = its_steps, path
        elif its_steps != steps:
            raise PipelineError(f"{path}: holds other epochs than {first}; rerun "
                                f"`dvc repro train`")
    return pd.DataFrame({"epoch": [step + 1 for step in steps], **columns})


def read_latent_units(path: str | Path) -> list[dict]:
    """The test split's entry of evaluation's latent_units.json, one record per stochastic
    layer: per-unit activity and KL of equal lengths, and the activity threshold."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: missing (run `dvc repro evaluate`)")
    try:
        units = json.loads(path.read_bytes())["test"]
        return [_layer_units(path, layer) for layer in
                ([units] if isinstance(units, dict) else units)]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise PipelineError(f"{path}: not evaluation's latent units ({type(error).__name__}: "
                            f"{error}); rerun `dvc repro evaluate`") from None


def _layer_units(path: Path, units: dict) -> dict:
    activity, kl = (np.asarray(units[key], dtype=np.float64) for key in ("activity", "kl"))
    threshold = float(units["activity_threshold"])
    if activity.ndim != 1 or activity.shape != kl.shape or not np.all(np.isfinite(activity)):
        raise PipelineError(f"{path}: activity and kl must be lists of finite numbers, one per "
                            f"unit; rerun `dvc repro evaluate`")
    return {"activity": activity, "kl": kl, "activity_threshold": threshold}


def _read_metric(path: Path, name: str) -> tuple[list[int], list[float]]:
    """The steps and values of one dvclive file: a header `step<TAB>name`, then one step and
    one finite number a line."""
    if not path.exists():
        raise PipelineError(f"{path}: missing (run `dvc repro train`)")
    try:
        header, *rows = path.read_text(encoding="utf-8").splitlines() or [""]
    except UnicodeDecodeError:
        raise PipelineError(f"{path}: not text; rerun `dvc repro train`") from None
    if header != f"step\t{name}":
        raise _damaged(path, 1, f"expected the header 'step<TAB>{name}', got {header!r}")
    parsed = [_metric_row(path, line, row, name) for line, row in enumerate(rows, start=2)]
    return [step for step, _ in parsed], [value for _, value in parsed]


def _metric_row(path: Path, line: int, row: str, name: str) -> tuple[int, float]:
    fields = row.split("\t")
    if len(fields) != 2:
        raise _damaged(path, line, f"expected a step and a {name} separated by a tab, got {row!r}")
    step, value = fields
    if not step.isdecimal():
        raise _damaged(path, line, f"step: not a whole number: {step!r}")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise _damaged(path, line, f"{name}: not a finite number: {value!r}")
    return int(step), number


def _damaged(path: Path, line: int, problem: str) -> PipelineError:
    return PipelineError(f"{path}: line {line}: {problem}; rerun `dvc repro train`")


def reconstruct(model: VAE, x: np.ndarray) -> np.ndarray:
    """Decode each image's mean of q(z1|x) with its predicted digit probabilities: z1 is what
    the decoder reads, with any number of stochastic layers."""
    mean, _ = model.encode(x)
    return np.asarray(model.mean_image(mean, model.digit_probs(x)))


def redraw_as_every_digit(model: VAE, x: np.ndarray) -> np.ndarray:
    """Keep each image's style (its latent mean) and draw it as digits 0-9: (n, 10, 784)."""
    mu = np.asarray(model.top_mean(x))
    z = np.repeat(mu, NUM_DIGITS, axis=0)
    digits = np.tile(np.arange(NUM_DIGITS), len(x))
    return np.asarray(model.decode(z, one_hot(digits))).reshape(len(x), NUM_DIGITS, -1)


def latent_traversals(model: VAE, steps: int, digit: int) -> tuple[np.ndarray, np.ndarray]:
    """Sweep each latent dimension from -3 to 3 around z = 0 with the digit fixed (if the model
    is conditional)."""
    values = np.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, steps, dtype=np.float32)
    z = np.zeros((model.z_dim, steps, model.z_dim), dtype=np.float32)
    for dim in range(model.z_dim):
        z[dim, :, dim] = values
    flat = z.reshape(-1, model.z_dim)
    digits = model.conditioning.decoder_input(np.full(len(flat), digit))
    images = np.asarray(model.decode(flat, digits))
    return images.reshape(model.z_dim, steps, -1), values


def latent_manifold(model: VAE, steps: int, digit: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2-dimensional z decoded over a grid from -3 to 3 (steps, steps, 784), z[1] falling down
    the rows and z[0] rising along the columns, with the digit fixed (if conditional)."""
    values = np.linspace(-TRAVERSAL_RANGE, TRAVERSAL_RANGE, steps, dtype=np.float32)
    z1, z0 = np.meshgrid(values[::-1], values, indexing="ij")
    flat = np.stack([z0.ravel(), z1.ravel()], axis=1)
    digits = model.conditioning.decoder_input(np.full(len(flat), digit))
    images = np.asarray(model.decode(flat, digits))
    return images.reshape(steps, steps, -1), values


def load_samples(path: str | Path, rows: int) -> np.ndarray:
    """The train stage's sample rows (rows, 10, 784), one per measured epoch."""
    try:
        samples = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise PipelineError(f"{path}: cannot be read ({type(error).__name__}); rerun "
                            f"`dvc repro train` or `dvc checkout {path}`") from None
    if samples.shape != (rows, NUM_DIGITS, IMAGE_PIXELS):
        raise PipelineError(f"{path}: holds an array of shape {samples.shape}, not the sample "
                            f"rows of the {rows} measured epochs ({rows}, 10, 784); rerun "
                            f"`dvc repro train`")
    return samples


def render_stage(params: Params, model_dir: str | Path, samples_path: str | Path,
                 live_dir: str | Path, prepared_dir: str | Path, units_path: str | Path,
                 out_dir: str | Path) -> None:
    """Write the figures into `out_dir`, all or none: seven for the article's model; no style
    transfer without a classifier; with a 2-dimensional z, the latent manifold and scatter too.
    `units_path` is evaluation's latent_units.json."""
    with atomic_dir(out_dir) as staging:
        model = load_model(model_dir)
        test = load_split(prepared_dir, "test")
        x = to_float_images(test.images)
        shown = params.render
        drawn_as = model.conditioning.digits  # what the decoder can be told to draw
        digit = shown.traversal_digit if drawn_as else None
        history = read_history(live_dir, model.conditioning.split_metrics)
        plotting.plot_sample_grid(load_samples(samples_path, len(history)),
                                  staging / "sample_grid.png", bool(drawn_as),
                                  history["epoch"])
        plotting.plot_loss_curves(history, staging / "loss_curves.png")
        originals = x[:shown.reconstructions]
        plotting.plot_reconstructions(originals, reconstruct(model, originals),
                                      staging / "reconstructions.png")
        if drawn_as:
            sources = x[:shown.style_sources]
            plotting.plot_style_transfer(sources, redraw_as_every_digit(model, sources),
                                         staging / "style_transfer.png")
        latent_means = np.asarray(model.top_mean(x))
        plotting.plot_latent_pca(latent_means, test.labels, staging / "latent_pca.png")
        images, values = latent_traversals(model, shown.traversal_steps, shown.traversal_digit)
        plotting.plot_latent_traversals(images, values, digit, staging / "latent_traversals.png")
        plotting.plot_latent_units(read_latent_units(units_path), staging / "latent_units.png")
        if model.z_dim == 2:
            images, values = latent_manifold(model, MANIFOLD_STEPS, shown.traversal_digit)
            plotting.plot_latent_manifold(images, values, digit, staging / "latent_manifold.png")
            plotting.plot_latent_scatter(latent_means, test.labels, staging / "latent_scatter.png")
