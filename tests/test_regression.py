import pytest

from vaepipe.errors import PipelineError
from vaepipe.regression import Rule, format_table, judge, load_rules

from conftest import PROJECT_ROOT

FILE = "reports/metrics.json"


def diff_of(metric, old, new):
    return {FILE: {metric: {"old": old, "new": new}}}  # judge reads old and new only


ELBO = Rule(FILE, "test.elbo", higher_is_better=True, tolerance=0.5, floor=-240.0)
KL = Rule(FILE, "test.kl", higher_is_better=False, tolerance=0.2, floor=None)


@pytest.mark.parametrize("rule, old, new, problem", [
    (ELBO, -223.0, -223.0, ""),
    (ELBO, -223.0, -223.4, ""),                      # worse, within tolerance
    (ELBO, -223.0, -220.0, ""),                      # better
    (ELBO, -223.0, -223.6, "worse by 0.6 > 0.5"),
    (ELBO, -238.0, -241.0, "past its floor -240"),
    (ELBO, None, -230.0, ""),                        # new metric: only the floor applies
    (KL, 20.0, 20.3, "worse by 0.3 > 0.2"),          # lower is better
    (KL, 20.0, 19.0, ""),
    (KL, 20.0, None, "missing from the workspace"),
    (ELBO, -223.0, float("nan"), "not a finite number: nan"),
    (ELBO, -223.0, float("-inf"), "not a finite number: -inf"),
    (ELBO, -223.0, "NaN", "not a finite number: 'NaN'"),
    (ELBO, float("nan"), -241.0, "past its floor -240"),  # a NaN base excuses nothing
    (Rule(FILE, "test.elbo", True, tolerance=1e9, floor=None), -223.0, float("nan"),
     "not a finite number: nan"),                     # whatever the tolerance
])
def test_judge(rule, old, new, problem):
    assert judge(rule, diff_of(rule.metric, old, new)).problem == problem


def test_table_shows_both_values_the_change_and_the_verdict():
    verdicts = [judge(ELBO, diff_of("test.elbo", -223.0, -224.0)),
                judge(KL, diff_of("test.kl", 20.0, 19.5))]
    table = format_table(verdicts, "HEAD").splitlines()
    assert table[0].split() == ["metric", "HEAD", "workspace", "change", "better", "tolerance",
                                "floor", "result"]
    assert table[1].split()[:8] == [f"{FILE}:test.elbo", "-223.0000", "-224.0000", "-1.0000",
                                    "higher", "0.5", "-240", "FAIL:"]
    assert table[1].endswith("FAIL: worse by 1 > 0.5")
    assert table[2].split() == [f"{FILE}:test.kl", "20.0000", "19.5000", "-0.5000", "lower",
                                "0.2", "-", "ok"]


def test_load_rules(tmp_path):
    path = tmp_path / "regression.yaml"
    path.write_text(f"{FILE}:\n  test.elbo: {{better: higher, tolerance: 0.5, floor: -240}}\n"
                    f"  test.kl: {{better: lower, tolerance: 0.2}}\n")
    assert load_rules(path) == [ELBO, KL]


@pytest.mark.parametrize("spec, message", [
    ("{better: up}", r"better: must be one of higher, lower; got 'up'"),
    ("{better: higher, tolerance: -1}", r"tolerance: must be at least 0.0, got -1"),
    ("[higher, 0.5]", r"must be a mapping of keys, got \['higher', 0.5\]"),
    ("{better: higher, floor: abc}", r"floor: must be a number, got 'abc'"),
    ("{better: higher, floor: .inf}", r"floor: must be a finite number, got inf"),
    ("{better: higher, tolerence: 0.5}",
     r"tolerence: unknown key \(expected one of: better, tolerance, floor, needs\)"),
    ("{better: higher, tolerance: yes}", r"tolerance: must be a number, got 'yes'"),  # YAML 1.2
    ("{tolerance: 0.5}", r"better: missing"),
    ("{better: higher, needs: classifier}", r"needs: must be a mapping of keys, got 'classifier'"),
])
def test_bad_rules_are_one_line_naming_the_metric_and_the_key(tmp_path, spec, message):
    path = tmp_path / "regression.yaml"
    path.write_text(f"{FILE}:\n  test.elbo: {spec}\n")
    with pytest.raises(PipelineError, match=rf"^{path}: {FILE}: test.elbo: {message}$"):
        load_rules(path)


@pytest.mark.parametrize("text, message", [
    (f"{FILE}: [test.elbo]\n",
     rf"{FILE}: must be a mapping of metrics to rules, got \['test.elbo'\]"),
    ("- test.elbo\n", r"\(top level\): must be a mapping of metrics files to metrics, got "
                      r"\['test.elbo'\]"),
    (f"{FILE}:\n  test.elbo: {{better: higher\n", r"not valid YAML at line 3: "),
])
def test_a_bad_layout_is_one_line(tmp_path, text, message):
    path = tmp_path / "regression.yaml"
    path.write_text(text)
    with pytest.raises(PipelineError, match=rf"^{path}: {message}"):
        load_rules(path)


def test_numbers_are_read_as_in_params_yaml(tmp_path):
    path = tmp_path / "regression.yaml"
    path.write_text(f"{FILE}:\n  test.kl: {{better: lower, tolerance: 5e-3, floor: 1e2}}\n")
    assert load_rules(path) == [Rule(FILE, "test.kl", False, tolerance=0.005, floor=100.0)]


def test_the_projects_rules_are_valid():
    assert len(load_rules(PROJECT_ROOT / "regression.yaml")) == 6


ACCURACY = Rule(FILE, "test.accuracy", True, tolerance=0.005, floor=0.95,
                needs=(("conditioning", "classifier"),))


def test_a_metric_the_model_cannot_have_is_skipped_not_failed():
    diff = diff_of("test.accuracy", 0.96, None)
    skipped = judge(ACCURACY, diff, {"conditioning": "none"})
    assert (skipped.problem, skipped.skipped) == ("", "skipped (conditioning: none)")
    assert format_table([skipped], "HEAD").splitlines()[1].endswith("skipped (conditioning: none)")
    # a model that should have it fails without it
    assert judge(ACCURACY, diff, {"conditioning": "classifier"}).problem == \
        "missing from the workspace"


def test_needs_are_read_and_checked(tmp_path):
    path = tmp_path / "regression.yaml"
    path.write_text(f"{FILE}:\n  test.accuracy: {{better: higher, tolerance: 0.005, floor: 0.95,"
                    f" needs: {{conditioning: classifier}}}}\n")
    assert load_rules(path) == [ACCURACY]
