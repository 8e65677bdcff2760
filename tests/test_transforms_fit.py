"""FitPerExercise (transforms/fit.py) on hand-built TrainingRows blocks: a
fitted exercise's theta equals scikit-learn's on the same rows, the sample
cap and the skip reasons are as stated."""

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from scipy import optimize
from sklearn.linear_model import LogisticRegression

from models.exercise_model import FitSettings, held_out
from models.knowledge_state import NUM_BASE_FEATURES, TrainingRows, random_component, user_hash
from transforms.fit import FITTED, GLOBAL_FIT, SKIPPED, FitPerExercise

SEED, DIM, L2 = 3, 3, 1.0
T = 1_767_225_600 * 10**6
KEYS = (("ex", "", True), ("ex", "", False))


def make_rows(exercise, n, rng, all_correct=False):
    """n rows of `exercise` with random base features and 0-2 random-component
    updates each; returns (TrainingRows, x as the fit must see it, labels)."""
    users = np.array([f"u{i % 40}" for i in range(n)], dtype=object)
    base = np.hstack([np.ones((n, 1)), rng.normal(size=(n, NUM_BASE_FEATURES - 1))])
    updates = [list(rng.integers(0, 2, size=rng.integers(0, 3))) for _ in range(n)]
    indptr = np.r_[0, np.cumsum([len(u) for u in updates])].astype(np.int64)
    ids = np.array([i for u in updates for i in u], dtype=np.int32)
    vectors = [random_component(key, SEED, DIM) for key in KEYS]
    r = np.array([sum((vectors[i] for i in u), np.zeros(DIM)) for u in updates])
    x = np.hstack([base, r])
    true_theta = rng.normal(size=x.shape[1])
    labels = (np.ones(n, dtype=bool) if all_correct
              else rng.random(n) < 1 / (1 + np.exp(-x @ true_theta)))
    names = sorted(set(users))
    rows = TrainingRows(
        names, np.array([names.index(u) for u in users], dtype=np.int32),
        np.array([user_hash(u) for u in users], dtype=np.uint64),
        (exercise,), np.zeros(n, dtype=np.int32), T + np.arange(n, dtype=np.int64) * 10**6,
        np.ones(n, dtype=np.int64), labels, base, indptr, ids, KEYS)
    return rows, x, labels


def blocks(exercise, rows, parts):
    """The rows as several blocks, as replay batches emit them."""
    bounds = np.linspace(0, len(rows), parts + 1).astype(int)
    return [(exercise, rows.take(slice(low, high))) for low, high in zip(bounds, bounds[1:])]


def sklearn_theta(x, y):
    """The same penalised likelihood (C = 1/l2, bias unpenalised) by scikit-learn."""
    model = LogisticRegression(C=1.0 / L2, tol=1e-12, max_iter=100000)
    model.fit(x[:, 1:], y)
    return np.r_[model.intercept_, model.coef_[0]]


def mean_log_likelihood(theta, x, y):
    p = 1 / (1 + np.exp(-x @ theta))
    return float(np.mean(np.where(y, np.log(p), np.log(1 - p))))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    return {"fit": make_rows("fit", 240, rng), "capped": make_rows("capped", 320, rng),
            "few": make_rows("few", 20, rng), "one_class": make_rows("one_class", 50, rng, True)}


def test_fits_equal_scikit_learn_and_skips_say_why(data):
    settings = FitSettings(max_samples=300, min_samples=30, holdout_fraction=0.0, l2=L2,
                           seed=SEED, num_random_features=DIM, model_version="v1")
    _, x, y = data["fit"]
    expected_theta = sklearn_theta(x, y)

    def fitted_as_expected(records):
        by_exercise = {record["exercise"]: record for record in records}
        assert sorted(by_exercise) == ["capped", "fit"]
        fit = by_exercise["fit"]
        assert {key: fit[key] for key in ("num_train", "num_holdout", "num_rows_available",
                                          "holdout_log_likelihood", "model_version")} == {
            "num_train": 240, "num_holdout": 0, "num_rows_available": 240,
            "holdout_log_likelihood": None, "model_version": "v1"}
        np.testing.assert_allclose(fit["theta"], expected_theta, rtol=1e-4, atol=1e-5)
        assert fit["train_log_likelihood"] == pytest.approx(
            mean_log_likelihood(expected_theta, x, y), abs=1e-7)
        # Over the cap: a 300-row sample of the 320 rows is fitted.
        capped = by_exercise["capped"]
        assert (capped["num_train"], capped["num_rows_available"]) == (300, 320)

    with TestPipeline() as pipeline:
        inputs = [block for name in ("fit", "capped", "few", "one_class")
                  for block in blocks(name, data[name][0], 3)]
        fits = pipeline | beam.Create(inputs) | FitPerExercise(settings)
        assert_that(fits[FITTED], fitted_as_expected, label="fitted")
        assert_that(fits[SKIPPED] | beam.Map(lambda r: (r["exercise"], r["reason"], r["detail"],
                                                        r["num_train"], r["model_version"])),
                    equal_to([
                        ("few", "too_few_samples", "20 training rows < min_samples 30", 20, "v1"),
                        ("one_class", "single_class",
                         "all 50 training rows are correct; no slope to fit", 50, "v1")]),
                    label="skipped")


def test_exercises_sharing_a_key_are_sampled_and_fitted_as_if_alone(data):
    """The replay keys blocks by exercise shard: many exercises under one
    key, mixed in blocks. With a cap that makes the combine compact mixed
    blocks, every exercise still gets the sample and fit it gets alone."""
    settings = FitSettings(max_samples=100, min_samples=30, holdout_fraction=0.2, l2=L2,
                           seed=SEED, num_random_features=DIM)
    names = ("fit", "capped", "few", "one_class")
    alone = [block for name in names for block in blocks(name, data[name][0], 3)]
    parts = [[rows for _, rows in blocks(name, data[name][0], 3)] for name in names]
    mixed = [("shard", TrainingRows.concatenate(list(group))) for group in zip(*parts)]

    def outcome(records):
        return sorted((r["exercise"], r.get("num_train"), r.get("num_rows_available"),
                       tuple(r.get("theta", ())), r.get("reason")) for r in records)

    def as_expected(pair):
        (alone_outcome, mixed_outcome), = pair
        assert mixed_outcome == alone_outcome
        assert [(name, rows) for name, _, rows, _, _ in alone_outcome] == [
            ("capped", 320), ("few", 20), ("fit", 240), ("one_class", 50)]
        assert {name: train for name, train, _, theta, _ in alone_outcome if theta} == {
            "capped": pytest.approx(80, abs=20), "fit": pytest.approx(80, abs=20)}

    with TestPipeline() as pipeline:
        outcomes = []
        for label, inputs in (("Alone", alone), ("Mixed", mixed)):
            fits = (pipeline | f"Create{label}" >> beam.Create(inputs)
                    | f"Fit{label}" >> FitPerExercise(settings))
            outcomes.append((fits[FITTED], fits[SKIPPED]) | f"All{label}" >> beam.Flatten()
                            | f"List{label}" >> beam.combiners.ToList()
                            | f"Outcome{label}" >> beam.Map(outcome))
        pair = (outcomes[0] | "Pair" >> beam.Map(
            lambda alone_outcome, mixed_outcome: (alone_outcome, mixed_outcome),
            beam.pvalue.AsSingleton(outcomes[1])))
        assert_that(pair, as_expected)


def test_a_holdout_leaves_out_whole_students(data):
    """With a holdout fraction the fit sees only the other students' rows:
    scikit-learn on exactly those rows gives the same theta, and the holdout
    log likelihood is measured on the held-out students' rows. Which students
    are held out is the model's rule (models.exercise_model.held_out, a pure
    function of the user and the seed)."""
    settings = FitSettings(max_samples=1000, min_samples=30, holdout_fraction=0.3, l2=L2,
                           seed=SEED, num_random_features=DIM)
    rows, x, y = data["fit"]
    holdout = held_out(np.asarray(rows.user_hash), SEED, 0.3)
    assert 0 < holdout.sum() < len(rows)
    theta = sklearn_theta(x[~holdout], y[~holdout])

    def fitted_on_the_other_students(records):
        (record,) = records
        assert (record["num_train"], record["num_holdout"]) == ((~holdout).sum(), holdout.sum())
        np.testing.assert_allclose(record["theta"], theta, rtol=1e-4, atol=1e-5)
        assert record["holdout_log_likelihood"] == pytest.approx(
            mean_log_likelihood(theta, x[holdout], y[holdout]), abs=1e-7)

    with TestPipeline() as pipeline:
        fits = pipeline | beam.Create(blocks("fit", rows, 2)) | FitPerExercise(settings)
        assert_that(fits[FITTED], fitted_on_the_other_students)


def centred_fit(x, y, l2, centre):
    """argmin of log-loss + l2/2 |weights - centre weights|^2 (bias free),
    written out here and solved by scipy's BFGS: independent of models.logistic."""
    def value_and_gradient(theta):
        z = x @ theta
        p = 1 / (1 + np.exp(-z))
        difference = theta[1:] - centre[1:]
        value = np.sum(np.logaddexp(0, z) - y * z) + 0.5 * l2 * difference @ difference
        gradient = x.T @ (p - y)
        gradient[1:] += l2 * difference
        return value / len(y), gradient / len(y)
    return optimize.minimize(value_and_gradient, np.zeros(x.shape[1]), jac=True, method="BFGS",
                             options={"gtol": 1e-12, "maxiter": 10000}).x


def test_shrink_to_global_fits_the_pooled_training_rows_and_shrinks_toward_them(data):
    """--shrink_to_global: with a per-exercise share and a cap above every
    exercise's rows, the global pool is every training-side row of every
    exercise (holdout students never), so the global theta is scikit-learn's
    on those rows; each exercise is then the minimiser of its own objective
    centred on that theta, which differs from the plain fit."""
    settings = FitSettings(max_samples=1000, min_samples=30, holdout_fraction=0.3, l2=L2,
                           seed=SEED, num_random_features=DIM, shrink_to_global=True,
                           global_rows_per_exercise=1000, global_max_rows=10000)
    names = ("fit", "capped", "few", "one_class")
    xs, ys = [], []
    for name in names:
        rows, x, y = data[name]
        train = ~held_out(np.asarray(rows.user_hash), SEED, 0.3)
        xs.append(x[train])
        ys.append(y[train])
    pooled_theta = sklearn_theta(np.vstack(xs), np.concatenate(ys))
    rows, x, y = data["fit"]
    train = ~held_out(np.asarray(rows.user_hash), SEED, 0.3)
    expected_fit = centred_fit(x[train], y[train].astype(float), L2, pooled_theta)
    plain_fit = sklearn_theta(x[train], y[train])
    assert np.max(np.abs(expected_fit - plain_fit)) > 1e-2   # the option matters here

    def global_as_expected(records):
        (record,) = records
        assert (record["num_rows"], record["num_exercises"], record["l2"]) == (
            sum(len(part) for part in ys), 4, L2)
        np.testing.assert_allclose(record["theta"], pooled_theta, rtol=0, atol=1e-5)

    def shrunk_as_expected(records):
        by_exercise = {record["exercise"]: record for record in records}
        assert sorted(by_exercise) == ["capped", "fit"]
        assert all(record["shrunk_to_global"] for record in records)
        np.testing.assert_allclose(by_exercise["fit"]["theta"], expected_fit, rtol=0, atol=1e-4)

    with TestPipeline() as pipeline:
        inputs = [block for name in names for block in blocks(name, data[name][0], 3)]
        fits = pipeline | beam.Create(inputs) | FitPerExercise(settings)
        assert_that(fits[GLOBAL_FIT], global_as_expected, label="global")
        assert_that(fits[FITTED], shrunk_as_expected, label="fitted")


def test_without_the_option_there_is_no_global_fit(data):
    settings = FitSettings(max_samples=1000, min_samples=30, holdout_fraction=0.0, l2=L2,
                           seed=SEED, num_random_features=DIM)
    with TestPipeline() as pipeline:
        fits = pipeline | beam.Create(blocks("fit", data["fit"][0], 2)) | FitPerExercise(settings)
        assert GLOBAL_FIT not in fits
        assert_that(fits[FITTED] | beam.Map(lambda record: "shrunk_to_global" in record),
                    equal_to([False]))
