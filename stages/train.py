"""DVC stage `train`: the article's VAE on data/prepared, into models/ and reports/train/."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.files import TRAIN_CHECKPOINTS, run_pipeline_stage
from vaepipe.params import load_params
from vaepipe.training import train


def main() -> None:
    train(load_params(), "data/prepared", "models/vae", "models/samples.npy", "reports/train",
          checkpoint_dir=TRAIN_CHECKPOINTS)


if __name__ == "__main__":
    run_pipeline_stage(main)
