"""--student_features (models.student_features): the counts over all of a
student's exercises, checked against numbers worked out by hand here, and the
three implementations (the columnar replay, the one-attempt-at-a-time
KnowledgeState, serving from a history) held equal to 1e-12."""

import math

import numpy as np
import pytest

from models.knowledge_state import (
    BASE_FEATURE_NAMES, NUM_BASE_FEATURES, ComponentCache, KnowledgeState, feature_names,
    reference_replay, replay_students, sessionize)
from models.problem_log import ProblemLog
from models.serving import KnowledgeModel
from models.student_features import STUDENT_FEATURE_NAMES, StudentTotals
from tests.test_knowledge_state import _random_students

T0 = 1_704_164_645_000_000
K = len(STUDENT_FEATURE_NAMES)


def log(seconds, exercise, correct, problem_number=None, user="u"):
    return ProblemLog(user, exercise, "", problem_number, T0 + seconds * 10**6, correct)


# attempts on three exercises, interleaved: answers 1, 0, 1, 1, 0
HISTORY = [log(0, "a", True), log(10, "b", False), log(20, "a", True), log(30, "c", True),
           log(40, "b", False)]
# before each attempt: (attempts so far, correct so far) over every exercise
BY_HAND = [(0, 0), (1, 1), (2, 1), (3, 2), (4, 3)]


def hand_features(done, correct):
    return [math.log(1 + done), math.log(1 + correct), (correct + 1) / (done + 2)]


def test_names_and_layout():
    assert STUDENT_FEATURE_NAMES == ("log_student_done", "log_student_correct",
                                     "student_percent_correct")
    assert feature_names(2, student_features=True) == [
        *BASE_FEATURE_NAMES, *STUDENT_FEATURE_NAMES, "random_1", "random_2"]
    assert feature_names(2) == [*BASE_FEATURE_NAMES, "random_1", "random_2"]


def test_student_totals_by_hand():
    totals = StudentTotals()
    for attempt, (done, correct) in zip(HISTORY, BY_HAND):
        assert totals.features() == pytest.approx(hand_features(done, correct), abs=1e-15)
        totals.update(attempt.correct)
    assert totals.features()[2] == pytest.approx(4 / 7)   # 3 correct of 5, smoothed


def test_knowledge_state_puts_them_after_the_knowledge_features():
    cache = ComponentCache(0, 3)
    plain, with_student = KnowledgeState(cache), KnowledgeState(cache, student_features=True)
    for attempt in HISTORY[:3]:
        plain.update(attempt)
        with_student.update(attempt)
    x, y = plain.features("a"), with_student.features("a")
    assert len(y) == len(x) + K
    np.testing.assert_array_equal(y[:NUM_BASE_FEATURES], x[:NUM_BASE_FEATURES])
    np.testing.assert_array_equal(y[NUM_BASE_FEATURES + K:], x[NUM_BASE_FEATURES:])
    np.testing.assert_allclose(y[NUM_BASE_FEATURES:NUM_BASE_FEATURES + K],
                               hand_features(3, 2), rtol=0, atol=1e-15)


def test_batch_replay_counts_every_exercise_and_ignores_the_range_for_state():
    """Rows outside the problem-number range emit nothing but still count."""
    logs = sessionize(HISTORY + [log(50, "a", False, problem_number=7)])[0]
    rows = replay_students([logs], ComponentCache(0, 3), (1, 6), student_features=True)
    assert len(rows) == 5
    np.testing.assert_allclose(rows.base[:, NUM_BASE_FEATURES:],
                               [hand_features(*counts) for counts in BY_HAND], rtol=0, atol=1e-15)
    after = sessionize(logs + [log(60, "b", True)])[0]
    last = replay_students([after], ComponentCache(0, 3), (1, 6), student_features=True)
    np.testing.assert_allclose(last.base[-1, NUM_BASE_FEATURES:], hand_features(6, 3),
                               rtol=0, atol=1e-15)


@pytest.mark.parametrize("problem_number_range", [(1, None), (2, 4)])
def test_batch_replay_equals_the_one_attempt_at_a_time_reference(problem_number_range):
    students = _random_students(23, 40)
    cache = ComponentCache(seed=2, dim=12)
    rows = replay_students(students, cache, problem_number_range, student_features=True)
    reference = [x for logs in students
                 for _, x in reference_replay(logs, cache, problem_number_range,
                                              student_features=True)]
    assert len(rows) == len(reference) > 100
    assert rows.features(cache).shape == (len(rows), NUM_BASE_FEATURES + K + 12)
    np.testing.assert_allclose(rows.features(cache), np.array(reference), rtol=0, atol=1e-12)


def test_serving_predicts_what_training_rows_give():
    """Skew: serving's prediction before each attempt (predict_each) and from
    the history so far (predict) equal sigmoid(theta . x) of the replayed row."""
    students = _random_students(5, 12)
    cache = ComponentCache(seed=1, dim=6)
    rng = np.random.default_rng(0)
    width = NUM_BASE_FEATURES + K + 6
    params = {f"ex{i}": rng.normal(size=width) for i in range(4)}
    model = KnowledgeModel(params, cache, "v", student_features=True)
    for logs in students:
        if not logs:
            continue
        rows = replay_students([logs], cache, student_features=True)
        x = rows.features(cache)
        expected = [1 / (1 + math.exp(-params[e] @ row)) for e, row in zip(rows.exercise, x)]
        served = [p for _, p in model.predict_each(logs)]
        np.testing.assert_allclose(served, expected, rtol=0, atol=1e-12)
        last = len(logs) - 1
        assert model.predict(logs[:last], logs[last].exercise) == pytest.approx(
            expected[last], abs=1e-12)


def test_serving_checks_the_width():
    params = [{"exercise": "a", "theta": [0.0] * (NUM_BASE_FEATURES + K + 2)}]
    model = KnowledgeModel.from_records(params, [], 0, 2, student_features=True)
    assert model.student_features
    with pytest.raises(ValueError, match="does not have 9 values"):
        KnowledgeModel.from_records(params, [], 0, 2)
