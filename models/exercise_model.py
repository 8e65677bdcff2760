"""Per-exercise training: deterministic sampling, holdout by user, fit, metrics.

Randomness here is hashing, not a generator: a row's sample key and a user's
holdout side are pure functions of the data and the seed, so the result does
not depend on row order, bundling or the number of workers.
"""

import functools
from typing import Dict, Optional, Tuple

import numpy as np

from models.evaluation import BASELINE_FIELD, HOLDOUT_BY_L2
from models.knowledge_state import ComponentCache, TrainingRows
from models.log_batch import splitmix64
from models.logistic import auc, base_rate_log_likelihood, fit_logistic, log_likelihoods
from models.settings import FitSettings


@functools.lru_cache(maxsize=None)
def _salt(purpose: int, seed: int) -> np.uint64:
    return splitmix64(np.array([purpose * 0x10001 + seed], dtype=np.uint64))[0]


def _salted(user_hashes: np.ndarray, purpose: int, seed: int) -> np.ndarray:
    return splitmix64(user_hashes ^ _salt(purpose, seed))


def sample_keys(rows: TrainingRows, seed: int) -> np.ndarray:
    """A uniform pseudo-random uint64 per row; keeping the k smallest is a
    uniform sample of k rows that any worker computes identically."""
    with np.errstate(over="ignore"):
        attempt = splitmix64(rows.time_done.astype(np.uint64) * np.uint64(31)
                              + rows.problem_number.astype(np.uint64))
    return splitmix64(_salted(rows.user_hash, 1, seed) ^ attempt)


def held_out(user_hashes: np.ndarray, seed: int, fraction: float) -> np.ndarray:
    """True for held-out users (by user_hash): a student is wholly on one side,
    the same side for every exercise and for both model families."""
    return _salted(user_hashes, 2, seed).astype(np.float64) / 2.0 ** 64 < fraction


def holdout_mask(rows: TrainingRows, seed: int, fraction: float) -> np.ndarray:
    """True for rows of held-out users."""
    return held_out(rows.user_hash, seed, fraction)


def deterministic_order(rows: TrainingRows, keys: np.ndarray) -> np.ndarray:
    """Order by sample key, then by the row itself, so ties never depend on
    the order rows arrived in (ties are rare: the full sort runs only then)."""
    order = np.argsort(keys, kind="stable")
    if np.any(keys[order][1:] == keys[order][:-1]):
        order = np.lexsort((*rows.base.T[::-1], rows.correct, rows.problem_number,
                            rows.time_done, rows.user.astype(str), keys))
    return order


def in_sample_order(rows: TrainingRows, seed: int) -> TrainingRows:
    """The rows in deterministic_order of their sample keys; bottom_k's
    samples (all the pipeline's) already are, and are returned as they are."""
    order = deterministic_order(rows, sample_keys(rows, seed))
    return rows if np.array_equal(order, np.arange(len(rows))) else rows.take(order)


def bottom_k(rows: TrainingRows, keys: np.ndarray, k: int) -> Tuple[TrainingRows, np.ndarray]:
    """The k rows with the smallest keys, in deterministic order."""
    order = deterministic_order(rows, keys)[:k]
    return rows.take(order), keys[order]


def bottom_k_per_exercise(rows: TrainingRows, keys: np.ndarray, k: int) -> TrainingRows:
    """bottom_k of every exercise's rows at once: the rows grouped by
    exercise (in code order), each group in deterministic order."""
    order = deterministic_order(rows, keys)
    order = order[np.argsort(rows.exercise_code[order], kind="stable")]
    groups = rows.exercise_code[order]
    rank = np.arange(len(order)) - np.searchsorted(groups, groups)
    return rows.take(order[rank < k])


def _mean_log_likelihood(logits: np.ndarray, labels: np.ndarray) -> Optional[float]:
    if not len(labels):
        return None
    return float(np.mean(log_likelihoods(logits, labels)))


def global_pool(rows: TrainingRows, settings: FitSettings) -> TrainingRows:
    """An exercise's share of the global fit's rows: the first
    settings.global_rows_per_exercise training-side rows of its sample in
    sample-key order (never a held-out user's). The same share for every
    exercise, so the global theta is an average over exercises rather than
    the busiest exercises' fit."""
    rows = in_sample_order(rows, settings.seed)
    train = np.flatnonzero(~holdout_mask(rows, settings.seed, settings.holdout_fraction))
    return rows.take(train[:settings.global_rows_per_exercise])


def fit_global(rows: TrainingRows, settings: FitSettings,
               components: Optional[ComponentCache] = None) -> Dict:
    """The global fit over the pooled rows (global_pool of every exercise,
    capped by bottom_k to settings.global_max_rows) with penalty settings.l2:
    the centre the exercises are shrunk toward. theta is None (the exercises
    are then shrunk toward zero, as without the option) when the pool is
    empty or has one class, which leaves no finite fit."""
    labels = rows.correct.astype(np.float64)
    record = {"l2": settings.l2, "num_rows": len(rows),
              "num_exercises": len(set(rows.exercise.tolist())),
              "rows_per_exercise": settings.global_rows_per_exercise,
              "max_rows": settings.global_max_rows, "theta": None}
    positives = int(labels.sum())
    if positives in (0, len(rows)):
        return {**record, "note": "no rows of both classes: exercises shrunk toward zero"}
    x = rows.features(components or ComponentCache(settings.seed, settings.num_random_features))
    fit = fit_logistic(x, labels, settings.l2, settings.max_iterations)
    if not np.all(np.isfinite(fit.theta)):
        return {**record, "note": f"non-finite global fit ({fit.message}): exercises shrunk "
                                  f"toward zero"}
    return {**record, "theta": [float(value) for value in fit.theta],
            "train_log_likelihood": _mean_log_likelihood(x @ fit.theta, labels),
            "converged": fit.converged, "iterations": fit.iterations}


def fit_exercise(exercise: str, rows: TrainingRows, rows_available: int,
                 settings: FitSettings, baseline: Optional[Dict[str, list]] = None,
                 components: Optional[ComponentCache] = None,
                 prior: Optional[np.ndarray] = None) -> Tuple[str, Dict]:
    """Returns ("fitted", parameter record) or ("skipped", record with reason).
    With settings.l2_candidates the fitted record holds one parameter record
    per candidate ("candidates") and their holdout log likelihoods; select_l2
    turns it into the parameter record of the chosen one.

    `rows` is at most settings.max_samples rows already chosen by bottom_k over
    all `rows_available` rows of the exercise. `baseline`: theta per exercise
    of another version with the same features; its holdout log likelihood on
    the same rows is recorded (None for an exercise it lacks). `components`:
    a cache of the settings' seed and dimension shared across fits (a vector
    costs a SHA-256 and D normal draws; thousands of exercises share keys).
    `prior`: the theta the weights are shrunk toward (fit_global's; with None,
    toward zero as always); the records then say so ("shrunk_to_global")."""
    # Counts and skips first, in any row order: with thousands of exercises
    # most are skipped.
    holdout = holdout_mask(rows, settings.seed, settings.holdout_fraction)
    train = ~holdout
    labels = rows.correct.astype(np.float64)
    counts = {"exercise": exercise, "num_rows_available": int(rows_available),
              "num_train": int(train.sum()), "num_holdout": int(holdout.sum())}

    def skipped(reason: str, detail: str):
        return "skipped", {**counts, "reason": reason, "detail": detail,
                           "model_version": settings.model_version}

    if counts["num_train"] < settings.min_samples:
        return skipped("too_few_samples",
                       f"{counts['num_train']} training rows < min_samples {settings.min_samples}")
    positives = int(labels[train].sum())
    if positives in (0, counts["num_train"]):
        return skipped("single_class",
                       f"all {counts['num_train']} training rows are "
                       f"{'correct' if positives else 'wrong'}; no slope to fit")
    components = components or ComponentCache(settings.seed, settings.num_random_features)
    # Training rows first, then held-out ones, each in sample order: one x
    # whose two parts are views (a row subset of x would be a C-order copy).
    rows = in_sample_order(rows, settings.seed)
    held = holdout_mask(rows, settings.seed, settings.holdout_fraction)
    rows = rows.take(np.r_[np.flatnonzero(~held), np.flatnonzero(held)])
    labels = rows.correct.astype(np.float64)
    train, holdout = slice(0, counts["num_train"]), slice(counts["num_train"], len(rows))
    x = rows.features(components)
    x_train, x_holdout = x[train], x[holdout]
    compared = {}
    if baseline is not None:
        theta = baseline.get(exercise)
        compared[BASELINE_FIELD] = None if theta is None else _mean_log_likelihood(
            x_holdout @ np.asarray(theta), labels[holdout])
    records = []
    for l2 in settings.l2_candidates or (settings.l2,):
        fit = fit_logistic(x_train, labels[train], l2, settings.max_iterations,
                           prior_mean=prior)
        if not np.all(np.isfinite(fit.theta)):
            return skipped("non_finite_fit", fit.message)
        train_logits, holdout_logits = x_train @ fit.theta, x_holdout @ fit.theta
        holdout_auc: Optional[float] = None
        if counts["num_holdout"]:
            holdout_auc = auc(holdout_logits, rows.correct[holdout])
        records.append({
            "exercise": exercise,
            "theta": [float(value) for value in fit.theta],
            **{key: counts[key] for key in ("num_train", "num_holdout", "num_rows_available")},
            "train_log_likelihood": _mean_log_likelihood(train_logits, labels[train]),
            "holdout_log_likelihood": _mean_log_likelihood(holdout_logits, labels[holdout]),
            "holdout_auc": holdout_auc,
            "holdout_base_rate_log_likelihood": base_rate_log_likelihood(
                labels[train], labels[holdout]),
            "converged": fit.converged,
            "iterations": fit.iterations,
            **compared,
            **({} if prior is None else {"shrunk_to_global": True}),
            "model_version": settings.model_version,
            "trained_at": settings.trained_at,
        })
    if not settings.l2_candidates:
        return "fitted", records[0]
    return "fitted", {
        "exercise": exercise, "num_holdout": counts["num_holdout"],
        "l2_candidates": list(settings.l2_candidates),
        HOLDOUT_BY_L2: [record["holdout_log_likelihood"] for record in records],
        "candidates": records}


def select_l2(fitted: Dict, l2: float) -> Dict:
    """The parameter record of candidate `l2` from a fit_exercise record of
    several candidates, with the choice and every candidate's holdout log
    likelihood (in l2_candidates order) added."""
    chosen = fitted["candidates"][fitted["l2_candidates"].index(l2)]
    return {**chosen, "l2": l2, "l2_candidates": fitted["l2_candidates"],
            HOLDOUT_BY_L2: fitted[HOLDOUT_BY_L2]}
