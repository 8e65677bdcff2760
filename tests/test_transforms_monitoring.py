"""DailyMetrics (transforms/monitoring.py) on two hand-made students: per day
and exercise (and over all exercises) the samples, log-likelihood sums, rates
and AUC, computed by hand for a bias-only model and with the specification's
replay (models.knowledge_state.reference_replay) for a full one."""

import collections
import datetime
import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from models.knowledge_state import NUM_BASE_FEATURES, ComponentCache, reference_replay
from models.monitoring import ALL_EXERCISES
from models.problem_log import ProblemLog
from tests.sample_logs import as_buckets
from transforms.monitoring import DailyMetrics
from transforms.run_summary import counter_values

UTC = datetime.timezone.utc
DAY_1, DAY_2 = "2026-01-01", "2026-01-02"
START = int(datetime.datetime(2026, 1, 1, tzinfo=UTC).timestamp()) * 10**6
END = int(datetime.datetime(2026, 1, 3, tzinfo=UTC).timestamp()) * 10**6
HOUR = 3600 * 10**6
SEED, DIM = 5, 3


def log(user, exercise, hours, correct, problem_number=1):
    """An attempt `hours` after 2026-01-01T00:00Z (negative: the day before)."""
    return ProblemLog(user, exercise, "", problem_number, START + hours * HOUR, correct)


STUDENTS = [
    ("ann", [log("ann", "add", -2, True),                   # before the window
             log("ann", "add", 9, True), log("ann", "add", 10, False, 2),
             log("ann", "sub", 11, True),
             log("ann", "add", 30, True, 3), log("ann", "mul", 31, False)]),   # mul: no params
    ("bob", [log("bob", "sub", 12, False),
             log("bob", "sub", 33, False, 2), log("bob", "add", 34, True)]),
]
BIAS = {"add": 0.5, "sub": -1.0}


def bias_only_model():
    width = NUM_BASE_FEATURES + DIM
    return {"params": {name: [bias] + [0.0] * (width - 1) for name, bias in BIAS.items()},
            "seed": SEED, "num_random_features": DIM, "model_version": "bias"}


def by_key(records):
    keyed = {(record["date"], record["exercise"]): record for record in records}
    assert len(keyed) == len(records), "a (date, exercise) record twice"
    return keyed


def test_bias_only_model_by_hand():
    p_add, p_sub = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(1.0))
    # (date, exercise): (samples, correct, sum of log likelihoods, sum of p, auc)
    expected = {
        (DAY_1, "add"): (2, 1, math.log(p_add) + math.log(1 - p_add), 2 * p_add, 0.5),
        (DAY_1, "sub"): (2, 1, math.log(p_sub) + math.log(1 - p_sub), 2 * p_sub, 0.5),
        # positives {p_add, p_sub} against negatives {p_add, p_sub}: 0.5 + 1 + 0 + 0.5 of 4
        (DAY_1, ALL_EXERCISES): (4, 2, math.log(p_add * (1 - p_add) * p_sub * (1 - p_sub)),
                                 2 * p_add + 2 * p_sub, 0.5),
        (DAY_2, "add"): (2, 2, 2 * math.log(p_add), 2 * p_add, None),
        (DAY_2, "sub"): (1, 0, math.log(1 - p_sub), p_sub, None),
        (DAY_2, ALL_EXERCISES): (3, 2, 2 * math.log(p_add) + math.log(1 - p_sub),
                                 2 * p_add + p_sub, 1.0),
    }

    def as_computed(records):
        records = by_key(records)
        assert records.keys() == expected.keys()
        for key, (samples, correct, log_likelihood, predicted, auc) in expected.items():
            record = records[key]
            assert record["model_version"] == "bias"
            assert record["samples"] == samples, key
            assert record["mean_log_likelihood"] * samples == pytest.approx(
                log_likelihood, abs=1e-12), key
            assert record["observed_correct"] == correct / samples, key
            assert record["mean_predicted_correct"] == pytest.approx(predicted / samples,
                                                                     abs=1e-12), key
            assert record["auc"] == auc, key
            assert sum(b["samples"] for b in record["calibration"]) == samples, key

    pipeline = TestPipeline()
    metrics = (pipeline | beam.Create(as_buckets(STUDENTS))
               | DailyMetrics(bias_only_model(), window=(START, END)))
    assert_that(metrics, as_computed)
    result = pipeline.run()
    result.wait_until_finish()
    counters = counter_values(result)
    assert {name: counters.get(name, 0) for name in (
        "rows_scored", "rows_without_params", "rows_outside_window")} == {
        "rows_scored": 7, "rows_without_params": 1, "rows_outside_window": 1}


@pytest.mark.parametrize("student_features", [False, True])
def test_full_model_equals_the_reference_replay(student_features):
    """Real features: each attempt's prediction from the one-attempt-at-a-time
    replay (which also sees the attempt before the window), summed per day.
    A version trained with --student_features is scored with its columns."""
    rng = np.random.default_rng(2)
    width = NUM_BASE_FEATURES + DIM + (3 if student_features else 0)
    params = {name: list(rng.normal(size=width)) for name in ("add", "sub")}
    model = {"params": params, "seed": SEED, "num_random_features": DIM,
             "model_version": "full", "student_features": student_features}
    sums = collections.defaultdict(lambda: np.zeros(3))     # samples, log likelihood, correct
    for _, logs in STUDENTS:
        for entry, x in reference_replay(logs, ComponentCache(SEED, DIM),
                                         student_features=student_features):
            if entry.exercise not in params or not START <= entry.time_done < END:
                continue
            logit = float(np.dot(x, params[entry.exercise]))
            p = 1 / (1 + math.exp(-logit))
            day = DAY_1 if entry.time_done < START + 24 * HOUR else DAY_2
            for exercise in (entry.exercise, ALL_EXERCISES):
                sums[(day, exercise)] += [1, math.log(p if entry.correct else 1 - p),
                                          entry.correct]

    def as_replayed(records):
        records = by_key(records)
        assert records.keys() == sums.keys()
        for key, (samples, log_likelihood, correct) in sums.items():
            record = records[key]
            assert record["samples"] == samples
            assert record["mean_log_likelihood"] == pytest.approx(log_likelihood / samples,
                                                                  abs=1e-12), key
            assert record["observed_correct"] == correct / samples, key

    with TestPipeline() as pipeline:
        metrics = (pipeline | beam.Create(as_buckets(STUDENTS))
                   | DailyMetrics(model, window=(START, END), hot_key_fanout=2))
        assert_that(metrics, as_replayed)
