import pytest
from ruamel.yaml import YAML

from vaepipe.errors import PipelineError
from conftest import PROJECT_ROOT
from vaepipe.params import read_yaml
from vaepipe.reproduce import merged, reproduce, write_params

PARAMS = """\
z_dim: 10          # size of the latent space
epochs: 20
train:
  device: auto
  measure_every: 1 # epochs between measurements
"""


def test_a_recipe_is_laid_over_the_params_keeping_their_comments(tmp_path):
    params = YAML().load(PARAMS)
    merged(params, {"z_dim": 50, "train": {"measure_every": 41}})
    path = tmp_path / "params.yaml"
    with open(path, "w") as out:
        YAML().dump(params, out)
    assert path.read_text() == PARAMS.replace("10          #", "50          #").replace(
        "measure_every: 1 #", "measure_every: 41 #")


@pytest.mark.parametrize("recipe, key", [({"z_dimm": 2}, "z_dimm"),
                                         ({"train": {"measure_evry": 2}}, "measure_evry")])
def test_a_key_the_params_lack_is_named(recipe, key):
    with pytest.raises(PipelineError, match=rf"^{key}: not a key of params.yaml$"):
        merged(YAML().load(PARAMS), recipe)


def test_an_unknown_recipe_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reproductions").mkdir()
    (tmp_path / "reproductions" / "iwae_vae.yaml").write_text("epochs: 1\n")
    with pytest.raises(PipelineError, match=r"reproductions/iwae.yaml: no such recipe \(there "
                                            r"are: iwae_vae\)"):
        reproduce("iwae")


def test_a_recipe_that_makes_bad_params_is_named_and_writes_nothing(tmp_path):
    (tmp_path / "params.yaml").write_bytes((PROJECT_ROOT / "params.yaml").read_bytes())
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("z_dim: 0\n")
    with pytest.raises(PipelineError, match=rf"^{recipe}: z_dim: must be at least 1, got 0$"):
        write_params(tmp_path, recipe)
    assert (tmp_path / "params.yaml").read_bytes() == (PROJECT_ROOT / "params.yaml").read_bytes()
    recipe.write_text("z_dim: 3\n")
    write_params(tmp_path, recipe)
    assert read_yaml(tmp_path / "params.yaml")["z_dim"] == 3


@pytest.mark.parametrize("recipe", sorted((PROJECT_ROOT / "reproductions").glob("*.yaml")),
                         ids=lambda path: path.stem)
def test_every_committed_recipe_writes_valid_params_holding_its_values(tmp_path, recipe):
    (tmp_path / "params.yaml").write_bytes((PROJECT_ROOT / "params.yaml").read_bytes())
    write_params(tmp_path, recipe)
    written = read_yaml(tmp_path / "params.yaml")
    for key, value in read_yaml(recipe).items():
        if isinstance(value, dict):
            assert {name: written[key][name] for name in value} == value
        else:
            assert written[key] == value
