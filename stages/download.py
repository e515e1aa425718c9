"""DVC stage `download`: the four canonical MNIST files, verified by SHA-256, into data/raw/."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.download import download_mnist
from vaepipe.errors import run_stage
from vaepipe.files import remove_pipeline_leftovers
from vaepipe.params import load_params


def main() -> None:
    remove_pipeline_leftovers()
    download_mnist(load_params().data, "data/raw")


if __name__ == "__main__":
    run_stage(main)
