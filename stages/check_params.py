"""DVC stage `check_params`: every key of params.yaml checked, whichever stage the edit touches,
and params.schema.json (the JSON Schema of params.yaml, for editors) written."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.errors import run_stage
from vaepipe.files import remove_pipeline_leftovers, write_json
from vaepipe.params import Params, load_params


def main() -> None:
    remove_pipeline_leftovers()
    load_params()
    write_json("params.schema.json", Params.model_json_schema())
    print("params.yaml: every key checked")


if __name__ == "__main__":
    run_stage(main)
