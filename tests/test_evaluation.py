"""Evaluation against baselines and the deploy decision."""

import pytest

from models.evaluation import deploy_decision, evaluate


def _record(exercise, n, new, base, baseline=None, with_baseline=True):
    record = {"exercise": exercise, "num_holdout": n, "holdout_log_likelihood": new,
              "holdout_base_rate_log_likelihood": base}
    if with_baseline:
        record["holdout_baseline_log_likelihood"] = baseline
    return record


def test_figures_are_means_over_holdout_rows():
    records = [_record("a", 100, -0.5, -0.6, -0.55), _record("b", 300, -0.4, -0.7, None),
               _record("c", 0, None, None, None)]
    evaluation = evaluate(records, baseline_version="v1", baseline_exercises=3)
    assert evaluation["holdout_rows"] == 400
    assert evaluation["holdout_log_likelihood"] == pytest.approx((100 * -0.5 + 300 * -0.4) / 400)
    assert evaluation["base_rate_log_likelihood"] == pytest.approx((100 * -0.6 + 300 * -0.7) / 400)
    # Only exercise a has a baseline theta: compare on its rows only.
    assert evaluation["exercises_compared"] == 1
    assert evaluation["holdout_rows_compared"] == 100
    assert evaluation["baseline_log_likelihood"] == pytest.approx(-0.55)
    assert evaluation["new_log_likelihood_on_compared"] == pytest.approx(-0.5)
    assert evaluation["exercises_only_in_baseline"] == 2


def test_deploy_policies():
    better = evaluate([_record("a", 10, -0.5, -0.6, -0.55)], "v1", 1)
    worse = evaluate([_record("a", 10, -0.6, -0.6, -0.55)], "v1", 1)
    first = evaluate([_record("a", 10, -0.6, -0.6, with_baseline=False)])
    incomparable = evaluate([_record("a", 10, -0.6, -0.6, with_baseline=False)], "v1", 1,
                            baseline_note="its seed differs")
    assert deploy_decision(worse, "always") == (True, "deploy_policy always")
    assert deploy_decision(better, "if_better")[0] is True
    activate, reason = deploy_decision(worse, "if_better")
    assert not activate and reason.startswith("worse: holdout log likelihood -0.60000 vs -0.55000")
    assert deploy_decision(first, "if_better") == (True, "no active version to compare with")
    activate, reason = deploy_decision(incomparable, "if_better")
    assert not activate and "its seed differs" in reason
    with pytest.raises(ValueError):
        deploy_decision(better, "sometimes")
