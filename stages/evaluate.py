"""DVC stage `evaluate`: ELBO, IWAE bound and accuracy of models/vae, into reports/metrics.json;
its latent units' activity and KL, into reports/evaluate/latent_units.json."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.evaluation import evaluate_stage
from vaepipe.files import run_pipeline_stage
from vaepipe.params import load_params


def main() -> None:
    evaluate_stage(load_params(), "models/vae", "data/prepared", "reports/metrics.json",
                   "reports/evaluate/test_predictions.csv", "reports/evaluate/latent_units.json")


if __name__ == "__main__":
    run_pipeline_stage(main)
