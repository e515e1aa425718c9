"""DVC stage `download`: the four canonical MNIST files, verified by SHA-256, into data/raw/."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.download import download_mnist
from vaepipe.files import run_pipeline_stage
from vaepipe.params import load_params


def main() -> None:
    download_mnist(load_params().data, "data/raw")


if __name__ == "__main__":
    run_pipeline_stage(main)
