"""Evaluation against baselines and the deploy decision."""

import pytest

from models.evaluation import HOLDOUT_BY_L2, deploy_decision, evaluate, l2_selection


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


def test_l2_selection_weighs_exercises_by_holdout_rows():
    records = [{"num_holdout": 10, HOLDOUT_BY_L2: [-0.50, -0.60]},
               {"num_holdout": 30, HOLDOUT_BY_L2: [-0.70, -0.62]},
               {"num_holdout": 0, HOLDOUT_BY_L2: [None, None]}]
    selection = l2_selection(records, [1.0, 10.0])
    assert selection["holdout_log_likelihood"] == pytest.approx([-0.65, -0.615])
    assert (selection["chosen"], selection["holdout_rows"]) == (10.0, 40)
    assert selection["candidates"] == [1.0, 10.0]


def test_l2_selection_ties_and_no_holdout_keep_the_first_candidate():
    tie = [{"num_holdout": 5, HOLDOUT_BY_L2: [-0.5, -0.5, -0.6]}]
    assert l2_selection(tie, [3.0, 1.0, 2.0])["chosen"] == 3.0
    nothing = l2_selection([{"num_holdout": 0, HOLDOUT_BY_L2: [None, None]}], [3.0, 1.0])
    assert (nothing["chosen"], nothing["holdout_log_likelihood"]) == (3.0, [None, None])
    assert l2_selection([], [7.0])["chosen"] == 7.0
