"""DVC stage `prepare`: data/raw split into train / validation / test arrays in data/prepared/."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.data import prepare
from vaepipe.files import run_pipeline_stage
from vaepipe.params import load_params


def main() -> None:
    data = load_params().data
    prepare("data/raw", "data/prepared", data.validation_size, data.split_seed)


if __name__ == "__main__":
    run_pipeline_stage(main)
