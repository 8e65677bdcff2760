"""Logistic regression for one exercise: objective, fit and holdout metrics."""

from typing import NamedTuple, Optional

import numpy as np
from scipy import linalg, optimize, special, stats


class FitResult(NamedTuple):
    theta: np.ndarray
    converged: bool
    iterations: int
    message: str


def log_likelihoods(theta: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-row log P(observed label); log-sigmoid form so it never overflows."""
    z = x @ theta
    return y * z - np.logaddexp(0.0, z)


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
    and the search starts there.

    The solver runs on whitened features Z = (x - mean) L^-T with
    L L^T = covariance + 4 (l2/n) I, i.e. 4x the objective's Hessian at p = 1/2.
    It is an exact change of variables (u = L^T theta; centring moves into the
    free bias; the penalty becomes l2/2 |L^-T u|^2), so the optimum is the same,
    but the Hessian is close to a multiple of I and L-BFGS needs ~15-20
    iterations instead of 100-300 on correlated columns. theta is mapped back
    to the original columns. A centre changes nothing in the whitening: the
    penalty is computed on theta = L^-T u, so it is still exact; only the
    starting point moves to u = L^T prior_mean (bias: the centre's logit at the
    column means)."""
    y = np.asarray(y, dtype=np.float64)
    n, p = x.shape
    ridge = l2 / n  # the penalty per row, as objective() applies it
    means = x[:, 1:].mean(axis=0)
    centred = x[:, 1:] - means
    covariance = centred.T @ centred / n
    # The ridge also keeps the factorisation defined for constant or collinear
    # columns when l2 = 0; it shapes only the preconditioner, never the objective.
    covariance[np.diag_indices(p - 1)] += max(
        4 * ridge, 1e-6 * np.trace(covariance) / (p - 1), 1e-12)
    lower = np.linalg.cholesky(covariance)
    whitened = np.empty_like(x)
    whitened[:, 0] = 1.0
    whitened[:, 1:] = linalg.solve_triangular(lower, centred.T, lower=True).T

    def to_theta(u):
        return linalg.solve_triangular(lower, u, lower=True, trans="T")

    def whitened_objective(u):
        z = whitened @ u
        loss = np.sum(np.logaddexp(0.0, z) - y * z) / n
        gradient = whitened.T @ (special.expit(z) - y) / n
        theta = to_theta(u[1:])
        if prior_mean is not None:
            theta = theta - prior_mean[1:]
        gradient[1:] += ridge * linalg.solve_triangular(lower, theta, lower=True)
        return loss + 0.5 * ridge * theta @ theta, gradient

    start = np.zeros(p)
    if prior_mean is not None:
        prior_mean = np.asarray(prior_mean, dtype=np.float64)
        start[1:] = lower.T @ prior_mean[1:]
        start[0] = prior_mean[0] + means @ prior_mean[1:]
    result = optimize.minimize(
        whitened_objective, start, jac=True, method="L-BFGS-B",
        options={"maxiter": max_iterations, "gtol": tolerance, "ftol": 1e-12})
    theta = np.empty(p)
    theta[1:] = to_theta(result.x[1:])
    theta[0] = result.x[0] - means @ theta[1:]
    return FitResult(theta, bool(result.success), int(result.nit), str(result.message))


def auc(scores: np.ndarray, labels: np.ndarray) -> Optional[float]:
    """Area under the ROC curve (Mann-Whitney, ties count half); None when a
    class is missing."""
    labels = np.asarray(labels, dtype=bool)
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    ranks = stats.rankdata(scores)
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
