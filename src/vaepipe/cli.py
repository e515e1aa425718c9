"""The `vaepipe` command: draw, reconstruct, restyle and encode with a trained model.

TensorFlow takes seconds to import, so it (and pandas, matplotlib) is imported only once a
command has checked its arguments: `--help` and a mistyped option answer at once.
"""

import argparse
import contextlib
import io
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from vaepipe.data import IMAGE_SHAPE, NUM_DIGITS, load_split
from vaepipe.errors import PipelineError, run_stage
from vaepipe.files import atomic_write_bytes

MAX_PANELS = 400  # images in one picture: beyond this the PNG gets unwieldy and slow to draw
RECONSTRUCTION_PANELS = 2  # the original above its reconstruction
RESTYLE_PANELS = 1 + NUM_DIGITS  # the original, then its style as every digit

EXAMPLES = """\
examples:
  vaepipe sample --digit 7 --count 16 -o sevens.png
  vaepipe reconstruct --index 0 5 9 -o reconstructions.png
  vaepipe restyle --count 4 -o styles.png
  vaepipe encode -o latents.csv --variances --predicted-digit
  vaepipe info
"""


# ---- reading and checking the inputs (numpy only, before TensorFlow loads) ----

def _check_digits(digits: Sequence[int]) -> None:
    for digit in digits:
        if not 0 <= digit < NUM_DIGITS:
            raise PipelineError(f"--digit: {digit} is not a digit (0-{NUM_DIGITS - 1})")


def _check_at_least(option: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise PipelineError(f"{option}: must be at least {minimum}, got {value}")


def _check_fits(option: str, images: int, limit: int | None, what: str = "images") -> None:
    if limit is not None and images > limit:
        raise PipelineError(f"{option}: at most {limit} {what} fit in one picture, got {images}")


def _check_output(path: Path, suffixes: Sequence[str]) -> None:
    """The output's name, and its folder: it is never created, as a mistyped path would be."""
    if path.suffix.lower() not in suffixes:
        raise PipelineError(f"-o: {path}: the name must end in {' or '.join(suffixes)}")
    if not path.parent.is_dir():
        raise PipelineError(f"-o: {path}: the folder {path.parent} does not exist")


def _load_npy(path: Path) -> np.ndarray:
    """The array of a .npy file; anything else (no file, an empty one, an .npz, a truncated or
    pickled array) is one line."""
    try:
        with open(path, "rb") as stream:
            magic = stream.read(len(np.lib.format.MAGIC_PREFIX))
            if magic != np.lib.format.MAGIC_PREFIX:
                what = "an empty file" if not magic else "not a .npy file (no NumPy header)"
                raise PipelineError(f"IMAGES: {path}: {what}; expected images (n, 28, 28)")
            stream.seek(0)
            return np.load(stream, allow_pickle=False)
    except FileNotFoundError:
        raise PipelineError(f"IMAGES: {path}: no such file") from None
    except (OSError, ValueError, EOFError) as error:
        raise PipelineError(f"IMAGES: {path}: unreadable ({error})") from None


def _read_npy_images(path: Path) -> np.ndarray:
    """Images (n, 28, 28) from a .npy file: uint8 as MNIST stores them, or floats in [0, 1]."""
    if path.suffix.lower() != ".npy":
        raise PipelineError(f"IMAGES: {path}: expected a .npy file of images (n, 28, 28)")
    images = _load_npy(path)
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or len(images) == 0:
        raise PipelineError(f"IMAGES: {path}: expected images (n, 28, 28), got shape "
                            f"{images.shape}")
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise PipelineError(f"IMAGES: {path}: expected uint8 pixels or floats in [0, 1], got "
                            f"{images.dtype}")
    if not np.all((images >= 0) & (images <= 1)):  # NaN fails both comparisons
        raise PipelineError(f"IMAGES: {path}: float pixels must lie in [0, 1]; some do not")
    return images


def _source(args) -> tuple[np.ndarray, str]:
    """The images the command works on, and how to name them in messages."""
    if args.images is None:
        return load_split(args.data, "test").images, f"the test split of {args.data}"
    return _read_npy_images(args.images), str(args.images)


def _chosen(args, limit: int | None) -> tuple[np.ndarray, str]:
    """The images picked by --index or --count (the first ones); `limit` None: any number."""
    images, source = _source(args)
    if args.index:
        _check_fits("--index", len(args.index), limit)
        for index in args.index:
            if not 0 <= index < len(images):
                raise PipelineError(f"--index: {index} is out of range: {source} holds "
                                    f"{len(images)} images (0-{len(images) - 1})")
        chosen = images[args.index]
    else:
        count = args.count if args.count is not None else min(args.default_count, len(images))
        _check_at_least("--count", count, 1)
        _check_fits("--count", count, limit)
        if count > len(images):
            raise PipelineError(f"--count: {source} holds only {len(images)} images, "
                                f"asked for {count}")
        chosen = images[:count]
    return chosen, f"{len(chosen)} images of {source}"


# ---- the model and the outputs ----

def _load_model(directory: Path):
    """The trained model; TensorFlow is imported only now (quietly, by vaepipe.model)."""
    from vaepipe.model import load_model
    return load_model(directory)


def _conditional_model(directory: Path, what: str):
    """The trained model, which `what` needs to be conditioned on digits."""
    model = _load_model(directory)
    if not model.conditioning.digits:
        raise PipelineError(f"{directory}: {what} needs a model conditioned on digits; this one "
                            f"has conditioning: none")
    return model


def _model_input(images: np.ndarray) -> np.ndarray:
    """Float32 rows (n, 784) in [0, 1]: uint8 pixels are scaled as in training."""
    from vaepipe.model import IMAGE_PIXELS, to_float_images
    if images.dtype == np.uint8:
        return to_float_images(images)
    return images.astype(np.float32).reshape(len(images), IMAGE_PIXELS)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """A folder in the way or a read-only place is for the user to fix: one line, no traceback."""
    try:
        yield
    except OSError as error:
        raise PipelineError(f"-o: {path}: cannot write ({error.strerror})") from None


# ---- the commands ----

def _sample(args) -> None:
    _check_digits(args.digit or [])
    _check_at_least("--count", args.count, 1)
    _check_at_least("--seed", args.seed, 0)
    _check_output(args.output, [".png"])
    model = _load_model(args.model)
    if args.digit and not model.conditioning.digits:
        raise PipelineError(f"--digit: {args.model} has conditioning: none, it draws no chosen "
                            f"digit; leave --digit out")
    digits = args.digit or list(model.conditioning.digits)
    columns = max(len(digits), 1)  # no digits: one image per z
    _check_fits("--count", args.count, MAX_PANELS // columns,
                f"samples of {len(digits)} digits" if len(digits) > 1 else "samples")
    from vaepipe import plotting
    rng = np.random.default_rng(args.seed)
    z = rng.standard_normal((args.count, model.z_dim), dtype=np.float32)
    noise = model.ancestral_noise(rng, args.count)
    decoded = np.asarray(model.decode(np.repeat(z, columns, axis=0),  # each z as each digit
                                      model.conditioning.decoder_input(np.tile(digits, args.count)),
                                      np.repeat(noise, columns, axis=0)))
    with _writing(args.output):
        plotting.plot_samples(decoded.reshape(args.count, columns, -1), digits, args.output)
    which = (f"digits {', '.join(map(str, digits))}" if len(digits) > 1 else
             f"digit {digits[0]}" if digits else "the model")
    print(f"{args.output}: {args.count} samples of {which} (seed {args.seed})")


def _reconstruct(args) -> None:
    images, described = _chosen(args, MAX_PANELS // RECONSTRUCTION_PANELS)
    _check_output(args.output, [".png"])
    model = _load_model(args.model)
    from vaepipe import plotting
    from vaepipe.render import reconstruct
    x = _model_input(images)
    with _writing(args.output):
        plotting.plot_reconstructions(x, reconstruct(model, x), args.output)
    print(f"{args.output}: {described} above their reconstructions")


def _restyle(args) -> None:
    images, described = _chosen(args, MAX_PANELS // RESTYLE_PANELS)
    _check_output(args.output, [".png"])
    model = _conditional_model(args.model, "restyle")
    from vaepipe import plotting
    from vaepipe.render import redraw_as_every_digit
    x = _model_input(images)
    with _writing(args.output):
        plotting.plot_style_transfer(x, redraw_as_every_digit(model, x), args.output)
    print(f"{args.output}: {described}, each redrawn in its own style as digits 0-9")


def _latent_table(model, x: np.ndarray, variances: bool, predicted_digit: bool):
    """One row per image: mean_0.. (and variance_0.., predicted_digit when asked)."""
    import pandas as pd
    mu, var = (np.asarray(part) for part in model.encode(x))
    columns = {f"mean_{dim}": mu[:, dim] for dim in range(mu.shape[1])}
    if variances:
        columns |= {f"variance_{dim}": var[:, dim] for dim in range(var.shape[1])}
    if predicted_digit:
        columns["predicted_digit"] = np.argmax(np.asarray(model.classify(x)), axis=1)
    return pd.DataFrame(columns)


def _table_bytes(table, suffix: str) -> bytes:
    """CSV with a header, or .npy: the same columns as one float32 array (n, columns)."""
    if suffix == ".csv":
        return table.to_csv(index=False).encode()
    buffer = io.BytesIO()
    np.save(buffer, table.to_numpy(dtype=np.float32))
    return buffer.getvalue()


def _encode(args) -> None:
    images, described = _chosen(args, limit=None)
    _check_output(args.output, [".csv", ".npy"])
    model = (_conditional_model(args.model, "encode --predicted-digit") if args.predicted_digit
             else _load_model(args.model))
    table = _latent_table(model, _model_input(images), args.variances, args.predicted_digit)
    with _writing(args.output):
        atomic_write_bytes(args.output, _table_bytes(table, args.output.suffix.lower()))
    groups = [group for group, written in (("mean_*", True), ("variance_*", args.variances),
                                            ("predicted_digit", args.predicted_digit)) if written]
    print(f"{args.output}: {len(table.columns)} columns ({', '.join(groups)}) for {described}")


def _info(args) -> None:
    model = _load_model(args.model)
    rows = {**model.config, "parameters": f"{model.count_params():,}"}
    width = max(map(len, rows)) + 2
    print(args.model)
    for key, value in rows.items():
        print(f"  {key:<{width}}{value}")


# ---- the parser ----

def _command(commands, name: str, run, summary: str, examples: str,
             parents: Sequence[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=summary, description=summary, parents=parents,
                                 epilog=f"examples:\n{examples}",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(run=run)
    return parser


def _model_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--model", type=Path, default=Path("models/vae"), metavar="DIR",
                         help="folder of the trained model (default: models/vae)")
    return options


def _output_option(suffixes: str) -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                         help=f"where to write it ({suffixes}), in a folder that exists; "
                              f"replaced in one step")
    return options


def _image_options(default_count: int | None = None) -> argparse.ArgumentParser:
    """IMAGES or the test split, and which of them; `default_count` None means all of them."""
    options = argparse.ArgumentParser(add_help=False)
    options.set_defaults(default_count=default_count or sys.maxsize)
    options.add_argument("images", nargs="?", type=Path, metavar="IMAGES",
                         help="a .npy file of images (n, 28, 28), uint8 or floats in [0, 1] "
                              "(default: the test split)")
    options.add_argument("--data", type=Path, default=Path("data/prepared"), metavar="DIR",
                         help="prepared data whose test split is used without IMAGES "
                              "(default: data/prepared)")
    which = options.add_mutually_exclusive_group()
    which.add_argument("--index", type=int, nargs="+", action="extend", metavar="I",
                       help="the images at these positions")
    which.add_argument("--count", type=int, metavar="N", help="the first N images (default: "
                       + (f"{default_count}, or all if fewer)" if default_count else "all)"))
    return options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vaepipe", description="Use a trained vaepipe model from the shell.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    model = _model_options()
    png = _output_option(".png")

    sample = _command(commands, "sample", _sample,
                      "draw new images from random latents z",
                      "  vaepipe sample --digit 7 --count 16 -o sevens.png\n"
                      "  vaepipe sample --digit 0 1 2 --count 5 --seed 3 -o styles.png\n"
                      "  vaepipe sample --count 64 --model reproductions/iwae_vae_warmup/model "
                      "-o iwae.png\n",
                      [model, png])
    sample.add_argument("--digit", type=int, nargs="+", action="extend", metavar="D",
                        help="digits to draw, each z as each of them (default: 0-9; none for a "
                             "model without conditioning)")
    sample.add_argument("--count", type=int, default=8, metavar="N",
                        help="latents z to draw (default: 8)")
    sample.add_argument("--seed", type=int, default=0,
                        help="seed of the latents: the same seed gives the same PNG (default: 0)")

    _command(commands, "reconstruct", _reconstruct,
             "draw images above their reconstructions",
             "  vaepipe reconstruct -o reconstructions.png\n"
             "  vaepipe reconstruct --index 0 5 9 -o three.png\n"
             "  vaepipe reconstruct my_digits.npy -o mine.png\n",
             [model, png, _image_options(default_count=10)])
    _command(commands, "restyle", _restyle,
             "redraw images in their own style as every digit 0-9",
             "  vaepipe restyle --count 4 -o styles.png\n"
             "  vaepipe restyle --index 7 -o seven_styles.png\n",
             [model, png, _image_options(default_count=6)])

    encode = _command(commands, "encode", _encode,
                      "write the latent means of images as CSV or .npy",
                      "  vaepipe encode -o latents.csv\n"
                      "  vaepipe encode my_digits.npy --variances -o latents.npy\n",
                      [model, _output_option(".csv or .npy"), _image_options()])
    encode.add_argument("--variances", action="store_true",
                        help="add the variances of q(z|x) after the means")
    encode.add_argument("--predicted-digit", action="store_true",
                        help="add the classifier's digit for each image, last")

    _command(commands, "info", _info, "print the model's hyperparameters and parameter count",
             "  vaepipe info --model models/vae\n", [model])
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `vaepipe` script; a user error ends in one line and exit code 1."""
    args = build_parser().parse_args(argv)
    run_stage(lambda: args.run(args))


if __name__ == "__main__":
    main()
