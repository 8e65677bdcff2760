"""Tests for benchmarks/bench_quality.py: the baselines' features and updates on
hand-computed cases, the rule that no feature sees its own (or a later) label,
the student split, the metrics, and one --quick run end to end."""

import dataclasses
import importlib.util
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks import bench_quality as bq

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 1_767_225_600 * 1_000_000
HOUR, DAY = 3600, 86_400

# One student's six attempts, written by hand: (exercise, seconds after T0, correct).
HISTORY = [(0, 0, 1), (0, 600, 0), (1, 1200, 1), (0, 2 * HOUR, 1), (1, 2 * DAY, 0),
           (0, 2 * DAY + 1, 1)]


def responses(attempts, other_student=True):
    """Responses for HISTORY-like (exercise, seconds, correct) attempts of user
    0, plus (by default) a second student whose attempts must not count."""
    rows = [(0, e, s, c) for e, s, c in attempts]
    if other_student:
        rows += [(1, 0, 30, 1), (1, 1, 40, 1), (1, 0, 50, 1)]
    user, exercise, seconds, correct = (np.array(column) for column in zip(*rows))
    return bq.Responses(
        name="hand", notes=[], user=user, exercise=exercise,
        problem_type=np.zeros(len(rows), dtype=np.int64),
        problem_number=np.ones(len(rows), dtype=np.int64),
        time_done=T0 + seconds * 1_000_000, correct=correct.astype(bool),
        exercise_names=("A", "B"), problem_type_names=("",))


def test_pfa_features_of_a_hand_written_history():
    x = bq.pfa_design(responses(HISTORY)).toarray()[:6]
    # Columns: [A, B | A successes, B successes | A failures, B failures].
    expected = np.array([
        [1, 0, 0, 0, 0, 0],   # A: nothing before
        [1, 0, 1, 0, 0, 0],   # A: one success
        [0, 1, 0, 0, 0, 0],   # B: nothing on B before
        [1, 0, 1, 0, 1, 0],   # A: one success, one failure
        [0, 1, 0, 1, 0, 0],   # B: one success
        [1, 0, 2, 0, 1, 0],   # A: two successes, one failure
    ])
    np.testing.assert_array_equal(x, expected)


def test_best_lr_counts_of_a_hand_written_history():
    r = responses(HISTORY)
    x = bq.best_lr_design(r).toarray()[:6]
    n_ex, n_w = 2, len(bq.WINDOWS)
    assert [name for name, _ in bq.WINDOWS] == ["hour", "day", "week", "month", "all"]
    # (wins, attempts) before each row in hour, day, week, month, all time.
    same_exercise = [
        [(0, 0)] * 5,
        [(1, 1)] * 5,                               # A at 10 min: the answer at 0
        [(0, 0)] * 5,
        [(0, 0), (1, 2), (1, 2), (1, 2), (1, 2)],   # A at 2 h: 0 and 10 min are > 1 h ago
        [(0, 0), (0, 0), (1, 1), (1, 1), (1, 1)],   # B at 2 days: B at 20 min
        [(0, 0), (0, 0), (2, 3), (2, 3), (2, 3)],   # A at 2 days + 1 s
    ]
    overall = [
        [(0, 0)] * 5,
        [(1, 1)] * 5,
        [(1, 2)] * 5,
        [(0, 0), (2, 3), (2, 3), (2, 3), (2, 3)],
        [(0, 0), (0, 0), (3, 4), (3, 4), (3, 4)],
        [(0, 1), (0, 1), (3, 5), (3, 5), (3, 5)],   # the wrong B answer 1 s before
    ]
    exercise_block = r.num_items + n_ex
    overall_block = exercise_block + 2 * n_w * n_ex
    for row, (e, _, _) in enumerate(HISTORY):
        expected = np.zeros(overall_block + 2 * n_w)
        expected[e] = 1.0                   # item one-hot (one problem type: item = exercise)
        expected[r.num_items + e] = 1.0     # exercise one-hot
        for w in range(n_w):
            for kind in range(2):
                slot = 2 * w + kind
                expected[exercise_block + slot * n_ex + e] = math.log1p(same_exercise[row][w][kind])
                expected[overall_block + slot] = math.log1p(overall[row][w][kind])
        np.testing.assert_allclose(x[row], expected, err_msg=f"row {row}")


def _flip(r, row):
    correct = r.correct.copy()
    correct[row] = not correct[row]
    return dataclasses.replace(r, correct=correct)


@pytest.mark.parametrize("row", [0, 3, 5])
def test_no_feature_sees_its_own_or_a_later_label(row):
    """Flipping one answer changes features of later attempts of the same
    student only: never the attempt itself, earlier ones or other students."""
    r = responses(HISTORY)
    flipped = _flip(r, row)
    later = (r.user == r.user[row]) & (np.arange(len(r)) > row)
    for design in (bq.pfa_design, bq.best_lr_design):
        changed = np.any(design(r).toarray() != design(flipped).toarray(), axis=1)
        assert not np.any(changed & ~later), design.__name__
        assert row == 5 or changed[later].any(), design.__name__
    b, c = np.array([0.3, -0.2]), 0.1
    before, after = (bq.online_irt_logits(x.user, x.item, x.correct, c, b, 1.0)
                     for x in (r, flipped))
    assert not np.any((before != after) & ~later)
    for student_features in (False, True):
        model = bq.KnowledgeModel(r, student_features=student_features)
        components = model.components
        np.testing.assert_array_equal(
            model.rows.features(components)[~later],
            bq.KnowledgeModel(flipped, student_features=student_features)
            .rows.features(components)[~later])


def test_prior_counts_never_count_the_row_or_later_rows_at_the_same_instant():
    group = np.array([0, 0, 0, 1])
    seconds = np.array([5.0, 5.0, 5.0, 5.0])
    correct = np.array([1, 1, 0, 1])
    for window in (None, 1.0):
        wins, attempts = bq.prior_counts(group, seconds, correct, window)
        np.testing.assert_array_equal(attempts, [0, 1, 2, 0])
        np.testing.assert_array_equal(wins, [0, 1, 2, 0])


def test_student_split_is_disjoint_deterministic_and_of_the_stated_sizes():
    side = bq.split_students(20_000, seed=3)
    np.testing.assert_array_equal(side, bq.split_students(20_000, seed=3))
    assert not np.array_equal(side, bq.split_students(20_000, seed=4))
    assert set(np.unique(side)) == {bq.FIT, bq.VALIDATION, bq.TEST}
    assert abs(np.mean(side == bq.TEST) - bq.TEST_FRACTION) < 0.01
    training = side != bq.TEST
    assert abs(np.mean(side[training] == bq.VALIDATION) - bq.VALIDATION_FRACTION) < 0.01
    # Row level: a student's attempts are all on one side.
    r = bq.sample_responses(200, seed=1)
    row_side = bq.split_students(r.num_users, 0)[r.user]
    test_users = set(r.user[row_side == bq.TEST])
    assert test_users and not test_users & set(r.user[row_side != bq.TEST])
    assert not set(r.user[row_side == bq.VALIDATION]) & set(r.user[row_side == bq.FIT])


def test_online_irt_update_by_hand():
    c, b, sd = 0.2, np.array([0.5, -1.0]), 1.0
    logits = bq.online_irt_logits(np.array([0, 0, 1]), np.array([0, 1, 0]),
                                  np.array([True, False, True]), c, b, sd)

    def sigmoid(z):
        return 1 / (1 + math.exp(-z))

    z = c - 0.5
    assert logits[0] == pytest.approx(z / math.sqrt(1 + math.pi / 8))
    p = sigmoid(z)
    v = 1 / (1 + p * (1 - p))
    mu = v * (1 - p)
    assert logits[1] == pytest.approx((c + mu + 1.0) / math.sqrt(1 + math.pi * v / 8))
    assert logits[2] == pytest.approx(logits[0])   # another student starts afresh


def test_irt_fit_recovers_simulated_difficulties():
    rng = np.random.default_rng(0)
    users, items = 1000, 20
    theta, b = rng.normal(0, 1, users), np.linspace(-1.5, 1.5, items)
    user, item = np.repeat(np.arange(users), items), np.tile(np.arange(items), users)
    correct = rng.random(len(user)) < 1 / (1 + np.exp(-(theta[user] - b[item])))
    c, _, fitted = bq.fit_irt(user, item, correct, users, items, 1.0)
    # Identified up to the offset c; each b has a standard error of ~0.08.
    assert np.mean(np.abs((fitted - fitted.mean()) - (b - b.mean()))) < 0.12
    assert np.corrcoef(fitted, b)[0, 1] > 0.98


def test_weighted_auc_matches_sklearn_and_duplicated_rows():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=300), 1)   # with ties
    labels = rng.random(300) < 0.6
    assert bq.weighted_auc(scores, labels, np.ones(300)) == pytest.approx(
        roc_auc_score(labels, scores))
    weights = rng.integers(0, 3, 300)
    repeated = np.repeat(np.arange(300), weights)
    several = bq.weighted_auc(scores, labels, np.stack([weights, np.ones(300)]))
    assert several[0] == pytest.approx(roc_auc_score(labels[repeated], scores[repeated]))
    assert several[1] == pytest.approx(roc_auc_score(labels, scores))


def test_bootstrap_is_centred_on_the_direct_figures():
    rng = np.random.default_rng(2)
    user = np.repeat(np.arange(100), 10)
    labels = rng.random(1000) < 0.7
    logits = {bq.OURS: rng.normal(size=1000), "other": rng.normal(size=1000)}
    scores = bq.bootstrap_scores(user, labels, logits, 200, seed=0)
    ours = scores[bq.OURS]
    assert ours["ll"] == pytest.approx(bq.log_likelihoods(logits[bq.OURS], labels).mean())
    low, high = bq.interval(ours["ll_boot"])
    assert low < ours["ll"] < high
    low, high = bq.interval(scores["other"]["difference"])
    assert low < scores["other"]["difference_mean"] < high


def test_quick_run_end_to_end():
    done = subprocess.run([sys.executable, os.path.join(REPO, "benchmarks", "bench_quality.py"),
                           "--quick"], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    real = (("LSAT7 (real)", "ordered by item number") if importlib.util.find_spec("mirt")
            else ("LSAT7 skipped: ",))
    for expected in ("sample, 300 students", "base rate", "knowledge model", "ours + shrinkage",
                     "ours + student features", "ours + both", "LL - Best-LR", "PFA",
                     "IRT-1PL online", "Best-LR", "oracle") + real:
        assert expected in out, expected
    assert "Warning" not in done.stderr, done.stderr[-3000:]
