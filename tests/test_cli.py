import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from vaepipe import plotting
from vaepipe.cli import main
from vaepipe.model import VAE, load_model, save_model, to_float_images

VAEPIPE_SCRIPT = Path(sys.executable).parent / "vaepipe"
Z_DIM = 3
TEST_IMAGES = 12
IMAGE_COMMANDS = ("reconstruct", "restyle", "encode")  # the commands that read --data


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny untrained model, saved as the train stage saves one."""
    tf.keras.utils.set_random_seed(0)
    directory = tmp_path_factory.mktemp("model") / "vae"
    save_model(VAE([8], [8], [8], "sigmoid", 0.5, Z_DIM), directory)
    return directory


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A prepared-data folder whose test split holds 12 random images."""
    directory = tmp_path_factory.mktemp("prepared")
    rng = np.random.default_rng(0)
    np.savez_compressed(directory / "test.npz",
                        images=rng.integers(0, 256, (TEST_IMAGES, 28, 28), dtype=np.uint8),
                        labels=rng.integers(0, 10, TEST_IMAGES, dtype=np.uint8))
    return directory


@pytest.fixture(scope="module")
def model(model_dir) -> VAE:
    return load_model(model_dir)


@pytest.fixture
def vaepipe(model_dir, data_dir, capsys):
    """Run `vaepipe COMMAND ARGS... --model <tiny model> [--data <tiny split>]`; return stdout."""
    def run(command, *args):
        data = ["--data", str(data_dir)] if command in IMAGE_COMMANDS else []
        main([command, *map(str, args), "--model", str(model_dir), *data])
        return capsys.readouterr().out
    return run


def png_size(path: Path) -> tuple[int, int]:
    height, width = matplotlib.image.imread(path).shape[:2]
    return width, height


def figure_size(fig) -> tuple[int, int]:
    width, height = fig.get_size_inches() * plotting.DPI
    return round(width), round(height)


def test_sample_is_a_pure_function_of_the_seed(vaepipe, tmp_path):
    first, again, other = tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"
    assert vaepipe("sample", "--digit", 7, "--count", 7, "-o", first) == (
        f"{first}: 7 samples of digit 7 (seed 0)\n")
    vaepipe("sample", "--digit", 7, "--count", 7, "-o", again)
    vaepipe("sample", "--digit", 7, "--count", 7, "--seed", 1, "-o", other)
    assert first.read_bytes() == again.read_bytes() != other.read_bytes()


def test_one_digit_fills_a_square_grid_leaving_the_last_cells_empty(vaepipe, tmp_path):
    path = tmp_path / "sevens.png"
    vaepipe("sample", "--digit", 7, "--count", 7, "-o", path)
    grid_inches = 3 * plotting.PANEL_INCHES + 2 * plotting.GAP_INCHES  # 7 samples: 3 x 3 cells
    width = max(grid_inches, plotting.text_width_inches("Samples of digit 7",
                                                        plotting.SUPTITLE_FONTSIZE))
    width += 2 * plotting.MARGIN_INCHES
    height = plotting.SUPTITLE_BAND_INCHES + grid_inches + plotting.MARGIN_INCHES
    assert png_size(path) == (round(width * plotting.DPI), round(height * plotting.DPI))
    pixels = matplotlib.image.imread(path)
    step = plotting.PANEL_INCHES + plotting.GAP_INCHES
    grid_left = (width - grid_inches) / 2
    centre_y = plotting.SUPTITLE_BAND_INCHES + 2 * step + plotting.PANEL_INCHES / 2
    for column, empty in enumerate([False, True, True]):  # the last row holds sample 7 only
        centre_x = grid_left + column * step + plotting.PANEL_INCHES / 2
        pixel = pixels[round(centre_y * plotting.DPI), round(centre_x * plotting.DPI)]
        assert np.all(pixel == 1.0) == empty  # an empty cell is the white background


def test_several_digits_get_a_column_each(vaepipe, tmp_path):
    path = tmp_path / "samples.png"
    out = vaepipe("sample", "--digit", 0, 1, "--digit", 2, "--count", 4, "-o", path)
    assert out == f"{path}: 4 samples of digits 0, 1, 2 (seed 0)\n"
    assert png_size(path) == figure_size(plotting.samples_figure(np.zeros((4, 3, 784)), [0, 1, 2]))


def test_reconstruct_chosen_test_images(vaepipe, data_dir, tmp_path):
    path = tmp_path / "reconstructions.png"
    out = vaepipe("reconstruct", "--index", 0, 5, 11, "-o", path)
    assert out == f"{path}: 3 images of the test split of {data_dir} above their reconstructions\n"
    three = np.zeros((3, 784))
    assert png_size(path) == figure_size(plotting.reconstructions_figure(three, three))


def test_a_file_of_fewer_images_than_the_default_is_drawn_whole(vaepipe, tmp_path):
    images, path = tmp_path / "mine.npy", tmp_path / "mine.png"
    np.save(images, np.random.default_rng(1).random((3, 28, 28)))  # floats in [0, 1]
    assert vaepipe("reconstruct", images, "-o", path) == (
        f"{path}: 3 images of {images} above their reconstructions\n")
    three = np.zeros((3, 784))
    assert png_size(path) == figure_size(plotting.reconstructions_figure(three, three))


def test_restyle_draws_each_image_as_every_digit(vaepipe, data_dir, tmp_path):
    path = tmp_path / "styles.png"
    assert vaepipe("restyle", "-o", path) == (
        f"{path}: 6 images of the test split of {data_dir}, each redrawn in its own style as "
        "digits 0-9\n")
    expected = plotting.style_transfer_figure(np.zeros((6, 784)), np.zeros((6, 10, 784)))
    assert png_size(path) == figure_size(expected)


def test_encode_writes_what_the_model_computes(vaepipe, model, data_dir, tmp_path):
    csv, npy = tmp_path / "latents.csv", tmp_path / "latents.npy"
    out = vaepipe("encode", "--variances", "--predicted-digit", "-o", csv)
    assert out == (f"{csv}: 7 columns (mean_*, variance_*, predicted_digit) for "
                   f"{TEST_IMAGES} images of the test split of {data_dir}\n")
    vaepipe("encode", "--variances", "--predicted-digit", "-o", npy)
    x = to_float_images(np.load(data_dir / "test.npz")["images"])
    mu, var = (part.numpy() for part in model.encode(x))
    table = pd.read_csv(csv)
    assert list(table.columns) == ["mean_0", "mean_1", "mean_2", "variance_0", "variance_1",
                                   "variance_2", "predicted_digit"]
    np.testing.assert_allclose(table.filter(like="mean_"), mu, rtol=1e-6)
    np.testing.assert_allclose(table.filter(like="variance_"), var, rtol=1e-6)
    assert table["predicted_digit"].tolist() == model.classify(x).numpy().argmax(axis=1).tolist()
    np.testing.assert_allclose(np.load(npy), table, rtol=1e-6)


def test_encode_keeps_the_order_of_index(vaepipe, model, data_dir, tmp_path):
    path = tmp_path / "two.npy"
    vaepipe("encode", "--index", 4, 1, "-o", path)
    x = to_float_images(np.load(data_dir / "test.npz")["images"][[4, 1]])
    np.testing.assert_allclose(np.load(path), model.encode(x)[0], rtol=1e-6)


def test_info_prints_the_hyperparameters_and_the_parameter_count(vaepipe, model, model_dir):
    lines = vaepipe("info").splitlines()
    assert lines[0] == str(model_dir)
    assert [line.split() for line in lines[1:]] == [
        ["encoder_layers", "[8]"], ["decoder_layers", "[8]"],
        ["digit_classification_layers", "[8]"], ["activation", "sigmoid"],
        ["decoder_std", "0.5"], ["z_dim", str(Z_DIM)], ["likelihood", "gaussian"],
        ["conditioning", "classifier"], ["architecture", "mlp"], ["conv_filters", "[32,", "64]"],
        ["latent_hidden_layers", "[100,", "100]"],
        ["parameters", f"{model.count_params():,}"]]


@pytest.mark.parametrize("command, message", [
    ("sample --digit 12 -o {out}.png", "--digit: 12 is not a digit (0-9)"),
    ("sample --count 0 -o {out}.png", "--count: must be at least 1, got 0"),
    ("sample --seed -1 -o {out}.png", "--seed: must be at least 0, got -1"),
    ("sample --count 41 -o {tmp}/x.png", "--count: at most 40 samples of 10 digits fit in one"),
    ("sample --digit 3 --count 401 -o {tmp}/x.png", "--count: at most 400 samples fit in one"),
    ("sample -o {out}.jpg", "-o: {out}.jpg: the name must end in .png"),
    ("encode -o {out}.txt --data {data}", "-o: {out}.txt: the name must end in .csv or .npy"),
    ("reconstruct --index 12 -o {out}.png --data {data}",
     "--index: 12 is out of range: the test split of {data} holds 12 images (0-11)"),
    ("encode --count 13 -o {out}.csv --data {data}",
     "--count: the test split of {data} holds only 12 images, asked for 13"),
    ("restyle --count 37 -o {out}.png --data {data}",
     "--count: at most 36 images fit in one picture, got 37"),
    ("reconstruct {tmp}/missing.npy -o {out}.png", "IMAGES: {tmp}/missing.npy: no such file"),
    ("encode {tmp}/bright.npy -o {out}.csv", "IMAGES: {tmp}/bright.npy: float pixels must lie in"),
    ("sample -o {tmp}/folder.png", "-o: {tmp}/folder.png: cannot write (Is a directory)"),
    ("sample -o {out}.png", "-o: {out}.png: the folder {tmp}/out does not exist"),
    ("encode -o {out}.csv --data {data}", "-o: {out}.csv: the folder {tmp}/out does not exist"),
    ("reconstruct {tmp}/empty.npy -o {tmp}/x.png",
     "IMAGES: {tmp}/empty.npy: an empty file; expected images (n, 28, 28)"),
    ("encode {tmp}/archive.npy -o {tmp}/x.csv",
     "IMAGES: {tmp}/archive.npy: not a .npy file (no NumPy header); expected images (n, 28, 28)"),
    ("restyle {tmp}/truncated.npy -o {tmp}/x.png",
     "IMAGES: {tmp}/truncated.npy: unreadable (Failed to read all data for array."),
    ("encode {tmp}/objects.npy -o {tmp}/x.csv",
     "IMAGES: {tmp}/objects.npy: unreadable (Object arrays cannot be loaded when "
     "allow_pickle=False)"),
])
def test_a_user_error_is_one_line_naming_the_option(command, message, model_dir, data_dir,
                                                    tmp_path, capsys):
    np.save(tmp_path / "bright.npy", np.full((2, 28, 28), 2.0))
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "empty.npy").write_bytes(b"")
    np.savez(tmp_path / "archive.npz", images=np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    np.save(tmp_path / "truncated.npy", np.zeros((2, 28, 28), np.uint8))
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "truncated.npy").read_bytes()[:-1])
    np.save(tmp_path / "objects.npy", np.array([None] * 2), allow_pickle=True)
    names = dict(out=tmp_path / "out" / "result", data=data_dir, tmp=tmp_path)
    with pytest.raises(SystemExit) as stop:
        main([*command.format(**names).split(), "--model", str(model_dir)])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message.format(**names)}") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_a_config_past_the_bounds_is_refused_before_the_model_is_built(model_dir, tmp_path,
                                                                      capsys):
    (tmp_path / "vae").mkdir()
    config = json.loads((model_dir / "config.json").read_text())
    (tmp_path / "vae" / "config.json").write_text(json.dumps({**config,
                                                              "encoder_layers": [100000000]}))
    with pytest.raises(SystemExit) as stop:
        main(["info", "--model", str(tmp_path / "vae")])
    assert stop.value.code == 1
    assert capsys.readouterr().err == (
        f"error: {tmp_path}/vae/config.json: encoder_layers[0]: must be at most 4096 (wider or "
        f"deeper MLPs take hours per epoch on a CPU), got 100000000; rerun `dvc repro train` or "
        f"`dvc checkout models/vae`\n")


def run_script(*args) -> subprocess.CompletedProcess:
    """The installed `vaepipe` script, with TensorFlow's log level left to the command."""
    env = {name: value for name, value in os.environ.items() if name != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([VAEPIPE_SCRIPT, *map(str, args)], capture_output=True, text=True,
                          env=env)


def test_the_script_writes_the_same_bytes_as_another_process(vaepipe, model_dir, tmp_path):
    script_png, main_png = tmp_path / "script.png", tmp_path / "main.png"
    args = ["sample", "--digit", 4, 9, "--count", 3, "--seed", 5]
    result = run_script(*args, "--model", model_dir, "-o", script_png)
    assert (result.returncode, result.stderr) == (0, "")  # no TensorFlow start-up notices
    assert result.stdout == f"{script_png}: 3 samples of digits 4, 9 (seed 5)\n"
    vaepipe(*args, "-o", main_png)
    assert script_png.read_bytes() == main_png.read_bytes()


def test_the_script_reports_a_missing_model_in_one_line(tmp_path):
    result = run_script("info", "--model", tmp_path / "nothing")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"error: {tmp_path / 'nothing'}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("command", ["restyle", "encode --predicted-digit"])
def test_a_digit_command_on_an_unconditional_model_says_so_in_one_line(command, data_dir,
                                                                       tmp_path, capsys):
    directory = tmp_path / "vae"
    save_model(VAE([8], [8], [8], "sigmoid", 0.5, Z_DIM, conditioning="none"), directory)
    suffix = ".csv" if command.startswith("encode") else ".png"
    with pytest.raises(SystemExit):
        main([*command.split(), "-o", str(tmp_path / f"out{suffix}"), "--model", str(directory),
              "--data", str(data_dir)])
    err = capsys.readouterr().err
    assert err == (f"error: {directory}: {command} needs a model conditioned on digits; this one "
                   f"has conditioning: none\n")


def test_reconstruct_and_encode_work_with_an_unconditional_bernoulli_model(data_dir, tmp_path):
    directory = tmp_path / "vae"
    save_model(VAE([8], [8], [8], "sigmoid", 0.5, Z_DIM, likelihood="bernoulli",
                   conditioning="none"), directory)
    for command, output in (("reconstruct", "rec.png"), ("encode", "z.csv")):
        main([command, "--count", "3", "-o", str(tmp_path / output), "--model", str(directory),
              "--data", str(data_dir)])
        assert (tmp_path / output).exists()


def test_sample_draws_an_unconditional_two_layer_models_images_in_a_square_grid(tmp_path, capsys):
    directory = tmp_path / "vae"
    tf.keras.utils.set_random_seed(1)
    save_model(VAE([8], [8], [8], "tanh", 0.5, [4, Z_DIM], likelihood="bernoulli",
                   conditioning="none", latent_hidden_layers=[5]), directory)
    paths = [tmp_path / name for name in ("a.png", "b.png", "c.png")]
    for path, seed in zip(paths, (0, 0, 1)):
        main(["sample", "--count", "5", "--seed", str(seed), "-o", str(path), "--model",
              str(directory)])
    assert capsys.readouterr().out.splitlines()[0] == f"{paths[0]}: 5 samples of the model (seed 0)"
    assert paths[0].read_bytes() == paths[1].read_bytes() != paths[2].read_bytes()
    assert png_size(paths[0]) == figure_size(plotting.samples_figure(np.zeros((5, 1, 784)), []))
    with pytest.raises(SystemExit) as stop:
        main(["sample", "--digit", "3", "-o", str(tmp_path / "d.png"), "--model", str(directory)])
    assert stop.value.code == 1
    assert capsys.readouterr().err == (f"error: --digit: {directory} has conditioning: none, it "
                                       f"draws no chosen digit; leave --digit out\n")
