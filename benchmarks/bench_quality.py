"""Benchmark: how well the knowledge model predicts held-out students, against
the field's baselines trained on the same rows. One script (~620 lines) on
purpose: the baselines are written here from their papers and must not share
code with the pipeline they are compared with.

    python benchmarks/bench_quality.py                     # sample (2,000 students) + LSAT7, ~30 s
    python benchmarks/bench_quality.py --students 20000 --dataset sample   # ~4 min
    python benchmarks/bench_quality.py --dataset lsat7
    python benchmarks/bench_quality.py --quick             # smoke run: 300 students, small grids

Split: a deterministic TEST_FRACTION (20%) of the students is held out
entirely and is only ever predicted. Every model's regularisation is chosen on
the VALIDATION_FRACTION (10%) of the remaining students, fitting on the other
90%; the chosen value is then refitted on all training students and scored on
the held-out students. No row of a held-out student is seen in any fit.

Models (each predicts an attempt from attempts before it only, never its own
label):

* base rate: P = the exercise's rate on the training rows, shrunk toward the
  overall rate by a pseudo-count (the regularisation).
* knowledge model (ours): the pipeline's models/ code path: sessionize_batch
  and replay_batch build the KnowledgeState rows, bottom_k and sample_keys cap
  each exercise's training rows, fit_exercise fits one L2 logistic regression
  per exercise (whitened L-BFGS). Regularisation: --l2. An exercise it skips
  (too few rows, one class) is predicted by its training base rate. When
  validation chooses another l2 than the pipeline's default (--l2 30), the
  default is scored too ("ours, --l2 30"). Three variants run the pipeline's
  options through the same code: "ours + shrinkage" (--shrink_to_global: the
  global fit of transforms.fit on the fit rows, fit_exercise shrunk toward
  it), "ours + student features" (--student_features: replay_batch adds the
  student-level counts) and "ours + both"; each chooses its own l2.
* PFA (Pavlik, Cen, Koedinger 2009): one global logistic regression,
  logit = beta_e + gamma_e * successes + rho_e * failures, where successes and
  failures are the student's earlier answers on exercise e (the KC).
* IRT-1PL with an online ability: logit = c + theta_u - b_item with item =
  (exercise, problem_type). c, b and the training students' theta are fitted
  jointly (MAP, Gaussian prior theta ~ N(0, s^2), b ~ N(0, 1)). A held-out
  student starts at theta ~ N(0, s^2) and, after each attempt, the Gaussian is
  updated by one Newton (Laplace) step: v' = 1 / (1/v + p(1-p)),
  mu' = mu + v' (y - p); a prediction uses sigma(z / sqrt(1 + pi v / 8)) (the
  probit approximation of the predictive mean). Regularisation: the prior sd s.
* Best-LR (Gervet, Koedinger, Schneider, Mitchell 2020): one global logistic
  regression over item one-hots ((exercise, problem_type)), exercise one-hots,
  and log(1 + count) of the student's earlier wins and attempts on this
  exercise (weights per exercise) and overall (shared weights), each in the
  time windows hour, day, week, month and all time.
  Regularisation: the L2 penalty.
* oracle (sample only): the simulator's true probability.

The global regressions are scikit-learn's LogisticRegression (Newton-Cholesky
solver, unpenalised intercept) on scipy.sparse designs with C = 1 / l2, so l2
has the knowledge model's meaning (a Gaussian prior of precision l2 on the
weights, on the summed log likelihood). The IRT fit is scipy's L-BFGS.

Reported per model on the held-out students' attempts: mean log likelihood per
attempt (nats), AUC, their 95% intervals from a bootstrap over held-out
students, the paired differences from the knowledge model's and from
Best-LR's log likelihood (same bootstrap), and on the sample the fraction of
(oracle - base rate) the model recovers. A report, not a test: no assertions.

Data sets: `sample` is models/simulation.py's generator (the logs
`pipelines.generate_sample` writes for the same --students and --seed).
`lsat7` is real: LSAT Section 7, 1,000 examinees x 5 binary items (Bock &
Aitkin 1981), as shipped inside the `mirt` package's wheel (1.2.0, MIT
licence; Python >= 3.11, otherwise it is skipped). It has no timestamps: each
examinee's answers are ordered by item number (item 1 first) and given times
one minute apart. (mirt's LSAT6 is not used: its pattern counts add up to 569
examinees, not the 1,000 of the original.)
"""

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402
import scipy.sparse  # noqa: E402
from scipy import optimize, special  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from models import simulation  # noqa: E402
from models.exercise_model import (FitSettings, bottom_k, fit_exercise, fit_global,  # noqa: E402
                                   global_pool, sample_keys)
from models.knowledge_state import TrainingRows  # noqa: E402
from models.knowledge_state import ComponentCache, replay_batch  # noqa: E402
from models.log_batch import LogBatch, sessionize_batch  # noqa: E402
from models.problem_log import OPTIONAL_INT_FIELDS  # noqa: E402

TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1   # of the training students
FIT, VALIDATION, TEST = 0, 1, 2
# Best-LR's time windows (seconds); None: all time.
WINDOWS = (("hour", 3600), ("day", 86_400), ("week", 7 * 86_400), ("month", 30 * 86_400),
           ("all", None))
IRT_ITEM_PRECISION = 1.0    # b ~ N(0, 1 / this), fixed
L2_GRID = (10.0, 30.0, 100.0, 300.0, 1000.0)
GRIDS = {   # regularisation candidates per model; --quick keeps the 2nd to 4th
    "base rate": (1.0, 3.0, 10.0, 30.0, 100.0),
    "knowledge model": L2_GRID,
    "ours + shrinkage": L2_GRID,
    "ours + student features": L2_GRID,
    "ours + both": L2_GRID,
    "PFA": (0.1, 1.0, 10.0, 100.0, 1000.0),
    "IRT-1PL online": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0),
    "Best-LR": (0.1, 1.0, 10.0, 100.0, 1000.0),
}
HYPER_NAMES = {"base rate": "pseudo-count", "knowledge model": "l2", "PFA": "l2",
               "ours + shrinkage": "l2", "ours + student features": "l2", "ours + both": "l2",
               "IRT-1PL online": "prior sd", "Best-LR": "l2"}
OURS = "knowledge model"
# The pipeline's --l2 default: also scored when validation chooses another value.
PIPELINE_DEFAULT_L2 = FitSettings.l2
OURS_DEFAULT = f"ours, --l2 {PIPELINE_DEFAULT_L2:g}"
# The pipeline's options, one variant each and both (validation chooses l2 for each).
OURS_SHRUNK = "ours + shrinkage"          # --shrink_to_global
OURS_STUDENT = "ours + student features"  # --student_features
OURS_BOTH = "ours + both"
BEST_LR = "Best-LR"
NAME_WIDTH = 24
LSAT7_NOTE = ("LSAT Section 7 (Bock & Aitkin 1981), 1,000 examinees x 5 binary items, from "
              "the mirt package {version} (MIT licence; mirt.load_dataset('LSAT7'))")


# ------------------------------------------------------------------- data

@dataclasses.dataclass
class Responses:
    """Attempts sorted by (user, time): user and codes are dense ints."""
    name: str
    notes: List[str]
    user: np.ndarray            # int64, 0..num_users-1
    exercise: np.ndarray        # int64 codes into exercise_names
    problem_type: np.ndarray    # int64 codes into problem_type_names
    problem_number: np.ndarray  # int64, 1 = first attempt of the student on the exercise
    time_done: np.ndarray       # int64 epoch microseconds, increasing within a student
    correct: np.ndarray         # bool
    exercise_names: Sequence[str]
    problem_type_names: Sequence[str]
    p_true: Optional[np.ndarray] = None

    def __len__(self):
        return len(self.correct)

    @property
    def num_users(self) -> int:
        return int(self.user.max()) + 1

    @property
    def item(self) -> np.ndarray:
        """(exercise, problem_type) as one code."""
        return self.exercise * len(self.problem_type_names) + self.problem_type

    @property
    def num_items(self) -> int:
        return len(self.exercise_names) * len(self.problem_type_names)


def sample_responses(students: int, seed: int) -> Responses:
    logs = simulation.simulate(students, seed)
    type_names, problem_type = np.unique(logs["problem_type"], return_inverse=True)
    order = np.lexsort((logs["time_done"], logs.user_index))
    return Responses(
        name=f"sample, {students:,} students",
        notes=[f"models/simulation.py, seed {seed} (pipelines.generate_sample --students "
               f"{students} --seed {seed} writes the same logs)"],
        user=logs.user_index[order].astype(np.int64),
        exercise=logs.exercise_index[order].astype(np.int64),
        problem_type=problem_type[order].astype(np.int64),
        problem_number=logs["problem_number"][order].astype(np.int64),
        time_done=logs["time_done"][order], correct=logs["correct"][order],
        exercise_names=tuple(logs.bank.names), problem_type_names=tuple(type_names),
        p_true=logs["p_true"][order])


def lsat7_responses() -> Responses:
    import mirt   # requirements-lock.txt; Python >= 3.11
    data = np.asarray(mirt.load_dataset("LSAT7")["data"], dtype=bool)
    persons, items = data.shape
    item = np.tile(np.arange(items), persons)
    return Responses(
        name="LSAT7 (real)",
        notes=[LSAT7_NOTE.format(version=getattr(mirt, "__version__", "?")),
               "no timestamps: each examinee's answers are ordered by item number (item 1 "
               "first), one minute apart; every item is answered once"],
        user=np.repeat(np.arange(persons), items), exercise=item,
        problem_type=np.zeros(persons * items, dtype=np.int64),
        problem_number=np.ones(persons * items, dtype=np.int64),
        time_done=simulation.START_TIME_MICROS + item * 60_000_000,
        correct=data.reshape(-1), exercise_names=tuple(f"item{i + 1}" for i in range(items)),
        problem_type_names=("",))


def split_students(num_users: int, seed: int) -> np.ndarray:
    """FIT, VALIDATION or TEST per student: a pure function of (num_users, seed)."""
    draw = np.random.default_rng([seed, 0x5B117]).random(num_users)
    validation_end = TEST_FRACTION + (1 - TEST_FRACTION) * VALIDATION_FRACTION
    return np.where(draw < TEST_FRACTION, TEST,
                    np.where(draw < validation_end, VALIDATION, FIT))


# --------------------------------------------------------- count features

def prior_counts(group: np.ndarray, seconds: np.ndarray, correct: np.ndarray,
                 window: Optional[float]):
    """(wins, attempts) of the earlier rows of the row's group that fall in the
    `window` seconds before it (all earlier rows for None). Rows must be in
    time order within each group (as Responses are within a student); the row
    itself never counts, nor does any later row."""
    n = len(group)
    order = np.lexsort((np.arange(n), group))
    g, t = group[order], seconds[order]
    position = np.arange(n)
    first = np.r_[True, g[1:] != g[:-1]]
    start = np.maximum.accumulate(np.where(first, position, 0))
    low = start
    if window is not None:
        # Within a group t is non-decreasing: the earlier rows in the window are
        # those from the first one with t > t_row - window.
        rank = np.cumsum(first) - 1
        span = float(t.max() - t.min()) + window + 1.0 if n else 1.0
        key = rank * span + (t - t.min())
        low = np.maximum(np.searchsorted(key, key - window, side="right"), start)
    cumulative = np.r_[0, np.cumsum(correct[order])]
    wins, attempts = np.empty(n), np.empty(n)
    wins[order] = cumulative[position] - cumulative[low]
    attempts[order] = position - low
    return wins, attempts


def seconds_of(r: Responses) -> np.ndarray:
    return (r.time_done - r.time_done.min()) / 1e6


def pfa_design(r: Responses) -> scipy.sparse.csr_matrix:
    """[exercise one-hot | one-hot * successes | one-hot * failures] (all time)."""
    e, n_ex = r.exercise, len(r.exercise_names)
    wins, attempts = prior_counts(r.user * n_ex + e, seconds_of(r), r.correct, None)
    columns = np.column_stack([e, n_ex + e, 2 * n_ex + e])
    values = np.column_stack([np.ones(len(r)), wins, attempts - wins])
    return _csr(columns, values, 3 * n_ex)


def best_lr_design(r: Responses) -> scipy.sparse.csr_matrix:
    """[item one-hot | exercise one-hot | per exercise and window: log1p(wins),
    log1p(attempts) | overall per window: log1p(wins), log1p(attempts)]."""
    e, n_ex, n_w = r.exercise, len(r.exercise_names), len(WINDOWS)
    seconds = seconds_of(r)
    columns, values = [r.item, r.num_items + e], [np.ones(len(r)), np.ones(len(r))]
    exercise_block = r.num_items + n_ex
    overall_block = exercise_block + 2 * n_w * n_ex
    for w, (_, window) in enumerate(WINDOWS):
        for group, block, per_exercise in ((r.user * n_ex + e, exercise_block, True),
                                           (r.user, overall_block, False)):
            wins, attempts = prior_counts(group, seconds, r.correct, window)
            for kind, count in enumerate((wins, attempts)):
                slot = 2 * w + kind
                columns.append(block + (slot * n_ex + e if per_exercise else np.full(len(r), slot)))
                values.append(np.log1p(count))
    return _csr(np.column_stack(columns), np.column_stack(values), overall_block + 2 * n_w)


def _csr(columns: np.ndarray, values: np.ndarray, width: int) -> scipy.sparse.csr_matrix:
    rows, per_row = columns.shape
    return scipy.sparse.csr_matrix(
        (values.reshape(-1), columns.reshape(-1), np.arange(0, rows * per_row + 1, per_row)),
        shape=(rows, width))


# ----------------------------------------------------------------- models
# Each model is fit_predict(fit_rows, predict_rows, candidates) -> {candidate:
# logits of the predict rows}: fitted on the fit rows once per candidate.

def _logit(p):
    return np.log(p) - np.log1p(-p)


def base_rate(r: Responses):
    def fit_predict(fit_rows, predict_rows, candidates):
        e, n_ex = r.exercise, len(r.exercise_names)
        wins = np.bincount(e[fit_rows], weights=r.correct[fit_rows], minlength=n_ex)
        seen = np.bincount(e[fit_rows], minlength=n_ex)
        overall = (wins.sum() + 1.0) / (seen.sum() + 2.0)
        return {a: _logit((wins + a * overall) / (seen + a))[e[predict_rows]] for a in candidates}
    return fit_predict


def global_regression(r: Responses, design: scipy.sparse.csr_matrix):
    """L2 logistic regression on `design` (+ unpenalised intercept), C = 1 / l2,
    candidates fitted from the largest l2 down, each warm-started."""
    def fit_predict(fit_rows, predict_rows, candidates):
        x, y = design[fit_rows], r.correct[fit_rows]
        # Newton-Cholesky: a few exact Newton steps (the designs are ~1,000
        # columns wide); L-BFGS needed thousands of iterations on PFA's raw counts.
        model = LogisticRegression(solver="newton-cholesky", warm_start=True, max_iter=100,
                                   tol=1e-6)
        logits = {}
        for l2 in sorted(candidates, reverse=True):
            model.set_params(C=1.0 / l2)
            model.fit(x, y)
            logits[l2] = model.decision_function(design[predict_rows])
        return logits
    return fit_predict


def fit_irt(user, item, correct, num_users, num_items, prior_sd):
    """MAP of logit = c + theta_user - b_item with theta ~ N(0, prior_sd^2),
    b ~ N(0, 1 / IRT_ITEM_PRECISION): (c, theta, b). L-BFGS runs on every
    parameter divided by the square root of its curvature at p = 1/2 (an exact
    change of variables: a student with 1,000 attempts and one with 3 then
    take similar steps), which cuts the iterations several-fold."""
    y = correct.astype(np.float64)
    precisions = np.concatenate([[0.0], np.full(num_users, prior_sd ** -2.0),
                                 np.full(num_items, IRT_ITEM_PRECISION)])
    scale = 1.0 / np.sqrt(0.25 * np.concatenate(
        [[len(y)], np.bincount(user, minlength=num_users),
         np.bincount(item, minlength=num_items)]) + precisions)

    def objective(scaled):
        params = scaled * scale
        c, theta, b = params[0], params[1:num_users + 1], params[num_users + 1:]
        z = c + theta[user] - b[item]
        g = special.expit(z) - y
        loss = np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * params @ (precisions * params)
        gradient = np.concatenate([[g.sum()], np.bincount(user, g, num_users),
                                   -np.bincount(item, g, num_items)]) + precisions * params
        return loss, gradient * scale

    result = optimize.minimize(objective, np.zeros(1 + num_users + num_items), jac=True,
                               method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-6})
    params = result.x * scale
    return params[0], params[1:num_users + 1], params[num_users + 1:]


def online_irt_logits(user, item, correct, c, b, prior_sd):
    """Logits of each row from the same user's earlier rows only (rows in time
    order within a user): ability ~ N(mu, v), from N(0, prior_sd^2), updated by
    one Newton step per answer; predictions use the probit approximation of the
    predictive mean."""
    n = len(user)
    first = np.r_[True, user[1:] != user[:-1]]
    position = np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))
    order = np.argsort(position, kind="stable")
    bounds = np.searchsorted(position[order], np.arange(position.max() + 2))
    mu, v = np.zeros(user.max() + 1), np.full(user.max() + 1, prior_sd ** 2)
    logits = np.empty(n)
    for k in range(len(bounds) - 1):
        rows = order[bounds[k]:bounds[k + 1]]   # the k-th attempt of each user (at most one)
        u = user[rows]
        z = c + mu[u] - b[item[rows]]
        logits[rows] = z / np.sqrt(1.0 + np.pi * v[u] / 8.0)
        p = special.expit(z)
        v_new = 1.0 / (1.0 / v[u] + p * (1.0 - p))
        mu[u] += v_new * (correct[rows] - p)
        v[u] = v_new
    return logits


def irt_online(r: Responses):
    def fit_predict(fit_rows, predict_rows, candidates):
        users, user_codes = np.unique(r.user[fit_rows], return_inverse=True)
        logits = {}
        for sd in candidates:
            c, _, b = fit_irt(user_codes, r.item[fit_rows], r.correct[fit_rows], len(users),
                              r.num_items, sd)
            logits[sd] = online_irt_logits(r.user[predict_rows], r.item[predict_rows],
                                           r.correct[predict_rows], c, b, sd)
        return logits
    return fit_predict


class KnowledgeModel:
    """The pipeline's replay and per-exercise fit (models/), on our split."""

    def __init__(self, r: Responses, settings: Optional[FitSettings] = None,
                 student_features: bool = False):
        self.r, self.settings = r, settings or FitSettings()
        settings = self.settings
        self.components = ComponentCache(settings.seed, settings.num_random_features)
        n = len(r)
        width = len(str(r.num_users))
        batch = LogBatch(
            users=[f"u{u:0{width}d}" for u in range(r.num_users)],
            user=r.user.astype(np.int32), exercises=r.exercise_names,
            exercise=r.exercise.astype(np.int32), problem_types=r.problem_type_names,
            problem_type=r.problem_type.astype(np.int32), problem_number=r.problem_number,
            time_done=r.time_done, correct=r.correct,
            optional=np.zeros((n, len(OPTIONAL_INT_FIELDS)), np.int64),
            optional_present=np.zeros((n, len(OPTIONAL_INT_FIELDS)), bool))
        sessionized = sessionize_batch(batch)
        self.rows = replay_batch(sessionized.logs, sessionized.student_starts, self.components,
                                 student_features=student_features)
        # Names sort like the codes, so the replay keeps the rows' order.
        assert np.array_equal(self.rows.time_done, r.time_done), "replay reordered the rows"
        self.note = ""

    def samples(self, fit_rows):
        """(exercise code, its training rows, their bottom-k sample) per exercise."""
        for code in range(len(self.r.exercise_names)):
            train = np.flatnonzero((self.r.exercise == code) & fit_rows)
            rows = self.rows.take(train)
            yield code, train, bottom_k(rows, sample_keys(rows, self.settings.seed),
                                        self.settings.max_samples)[0]

    def global_theta(self, fit_rows, l2):
        """transforms.fit's global fit, on the fit rows: the pooled share of
        every exercise's sample, capped by bottom_k."""
        settings = dataclasses.replace(self.settings, holdout_fraction=0.0, l2=l2)
        pool = TrainingRows.concatenate([global_pool(sample, settings)
                                         for _, _, sample in self.samples(fit_rows)])
        pool, _ = bottom_k(pool, sample_keys(pool, settings.seed), settings.global_max_rows)
        theta = fit_global(pool, settings, self.components)["theta"]
        return None if theta is None else np.asarray(theta)

    def __call__(self, fit_rows, predict_rows, candidates):
        r, settings = self.r, self.settings
        logits = {l2: np.empty(predict_rows.sum()) for l2 in candidates}
        where = np.full(len(r), -1)
        where[predict_rows] = np.arange(predict_rows.sum())
        fallback = 0
        prior = (self.global_theta(fit_rows, settings.l2) if settings.shrink_to_global
                 else None)
        for code, train, sample in self.samples(fit_rows):
            name = r.exercise_names[code]
            target = np.flatnonzero((r.exercise == code) & predict_rows)
            if not len(target):
                continue
            outcome, record = fit_exercise(
                name, sample, len(train), dataclasses.replace(
                    settings, holdout_fraction=0.0, l2_candidates=tuple(candidates)),
                components=self.components, prior=prior)
            if outcome == "fitted":
                x = self.rows.take(target).features(self.components)
                for l2, fitted in zip(candidates, record["candidates"]):
                    logits[l2][where[target]] = x @ np.asarray(fitted["theta"])
            else:   # no parameters: the exercise's base rate
                fallback += len(target)
                for l2 in candidates:
                    logits[l2][where[target]] = _logit(
                        (r.correct[train].sum() + 1.0) / (len(train) + 2.0))
        self.note = (f"; {fallback:,} predicted attempts are on exercises it skipped (too few "
                     f"rows or one class), predicted by their base rate" if fallback else "")
        return logits


# ---------------------------------------------------------------- metrics

def log_likelihoods(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.where(labels, -np.logaddexp(0.0, -logits), -np.logaddexp(0.0, logits))


def weighted_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC (ties count half) with row weights; `weights` (n,) or (replicates, n)."""
    order = np.argsort(scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    w = np.atleast_2d(weights)[:, order]
    positive, negative = w * y, w * ~y
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    if len(starts) < len(s):   # tied scores: one group each
        positive = np.add.reduceat(positive, starts, axis=1)
        negative = np.add.reduceat(negative, starts, axis=1)
    below = np.cumsum(negative, axis=1) - negative
    with np.errstate(invalid="ignore", divide="ignore"):
        result = (np.sum(positive * (below + 0.5 * negative), axis=1)
                  / (positive.sum(axis=1) * negative.sum(axis=1)))
    return result if np.ndim(weights) == 2 else result[0]


def bootstrap_scores(user: np.ndarray, labels: np.ndarray, logits: Dict[str, np.ndarray],
                     replicates: int, seed: int) -> Dict[str, dict]:
    """Mean LL, AUC, 95% intervals from resampling held-out students with
    replacement (the same draws for every model, so differences are paired)."""
    students, student = np.unique(user, return_inverse=True)
    counts = np.bincount(student, minlength=len(students)).astype(np.float64)
    rng = np.random.default_rng([seed, 0xB007])
    draws = rng.integers(0, len(students), (replicates, len(students)))
    weights = np.stack([np.bincount(d, minlength=len(students)) for d in draws]).astype(float)
    rows_per_replicate = weights @ counts
    ll = {name: log_likelihoods(z, labels) for name, z in logits.items()}
    ll_sums = {name: np.bincount(student, values, len(students)) for name, values in ll.items()}
    results = {}
    for name, z in logits.items():
        aucs = np.concatenate([weighted_auc(z, labels, weights[i:i + 50][:, student])
                               for i in range(0, replicates, 50)])
        result = {"ll": float(ll[name].mean()),
                  "ll_boot": weights @ ll_sums[name] / rows_per_replicate,
                  "auc": float(weighted_auc(z, labels, np.ones(len(z)))), "auc_boot": aucs}
        if OURS in ll and name != OURS:
            result["difference"] = weights @ (ll_sums[name] - ll_sums[OURS]) / rows_per_replicate
            result["difference_mean"] = result["ll"] - float(ll[OURS].mean())
        if BEST_LR in ll and name != BEST_LR:
            result["vs_best_lr"] = (weights @ (ll_sums[name] - ll_sums[BEST_LR])
                                    / rows_per_replicate)
            result["vs_best_lr_mean"] = result["ll"] - float(ll[BEST_LR].mean())
        results[name] = result
    return results


def interval(values: np.ndarray) -> tuple:
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)


# -------------------------------------------------------------- the run

def evaluate(r: Responses, grids: Dict[str, Sequence[float]], replicates: int,
             split_seed: int) -> None:
    started = time.monotonic()
    side = split_students(r.num_users, split_seed)[r.user]
    fit, validation, test = side == FIT, side == VALIDATION, side == TEST
    train = ~test
    print(f"\n== {r.name}: {len(r):,} attempts, {r.num_users:,} students, "
          f"{len(r.exercise_names)} exercises, {r.num_items} items (exercise, problem type); "
          f"correct {r.correct.mean():.3f}")
    for note in r.notes:
        print(f"   {note}")
    print(f"   held out: {len(np.unique(r.user[test])):,} students ({test.sum():,} attempts); "
          f"training: {len(np.unique(r.user[train])):,} students ({train.sum():,} attempts), "
          f"of which {len(np.unique(r.user[validation])):,} validation students "
          f"({validation.sum():,} attempts) choose each model's regularisation")

    models = {"base rate": base_rate, OURS: KnowledgeModel,
              OURS_SHRUNK: lambda r: KnowledgeModel(r, FitSettings(shrink_to_global=True)),
              OURS_STUDENT: lambda r: KnowledgeModel(r, student_features=True),
              OURS_BOTH: lambda r: KnowledgeModel(r, FitSettings(shrink_to_global=True),
                                                  student_features=True),
              "PFA": lambda r: global_regression(r, pfa_design(r)),
              "IRT-1PL online": irt_online,
              BEST_LR: lambda r: global_regression(r, best_lr_design(r))}
    logits, chosen, seconds = {}, {}, {}
    for name, make in models.items():
        clock = time.monotonic()
        fit_predict = make(r)
        validation_ll = {h: float(log_likelihoods(z, r.correct[validation]).mean())
                         for h, z in fit_predict(fit, validation, grids[name]).items()}
        best = max(validation_ll, key=validation_ll.get)
        extra = [PIPELINE_DEFAULT_L2] if name == OURS and best != PIPELINE_DEFAULT_L2 else []
        test_logits = fit_predict(train, test, [best] + extra)
        logits[name], chosen[name] = test_logits[best], f"{HYPER_NAMES[name]} {best:g}"
        seconds[name] = time.monotonic() - clock
        if extra:
            logits[OURS_DEFAULT] = test_logits[PIPELINE_DEFAULT_L2]
            chosen[OURS_DEFAULT], seconds[OURS_DEFAULT] = "pipeline default", 0.0
        shown = ", ".join(f"{h:g}: {ll:.4f}" for h, ll in sorted(validation_ll.items()))
        print(f"   {name:<{NAME_WIDTH}} validation LL by {HYPER_NAMES[name]}: {shown} -> {best:g} "
              f"({seconds[name]:.1f} s{getattr(fit_predict, 'note', '')})")
    if r.p_true is not None:
        logits["oracle"] = _logit(r.p_true[test])
        chosen["oracle"], seconds["oracle"] = "true p", 0.0
    scores = bootstrap_scores(r.user[test], r.correct[test], logits, replicates, split_seed)
    print_table(scores, chosen, seconds, replicates)
    print(f"   ({time.monotonic() - started:.0f} s for this data set)", flush=True)


def print_table(scores: Dict[str, dict], chosen: Dict[str, str], seconds: Dict[str, float],
                replicates: int) -> None:
    base = scores["base rate"]["ll"]
    oracle = scores["oracle"]["ll"] if "oracle" in scores else None
    header = (f"   {'model':<{NAME_WIDTH}} {'chosen':<16} {'held-out LL [95%]':<28} "
              f"{'AUC [95%]':<26} {'LL - ours [95%]':<29} {'LL - Best-LR [95%]':<29} "
              f"{'recovered':>9} {'seconds':>8}")
    print(f"\n   held-out students' attempts; intervals: bootstrap over held-out students "
          f"({replicates} replicates, paired); recovered: (LL - base rate) / (oracle - base "
          f"rate)")
    print(header)
    print("   " + "-" * (len(header) - 3))
    for name, s in scores.items():
        low, high = interval(s["ll_boot"])
        auc_low, auc_high = interval(s["auc_boot"])
        difference, vs_best_lr = ("" if key not in s else "{:+.4f} [{:+.4f}, {:+.4f}]".format(
            s[f"{key}_mean"], *interval(s[key])) for key in ("difference", "vs_best_lr"))
        recovered = "" if oracle is None else f"{(s['ll'] - base) / (oracle - base):.0%}"
        print(f"   {name:<{NAME_WIDTH}} {chosen[name]:<16} {s['ll']:.4f} [{low:.4f}, {high:.4f}]  "
              f"{s['auc']:.4f} [{auc_low:.4f}, {auc_high:.4f}]  {difference:<29} "
              f"{vs_best_lr:<29} {recovered:>9} {seconds[name]:>8.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("all", "sample", "lsat7"), default="all")
    parser.add_argument("--students", type=int, default=2000, help="sample size (students)")
    parser.add_argument("--seed", type=int, default=1, help="sample generator seed")
    parser.add_argument("--split_seed", type=int, default=0,
                        help="seed of the student split and the bootstrap")
    parser.add_argument("--replicates", type=int, default=1000, help="bootstrap replicates")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 300 students, 3 candidates per model, 100 replicates")
    args = parser.parse_args(argv)
    grids = dict(GRIDS)
    if args.quick:
        args.students, args.replicates = 300, 100
        grids = {name: values[1:4] for name, values in GRIDS.items()}
    started = time.monotonic()
    # Small dense fits: more BLAS threads only fight each other on a shared machine.
    with threadpool_limits(limits=1, user_api="blas"):
        if args.dataset in ("all", "sample"):
            evaluate(sample_responses(args.students, args.seed), grids, args.replicates,
                     args.split_seed)
        if args.dataset in ("all", "lsat7"):
            if importlib.util.find_spec("mirt") is None:
                message = "LSAT7 needs the mirt package (requirements-lock.txt; Python >= 3.11)"
                if args.dataset == "lsat7":
                    sys.exit(message)
                print(f"\n== LSAT7 skipped: {message}")
            else:
                evaluate(lsat7_responses(), grids, args.replicates, args.split_seed)
    print(f"\n(total {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
