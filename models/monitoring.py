"""Monitoring aggregates: how well a model version predicted each exercise on
each day.

Everything is kept as sums in one flat float64 vector per (day, exercise), so
partial aggregates from any number of workers add up exactly and in any order
(a CombineFn is just `+`): per score bin the positives, negatives and summed
predictions, plus the summed log likelihood. Means, calibration and AUC are
read off the sums at the end. AUC is computed from the score histogram with
NUM_SCORE_BINS bins of width 0.01: it equals the exact AUC of the predictions
rounded down to the bin (pairs in one bin count one half).

The vector also counts the students behind each (day, exercise): one
student's attempts are far from independent, so the regression test
(models.regressions) takes its degrees of freedom from the students, not the
attempts. That count adds up across workers as long as all of a student's
attempts are accumulated in one call, as the replay's student batches do.
"""

import datetime
from typing import Dict, Iterable, Optional, Tuple

import numpy as np

from models.logistic import log_likelihoods

ALL_EXERCISES = "__all__"
NUM_SCORE_BINS = 100
NUM_CALIBRATION_BINS = 10
_POSITIVE, _NEGATIVE, _SUM_P = (slice(i * NUM_SCORE_BINS, (i + 1) * NUM_SCORE_BINS)
                                for i in range(3))
_SUM_LL = 3 * NUM_SCORE_BINS
_SUM_LL_SQUARED = _SUM_LL + 1  # for the day's spread, so a drop can be tested against noise
_STUDENTS = _SUM_LL_SQUARED + 1
ACCUMULATOR_SIZE = _STUDENTS + 1
_MICROS_PER_DAY = 86_400 * 1_000_000
_EPOCH_DAY = datetime.date(1970, 1, 1)


def day_of(time_done_micros: np.ndarray) -> np.ndarray:
    """UTC day number (days since 1970-01-01) of epoch-microsecond timestamps."""
    return np.floor_divide(time_done_micros, _MICROS_PER_DAY)


def day_string(day: int) -> str:
    return (_EPOCH_DAY + datetime.timedelta(days=int(day))).isoformat()


def score_bins(p: np.ndarray) -> np.ndarray:
    return np.minimum((p * NUM_SCORE_BINS).astype(np.int64), NUM_SCORE_BINS - 1)


def accumulate(days: np.ndarray, exercises: np.ndarray, logits: np.ndarray,
               correct: np.ndarray, students: Optional[np.ndarray] = None
               ) -> Dict[Tuple[int, str], np.ndarray]:
    """Rows -> {(day, exercise): accumulator}, with (day, ALL_EXERCISES) too.
    `students`: a student id per row (e.g. the user hash); every student's
    rows must all be in this call. None: each row counts as one student."""
    p = 1.0 / (1.0 + np.exp(-logits))
    bins = score_bins(p)
    ll = log_likelihoods(logits, correct)
    correct = correct.astype(bool)
    names, exercise_codes = np.unique(exercises.astype(str), return_inverse=True)
    unique_days, day_codes = np.unique(days, return_inverse=True)
    groups = day_codes * (len(names) + 1) + exercise_codes
    totals = {}
    for group_codes, label in ((groups, None),
                               (day_codes * (len(names) + 1) + len(names), ALL_EXERCISES)):
        keys, inverse = np.unique(group_codes, return_inverse=True)
        flat = np.zeros((len(keys), ACCUMULATOR_SIZE))
        np.add.at(flat, (inverse, bins + np.where(correct, _POSITIVE.start, _NEGATIVE.start)), 1)
        np.add.at(flat, (inverse, bins + _SUM_P.start), p)
        np.add.at(flat, (inverse, _SUM_LL), ll)
        np.add.at(flat, (inverse, _SUM_LL_SQUARED), ll * ll)
        if students is None:
            flat[:, _STUDENTS] = np.bincount(inverse, minlength=len(keys))
        else:
            _, student_codes = np.unique(students, return_inverse=True)
            pairs = np.unique(inverse * (int(student_codes.max()) + 1) + student_codes)
            flat[:, _STUDENTS] = np.bincount(pairs // (int(student_codes.max()) + 1),
                                             minlength=len(keys))
        for key, accumulator in zip(keys, flat):
            day, exercise = divmod(int(key), len(names) + 1)
            name = label or str(names[exercise])
            totals[(int(unique_days[day]), name)] = accumulator
    return totals


def auc_from_histograms(positives: np.ndarray, negatives: np.ndarray) -> Optional[float]:
    """P(score of a random positive > score of a random negative), ties half."""
    total_positive, total_negative = positives.sum(), negatives.sum()
    if total_positive == 0 or total_negative == 0:
        return None
    negatives_below = np.concatenate(([0.0], np.cumsum(negatives)[:-1]))
    wins = np.sum(positives * (negatives_below + 0.5 * negatives))
    return float(wins / (total_positive * total_negative))


def _ratio(numerator: float, denominator: float) -> Optional[float]:
    return float(numerator / denominator) if denominator else None


def metrics_record(day: int, exercise: str, model_version: str,
                   accumulator: np.ndarray) -> dict:
    """The daily metrics record the monitor writes (and the dashboard reads)."""
    positives, negatives = accumulator[_POSITIVE], accumulator[_NEGATIVE]
    sum_p = accumulator[_SUM_P]
    samples = positives + negatives
    total = float(samples.sum())
    per_bin = NUM_SCORE_BINS // NUM_CALIBRATION_BINS
    calibration = []
    for index in range(NUM_CALIBRATION_BINS):
        span = slice(index * per_bin, (index + 1) * per_bin)
        count = float(samples[span].sum())
        calibration.append({
            "bin": index, "low": index / NUM_CALIBRATION_BINS,
            "high": (index + 1) / NUM_CALIBRATION_BINS, "samples": int(count),
            "observed_correct": _ratio(positives[span].sum(), count),
            "mean_predicted": _ratio(sum_p[span].sum(), count)})
    mean_ll = _ratio(accumulator[_SUM_LL], total)
    spread = None
    if total:
        spread = float(np.sqrt(max(0.0, accumulator[_SUM_LL_SQUARED] / total - mean_ll ** 2)))
    return {
        "date": day_string(day), "exercise": exercise, "model_version": model_version,
        "samples": int(total),
        "students": int(round(accumulator[_STUDENTS])),
        "mean_log_likelihood": mean_ll,
        "log_likelihood_std": spread,
        "observed_correct": _ratio(positives.sum(), total),
        "mean_predicted_correct": _ratio(sum_p.sum(), total),
        "auc": auc_from_histograms(positives, negatives),
        "calibration": calibration,
    }


def sum_accumulators(accumulators: Iterable[np.ndarray]) -> np.ndarray:
    total = np.zeros(ACCUMULATOR_SIZE)
    for accumulator in accumulators:
        total += accumulator
    return total
