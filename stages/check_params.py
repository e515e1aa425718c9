"""DVC stage `check_params`: every key of params.yaml checked, whichever stage the edit touches,
and params.schema.json (the JSON Schema of params.yaml, for editors) written."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.files import run_pipeline_stage, write_json
from vaepipe.params import Params, load_params


def main() -> None:
    load_params()
    write_json("params.schema.json", Params.model_json_schema())
    print("params.yaml: every key checked")


if __name__ == "__main__":
    run_pipeline_stage(main)
