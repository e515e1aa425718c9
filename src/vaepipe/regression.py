"""Regression gates for CI.

    python -m vaepipe.regression [--base REV] [--config regression.yaml]
    python -m vaepipe.regression --stale

The first compares the workspace's metrics with a base revision's, within tolerances.

`dvc metrics diff --json REV` gives {file: {metric: {old, new, diff}}}; it always exits 0 and has
no notion of better or worse, so this reads the directions, tolerances and absolute floors kept
in regression.yaml and fails (exit 1) with a table of what moved, by how much and which way.
regression.yaml is read as params.yaml is (YAML 1.2) and each rule checked by a pydantic model
before anything runs: a bad one is one line naming the file, the metric and the key.
"""

import argparse
import json
import logging
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dvc.repo import Repo
from pydantic import Field

from vaepipe.errors import PipelineError, run_stage
from vaepipe.params import Group, read_yaml, validated


@dataclass(frozen=True)
class Rule:
    file: str
    metric: str
    higher_is_better: bool
    tolerance: float
    floor: float | None
    needs: tuple = ()  # (params key, value) pairs: the metric exists only for such models


@dataclass(frozen=True)
class Verdict:
    rule: Rule
    old: float | None
    new: float | None
    problem: str  # empty when the metric passes
    skipped: str = ""  # why the workspace's model has no such metric

    @property
    def worse_by(self) -> float:
        """How far the metric moved in its worse direction (negative when it improved)."""
        if self.old is None or self.new is None:
            return 0.0
        return (self.old - self.new) if self.rule.higher_is_better else (self.new - self.old)


class RuleSpec(Group):
    """One metric's entry in regression.yaml."""

    better: Literal["higher", "lower"] = Field(description="which way is an improvement")
    tolerance: float = Field(0.0, ge=0, description="how far it may move the other way")
    floor: float | None = Field(None, description="an absolute bound it must not cross")
    needs: dict[str, Any] = Field({}, description="the params a metric exists for, such as "
                                                  "{conditioning: classifier}")


def _mapping(value: Any, where: str, of: str) -> dict:
    if not isinstance(value, dict):
        raise PipelineError(f"{where}: must be a mapping of {of}, got {value!r}")
    return value


def load_rules(path: str | Path) -> list[Rule]:
    rules = []
    files = _mapping(read_yaml(path) or {}, f"{path}: (top level)", "metrics files to metrics")
    for file, metrics in files.items():
        for metric, spec in _mapping(metrics, f"{path}: {file}", "metrics to rules").items():
            rule = validated(RuleSpec, spec, f"{path}: {file}: {metric}")
            rules.append(Rule(file, metric, rule.better == "higher", rule.tolerance, rule.floor,
                              tuple(rule.needs.items())))
    return rules


def _dvc(*args: str) -> str:
    """Run a dvc command; its stdout, or a one-line error with its last line of stderr."""
    command = [sys.executable, "-m", "dvc", *args]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"`dvc {' '.join(args)}` failed: {last}")
    return result.stdout


def metrics_diff(base: str) -> dict:
    """`dvc metrics diff --json --all` between `base` and the workspace."""
    return json.loads(_dvc("metrics", "diff", "--json", "--all", base) or "{}")


def stale_stages() -> list[str]:
    """Stages whose code, params or inputs changed since dvc.lock was written: those that
    `dvc repro --dry --allow-missing` would run, asked of DVC's API (nothing runs, and the
    outputs need not be there)."""
    logging.getLogger("dvc").setLevel(logging.WARNING)  # the dry run's "Running stage" lines
    with Repo() as repo:
        return [stage.addressing for stage in repo.reproduce(dry=True, allow_missing=True)]


def is_finite_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def judge(rule: Rule, diff: dict, params: dict | None = None) -> Verdict:
    """The verdict on one metric; `params` (the workspace's) skips a rule whose `needs` the
    model does not meet, such as the accuracy of a model without a classifier."""
    entry = diff.get(rule.file, {}).get(rule.metric, {})
    old, new = entry.get("old"), entry.get("new")
    unmet = [f"{key}: {(params or {}).get(key)}" for key, value in rule.needs
             if (params or {}).get(key) != value]
    if unmet:
        return Verdict(rule, old, new, "", f"skipped ({', '.join(unmet)})")
    if not is_finite_number(old):  # a broken base cannot excuse the workspace: judge by floor
        old = None
    verdict = Verdict(rule, old, new, "")
    if new is None:
        return Verdict(rule, old, new, "missing from the workspace")
    if not is_finite_number(new):
        return Verdict(rule, None, new, f"not a finite number: {new!r}")
    below_floor = rule.floor is not None and (
        new < rule.floor if rule.higher_is_better else new > rule.floor)
    if below_floor:
        return Verdict(rule, old, new, f"past its floor {rule.floor:g}")
    if verdict.worse_by > rule.tolerance:
        return Verdict(rule, old, new, f"worse by {verdict.worse_by:.4g} > {rule.tolerance:g}")
    return verdict


def format_table(verdicts: list[Verdict], base: str) -> str:
    def number(value):
        return "-" if value is None else f"{value:.4f}" if is_finite_number(value) else str(value)
    header = ("metric", f"{base}", "workspace", "change", "better", "tolerance", "floor", "result")
    rows = [header]
    for v in verdicts:
        change = "-" if v.old is None or not is_finite_number(v.new) else f"{v.new - v.old:+.4f}"
        rows.append((f"{v.rule.file}:{v.rule.metric}", number(v.old), number(v.new), change,
                     "higher" if v.rule.higher_is_better else "lower", f"{v.rule.tolerance:g}",
                     "-" if v.rule.floor is None else f"{v.rule.floor:g}",
                     v.skipped or ("ok" if not v.problem else f"FAIL: {v.problem}")))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()
                     for row in rows)


def check(base: str, config: str | Path) -> bool:
    rules = load_rules(config)
    diff = metrics_diff(base)
    params = read_yaml("params.yaml")
    verdicts = [judge(rule, diff, params) for rule in rules]
    print(format_table(verdicts, base))
    failures = [v for v in verdicts if v.problem]
    skipped = sum(bool(v.skipped) for v in verdicts)
    passed = len(verdicts) - len(failures) - skipped
    print(f"\n{passed} passed, {len(failures)} failed" + (f", {skipped} skipped" if skipped
                                                          else ""))
    return not failures


def main() -> None:
    parser = argparse.ArgumentParser(description="Fail when metrics regress against a revision.")
    parser.add_argument("--base", default="HEAD", help="revision to compare with (default HEAD)")
    parser.add_argument("--config", default="regression.yaml", help="tolerances and floors")
    parser.add_argument("--stale", action="store_true",
                        help="only check that dvc.lock matches the code and params")
    args = parser.parse_args()
    if args.stale:
        stale = stale_stages()
        if stale:
            raise PipelineError(f"dvc.lock is out of date for: {', '.join(stale)} "
                                "(run `dvc repro` and commit dvc.lock)")
        print("dvc.lock matches the code and params")
    elif not check(args.base, args.config):
        sys.exit(1)


if __name__ == "__main__":
    run_stage(main)
