"""The boosting step as Beam transforms (transforms/boosting.py
BoostingIteration, transforms/boosted_training.py TrainAndEvaluate) on five
examples: one iteration's update worked out by hand, the next one and the
loss curve against a dense numpy computation."""

import math

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from scipy import sparse

from models.boosting import initial_state
from transforms.boosted_training import TrainAndEvaluate, l1_selection
from transforms.boosting import BoostingIteration, ExampleBlock
from transforms.columnar_store import HOLDOUT, LABEL

# Feature 0 is the bias; examples and their labels.
FEATURES = [[0, 1], [0, 1, 2], [0, 2], [0, 3], [0, 1, 3]]
LABELS = [True, False, True, False, True]
L1 = (0.1, 1.0)   # a model set: two L1 strengths trained in the same pass


def dense(rows, width=4):
    x = np.zeros((len(rows), width))
    for i, features in enumerate(rows):
        x[i, features] = 1.0
    return x


def block(rows, labels):
    return ExampleBlock(sparse.csr_matrix(dense(rows)), np.array(labels))


BLOCKS = [block(FEATURES[:2], LABELS[:2]), block(FEATURES[2:], LABELS[2:])]

# The first iteration by hand. At weights 0 every q = sigmoid(0) = 1/2 and
# every loss is log 2. Per feature j: gradient g_j = sum of q over positives
# minus over negatives having j, the bound's curvature h_j = 1/4 sum of the
# active-feature counts n_i (2, 3, 2, 2, 3) of the examples having j:
#   g = (1.5 - 1, 1 - 0.5, 0.5 - 0.5, 0.5 - 0.5) = (0.5, 0.5, 0, 0)
#   h = (12/4, 8/4, 5/4, 5/4) = (3, 2, 1.25, 1.25)
# and the update soft-thresholds g/h by l1/h (the bias is not penalised):
#   l1 = 0.1: (1/6, 0.25 - 0.05, 0, 0);  l1 = 1: (1/6, max(0.25 - 0.5, 0), 0, 0).
FIRST_OBJECTIVE = 5 * math.log(2)
FIRST_PROPOSAL = np.array([[1 / 6, 0.2, 0, 0], [1 / 6, 0, 0, 0]])


def numpy_iteration(weights, l1):
    """Dense numpy: (objective at `weights`, the bound's next weights)."""
    x, y = dense(FEATURES), np.array(LABELS)
    sign = np.where(y, 1.0, -1.0)
    margin = x @ weights
    objective = np.sum(np.log1p(np.exp(-sign * margin))) + l1 * np.sum(np.abs(weights[1:]))
    q = 1 / (1 + np.exp(sign * margin))
    gradient = x.T @ (q * sign)
    curvature = 0.25 * x.T @ x.sum(axis=1)
    centre = weights + gradient / curvature
    threshold = np.r_[0.0, np.full(3, l1)] / curvature
    return objective, np.sign(centre) * np.maximum(np.abs(centre) - threshold, 0.0)


# The first exponential-loss (AdaBoost) step without L1 by hand: each weight
# moves to log(W+/W-) / (2 n_max), W+- the summed q = exp(0) = 1 of the
# positives and negatives having the feature: W+ = (3, 2, 1, 1),
# W- = (2, 1, 1, 1), n_max = 3. The objective at 0 is 5 exp(0).
EXPONENTIAL_PROPOSAL = np.array([[math.log(3 / 2) / 6, math.log(2) / 6, 0.0, 0.0]])


def test_iterations_by_hand_and_by_numpy():
    """Two logistic iterations of a model set, the statistics summed over two
    blocks in two feature shards, and one exponential-loss iteration."""
    second = [numpy_iteration(FIRST_PROPOSAL[model], l1) for model, l1 in enumerate(L1)]

    def first_as_by_hand(states):
        (state,) = states
        np.testing.assert_array_equal(state.weights, np.zeros((2, 4)))
        np.testing.assert_allclose(state.objective, [FIRST_OBJECTIVE] * 2, rtol=1e-14)
        np.testing.assert_allclose(state.proposal, FIRST_PROPOSAL, rtol=1e-14, atol=1e-15)
        np.testing.assert_array_equal(state.step, [1.0, 1.0])

    def second_as_by_numpy(states):
        (state,) = states
        # The first proposal lowered the objective, so it is accepted.
        np.testing.assert_allclose(state.weights, FIRST_PROPOSAL, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(state.objective, [objective for objective, _ in second],
                                   rtol=1e-12)
        assert np.all(state.objective < FIRST_OBJECTIVE)
        np.testing.assert_allclose(state.proposal, [proposal for _, proposal in second],
                                   rtol=1e-12, atol=1e-15)

    def exponential_as_by_hand(states):
        (state,) = states
        np.testing.assert_allclose(state.objective, [5.0], rtol=1e-14)
        np.testing.assert_allclose(state.proposal, EXPONENTIAL_PROPOSAL, rtol=1e-14,
                                   atol=1e-15)

    with TestPipeline() as pipeline:
        blocks = pipeline | "Blocks" >> beam.Create(BLOCKS)
        start = pipeline | "Start" >> beam.Create([initial_state(len(L1), 4)])
        max_active = pipeline | "MaxActive" >> beam.Create([3])
        first = blocks | "First" >> BoostingIteration(start, max_active, L1, "logistic",
                                                      shards=2)
        then = blocks | "Second" >> BoostingIteration(first, max_active, L1, "logistic",
                                                      shards=2)
        assert_that(first, first_as_by_hand, label="first")
        assert_that(then, second_as_by_numpy, label="second")
        start_one = pipeline | "StartOne" >> beam.Create([initial_state(1, 4)])
        exponential = blocks | "Exponential" >> BoostingIteration(
            start_one, max_active, [0.0], "exponential")
        assert_that(exponential, exponential_as_by_hand, label="exponential")


def test_train_and_evaluate_curve_and_holdout_by_numpy():
    """Columnar-store batches in, two iterations: the loss curve's objective
    and holdout loss and the final evaluation, at the weights computed above.
    Template "t" has 3 values; its ids 0..2 are features 1..3."""
    holdout_rows, holdout_labels = [[0, 1], [0, 2]], [True, False]

    def table(rows, labels, holdout):
        return pa.table({"t": pa.array([[j - 1 for j in row if j] for row in rows],
                                       type=pa.list_(pa.int32())),
                         LABEL: pa.array(labels), HOLDOUT: pa.array([holdout] * len(rows))})

    tables = [table(FEATURES[:3], LABELS[:3], False),
              table(FEATURES[3:], LABELS[3:], False),
              table(holdout_rows, holdout_labels, True)]
    x_holdout, y_holdout = dense(holdout_rows), np.array(holdout_labels)

    def holdout_mean_log_loss(weights):
        margin = (x_holdout @ weights) * np.where(y_holdout, 1.0, -1.0)
        return float(np.mean(np.log1p(np.exp(-margin))))

    expected_curve = []
    for model, l1 in enumerate(L1):
        second_objective, _ = numpy_iteration(FIRST_PROPOSAL[model], l1)
        expected_curve += [
            (1, l1, FIRST_OBJECTIVE, 0, math.log(2)),
            (2, l1, second_objective, int(np.count_nonzero(FIRST_PROPOSAL[model][1:])),
             holdout_mean_log_loss(FIRST_PROPOSAL[model]))]

    def curve_as_expected(curves):
        (curve,) = curves
        actual = sorted((r["iteration"], r["l1"], r["train_objective"], r["nonzero_weights"],
                         r["holdout_mean_log_loss"]) for r in curve)
        assert [row[:2] + row[3:4] for row in actual] == [
            row[:2] + row[3:4] for row in sorted(expected_curve)]
        np.testing.assert_allclose([row[2::2] for row in actual],
                                   [row[2::2] for row in sorted(expected_curve)], rtol=1e-12)

    def evaluation_as_expected(evaluations):
        (records,) = evaluations
        for record, weights, l1 in zip(records, FIRST_PROPOSAL, L1):
            assert record["l1"] == l1 and record["features"] == 3
            assert record["holdout_examples"] == 2
            assert record["nonzero_weights"] == np.count_nonzero(weights[1:])
            assert record["holdout_log_likelihood"] == pytest.approx(
                -holdout_mean_log_loss(weights), rel=1e-12)
        # l1 = 0.1 ranks the positive holdout example (feature 1) first; l1 = 1
        # scores both alike.
        assert [record["holdout_auc"] for record in records] == [1.0, 0.5]

    with TestPipeline() as pipeline:
        results = (pipeline | beam.Create(tables)
                   | TrainAndEvaluate(["t"], {"t": 3}, L1, "logistic", iterations=2))
        assert_that(results["curve"], curve_as_expected, label="curve")
        assert_that(results["evaluation"], evaluation_as_expected, label="evaluation")
        assert_that(results["final_state"] | beam.Map(lambda state: state.weights.tolist()),
                    equal_to([FIRST_PROPOSAL.tolist()]), label="final_weights")


def _models(*scores):
    return [{"l1": l1, "holdout_log_likelihood": score, "holdout_examples": 0 if score is None
             else 40} for l1, score in zip((1.0, 10.0, 100.0, 0.5), scores)]


def test_l1_selection_picks_the_best_holdout_log_likelihood():
    selection = l1_selection(_models(-0.5699, -0.5687, -0.5952))
    assert selection == {"candidates": [1.0, 10.0, 100.0],
                         "holdout_log_likelihood": [-0.5699, -0.5687, -0.5952],
                         "holdout_examples": 40, "chosen": 10.0, "chosen_on_holdout": True}
    assert l1_selection(_models(-0.7, -0.6, -0.5, -0.4))["chosen"] == 0.5  # not --l1 order
    assert l1_selection(_models(-0.6))["chosen"] == 1.0  # one model: reported as is


def test_l1_selection_ties_and_missing_figures_are_deterministic():
    assert l1_selection(_models(-0.6, -0.5, -0.5))["chosen"] == 10.0  # tie: earlier value
    assert l1_selection(_models(-0.5, -0.6, -0.5))["chosen"] == 1.0
    assert l1_selection(_models(None, -0.9, -0.6))["chosen"] == 100.0  # None never wins
    nothing = l1_selection(_models(None, None))
    assert nothing["chosen"] == 1.0 and nothing["chosen_on_holdout"] is False
    assert nothing["holdout_log_likelihood"] == [None, None]
