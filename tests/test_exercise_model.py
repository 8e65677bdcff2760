"""Tests for models.exercise_model: hashing-based sampling and holdout, and the
per-exercise fit record.

Rows are built the way the pipeline builds them (sessionize + replay_students),
so the tests follow TrainingRows' layout without constructing it by hand.
"""

import dataclasses
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models.exercise_model import (
    FitSettings, bottom_k, bottom_k_per_exercise, deterministic_order, fit_exercise, fit_global,
    global_pool, holdout_mask, sample_keys, select_l2)
from models.knowledge_state import (
    NUM_BASE_FEATURES, ComponentCache, TrainingRows, replay_students, sessionize)
from models.problem_log import ProblemLog

T0 = 1_704_164_645_000_000
RECORD_FIELDS = {
    "exercise", "theta", "num_train", "num_holdout", "num_rows_available",
    "train_log_likelihood", "holdout_log_likelihood", "holdout_auc",
    "holdout_base_rate_log_likelihood", "converged", "iterations", "model_version",
    "trained_at"}
SKIPPED_FIELDS = {"exercise", "num_train", "num_holdout", "num_rows_available", "reason",
                  "detail", "model_version"}


def make_rows(num_users, seed=0, exercise="e", attempts=(3, 15), p_correct=0.7,
              extra_exercises=("f", "g")):
    """Replayed rows of one exercise for `num_users` students (each also works on
    other exercises, so r and the base features vary)."""
    rng = np.random.default_rng(seed)
    names = (exercise,) + tuple(extra_exercises)
    students = []
    for u in range(num_users):
        n = int(rng.integers(*attempts))
        which = rng.integers(len(names), size=n).tolist()
        types = rng.integers(2, size=n).tolist()
        times = (T0 + rng.integers(0, 10_000, size=n) * 1_000_000).tolist()
        correct = (rng.random(n) < p_correct).tolist()
        logs = [ProblemLog(f"user{u}", names[which[i]], ("", "t1")[types[i]], None,
                           times[i], correct[i]) for i in range(n)]
        students.append(sessionize(logs)[0])
    settings = FitSettings()
    rows = replay_students(students, ComponentCache(settings.seed, settings.num_random_features))
    return dict(rows.split_by_exercise())[exercise]


def relabel(rows, labels):
    """The same rows with other labels (a copy; rows itself is left alone)."""
    copy = rows.take(np.arange(len(rows)))
    copy.correct = np.asarray(labels, dtype=bool)
    return copy


def dense(rows, settings):
    return rows.features(ComponentCache(settings.seed, settings.num_random_features))


@pytest.fixture(scope="module")
def rows():
    return make_rows(400, seed=1)


# --- sample keys -----------------------------------------------------------------

def test_sample_keys_are_deterministic_and_independent_of_row_order(rows):
    keys = sample_keys(rows, seed=3)
    assert keys.dtype == np.uint64 and keys.shape == (len(rows),)
    np.testing.assert_array_equal(sample_keys(rows, seed=3), keys)
    rng = np.random.default_rng(0)
    for _ in range(3):
        permutation = rng.permutation(len(rows))
        np.testing.assert_array_equal(sample_keys(rows.take(permutation), seed=3),
                                      keys[permutation])
    # a row's key depends on nothing but the row: blocks give the same keys
    half = len(rows) // 2
    np.testing.assert_array_equal(
        np.concatenate([sample_keys(rows.take(slice(0, half)), 3),
                        sample_keys(rows.take(slice(half, None)), 3)]), keys)


def test_sample_keys_depend_on_seed_and_look_uniform(rows):
    keys = sample_keys(rows, seed=3)
    other = sample_keys(rows, seed=4)
    assert np.mean(keys == other) < 0.01
    assert len(np.unique(keys)) == len(rows)
    uniform = keys.astype(np.float64) / 2.0 ** 64
    assert abs(uniform.mean() - 0.5) < 4 * math.sqrt(1 / 12 / len(rows))
    assert 0.2 < np.mean(uniform < 0.25) < 0.3


# --- holdout ---------------------------------------------------------------------

def test_holdout_fraction_of_5000_users_and_whole_users():
    # 5000 students, 1-4 rows each on the exercise
    rng = np.random.default_rng(2)
    students = [sessionize([ProblemLog(f"student-{i}", "e", "", None, T0 + j, bool(j % 2))
                            for j in range(int(rng.integers(1, 5)))])[0]
                for i in range(5000)]
    rows = replay_students(students, ComponentCache(0, 1))
    first_row = np.r_[0, np.cumsum([len(s) for s in students])[:-1]]
    for fraction in (0.1, 0.3):
        mask = holdout_mask(rows, seed=0, fraction=fraction)
        users_held = mask[first_row]
        sd = math.sqrt(fraction * (1 - fraction) / 5000)
        assert abs(users_held.mean() - fraction) < 4 * sd, users_held.mean()
    assert not holdout_mask(rows, 0, 0.0).any()
    assert holdout_mask(rows, 0, 1.0).all()
    # nested: a user held out at 10% is held out at 30%
    assert np.all(holdout_mask(rows, 0, 0.1) <= holdout_mask(rows, 0, 0.3))
    # another seed chooses (independently) other users: overlap ~ 0.3 * 0.3
    overlap = np.mean((holdout_mask(rows, 0, 0.3) & holdout_mask(rows, 1, 0.3))[first_row])
    assert abs(overlap - 0.09) < 0.03

    # every user's rows land on one side, whatever the order
    mask = holdout_mask(rows, seed=0, fraction=0.1)
    by_user = {}
    for user, held in zip(rows.user, mask):
        by_user.setdefault(user, set()).add(bool(held))
    assert len(by_user) == 5000
    assert all(len(sides) == 1 for sides in by_user.values())
    permutation = rng.permutation(len(rows))
    np.testing.assert_array_equal(holdout_mask(rows.take(permutation), 0, 0.1),
                                  mask[permutation])


def test_holdout_side_of_a_user_is_the_same_on_every_exercise():
    rows = make_rows(300, seed=12)
    others = dict(replay_students(
        [sessionize([ProblemLog(user, "z", "", None, T0, True)])[0]
         for user in dict.fromkeys(rows.user)], ComponentCache(0, 1)).split_by_exercise())["z"]
    side = dict(zip(others.user, holdout_mask(others, 5, 0.4)))
    mask = holdout_mask(rows, 5, 0.4)
    assert 0.2 < mask.mean() < 0.6
    assert all(side[user] == held for user, held in zip(rows.user, mask))


# --- bottom_k --------------------------------------------------------------------

def _row_ids(rows):
    return list(zip(rows.user, rows.time_done.tolist(), rows.problem_number.tolist()))


def test_bottom_k_returns_the_k_smallest_keys(rows):
    keys = sample_keys(rows, seed=0)
    k = 50
    chosen, chosen_keys = bottom_k(rows, keys, k)
    assert len(chosen) == k
    np.testing.assert_array_equal(chosen_keys, np.sort(keys)[:k])
    np.testing.assert_array_equal(sample_keys(chosen, seed=0), chosen_keys)
    order = np.argsort(keys)[:k]
    assert _row_ids(chosen) == _row_ids(rows.take(order))
    # k larger than the rows: all of them, sorted by key
    everything, all_keys = bottom_k(rows, keys, len(rows) + 10)
    assert len(everything) == len(rows)
    assert np.all(all_keys[1:] > all_keys[:-1])


def test_bottom_k_same_rows_whatever_the_order_or_blocking(rows):
    settings = FitSettings()
    keys = sample_keys(rows, seed=0)
    k = 120
    expected, expected_keys = bottom_k(rows, keys, k)
    expected_x = dense(expected, settings)
    rng = np.random.default_rng(5)
    for _ in range(3):
        permutation = rng.permutation(len(rows))
        shuffled = rows.take(permutation)
        # in blocks, bottom_k of each, then bottom_k of the union (as a combiner does)
        cuts = np.sort(rng.choice(np.arange(1, len(rows)), size=4, replace=False))
        partial = [bottom_k(shuffled.take(part), keys[permutation][part], k)
                   for part in np.split(np.arange(len(rows)), cuts)]
        merged, merged_keys = bottom_k(TrainingRows.concatenate([p for p, _ in partial]),
                                       np.concatenate([key for _, key in partial]), k)
        np.testing.assert_array_equal(merged_keys, expected_keys)
        assert _row_ids(merged) == _row_ids(expected)
        np.testing.assert_array_equal(dense(merged, settings), expected_x)


def test_bottom_k_per_exercise_keeps_each_exercises_k_smallest_keys():
    """Rows of three exercises in one block: per exercise, its k smallest
    sample keys in key order (a plain sort per exercise), grouped by exercise."""
    students = []
    rng = np.random.default_rng(3)
    for u in range(150):
        n = int(rng.integers(3, 15))
        students.append(sessionize([
            ProblemLog(f"u|{u}", ("a\x1fb", "c", "d")[int(rng.integers(3))], "", None,
                       T0 + int(rng.integers(0, 10_000)) * 1_000_000, bool(rng.random() < 0.7))
            for _ in range(n)])[0])
    rows = replay_students(students, ComponentCache(0, 3))
    keys = sample_keys(rows, seed=0)
    k = 40
    sample = bottom_k_per_exercise(rows, keys, k)
    names = rows.exercise
    expected = []
    for exercise in sorted(set(names.tolist()), key=rows.exercises.index):
        mine = sorted(keys[names == exercise].tolist())[:k]
        expected += [(exercise, key) for key in mine]
    assert list(zip(sample.exercise.tolist(), sample_keys(sample, seed=0).tolist())) == expected
    assert len(sample) == sum(min(k, int((names == e).sum())) for e in set(names.tolist()))


def test_deterministic_order_breaks_key_ties_by_row():
    rows = make_rows(30, seed=9)
    keys = np.zeros(len(rows), dtype=np.uint64)  # every key tied
    expected = _row_ids(rows.take(deterministic_order(rows, keys)))
    assert expected == sorted(_row_ids(rows))
    permutation = np.random.default_rng(1).permutation(len(rows))
    shuffled = rows.take(permutation)
    assert _row_ids(shuffled.take(deterministic_order(shuffled, keys))) == expected


def test_bottom_k_tie_between_rows_with_same_user_time_and_problem_number():
    # The same attempt logged twice with different outcomes. Sessionize
    # dead-letters such conflicting duplicates, but the sample must not depend
    # on that: replay them directly.
    logs = [ProblemLog("u", "e", "", 3, T0, False), ProblemLog("u", "e", "", 3, T0, True)]
    rows = replay_students([logs], ComponentCache(0, 2))
    keys = sample_keys(rows, 0)
    assert keys[0] == keys[1]
    first, _ = bottom_k(rows, keys, 1)
    reversed_order = np.array([1, 0])
    second, _ = bottom_k(rows.take(reversed_order), keys[reversed_order], 1)
    assert first.correct.tolist() == second.correct.tolist()


# --- fit_exercise ----------------------------------------------------------------

def test_fit_skips_too_few_samples():
    rows = make_rows(4, seed=2, attempts=(5, 8))
    settings = FitSettings(min_samples=30, holdout_fraction=0.0, model_version="v7")
    outcome, record = fit_exercise("e", rows, 123, settings)
    assert outcome == "skipped"
    assert set(record) == SKIPPED_FIELDS
    assert record["reason"] == "too_few_samples"
    assert record["num_train"] == len(rows) < 30
    assert record["detail"] == f"{len(rows)} training rows < min_samples 30"
    assert (record["exercise"], record["num_rows_available"], record["num_holdout"],
            record["model_version"]) == ("e", 123, 0, "v7")
    json.dumps(record, allow_nan=False)


def test_fit_counts_only_training_rows_against_min_samples(rows):
    settings = FitSettings(min_samples=len(rows), holdout_fraction=0.2)
    outcome, record = fit_exercise("e", rows, len(rows), settings)
    assert outcome == "skipped" and record["reason"] == "too_few_samples"
    assert record["num_train"] + record["num_holdout"] == len(rows)
    assert record["num_holdout"] > 0


@pytest.mark.parametrize("label, word", [(True, "correct"), (False, "wrong")])
def test_fit_skips_single_class(rows, label, word):
    settings = FitSettings(min_samples=10)
    outcome, record = fit_exercise("e", relabel(rows, np.full(len(rows), label)),
                                   len(rows), settings)
    assert outcome == "skipped"
    assert set(record) == SKIPPED_FIELDS
    assert record["reason"] == "single_class"
    assert record["detail"] == (f"all {record['num_train']} training rows are {word}; "
                                "no slope to fit")
    json.dumps(record, allow_nan=False)


def test_single_class_in_training_only_is_still_a_skip(rows):
    settings = FitSettings(min_samples=10, holdout_fraction=0.3)
    held = holdout_mask(rows, settings.seed, settings.holdout_fraction)
    labels = np.where(held, rows.correct, True)  # mixed holdout, all-correct train
    assert not labels[held].all()
    outcome, record = fit_exercise("e", relabel(rows, labels), len(rows), settings)
    assert (outcome, record["reason"]) == ("skipped", "single_class")


def test_l2_candidates_fit_each_as_a_single_l2_would(rows):
    settings = FitSettings(min_samples=10, holdout_fraction=0.25, l2_candidates=(1.0, 30.0, 300.0),
                           model_version="v", trained_at="t")
    outcome, fitted = fit_exercise("e", rows, 9999, settings, baseline={"e": np.zeros(107)})
    assert outcome == "fitted"
    assert fitted["l2_candidates"] == [1.0, 30.0, 300.0]
    for index, l2 in enumerate(settings.l2_candidates):
        _, single = fit_exercise("e", rows, 9999, dataclasses.replace(
            settings, l2=l2, l2_candidates=()), baseline={"e": np.zeros(107)})
        assert fitted["candidates"][index] == single
        assert fitted["holdout_log_likelihood_by_l2"][index] == single["holdout_log_likelihood"]
        chosen = select_l2(fitted, l2)
        assert chosen == {**single, "l2": l2, "l2_candidates": [1.0, 30.0, 300.0],
                          "holdout_log_likelihood_by_l2": fitted["holdout_log_likelihood_by_l2"]}
        json.dumps(chosen, allow_nan=False)
    assert fitted["num_holdout"] == single["num_holdout"] > 0


def test_fit_record_fields_and_values(rows):
    settings = FitSettings(min_samples=10, holdout_fraction=0.25, l2=1e-3, seed=0,
                           model_version="2024-01-02-abc", trained_at="2024-01-02T03:04:05Z")
    outcome, record = fit_exercise("e", rows, 9999, settings)
    assert outcome == "fitted"
    assert set(record) == RECORD_FIELDS
    text = json.dumps(record, allow_nan=False)
    assert json.loads(text) == record
    theta = np.array(record["theta"])
    assert theta.shape == (NUM_BASE_FEATURES + settings.num_random_features,)
    assert len(record["theta"]) == 7 + 100
    assert all(type(value) is float and math.isfinite(value) for value in record["theta"])
    assert record["exercise"] == "e"
    assert record["num_rows_available"] == 9999
    assert record["model_version"] == "2024-01-02-abc"
    assert record["trained_at"] == "2024-01-02T03:04:05Z"
    assert type(record["converged"]) is bool and record["converged"]
    assert type(record["iterations"]) is int and 0 < record["iterations"] <= 500

    # Recompute every metric independently from theta and the rows.
    x = dense(rows, settings)
    y = rows.correct.astype(float)
    held = holdout_mask(rows, settings.seed, settings.holdout_fraction)
    assert (record["num_train"], record["num_holdout"]) == ((~held).sum(), held.sum())
    assert record["num_holdout"] > 0
    z = x @ theta
    log_lik = y * z - np.log1p(np.exp(z))
    assert record["train_log_likelihood"] == pytest.approx(log_lik[~held].mean(), rel=1e-9)
    assert record["holdout_log_likelihood"] == pytest.approx(log_lik[held].mean(), rel=1e-9)
    # AUC: near-tied scores (r summed in another order) can swap by one ulp with
    # the row order of the product, so recompute in fit_exercise's own row order.
    assert record["holdout_auc"] == pytest.approx(roc_auc_score(y[held], z[held]), abs=1e-3)
    ordered = rows.take(deterministic_order(rows, sample_keys(rows, settings.seed)))
    ordered_held = holdout_mask(ordered, settings.seed, settings.holdout_fraction)
    ordered_z = dense(ordered.take(ordered_held), settings) @ theta
    assert record["holdout_auc"] == pytest.approx(
        roc_auc_score(ordered.correct[ordered_held], ordered_z), abs=1e-12)
    rate = (y[~held].sum() + 1) / ((~held).sum() + 2)
    base = np.mean(y[held] * math.log(rate) + (1 - y[held]) * math.log(1 - rate))
    assert record["holdout_base_rate_log_likelihood"] == pytest.approx(base, rel=1e-12)
    assert -math.log(2) * 1.5 < record["train_log_likelihood"] < 0


def test_fit_does_not_depend_on_row_order(rows):
    settings = FitSettings(min_samples=10, holdout_fraction=0.2, num_random_features=100)
    _, expected = fit_exercise("e", rows, len(rows), settings)
    permutation = np.random.default_rng(3).permutation(len(rows))
    _, shuffled = fit_exercise("e", rows.take(permutation), len(rows), settings)
    assert shuffled == expected


def test_fit_without_holdout_has_null_holdout_metrics(rows):
    settings = FitSettings(min_samples=10, holdout_fraction=0.0)
    outcome, record = fit_exercise("e", rows, len(rows), settings)
    assert outcome == "fitted"
    assert record["num_holdout"] == 0 and record["num_train"] == len(rows)
    assert record["holdout_log_likelihood"] is None
    assert record["holdout_auc"] is None
    assert record["holdout_base_rate_log_likelihood"] is None
    json.dumps(record, allow_nan=False)


def test_fit_with_single_class_holdout_has_null_auc(rows):
    settings = FitSettings(min_samples=10, holdout_fraction=0.3)
    held = holdout_mask(rows, settings.seed, settings.holdout_fraction)
    labels = np.where(held, False, rows.correct)
    outcome, record = fit_exercise("e", relabel(rows, labels), len(rows), settings)
    assert outcome == "fitted"
    assert record["holdout_auc"] is None
    assert math.isfinite(record["holdout_log_likelihood"])
    json.dumps(record, allow_nan=False)


@pytest.mark.parametrize("case", ["separable_l2_0", "constant_features", "tiny"])
def test_fit_never_returns_nan_or_inf(rows, case):
    settings = FitSettings(min_samples=2, holdout_fraction=0.2, num_random_features=100)
    if case == "separable_l2_0":
        settings = dataclasses.replace(settings, l2=0.0)
        x = dense(rows, settings)
        data = relabel(rows, x[:, 1] > np.median(x[:, 1]))  # ewma_3 splits perfectly
    elif case == "constant_features":
        # rows with no history at all: every x is the same (bias + empty state)
        data = make_rows(200, seed=4, attempts=(1, 2), extra_exercises=())
        x = dense(data, settings)
        assert np.all(x == x[0])
        data = relabel(data, np.arange(len(data)) % 3 == 0)
    else:
        data = relabel(rows.take(np.arange(4)), [True, False, True, False])
        settings = dataclasses.replace(settings, holdout_fraction=0.0)
    outcome, record = fit_exercise("e", data, len(data), settings)
    assert outcome == "fitted", record
    json.dumps(record, allow_nan=False)  # raises on NaN or inf
    numbers = record["theta"] + [value for key, value in record.items()
                                 if isinstance(value, float)]
    assert all(math.isfinite(value) for value in numbers)
    if case == "constant_features":
        # nothing to learn but the base rate: p = 1/3 on the training rows
        train_rate = np.mean(data.correct[~holdout_mask(data, 0, 0.2)])
        assert record["train_log_likelihood"] == pytest.approx(
            train_rate * math.log(train_rate) + (1 - train_rate) * math.log(1 - train_rate),
            abs=1e-6)


def test_fit_beats_base_rate_on_data_from_a_known_logistic_model():
    rows = make_rows(700, seed=6, attempts=(8, 25))
    settings = FitSettings(min_samples=30, holdout_fraction=0.3, l2=1e-4,
                           num_random_features=100, seed=0)
    x = dense(rows, settings)
    rng = np.random.default_rng(7)
    true_theta = np.zeros(x.shape[1])
    true_theta[:NUM_BASE_FEATURES] = [-2.0, 2.5, 1.0, 0.15, 0.4, -0.6, 0.5]
    true_theta[NUM_BASE_FEATURES:] = rng.normal(scale=0.5, size=settings.num_random_features)
    labels = rng.random(len(rows)) < 1 / (1 + np.exp(-(x @ true_theta)))
    data = relabel(rows, labels)
    outcome, record = fit_exercise("e", data, len(data), settings)
    assert outcome == "fitted"
    assert record["num_holdout"] > 500
    gain = record["holdout_log_likelihood"] - record["holdout_base_rate_log_likelihood"]
    assert gain > 0.05, record
    assert record["holdout_auc"] > 0.7
    # and it is not far off the truth's own holdout log likelihood
    held = holdout_mask(data, settings.seed, settings.holdout_fraction)
    z = x[held] @ true_theta
    y = labels[held]
    truth = np.mean(y * z - np.logaddexp(0, z))
    assert record["holdout_log_likelihood"] > truth - 0.03


# --- the global fit of --shrink_to_global ----------------------------------------

def test_global_pool_is_the_first_training_rows_by_sample_key(rows):
    settings = FitSettings(holdout_fraction=0.3, global_rows_per_exercise=25)
    pool = global_pool(rows, settings)
    training = ~holdout_mask(rows, settings.seed, 0.3)
    keys = sample_keys(rows, settings.seed)
    expected = np.sort(keys[training])[:25]   # the 25 smallest keys of training-side rows
    assert len(pool) == 25
    assert not holdout_mask(pool, settings.seed, 0.3).any()
    np.testing.assert_array_equal(sample_keys(pool, settings.seed), expected)
    # an exercise with fewer training rows than the share gives them all
    everything = global_pool(rows, dataclasses.replace(settings, global_rows_per_exercise=10**6))
    assert len(everything) == training.sum()


@pytest.mark.parametrize("label", [True, False])
def test_a_single_class_pool_leaves_no_centre(rows, label):
    record = fit_global(relabel(rows, np.full(len(rows), label)), FitSettings())
    assert record["theta"] is None and "both classes" in record["note"]
    assert fit_global(TrainingRows.empty(), FitSettings())["theta"] is None


def test_fit_exercise_with_a_prior_records_it_and_moves_toward_it(rows):
    settings = FitSettings(holdout_fraction=0.0, l2=100.0)
    _, plain = fit_exercise("e", rows, len(rows), settings)
    centre = np.r_[0.0, np.full(len(plain["theta"]) - 1, 0.5)]
    _, shrunk = fit_exercise("e", rows, len(rows), settings, prior=centre)
    assert shrunk["shrunk_to_global"] is True and "shrunk_to_global" not in plain
    assert (np.linalg.norm(np.asarray(shrunk["theta"])[1:] - 0.5)
            < np.linalg.norm(np.asarray(plain["theta"])[1:] - 0.5))
