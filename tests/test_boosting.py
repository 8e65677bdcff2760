"""Parallel boosting (models/boosting.py) against an independent L1 solver, and
the integerizer."""

import warnings

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from models.boosting import (Statistics, advance, design_matrix, initial_state, penalties,
                             statistics, train_in_memory)
from models.integerize import id_map, vocabulary


@pytest.fixture(scope="module")
def problem():
    """A bias feature (id 0, always active) plus 2-7 active binary features per
    example, labels from a sparse logistic model."""
    rng = np.random.default_rng(0)
    examples, features = 3000, 60
    rows = [np.r_[0, np.sort(rng.choice(np.arange(1, features), rng.integers(2, 8),
                                        replace=False))] for _ in range(examples)]
    indptr = np.r_[0, np.cumsum([len(row) for row in rows])]
    x = design_matrix(indptr, np.concatenate(rows), features)
    true = rng.normal(size=features) * (rng.random(features) < 0.3)
    true[0] = -0.5
    labels = rng.random(examples) < 1 / (1 + np.exp(-(x @ true)))
    return x, labels


def l1_objective(x, labels, weights, l1):
    margins = (x @ weights) * np.where(labels, 1.0, -1.0)
    return np.logaddexp(0.0, -margins).sum() + np.sum(l1 * np.abs(weights))


def sklearn_l1_weights(x, labels, l1):
    # saga: C * sum(log loss) + |w|_1 with a free intercept == ours with l1 = 1 / C.
    model = LogisticRegression(penalty="l1", solver="saga", C=1.0 / l1, tol=1e-10,
                               max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x[:, 1:].toarray(), labels)
    return np.r_[model.intercept_, model.coef_[0]]


@pytest.mark.parametrize("l1", [1.0, 10.0])
def test_logistic_reaches_the_l1_optimum_of_an_independent_solver(problem, l1):
    x, labels = problem
    state = train_in_memory(x, labels, [l1], iterations=300, unpenalised=[0])
    penalty = penalties([l1], x.shape[1], [0])[0]
    ours = l1_objective(x, labels, state.weights[0], penalty)
    theirs = l1_objective(x, labels, sklearn_l1_weights(x, labels, l1), penalty)
    assert ours == pytest.approx(theirs, rel=1e-3)
    assert ours <= theirs * (1 + 1e-5)


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
def test_objective_decreases_every_iteration_for_every_model(problem, loss):
    x, labels = problem
    l1 = penalties([0.5, 5.0, 50.0], x.shape[1], [0])
    max_active = int(x.sum(axis=1).max())
    state = initial_state(3, x.shape[1])
    history = []
    for _ in range(40):
        state = advance(state, statistics(state.proposal, x, labels, loss), l1, loss, max_active)
        history.append(state.objective.copy())
    history = np.array(history)
    assert np.all(np.diff(history, axis=0) <= 1e-9 * np.abs(history[:-1]))
    assert np.all(history[-1] < history[0] * 0.99)
    # Stronger L1 gives sparser models.
    nonzero = (state.weights[:, 1:] != 0).sum(axis=1)
    assert nonzero[0] >= nonzero[1] >= nonzero[2]


def test_a_model_set_equals_models_trained_one_by_one(problem):
    x, labels = problem
    together = train_in_memory(x, labels, [1.0, 10.0], iterations=25, unpenalised=[0])
    for row, l1 in enumerate([1.0, 10.0]):
        alone = train_in_memory(x, labels, [l1], iterations=25, unpenalised=[0])
        np.testing.assert_allclose(together.weights[row], alone.weights[0], rtol=1e-12,
                                   atol=1e-15)


def test_statistics_combine_by_addition(problem):
    """What lets a Beam Combine sum them over any split of the examples."""
    x, labels = problem
    weights = np.random.default_rng(1).normal(size=(2, x.shape[1])) * 0.1
    for loss in ("logistic", "exponential"):
        whole = statistics(weights, x, labels, loss)
        parts = statistics(weights, x[:1000], labels[:1000], loss) + statistics(
            weights, x[1000:], labels[1000:], loss)
        for field in ("positive", "negative", "curvature", "loss"):
            np.testing.assert_allclose(getattr(parts, field), getattr(whole, field),
                                       rtol=1e-12, atol=1e-9)
        assert parts.examples == whole.examples == x.shape[0]
        regrouped = Statistics.from_shards(list(whole.shards(4))[::-1])
        for field in ("positive", "negative", "curvature", "loss"):
            np.testing.assert_array_equal(getattr(regrouped, field), getattr(whole, field))
        assert regrouped.examples == whole.examples


def test_dynamic_stepping_rejects_a_worse_proposal_and_shrinks_the_step(problem):
    x, labels = problem
    l1 = penalties([1.0], x.shape[1], [0])
    state = initial_state(1, x.shape[1], step=8.0)  # far too long a step
    objectives, steps = [], []
    for _ in range(30):
        state = advance(state, statistics(state.proposal, x, labels, "logistic"), l1,
                        "logistic", 0)
        objectives.append(state.objective[0])
        steps.append(state.step[0])
    assert min(steps) < 8.0                       # some proposal was rejected
    assert np.all(np.diff(objectives) <= 0)       # accepted weights never get worse
    assert objectives[-1] < objectives[0] * 0.9


def test_vocabulary_orders_by_frequency_and_round_trips():
    counts = {"b": 5, "a": 5, "c": 9, "rare": 1, "d": 2}
    values = vocabulary(counts, min_count=2)
    assert values == ["c", "a", "b", "d"]          # most frequent is id 0; ties by value
    ids = id_map(values)
    assert ids["c"] == 0
    assert [values[ids[value]] for value in values] == values
    assert "rare" not in ids


@pytest.mark.parametrize("shards", [1, 3])
def test_beam_iterations_equal_the_in_memory_loop(problem, shards):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.testing.util import assert_that

    from transforms.boosting import ExampleBlock, TrainBoosted

    x, labels = problem
    l1_values, iterations = [1.0, 10.0], 8
    expected = train_in_memory(x, labels, l1_values, iterations=iterations, unpenalised=[0])
    blocks = [ExampleBlock(x[start:start + 700], labels[start:start + 700])
              for start in range(0, x.shape[0], 700)]

    def matches(states):
        (state,) = states
        np.testing.assert_allclose(state.weights, expected.weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(state.objective, expected.objective, rtol=1e-12)
        np.testing.assert_array_equal(state.step, expected.step)

    with TestPipeline() as pipeline:
        num_features = pipeline | "Features" >> beam.Create([x.shape[1]])
        states = (pipeline | beam.Create(blocks)
                  | TrainBoosted(num_features, l1_values, "logistic", iterations,
                                 shards=shards))
        assert_that(states[-1], matches)
