import pytest

from vaepipe.errors import PipelineError
from vaepipe.regression import Rule, format_table, judge, load_rules

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
    ("{better: up}", r"better must be higher or lower, got 'up'"),
    ("{better: higher, tolerance: -1}", r"tolerance must be a number >= 0, got -1"),
])
def test_bad_rules_are_named(tmp_path, spec, message):
    path = tmp_path / "regression.yaml"
    path.write_text(f"{FILE}:\n  test.elbo: {spec}\n")
    with pytest.raises(PipelineError, match=rf"regression.yaml: {FILE}: test.elbo: {message}"):
        load_rules(path)


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
    path.write_text(f"{FILE}:\n  test.accuracy: {{better: higher, needs: classifier}}\n")
    with pytest.raises(PipelineError, match=r"test.accuracy: needs must map params keys"):
        load_rules(path)
