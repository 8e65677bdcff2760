"""Logistic regression for one exercise: objective, fit and holdout metrics."""

from typing import NamedTuple, Optional

import numpy as np
from scipy import linalg, optimize, special


class FitResult(NamedTuple):
    theta: np.ndarray
    converged: bool
    iterations: int
    message: str


def log_likelihoods(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row log P(observed label) of the rows' logits x @ theta, stable for
    any logit (never overflows, never -inf from rounding)."""
    return -np.logaddexp(0.0, np.where(labels, -logits, logits))


def objective(theta: np.ndarray, x: np.ndarray, y: np.ndarray, l2: float,
              prior_mean: Optional[np.ndarray] = None):
    """(negative log likelihood + l2/2 * |theta - prior_mean, without bias|^2)
    / n, and its gradient: the function fit_logistic minimises, in the
    original columns.

    l2 is the precision of a Gaussian prior on the weights, centred on
    prior_mean (zero when None), so the penalty matters for an exercise with a
    hundred rows and fades for one with fifty thousand (the same as
    scikit-learn's C = 1 / l2). Dividing by n only keeps the numbers O(1) for
    the optimiser."""
    z = x @ theta
    n = len(y)
    loss = np.sum(np.logaddexp(0.0, z) - y * z) / n
    gradient = x.T @ (special.expit(z) - y) / n
    penalised = theta[1:] if prior_mean is None else theta[1:] - prior_mean[1:]
    gradient[1:] += (l2 / n) * penalised
    return loss + 0.5 * (l2 / n) * penalised @ penalised, gradient


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0,
                 max_iterations: int = 500, tolerance: float = 1e-7,
                 prior_mean: Optional[np.ndarray] = None) -> FitResult:
    """Minimise objective() with L-BFGS and the analytic gradient. Column 0 is
    the bias (unpenalised). With prior_mean (a theta, e.g. a global fit over
    all exercises) the weights are shrunk toward it instead of toward zero,
    and the search starts there. x in Fortran order (as TrainingRows.features
    builds it) makes each evaluation's two matrix-vector products 2x faster.

    The solver runs in whitened coordinates u: theta[1:] = L^-T u[1:] and
    theta[0] = u[0] - mean . theta[1:], with L L^T = covariance + 4 (l2/n) I,
    i.e. 4x the objective's Hessian at p = 1/2. It is an exact change of
    variables (the centring moves into the free bias; the penalty, computed on
    theta, is unchanged), so the optimum is the same, but the Hessian is close
    to a multiple of I and L-BFGS needs ~10-20 iterations instead of 100-300
    on correlated columns. Each evaluation maps u to theta (a p x p product)
    and works on x itself: no centred or whitened copy of x is made."""
    y = np.asarray(y, dtype=np.float64)
    n, p = x.shape
    ridge = l2 / n  # the penalty per row, as objective() applies it
    centre = np.zeros(p) if prior_mean is None else np.asarray(prior_mean, dtype=np.float64)
    gram = x.T @ x / n
    means = x[:, 1:].mean(axis=0)
    covariance = gram[1:, 1:] - np.outer(means, means)
    # The ridge also keeps the factorisation defined for constant or collinear
    # columns when l2 = 0 (and against rounding in gram - means means^T); it
    # shapes only the preconditioner, never the objective.
    covariance[np.diag_indices(p - 1)] += max(
        4 * ridge, 1e-6 * np.trace(covariance) / (p - 1), 1e-12)
    lower = np.linalg.cholesky(covariance)
    # L^-1 once (p x p, well conditioned by the ridge) instead of a triangular
    # solve per evaluation.
    inverse = linalg.solve_triangular(lower, np.eye(p - 1), lower=True)

    def to_theta(u):
        theta = np.empty(p)
        theta[1:] = inverse.T @ u[1:]
        theta[0] = u[0] - means @ theta[1:]
        return theta

    def whitened_objective(u):
        theta = to_theta(u)
        z = x @ theta
        loss = np.sum(np.logaddexp(0.0, z) - y * z) / n
        g = x.T @ (special.expit(z) - y) / n
        shrunk = theta[1:] - centre[1:]
        gradient = np.empty(p)
        gradient[0] = g[0]
        gradient[1:] = inverse @ (g[1:] - means * g[0] + ridge * shrunk)
        return loss + 0.5 * ridge * shrunk @ shrunk, gradient

    start = np.r_[centre[0] + means @ centre[1:], lower.T @ centre[1:]]  # to_theta(start) = centre
    result = optimize.minimize(
        whitened_objective, start, jac=True, method="L-BFGS-B",
        options={"maxiter": max_iterations, "gtol": tolerance, "ftol": 1e-12})
    return FitResult(to_theta(result.x), bool(result.success), int(result.nit),
                     str(result.message))


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (scipy.stats.rankdata's
    default, without importing scipy.stats: half a second of every start)."""
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, len(scores)])
    ranks = np.empty(len(scores))
    ranks[order] = np.repeat(starts + (sizes + 1) / 2, sizes)
    return ranks


def auc(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Area under the ROC curve (Mann-Whitney, ties count half); None when a
    class is missing."""
    labels = np.asarray(labels, dtype=bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = _average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def base_rate_log_likelihood(train_labels: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Mean log likelihood on `labels` of the constant model P = train base rate
    (smoothed by one pseudo-count each way so it stays finite)."""
    if len(labels) == 0:
        return None
    rate = (np.sum(train_labels) + 1.0) / (len(train_labels) + 2.0)
    labels = np.asarray(labels, dtype=np.float64)
    return float(np.mean(labels * np.log(rate) + (1 - labels) * np.log1p(-rate)))
