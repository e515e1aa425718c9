"""The family's declarations agree with params.yaml and build every member from real params."""

import pytest

from vaepipe import family
from vaepipe.errors import PipelineError
from vaepipe.family import FAMILY, value_of
from vaepipe.params import Params, load_params, parse_params, read_yaml

from conftest import PROJECT_PARAMS

MEMBERS = [(key, value) for key, choice in FAMILY.items() for value in choice.values]


def test_params_yaml_holds_the_article_and_every_kept_value():
    """Else the article's own params.yaml would be refused, or a kept value would not be the
    article's."""
    params = load_params(PROJECT_PARAMS)
    for key, choice in FAMILY.items():
        assert value_of(params, key) == choice.article
        for member in choice.members.values():
            for read, kept in member.reads.items():
                assert value_of(params, read) == kept, read


@pytest.mark.parametrize("key, value", MEMBERS)
def test_each_member_builds_from_params_with_the_keys_it_names(key, value):
    raw = read_yaml(PROJECT_PARAMS)
    raw[key] = value
    piece = family.build(key, parse_params(raw))
    assert type(piece).__name__ == FAMILY[key].members[value].piece.split(":")[1]


@pytest.mark.parametrize("key, value", MEMBERS)
def test_a_key_only_another_member_reads_is_refused_when_changed(key, value):
    """Each key a member reads alone is accepted changed with that member, and refused in one
    line naming it with any other."""
    for other, member in FAMILY[key].members.items():
        for read, kept in member.reads.items():
            raw = read_yaml(PROJECT_PARAMS)
            raw[key] = value
            group, _, name = read.rpartition(".")
            (raw[group] if group else raw)[name] = changed(kept)
            if read in FAMILY[key].members[value].reads:
                assert isinstance(parse_params(raw), Params)
                continue
            with pytest.raises(PipelineError) as error:
                parse_params(raw)
            assert str(error.value).startswith(
                f"params.yaml: {read}: unused with {key}: {value} (only {key}: {other} reads "
                f"it), got ")


def changed(kept):
    """Another valid value of the same kind."""
    if isinstance(kept, tuple):
        return [size + 1 for size in kept]
    return kept + 1 if not isinstance(kept, float) else kept / 2
