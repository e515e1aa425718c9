"""DVC stage `render`: the sample grid, loss curves and model pictures, into reports/figures/."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.files import run_pipeline_stage
from vaepipe.params import load_params
from vaepipe.render import render_stage


def main() -> None:
    render_stage(load_params(), "models/vae", "models/samples.npy", "reports/train",
                 "data/prepared", "reports/evaluate/latent_units.json", "reports/figures")


if __name__ == "__main__":
    run_pipeline_stage(main)
