"""Collins-Schapire-Singer parallel boosting with L1, as in Google's Sibyl.

Examples have binary sparse features (CSR rows of feature ids); a model is a
weight per feature and the margin of an example is the sum of its active
weights. One iteration needs, per feature, three sums over examples (the
statistics), and then every feature is updated independently in closed form.
That is what makes it one map + one combine per iteration in Beam: the
statistics are plain sums, so they combine by addition in any order.

Model sets: weights are (models, features) arrays and every function works on
all models at once, so several L1 strengths train in the same passes.

Losses, with labels y in {0, 1} and s = 2y - 1:
* logistic: log(1 + exp(-s f)). Its curvature is at most 1/4, so with n_i the
  number of active features of example i, the loss of w + delta is bounded by
  a separable quadratic: -g.delta + 1/2 sum_j h_j delta_j^2 with
  g_j = sum_i q_i s_i x_ij (q_i = sigmoid(-s_i f_i)) and
  h_j = 1/4 sum_i x_ij n_i  (Cauchy-Schwarz: (sum_j x_ij d_j)^2 <= n_i sum_j x_ij d_j^2).
  The update minimises bound + l1 |w| exactly: a soft threshold. The loss can
  therefore never rise with step 1.
* exponential (AdaBoost): exp(-s f). Jensen with weights x_ij / n_max gives
  the classic bound (W+_j e^{-n_max d} + W-_j e^{n_max d}) / n_max, with
  W+-_j = sum of q_i = exp(-s_i f_i) over positive/negative examples having j;
  with L1 its minimiser is still closed form (a quadratic in e^{n_max d}).
"""

import dataclasses
from typing import Sequence

import numpy as np
from scipy import sparse, special

from models.settings import LOSSES


def design_matrix(indptr: np.ndarray, indices: np.ndarray, num_features: int) -> sparse.csr_matrix:
    """Binary CSR matrix (examples x features) from ragged feature ids."""
    data = np.ones(len(indices))
    return sparse.csr_matrix((data, indices, indptr), shape=(len(indptr) - 1, num_features))


@dataclasses.dataclass
class Statistics:
    """Per-model, per-feature sums over examples; combine by adding."""

    positive: np.ndarray   # (models, features): sum of q over positive examples with j
    negative: np.ndarray   # (models, features): sum of q over negative examples with j
    curvature: np.ndarray  # (models, features): the bound's h_j (logistic) or 0
    loss: np.ndarray       # (models,): total loss at the current weights
    examples: int

    def shards(self, count: int):
        """(shard, Statistics of a contiguous feature range) for count shards;
        the loss and example count ride on shard 0 only, so the shards of many
        blocks still add up to the whole."""
        bounds = np.linspace(0, self.positive.shape[1], count + 1).astype(int)
        for shard, (low, high) in enumerate(zip(bounds[:-1], bounds[1:])):
            first = shard == 0
            yield shard, Statistics(
                self.positive[:, low:high], self.negative[:, low:high],
                self.curvature[:, low:high],
                self.loss if first else np.zeros_like(self.loss), self.examples if first else 0)

    @staticmethod
    def from_shards(shards) -> "Statistics":
        """Inverse of shards(): [(shard, Statistics)] in any order -> the whole."""
        parts = [stats for _, stats in sorted(shards, key=lambda item: item[0])]
        return Statistics(*(np.concatenate([getattr(p, name) for p in parts], axis=1)
                            for name in ("positive", "negative", "curvature")),
                          sum(p.loss for p in parts), sum(p.examples for p in parts))

    def __add__(self, other: "Statistics") -> "Statistics":
        return Statistics(self.positive + other.positive, self.negative + other.negative,
                          self.curvature + other.curvature, self.loss + other.loss,
                          self.examples + other.examples)


def losses_and_weights(margins: np.ndarray, labels: np.ndarray, loss: str):
    """(per-example loss, example weight q) for margins of shape (models, examples)."""
    signed = np.where(labels, 1.0, -1.0) * margins
    if loss == "logistic":
        return np.logaddexp(0.0, -signed), special.expit(-signed)
    if loss == "exponential":
        weights = np.exp(-signed)
        return weights, weights
    raise ValueError(f"unknown loss {loss!r}; use one of {LOSSES}")


def statistics(weights: np.ndarray, x: sparse.csr_matrix, labels: np.ndarray,
               loss: str) -> Statistics:
    """The sums one boosting iteration needs, for a block of examples.
    weights: (models, features)."""
    labels = np.asarray(labels, dtype=bool)
    models = weights.shape[0]
    margins = (x @ weights.T).T                        # (models, examples)
    example_loss, q = losses_and_weights(margins, labels, loss)
    # One pass of the free transpose (a CSC view) over every per-example
    # column at once: q on positives, q on negatives, and n_i for the bound.
    columns = np.vstack([q * labels, q * ~labels, np.asarray(x.sum(axis=1)).T])
    sums = (x.T @ columns.T).T
    positive, negative = sums[:models], sums[models:2 * models]
    if loss == "logistic":
        curvature = np.broadcast_to(0.25 * sums[2 * models], positive.shape).copy()
    else:
        curvature = np.zeros_like(positive)
    return Statistics(positive, negative, curvature, example_loss.sum(axis=1), x.shape[0])


def soft_threshold(value: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    return np.sign(value) * np.maximum(np.abs(value) - threshold, 0.0)


def proposed_weights(weights: np.ndarray, stats: Statistics, l1: np.ndarray, loss: str,
                     max_active: int) -> np.ndarray:
    """Every feature's new weight from the bound, in parallel. l1: (models,
    features) penalties (0 for unpenalised features such as a bias);
    max_active: the largest number of active features in any example
    (exponential loss only)."""
    if loss == "logistic":
        gradient = stats.positive - stats.negative
        with np.errstate(divide="ignore", invalid="ignore"):
            centre = weights + gradient / stats.curvature
            updated = soft_threshold(centre, l1 / stats.curvature)
        return np.where(stats.curvature > 0, updated, weights)   # unseen features stay
    return _exponential_update(weights, stats, l1, max_active)


def _exponential_update(weights, stats, l1, n):
    """argmin_d (W+ e^{-n d} + W- e^{n d}) / n + l1 |w + d|, as w + d."""
    wp, wm = stats.positive, stats.negative
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(l1 ** 2 + 4 * wp * wm)
        # Stationary points with w + d > 0 and < 0: u = e^{n d} solves a quadratic.
        up = (root - l1) / (2 * wm)
        down = (root + l1) / (2 * wm)
        positive_side = weights + np.log(up) / n
        negative_side = weights + np.log(down) / n
    result = np.where(positive_side > 0, positive_side,
                      np.where(negative_side < 0, negative_side, 0.0))
    # A feature seen only with one label has no finite optimum without L1;
    # leave it (and unseen features) where it is.
    return np.where((wp > 0) & (wm > 0), result, weights)


def objective(stats: Statistics, weights: np.ndarray, l1: np.ndarray) -> np.ndarray:
    """Total loss + sum l1 |w| per model, from statistics at `weights`."""
    return stats.loss + np.sum(l1 * np.abs(weights), axis=1)


@dataclasses.dataclass
class BoostingState:
    """Weights and step per model, and the objective measured at `weights`
    (None before the first pass)."""

    weights: np.ndarray                 # (models, features) accepted weights
    step: np.ndarray                    # (models,) multiplier on the bound's step
    proposal: np.ndarray                # (models, features) weights to evaluate next
    objective: np.ndarray = None        # (models,) at `weights`


def initial_state(num_models: int, num_features: int, step: float = 1.0) -> BoostingState:
    weights = np.zeros((num_models, num_features))
    return BoostingState(weights, np.full(num_models, step), weights.copy())


def advance(state: BoostingState, stats: Statistics, l1: np.ndarray, loss: str,
            max_active: int, min_step: float = 1e-3) -> BoostingState:
    """One iteration from statistics measured at `state.proposal`.

    Dynamic stepping: a proposal whose objective is worse than the accepted
    weights' is rejected and the step is halved; an accepted proposal becomes
    the new weights and the next proposal is weights + step * (bound update -
    weights). With the logistic bound and step 1 no proposal is ever worse."""
    measured = objective(stats, state.proposal, l1)
    if state.objective is None:
        accept = np.ones(len(measured), dtype=bool)
    else:
        # Rounding can make a converged step look a hair worse; that is not a
        # reason to shrink the step.
        accept = measured <= state.objective + 1e-12 * np.abs(state.objective)
    weights = np.where(accept[:, None], state.proposal, state.weights)
    best = np.where(accept, measured, state.objective if state.objective is not None
                    else measured)
    step = np.where(accept, state.step, np.maximum(state.step / 2, min_step))
    # Accepted: the statistics were taken at the new weights, so move towards
    # the bound's minimiser. Rejected: retry along the same direction, shorter.
    target = proposed_weights(weights, stats, l1, loss, max_active)
    forward = weights + step[:, None] * (target - weights)
    retry = state.weights + (step / state.step)[:, None] * (state.proposal - state.weights)
    proposal = np.where(accept[:, None], forward, retry)
    return BoostingState(weights, step, proposal, best)


def train_in_memory(x: sparse.csr_matrix, labels: np.ndarray, l1_values: Sequence[float],
                    loss: str = "logistic", iterations: int = 30,
                    unpenalised: Sequence[int] = ()) -> BoostingState:
    """The whole loop in one process: the reference a Beam run must equal."""
    l1 = penalties(l1_values, x.shape[1], unpenalised)
    max_active = int(np.asarray(x.sum(axis=1)).max())
    state = initial_state(len(l1_values), x.shape[1])
    for _ in range(iterations):
        state = advance(state, statistics(state.proposal, x, labels, loss), l1, loss,
                        max_active)
    return state


def penalties(l1_values: Sequence[float], num_features: int,
              unpenalised: Sequence[int] = ()) -> np.ndarray:
    """(models, features) L1 strengths; `unpenalised` features (e.g. a bias) get 0."""
    l1 = np.repeat(np.asarray(l1_values, dtype=np.float64)[:, None], num_features, axis=1)
    l1[:, list(unpenalised)] = 0.0
    return l1
