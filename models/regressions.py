"""Regressions in the monitoring records: which exercises got worse.

Input: the daily metric records of the monitoring pipeline (models.monitoring),
one per (date, exercise) plus one per date with exercise ``"__all__"`` (every
exercise together)::

    {"date": "2026-11-22", "exercise": "fractions_1", "model_version": "v1",
     "samples": 812, "mean_log_likelihood": -0.55, "log_likelihood_std": 0.6,
     "observed_correct": 0.71, "mean_predicted_correct": 0.69,
     "auc": 0.72,   # or null
     "calibration": [{"bin": 0, "low": 0.0, "high": 0.1, "samples": 3,
                      "observed_correct": 0.33, "mean_predicted": 0.07}, ...]}

* ``regressions(records)``: the exercises whose latest day's mean log
  likelihood is significantly below their trailing (sample-weighted) average,
  worst first.
* ``overall_change(records)``: the same comparison for ``"__all__"``, so a
  report can say whether the model as a whole got worse.
* ``Records.build(records)``: the records parsed and merged per (exercise,
  day), with the all-exercises series; ``trailing_series`` and
  ``version_changes`` are what a report draws from them.

Pure Python (no Beam, no presentation): pipelines/monitor.py puts regressions
in its summary, and the ``dashboard`` package draws the page.

Conventions: log likelihoods are natural-log means per attempt, so higher
(closer to 0) is better and a negative change is a regression. Days are
compared as they exist: an exercise's trailing window is its previous
``trailing_days`` days *with data*, not calendar days. Several records for one
(date, exercise) with different model versions are combined (weighted by
samples); for the same model version the last one read wins. Any date a
``datetime.date`` holds (0001-01-01 .. 9999-12-31) is valid: nothing here adds
days to a date.
"""

import dataclasses
import datetime
import math
from typing import Dict, List, Optional, Sequence, Tuple

from models.evaluation import weighted_mean

ALL_EXERCISES = "__all__"
# A drop counts as a regression only when it exceeds this many standard
# errors of the difference of means (per-attempt spread from the records):
# with thousands of exercises a plain "below the average" flags half of them.
SIGNIFICANCE_Z = 2.0


# --------------------------------------------------------------------------
# Records

@dataclasses.dataclass(frozen=True)
class Bin:
    """One calibration bin of predicted P(correct)."""
    index: int
    low: Optional[float]
    high: Optional[float]
    samples: int
    observed: Optional[float]
    predicted: Optional[float]


@dataclasses.dataclass(frozen=True)
class Day:
    """One exercise (or ``"__all__"``) on one date, all model versions merged."""
    date: datetime.date
    exercise: str
    versions: Tuple[str, ...]
    samples: int
    ll: Optional[float]
    ll_squared: Optional[float]  # mean of squared log likelihoods: the day's spread
    observed: Optional[float]
    predicted: Optional[float]
    auc: Optional[float]
    calibration: Tuple[Bin, ...]

    @property
    def version(self) -> str:
        return ", ".join(self.versions) if self.versions else "unknown"


def _number(value) -> Optional[float]:
    """A finite float, or None (null, NaN, infinities, non-numbers)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _count(value) -> int:
    number = _number(value)
    if number is None:
        return 0
    if number < 0:
        raise ValueError(f"negative sample count {value!r}")
    return int(round(number))


def _date(value) -> datetime.date:
    if isinstance(value, datetime.datetime):
        return value.date()
    if isinstance(value, datetime.date):
        return value
    if isinstance(value, str):
        return datetime.date.fromisoformat(value.strip()[:10])
    raise ValueError(f"not a date: {value!r}")


def _parse(record) -> Day:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    exercise = record.get("exercise")
    if not isinstance(exercise, str) or not exercise:
        raise ValueError("missing exercise")
    version = record.get("model_version")
    versions = () if version in (None, "") else (str(version),)
    bins = []
    for item in record.get("calibration") or ():
        if not isinstance(item, dict):
            continue
        index = _number(item.get("bin"))
        if index is None:
            continue
        bins.append(Bin(int(index), _number(item.get("low")), _number(item.get("high")),
                         _count(item.get("samples")), _number(item.get("observed_correct")),
                         _number(item.get("mean_predicted"))))
    ll, spread = (_number(record.get(name)) for name in ("mean_log_likelihood",
                                                         "log_likelihood_std"))
    return Day(
        date=_date(record.get("date")),
        exercise=exercise,
        versions=versions,
        samples=_count(record.get("samples")),
        ll=ll,
        ll_squared=(None if ll is None or spread is None else spread ** 2 + ll ** 2),
        observed=_number(record.get("observed_correct")),
        predicted=_number(record.get("mean_predicted_correct")),
        auc=_number(record.get("auc")),
        calibration=tuple(sorted(bins, key=lambda b: b.index)),
    )


def combine(days: Sequence[Day], date: datetime.date, exercise: str) -> Day:
    """Sample-weighted union of several records (model versions, exercises or
    days). AUC does not combine, so it is kept only for a single record."""
    if len(days) == 1 and days[0].date == date and days[0].exercise == exercise:
        return days[0]
    bins: Dict[int, List[Bin]] = {}
    for day in days:
        for b in day.calibration:
            bins.setdefault(b.index, []).append(b)
    calibration = tuple(
        Bin(index,
             next((b.low for b in group if b.low is not None), None),
             next((b.high for b in group if b.high is not None), None),
             sum(b.samples for b in group),
             weighted_mean((b.samples, b.observed) for b in group),
             weighted_mean((b.samples, b.predicted) for b in group))
        for index, group in sorted(bins.items()))
    return Day(
        date=date,
        exercise=exercise,
        versions=tuple(sorted({v for day in days for v in day.versions})),
        samples=sum(day.samples for day in days),
        ll=weighted_mean((day.samples, day.ll) for day in days),
        ll_squared=(None if any(day.ll_squared is None for day in days) else
                    weighted_mean((day.samples, day.ll_squared) for day in days)),
        observed=weighted_mean((day.samples, day.observed) for day in days),
        predicted=weighted_mean((day.samples, day.predicted) for day in days),
        auc=days[0].auc if len(days) == 1 else None,
        calibration=calibration,
    )


@dataclasses.dataclass
class Records:
    """Parsed records; ``build`` skips (and counts) malformed ones."""
    exercises: Dict[str, List[Day]]   # exercise -> days sorted by date
    overall: List[Day]                # "__all__" per date (derived when absent)
    ignored: int                      # malformed records skipped

    @classmethod
    def build(cls, records) -> "Records":
        if isinstance(records, Records):
            return records
        if isinstance(records, dict):
            records = [records]
        keyed: Dict[Tuple[str, datetime.date], Dict[Tuple[str, ...], Day]] = {}
        ignored = 0
        for record in records:
            try:
                day = _parse(record)
            except (ValueError, TypeError):
                ignored += 1
                continue
            keyed.setdefault((day.exercise, day.date), {})[day.versions] = day
        exercises: Dict[str, List[Day]] = {}
        given_overall: Dict[datetime.date, Day] = {}
        for (exercise, date), by_version in keyed.items():
            day = combine(list(by_version.values()), date, exercise)
            if exercise == ALL_EXERCISES:
                given_overall[date] = day
            else:
                exercises.setdefault(exercise, []).append(day)
        by_date: Dict[datetime.date, List[Day]] = {}
        for days in exercises.values():
            days.sort(key=lambda d: d.date)
            for day in days:
                by_date.setdefault(day.date, []).append(day)
        overall = []
        for date in sorted(set(given_overall) | set(by_date)):
            overall.append(given_overall.get(date)
                           or combine(by_date[date], date, ALL_EXERCISES))
        return cls(exercises=exercises, overall=overall, ignored=ignored)

    @property
    def empty(self) -> bool:
        return not self.overall


# --------------------------------------------------------------------------
# Regressions

def check_options(trailing_days: int, min_samples: int, top: Optional[int] = None) -> None:
    if int(trailing_days) < 1:
        raise ValueError("trailing_days must be at least 1")
    if min_samples < 0:
        raise ValueError("min_samples must be >= 0")
    if top is not None and top < 0:
        raise ValueError("top must be >= 0 (or None for all)")


def usable(days: Sequence[Day]) -> List[Day]:
    """The days with samples and a mean log likelihood."""
    return [d for d in days if d.samples > 0 and d.ll is not None]


def compare(days: Sequence[Day], trailing_days: int, min_samples: int) -> Optional[dict]:
    """The latest usable day against the sample-weighted mean of the
    `trailing_days` usable days before it; None below `min_samples`."""
    days = usable(days)
    if len(days) < 2:
        return None
    latest, window = days[-1], days[-1 - int(trailing_days):-1]
    trailing_samples = sum(d.samples for d in window)
    if latest.samples < min_samples or trailing_samples < min_samples:
        return None
    trailing = sum(d.samples * d.ll for d in window) / trailing_samples
    standard_error = None
    if latest.ll_squared is not None and all(d.ll_squared is not None for d in window):
        trailing_squared = sum(d.samples * d.ll_squared for d in window) / trailing_samples
        standard_error = math.sqrt(
            max(0.0, latest.ll_squared - latest.ll ** 2) / latest.samples
            + max(0.0, trailing_squared - trailing ** 2) / trailing_samples)
    change = latest.ll - trailing
    return {
        "exercise": latest.exercise,
        "date": latest.date.isoformat(),
        "mean_log_likelihood": latest.ll,
        "trailing_mean_log_likelihood": trailing,
        "change": change,
        # Without the days' spread (older records) every drop counts.
        "standard_error": standard_error,
        "significant": change < 0 and (standard_error is None
                                       or change < -SIGNIFICANCE_Z * standard_error),
        "samples": latest.samples,
        "trailing_samples": trailing_samples,
        "trailing_days": len(window),
        "trailing_start": window[0].date.isoformat(),
        "trailing_end": window[-1].date.isoformat(),
        "model_version": latest.version,
        "trailing_model_versions": sorted({v for d in window for v in d.versions}),
    }


def regressions(records, trailing_days: int = 7, min_samples: int = 30,
                top: Optional[int] = 10) -> List[dict]:
    """Exercises whose latest day is worse than their trailing average, worst first.

    For every exercise (not ``"__all__"``), its latest day with data is
    compared with the sample-weighted mean of ``mean_log_likelihood`` over its
    previous ``trailing_days`` days with data. Exercises whose latest day, or
    whose trailing window in total, has fewer than ``min_samples`` samples are
    skipped. Returns dicts with exercise, date, mean_log_likelihood,
    trailing_mean_log_likelihood, change (latest - trailing; negative = worse),
    samples, trailing_samples, trailing_days, trailing_start, trailing_end,
    model_version, trailing_model_versions, standard_error and significant,
    only for significant drops (change below -SIGNIFICANCE_Z standard errors, or
    any drop for records without log_likelihood_std), sorted by
    change ascending, at most ``top`` (None: all).
    """
    check_options(trailing_days, min_samples, top)
    data = Records.build(records)
    found = []
    for days in data.exercises.values():
        result = compare(days, trailing_days, min_samples)
        if result is not None and result["significant"]:
            found.append(result)
    found.sort(key=lambda r: (r["change"], r["exercise"]))
    return found if top is None else found[:top]


def overall_change(records, trailing_days: int = 7, min_samples: int = 30) -> Optional[dict]:
    """The same comparison for all exercises together (``"__all__"``).

    Returns the dict described in ``regressions`` (exercise ``"__all__"``) plus
    ``got_worse`` (a significant drop), whether or not it got worse; None when there is
    no earlier day, or too few samples, to compare with. Dates without an
    ``"__all__"`` record use the sample-weighted union of their exercises.
    """
    check_options(trailing_days, min_samples)
    result = compare(Records.build(records).overall, trailing_days, min_samples)
    if result is not None:
        result["got_worse"] = result["significant"]
    return result


def trailing_series(days: Sequence[Day], trailing_days: int,
                    min_samples: int) -> List[Tuple[datetime.date, float]]:
    """(date, sample-weighted mean log likelihood of the previous
    `trailing_days` usable days) for every usable day after the first, where
    that window holds at least `min_samples` samples."""
    days = usable(days)
    out = []
    for i in range(1, len(days)):
        window = days[max(0, i - trailing_days):i]
        weight = sum(d.samples for d in window)
        if weight >= max(min_samples, 1):
            out.append((days[i].date, sum(d.samples * d.ll for d in window) / weight))
    return out


def version_changes(days: Sequence[Day]) -> List[Tuple[datetime.date, str]]:
    """(first date, version label) of every change of model version(s)
    between consecutive days that name one."""
    changes, previous = [], None
    for day in days:
        if not day.versions:
            continue
        if previous is not None and day.versions != previous:
            changes.append((day.date, day.version))
        previous = day.versions
    return changes
