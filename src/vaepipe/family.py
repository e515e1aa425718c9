"""The model family: each key that picks a variant, declared once.

A `Choice` holds the key's values, the article's value, the piece each value selects and the
keys that only that value reads, each with the value it keeps when the chosen one does not read
it. params.py checks params.yaml against these (a key that the configuration does not read may
not be changed, so that no setting is silently ignored); the model, training and evaluation
build the chosen pieces here and ask them, rather than test which one they have. Pieces are
named by import path, so that checking params never loads TensorFlow.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any


@dataclass(frozen=True)
class Member:
    piece: str  # "module:class" that this value selects
    built_with: tuple[str, ...] = ()  # keys whose values build the piece, by their last name
    reads: Mapping[str, Any] = field(default_factory=dict)  # keys only this value reads, and
    # the value each keeps when another value is chosen (as ruamel and pydantic give it)


@dataclass(frozen=True)
class Choice:
    article: str  # the article's value
    members: Mapping[str, Member]

    @property
    def values(self) -> tuple[str, ...]:
        return tuple(self.members)


FAMILY: dict[str, Choice] = {
    "likelihood": Choice("gaussian", {
        "gaussian": Member("vaepipe.likelihoods:Gaussian", built_with=("decoder_std",),
                           reads={"decoder_std": 0.5}),
        "bernoulli": Member("vaepipe.likelihoods:Bernoulli"),
    }),
    "binarization": Choice("none", {
        "none": Member("vaepipe.binarization:Intensities"),
        "dynamic": Member("vaepipe.binarization:Dynamic", built_with=("data.split_seed",)),
    }),
    "conditioning": Choice("classifier", {
        "classifier": Member("vaepipe.conditioning:Classifier", reads={
            "digit_classification_layers": (128,), "digit_classification_weight": 10.0,
            "render.style_sources": 6, "render.traversal_digit": 3}),
        "none": Member("vaepipe.conditioning:Unconditioned"),
    }),
    "objective": Choice("elbo", {
        "elbo": Member("vaepipe.objectives:Elbo", built_with=("train_samples",)),
        "iwae": Member("vaepipe.objectives:ImportanceWeighted", built_with=("train_samples",)),
        "iwae_dreg": Member("vaepipe.objectives:DoublyReparameterized",
                            built_with=("train_samples",)),
    }),
    "architecture": Choice("mlp", {
        "mlp": Member("vaepipe.architectures:MLP"),
        "conv": Member("vaepipe.architectures:Conv", built_with=("conv_filters",),
                       reads={"conv_filters": (32, 64)}),
    }),
    "output_bias_init": Choice("zeros", {
        "zeros": Member("vaepipe.output_bias:Zeros"),
        "data_mean": Member("vaepipe.output_bias:DataMean"),
    }),
}


def value_of(settings: Any, key: str) -> Any:
    """`key` (dotted for a nested group, e.g. data.split_seed) of a mapping or of Params."""
    for part in key.split("."):
        settings = settings[part] if isinstance(settings, Mapping) else getattr(settings, part)
    return settings


def build(key: str, settings: Any) -> Any:
    """The piece that `settings` (params or a model's config) chooses for `key`, built with the
    keys its member names."""
    member = FAMILY[key].members[value_of(settings, key)]
    module, name = member.piece.split(":")
    piece = getattr(import_module(module), name)
    return piece(**{built.rsplit(".", 1)[-1]: value_of(settings, built)
                    for built in member.built_with})


def piece_modules() -> set[str]:
    """The modules of every piece that some configuration can choose."""
    return {member.piece.split(":")[0] for choice in FAMILY.values()
            for member in choice.members.values()}


def import_pieces() -> None:
    """Import every piece's module now rather than when it is first built, so that what a stage
    imports, and so its code dependencies in dvc.yaml, covers whatever its params choose."""
    for module in sorted(piece_modules()):
        import_module(module)


def unread_keys(settings: Any) -> dict[str, tuple[str, str, Any]]:
    """Every key that the values `settings` chooses do not read: the key, the choice and value
    that would read it, and the value it must keep."""
    unread = {}
    for key, choice in FAMILY.items():
        chosen = choice.members[value_of(settings, key)]
        for value, member in choice.members.items():
            for read, kept in member.reads.items():
                if read not in chosen.reads:
                    unread[read] = (key, value, kept)
    return unread


def article_value(key: str) -> Any:
    """The article's value of a choice, or of a key that one of its values reads."""
    if key in FAMILY:
        return FAMILY[key].article
    [kept] = [member.reads[key] for choice in FAMILY.values()
              for member in choice.members.values() if key in member.reads]
    return kept
