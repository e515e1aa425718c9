"""DVC stage `evaluate`: ELBO, IWAE bound and accuracy of models/vae, into reports/metrics.json."""

import _environment  # noqa: F401  (first: says so when .venv is not active)

from vaepipe.errors import run_stage
from vaepipe.evaluation import evaluate_stage
from vaepipe.files import remove_pipeline_leftovers
from vaepipe.params import load_params


def main() -> None:
    remove_pipeline_leftovers()
    evaluate_stage(load_params(), "models/vae", "data/prepared", "reports/metrics.json",
                   "reports/evaluate/test_predictions.csv")


if __name__ == "__main__":
    run_stage(main)
