"""Tests for models.logistic: the objective, the whitened L-BFGS fit and metrics.

The fit is checked against two independent optimisers of the same objective:
scikit-learn's LogisticRegression (whose objective C * sum(log-loss) +
|w|^2 / 2 has the same minimiser as ours when C = 1 / l2, the bias being
unpenalised in both) and scipy.optimize.minimize on models.logistic.objective.
"""

import math
import warnings

import numpy as np
import pytest
from scipy import optimize
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from models.logistic import (
    FitResult, auc, base_rate_log_likelihood, fit_logistic, log_likelihoods, objective)


def correlated_problem(n=3000, seed=0):
    """Bias column + 6 features, two pairs strongly correlated, different scales
    (like ewma_3/ewma_10 and log_num_done/streak), labels from a known model."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.normal(size=n)
    columns = [
        0.8 + 0.1 * a,                                   # ewma-like
        0.8 + 0.1 * (0.95 * a + 0.31 * rng.normal(size=n)),  # correlated with it
        5.0 * np.abs(b),                                 # streak-like scale
        np.log1p(5.0 * np.abs(b)) + 0.05 * rng.normal(size=n),
        rng.normal(size=n),
        rng.uniform(0, 1, size=n),
    ]
    x = np.column_stack([np.ones(n)] + columns)
    true_theta = np.array([-3.0, 2.0, 1.5, 0.1, 0.3, -0.5, 0.7])
    p = 1 / (1 + np.exp(-(x @ true_theta)))
    y = (rng.random(n) < p).astype(np.float64)
    return x, y, true_theta


def sklearn_theta(x, y, l2):
    model = LogisticRegression(C=1.0 / l2, solver="lbfgs", tol=1e-12,
                               max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x[:, 1:], y)
    return np.r_[model.intercept_, model.coef_.ravel()]


def f(theta, x, y, l2):
    return objective(theta, x, y, l2)[0]


@pytest.fixture(scope="module")
def problem():
    return correlated_problem()


# --- the objective --------------------------------------------------------------

def test_objective_value_by_hand():
    x = np.array([[1.0, 2.0], [1.0, -1.0], [1.0, 0.0]])
    y = np.array([1.0, 0.0, 1.0])
    theta = np.array([0.5, -0.25])
    l2 = 0.2
    z = [0.5 - 0.5, 0.5 + 0.25, 0.5]             # x @ theta
    loss = (math.log(1 + math.exp(z[0])) - z[0]  # y = 1: -log sigmoid(z)
            + math.log(1 + math.exp(z[1]))       # y = 0: -log(1 - sigmoid(z))
            + math.log(1 + math.exp(z[2])) - z[2]) / 3
    value, gradient = objective(theta, x, y, l2)
    assert value == pytest.approx(loss + 0.5 * 0.2 * 0.25 ** 2 / 3, rel=1e-14)
    s = [1 / (1 + math.exp(-v)) for v in z]
    expected_gradient = [(s[0] - 1 + s[1] + s[2] - 1) / 3,
                         (2 * (s[0] - 1) - s[1]) / 3 + 0.2 * -0.25 / 3]   # bias unpenalised
    np.testing.assert_allclose(gradient, expected_gradient, rtol=1e-13)


def test_objective_gradient_matches_finite_differences(problem):
    x, y, _ = problem
    rng = np.random.default_rng(1)
    for l2 in (0.0, 1e-3, 0.5):
        theta = rng.normal(scale=0.5, size=x.shape[1])
        _, gradient = objective(theta, x, y, l2)
        step = 1e-6
        numeric = np.array([
            (f(theta + step * e, x, y, l2) - f(theta - step * e, x, y, l2)) / (2 * step)
            for e in np.eye(len(theta))])
        np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-8)
        assert optimize.check_grad(f, lambda t, *args: objective(t, *args)[1], theta,
                                   x, y, l2) < 1e-5


def test_objective_does_not_overflow_and_does_not_modify_theta():
    x = np.array([[1.0, 1000.0], [1.0, -1000.0]])
    y = np.array([0.0, 1.0])
    theta = np.array([0.0, 1.0])
    value, gradient = objective(theta, x, y, 0.0)
    assert value == pytest.approx(1000.0, rel=1e-12)   # each row loses ~1000 nats
    assert np.all(np.isfinite(gradient))
    np.testing.assert_array_equal(theta, [0.0, 1.0])


def test_log_likelihoods_by_hand():
    x = np.array([[1.0, 0.0], [1.0, 2.0], [1.0, -800.0]])
    theta = np.array([0.0, 1.0])
    y = np.array([1.0, 0.0, 1.0])
    np.testing.assert_allclose(log_likelihoods(x @ theta, y),
                               [math.log(0.5), math.log(1 - 1 / (1 + math.exp(-2))), -800.0],
                               rtol=1e-14)


# --- the fit against scikit-learn and scipy ------------------------------------------

@pytest.mark.parametrize("l2", [30.0, 0.3])
def test_fit_matches_sklearn(problem, l2):
    x, y, true_theta = problem
    ours = fit_logistic(x, y, l2=l2)
    assert isinstance(ours, FitResult)
    assert ours.converged
    assert 0 < ours.iterations < 200
    reference = sklearn_theta(x, y, l2)
    ours_value, ours_gradient = objective(ours.theta, x, y, l2)
    reference_value = f(reference, x, y, l2)
    assert abs(ours_value - reference_value) <= 1e-7 * abs(reference_value)
    assert ours_value <= reference_value + 1e-12
    np.testing.assert_allclose(ours.theta, reference, rtol=0, atol=1e-3)
    assert np.max(np.abs(ours_gradient)) < 1e-5
    if l2 == 0.3:
        # barely regularised and 3000 rows: near the generating parameters
        assert np.max(np.abs(ours.theta - true_theta)[[0, 5, 6]]) < 1.0


@pytest.mark.parametrize("l2", [30.0, 0.3])
def test_fit_matches_scipy_minimize_of_objective(problem, l2):
    x, y, _ = problem
    ours = fit_logistic(x, y, l2=l2).theta
    result = optimize.minimize(objective, np.zeros(x.shape[1]), args=(x, y, l2), jac=True,
                               method="BFGS", options={"gtol": 1e-10, "maxiter": 5000})
    ours_value, reference_value = f(ours, x, y, l2), result.fun
    assert abs(ours_value - reference_value) <= 1e-7 * abs(reference_value)
    np.testing.assert_allclose(ours, result.x, rtol=0, atol=1e-3)


def test_stronger_l2_shrinks_the_weights_but_not_the_bias(problem):
    x, y, _ = problem
    norms = [np.linalg.norm(fit_logistic(x, y, l2=l2).theta[1:]) for l2 in (0.3, 30.0, 3000.0)]
    assert norms[0] > norms[1] > norms[2]
    # With huge l2 the weights vanish and the free bias is the log-odds of the base rate.
    theta = fit_logistic(x, y, l2=1e9).theta
    assert np.max(np.abs(theta[1:])) < 1e-4
    rate = y.mean()
    assert theta[0] == pytest.approx(math.log(rate / (1 - rate)), abs=1e-3)


def test_max_iterations_is_respected(problem):
    x, y, _ = problem
    result = fit_logistic(x, y, l2=0.3, max_iterations=2)
    assert result.iterations <= 2
    assert not result.converged
    assert np.all(np.isfinite(result.theta))


# --- degenerate inputs ---------------------------------------------------------------

def _assert_optimal(theta, x, y, l2):
    assert np.all(np.isfinite(theta))
    value, gradient = objective(theta, x, y, l2)
    assert math.isfinite(value)
    assert np.max(np.abs(gradient)) < 1e-5
    return value


def test_constant_column(problem):
    x, y, _ = problem
    x = np.column_stack([x, np.full(len(y), 3.0)])
    for l2 in (0.0, 0.3):
        result = fit_logistic(x, y, l2=l2)
        value = _assert_optimal(result.theta, x, y, l2)
        # Same optimum as without the column: bias + 3 * w_const is what matters.
        without = fit_logistic(x[:, :-1], y, l2=l2).theta
        assert value == pytest.approx(f(without, x[:, :-1], y, l2), rel=1e-7)
        if l2 > 0:  # the penalised constant weight must go to 0
            assert abs(result.theta[-1]) < 1e-3


def test_duplicated_collinear_columns(problem):
    x, y, _ = problem
    x = np.column_stack([x, x[:, 5], 2.0 * x[:, 5]])  # exact copies of column 5
    for l2 in (0.0, 3.0):
        result = fit_logistic(x, y, l2=l2)
        value = _assert_optimal(result.theta, x, y, l2)
        without = fit_logistic(x[:, :-2], y, l2=l2).theta
        reference_value = f(without, x[:, :-2], y, l2)
        if l2 == 0:
            # Only the combined weight w5 + w7 + 2 w8 is identified.
            assert value == pytest.approx(reference_value, rel=1e-7)
            combined = result.theta[5] + result.theta[7] + 2 * result.theta[8]
            assert combined == pytest.approx(without[5], abs=1e-3)
        else:
            # The penalty splits the weight in proportion 1 : 1 : 2 and lowers it.
            assert value <= reference_value + 1e-12
            w = result.theta[[5, 7, 8]]
            np.testing.assert_allclose(w / w[0], [1, 1, 2], rtol=1e-3)


def test_unpenalised_non_separable_data():
    rng = np.random.default_rng(4)
    n = 500
    x = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    y = (rng.random(n) < 1 / (1 + np.exp(-(0.3 + x[:, 1])))).astype(float)
    result = fit_logistic(x, y, l2=0.0)
    _assert_optimal(result.theta, x, y, 0.0)
    assert result.converged
    reference = sklearn_theta_unpenalised(x, y)
    np.testing.assert_allclose(result.theta, reference, atol=1e-3)


def sklearn_theta_unpenalised(x, y):
    # C -> infinity is the unpenalised problem.
    model = LogisticRegression(C=1e12, solver="lbfgs", tol=1e-12, max_iter=100_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x[:, 1:], y)
    return np.r_[model.intercept_, model.coef_.ravel()]


# p = 1 makes fit_logistic's ridge term compute trace / 0 (harmless: max() drops the nan).
@pytest.mark.filterwarnings("ignore:invalid value encountered in scalar divide")
def test_single_feature_column_only_bias():
    y = np.array([1.0, 1.0, 1.0, 0.0])
    x = np.ones((4, 1))
    theta = fit_logistic(x, y, l2=0.0).theta
    assert theta[0] == pytest.approx(math.log(3), abs=1e-5)  # log-odds of 3/4


def test_integer_labels_and_bool_labels_give_the_same_fit(problem):
    x, y, _ = problem
    as_bool = fit_logistic(x, y.astype(bool), l2=1e-3).theta
    as_float = fit_logistic(x, y, l2=1e-3).theta
    np.testing.assert_array_equal(as_bool, as_float)


# --- metrics -------------------------------------------------------------------------

def test_auc_by_hand():
    # positives 0.8, 0.4; negatives 0.5, 0.1: pairs (0.8>0.5, 0.8>0.1, 0.4<0.5, 0.4>0.1)
    assert auc(np.array([0.8, 0.5, 0.4, 0.1]), np.array([1, 0, 1, 0])) == 0.75
    # a tie counts half: positive 0.5 vs negative 0.5
    assert auc(np.array([0.5, 0.5, 0.9]), np.array([1, 0, 1])) == 0.75
    assert auc(np.array([1.0, 2.0]), np.array([0, 1])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([1, 0])) == 0.0
    assert auc(np.array([7.0, 7.0, 7.0]), np.array([True, False, True])) == 0.5


def test_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(6)
    for _ in range(20):
        n = int(rng.integers(2, 400))
        scores = np.round(rng.normal(size=n), int(rng.integers(0, 3)))  # many ties
        labels = rng.random(n) < rng.uniform(0.1, 0.9)
        if labels.all() or not labels.any():
            labels[0] = not labels[0]
        assert auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert auc(scores, labels.astype(int)) == pytest.approx(auc(scores, labels), abs=0)


def test_auc_single_class_is_none():
    assert auc(np.array([0.1, 0.2]), np.array([1, 1])) is None
    assert auc(np.array([0.1, 0.2]), np.array([False, False])) is None
    assert auc(np.array([]), np.array([])) is None


def test_base_rate_log_likelihood_by_hand():
    # train: 3 right of 4 -> smoothed rate (3 + 1) / (4 + 2) = 2/3
    train = np.array([1, 1, 1, 0])
    value = base_rate_log_likelihood(train, np.array([1, 0, 1]))
    assert value == pytest.approx((2 * math.log(2 / 3) + math.log(1 / 3)) / 3, rel=1e-14)
    # all-correct training labels stay finite on a wrong holdout answer: rate 5/6
    value = base_rate_log_likelihood(np.ones(4), np.array([0.0]))
    assert value == pytest.approx(math.log(1 / 6), rel=1e-14)
    # empty training labels: rate 1/2
    assert base_rate_log_likelihood(np.array([]), np.array([1, 0])) == pytest.approx(
        math.log(0.5), rel=1e-14)
    assert base_rate_log_likelihood(train, np.array([])) is None
    assert isinstance(base_rate_log_likelihood(train, np.array([True])), float)


# --- shrinkage toward a centre (prior_mean) -----------------------------------------

def centred_objective(theta, x, y, l2, centre):
    """The penalised objective written out independently of models.logistic:
    summed log-loss + l2/2 |weights - centre weights|^2 (bias free), over n."""
    z = x @ theta
    p = 1 / (1 + np.exp(-z))
    loss = -np.sum(y * np.log(p) + (1 - y) * np.log1p(-p))
    difference = theta[1:] - centre[1:]
    return (loss + 0.5 * l2 * difference @ difference) / len(y)


def centred_gradient(theta, x, y, l2, centre):
    p = 1 / (1 + np.exp(-(x @ theta)))
    gradient = x.T @ (p - y)
    gradient[1:] += l2 * (theta[1:] - centre[1:])
    return gradient / len(y)


@pytest.mark.parametrize("l2", [30.0, 300.0, 3.0])
def test_fit_toward_a_centre_matches_an_independent_solver(problem, l2):
    x, y, _ = problem
    x, y = x[:400], y[:400]   # few rows: the centre matters
    centre = np.array([5.0, 1.0, -2.0, 0.5, 0.2, 0.3, -1.0])   # its bias plays no part
    ours = fit_logistic(x, y, l2=l2, prior_mean=centre)
    assert ours.converged
    reference = optimize.minimize(centred_objective, np.zeros(x.shape[1]),
                                  args=(x, y, l2, centre), jac=centred_gradient,
                                  method="BFGS", options={"gtol": 1e-11, "maxiter": 10000})
    ours_value = centred_objective(ours.theta, x, y, l2, centre)
    assert abs(ours_value - reference.fun) <= 1e-6 * abs(reference.fun)
    np.testing.assert_allclose(ours.theta, reference.x, rtol=0, atol=1e-3)
    # and the library's objective is the same function
    assert objective(ours.theta, x, y, l2, centre)[0] == pytest.approx(ours_value, rel=1e-12)
    # shrunk toward the centre, not toward zero: different from the plain fit
    plain = fit_logistic(x, y, l2=l2).theta
    assert (np.linalg.norm(ours.theta[1:] - centre[1:])
            < np.linalg.norm(plain[1:] - centre[1:]))


def test_a_huge_penalty_pins_the_weights_to_the_centre(problem):
    """l2 -> infinity: the weights are the centre's, and the free bias is the
    one-dimensional optimum with those weights (solved here by brentq)."""
    x, y, _ = problem
    centre = np.array([0.0, 1.0, -2.0, 0.5, 0.2, 0.3, -1.0])
    ours = fit_logistic(x, y, l2=1e9, prior_mean=centre).theta
    np.testing.assert_allclose(ours[1:], centre[1:], rtol=0, atol=1e-5)
    offset = x[:, 1:] @ centre[1:]
    bias = optimize.brentq(lambda b: np.sum(1 / (1 + np.exp(-(b + offset))) - y), -20, 20,
                           xtol=1e-12)
    assert ours[0] == pytest.approx(bias, abs=1e-4)


def test_no_centre_is_the_zero_centre_exactly(problem):
    x, y, _ = problem
    plain = fit_logistic(x, y, l2=30.0).theta
    zero = fit_logistic(x, y, l2=30.0, prior_mean=np.zeros(x.shape[1])).theta
    np.testing.assert_allclose(zero, plain, rtol=0, atol=1e-6)
