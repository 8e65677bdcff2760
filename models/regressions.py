"""Regressions in the monitoring records: which exercises got worse. (~500
lines: record merging, trailing means and the false-discovery-rate test are one
statistic, tested as one.)

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
  worst first; ``day_tests(records)``: every comparison of that day, with its
  p-value and the test's settings.
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

from scipy.stats import t as student_t

from models.evaluation import weighted_mean

ALL_EXERCISES = "__all__"
# Which drops are regressions. Each exercise's latest day is one test, and a
# day has as many tests as exercises: at a fixed 2-sigma threshold a steady
# model on ~50 exercises raised one or two false alarms a day. So the day's
# exercises are tested together, with Benjamini-Hochberg at this false
# discovery rate on one-sided p-values (expected share of false alarms among
# the flagged; with nothing wrong, a flag on about one day in 20).
FALSE_DISCOVERY_RATE = 0.05
# The model as a whole is one test a day: flagged below this p-value.
OVERALL_ALPHA = 0.01
# Days vary more than the per-attempt spread says (one student's attempts are
# not independent; who practises an exercise changes from day to day): on
# simulated data with a fixed model, z-scores of the drop had about twice the
# variance they should. The standard error is therefore scaled by a noise
# factor measured on the same comparisons of the previous CALIBRATION_DAYS days
# (median of z^2 over the median of a chi-square with 1 degree of freedom, at
# least 1), once at least MIN_CALIBRATION_TESTS of them exist.
CALIBRATION_DAYS = 28
MIN_CALIBRATION_TESTS = 10
# The factor before that: what the simulated data showed (1.6 to 2.6).
UNCALIBRATED_NOISE_FACTOR = 2.0
CHI2_1_MEDIAN = 0.454936423119572


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
    students: Optional[int]      # None in records written before it was counted
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
        students=None if _number(record.get("students")) is None else _count(
            record.get("students")),
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
        students=(None if any(day.students is None for day in days) else
                  sum(day.students for day in days)),
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

def check_options(trailing_days: int, min_samples: int, top: Optional[int] = None,
                  fdr: float = FALSE_DISCOVERY_RATE) -> None:
    if int(trailing_days) < 1:
        raise ValueError("trailing_days must be at least 1")
    if min_samples < 0:
        raise ValueError("min_samples must be >= 0")
    if top is not None and top < 0:
        raise ValueError("top must be >= 0 (or None for all)")
    if not 0 < fdr < 1:
        raise ValueError("fdr must be in (0, 1)")


def usable(days: Sequence[Day]) -> List[Day]:
    """The days with samples and a mean log likelihood."""
    return [d for d in days if d.samples > 0 and d.ll is not None]


def _until(days: Sequence[Day], as_of: Optional[datetime.date]) -> List[Day]:
    return list(days) if as_of is None else [d for d in days if d.date <= as_of]


def compare(days: Sequence[Day], trailing_days: int, min_samples: int) -> Optional[dict]:
    """The latest usable day against the sample-weighted mean of the
    `trailing_days` usable days before it; None below `min_samples` samples
    on that day or in that window. ``standard_error`` is the plain one (the
    days' per-attempt spread over their samples, None without it); the
    callers scale it by the noise factor and test it."""
    days = usable(days)
    if len(days) < 2:
        return None
    latest, window = days[-1], days[-1 - int(trailing_days):-1]
    trailing_samples = sum(d.samples for d in window)
    if latest.samples < min_samples or trailing_samples < min_samples:
        return None
    students = None
    if latest.students is not None and all(d.students is not None for d in window):
        students = (latest.students, sum(d.students for d in window))
        if min(students) < 2:
            return None     # one student's attempts are one observation
    trailing = sum(d.samples * d.ll for d in window) / trailing_samples
    standard_error = degrees_of_freedom = None
    if latest.ll_squared is not None and all(d.ll_squared is not None for d in window):
        trailing_squared = sum(d.samples * d.ll_squared for d in window) / trailing_samples
        variances = (max(0.0, latest.ll_squared - latest.ll ** 2) / latest.samples,
                     max(0.0, trailing_squared - trailing ** 2) / trailing_samples)
        standard_error = math.sqrt(sum(variances))
        if students is not None and standard_error > 0:
            # Welch-Satterthwaite, with students (not attempts) as the units
            degrees_of_freedom = sum(variances) ** 2 / sum(
                v * v / (n - 1) for v, n in zip(variances, students))
    change = latest.ll - trailing
    return {
        "exercise": latest.exercise,
        "date": latest.date.isoformat(),
        "mean_log_likelihood": latest.ll,
        "trailing_mean_log_likelihood": trailing,
        "change": change,
        "standard_error": standard_error,
        "degrees_of_freedom": degrees_of_freedom,
        "samples": latest.samples,
        "students": latest.students,
        "trailing_samples": trailing_samples,
        "trailing_days": len(window),
        "trailing_start": window[0].date.isoformat(),
        "trailing_end": window[-1].date.isoformat(),
        "model_version": latest.version,
        "trailing_model_versions": sorted({v for d in window for v in d.versions}),
    }


def _earlier_statistics(days: Sequence[Day], trailing_days: int, min_samples: int,
                        history: int) -> List[float]:
    """change / standard error of each of the `history` usable days before
    the latest, each against its own trailing window (the same test, on days
    already past)."""
    days = usable(days)[-(history + int(trailing_days) + 1):]
    out = []
    for end in range(max(2, len(days) - history), len(days)):
        earlier = compare(days[:end], trailing_days, min_samples)
        if earlier is not None and earlier["standard_error"]:
            out.append(earlier["change"] / earlier["standard_error"])
    return out


def noise_factor(statistics: Sequence[float]) -> Tuple[float, bool]:
    """(factor, calibrated): how much more the earlier days' statistics vary
    than sampling alone explains, median(z^2) / median of chi-square(1),
    never below 1; (UNCALIBRATED_NOISE_FACTOR, False) with fewer than
    MIN_CALIBRATION_TESTS of them."""
    if len(statistics) < MIN_CALIBRATION_TESTS:
        return UNCALIBRATED_NOISE_FACTOR, False
    squares = sorted(z * z for z in statistics)
    middle = len(squares) // 2
    median = squares[middle] if len(squares) % 2 else (squares[middle - 1] + squares[middle]) / 2
    return max(1.0, median / CHI2_1_MEDIAN), True


def _test(result: dict, factor: float) -> None:
    """Adds z and the one-sided p-value of the drop, with the standard error
    scaled by sqrt(factor)."""
    result["noise_factor"] = factor
    if result["standard_error"]:
        z = result["change"] / (result["standard_error"] * math.sqrt(factor))
        result["z"] = z
        if result["degrees_of_freedom"]:    # Student's t: few students, heavy tails
            result["p_value"] = float(student_t.cdf(z, result["degrees_of_freedom"]))
        else:
            result["p_value"] = 0.5 * math.erfc(-z / math.sqrt(2.0))    # P(Z <= z)
    elif result["standard_error"] == 0.0 and result["change"] != 0:
        result["z"] = math.copysign(math.inf, result["change"])
        result["p_value"] = 0.0 if result["change"] < 0 else 1.0
    else:
        result["z"] = result["p_value"] = None


def benjamini_hochberg(p_values: Sequence[float]) -> List[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the given order:
    rejecting every test with q <= alpha keeps the expected share of false
    discoveries among the rejected at most alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 1.0
    for rank in range(m, 0, -1):
        i = order[rank - 1]
        running = min(running, p_values[i] * m / rank)
        adjusted[i] = min(1.0, running)
    return adjusted


def _as_date(value) -> Optional[datetime.date]:
    return None if value is None else _date(value)


def day_tests(records, trailing_days: int = 7, min_samples: int = 30, *,
              fdr: float = FALSE_DISCOVERY_RATE, as_of=None) -> dict:
    """Every exercise compared on the latest day (or `as_of`), tested.

    The day's family: each exercise with data on that day is compared with
    its trailing window (``compare``); an exercise without data that day is
    not compared again. Each drop gets a one-sided p-value, z = change /
    (standard error x sqrt(noise factor)); the noise factor is estimated from
    the same comparisons of every exercise on the CALIBRATION_DAYS days
    before (``noise_factor``). Benjamini-Hochberg over the family at false
    discovery rate `fdr` decides which drops are ``significant``. Records
    without log_likelihood_std (older monitor output) have no p-value and
    every drop counts.

    Returns {"date", "fdr", "noise_factor", "calibrated", "calibration_tests",
    "tests": [compare() results plus noise_factor, z, p_value, q_value,
    significant], sorted by change}.
    """
    check_options(trailing_days, min_samples, fdr=fdr)
    data = Records.build(records)
    as_of = _as_date(as_of)
    series = {name: _until(days, as_of) for name, days in data.exercises.items()}
    dates = [usable(days)[-1].date for days in series.values() if usable(days)]
    date = as_of if as_of is not None else max(dates, default=None)
    tests, statistics, own = [], [], {}
    for name, days in series.items():
        earlier = _earlier_statistics(days, trailing_days, min_samples, CALIBRATION_DAYS)
        statistics += earlier
        result = compare(days, trailing_days, min_samples)
        if result is not None and result["date"] == (date and date.isoformat()):
            tests.append(result)
            factor, calibrated = noise_factor(earlier)
            own[name] = factor if calibrated else 1.0
    factor, calibrated = noise_factor(statistics)
    for result in tests:
        _test(result, max(factor, own[result["exercise"]]))
    tested = [r for r in tests if r["p_value"] is not None]
    for result, q in zip(tested, benjamini_hochberg([r["p_value"] for r in tested])):
        result["q_value"] = q
    for result in tests:
        result.setdefault("q_value", None)
        result["significant"] = result["change"] < 0 and (
            result["q_value"] is None or result["q_value"] <= fdr)
    tests.sort(key=lambda r: (r["change"], r["exercise"]))
    return {"date": date.isoformat() if date else None, "fdr": fdr, "noise_factor": factor,
            "calibrated": calibrated, "calibration_tests": len(statistics), "tests": tests}


def regressions(records, trailing_days: int = 7, min_samples: int = 30,
                top: Optional[int] = 10, *, fdr: float = FALSE_DISCOVERY_RATE,
                as_of=None) -> List[dict]:
    """Exercises whose latest day is significantly worse than their trailing
    average, worst first.

    For every exercise (not ``"__all__"``) with data on the latest day of the
    records (or `as_of`), that day is compared with the sample-weighted mean
    of ``mean_log_likelihood`` over its previous ``trailing_days`` days with
    data; exercises with fewer than ``min_samples`` samples on that day or in
    that window are not compared. A drop is significant when
    Benjamini-Hochberg over the day's comparisons keeps it at false discovery
    rate ``fdr`` (``day_tests``). Returns the significant ones as dicts with
    exercise, date, mean_log_likelihood, trailing_mean_log_likelihood, change
    (latest - trailing; negative = worse), samples, trailing_samples,
    trailing_days, trailing_start, trailing_end, model_version,
    trailing_model_versions, standard_error, noise_factor, z, p_value,
    q_value and significant, sorted by change ascending, at most ``top``
    (None: all).
    """
    check_options(trailing_days, min_samples, top, fdr)
    found = [r for r in day_tests(records, trailing_days, min_samples, fdr=fdr,
                                  as_of=as_of)["tests"] if r["significant"]]
    return found if top is None else found[:top]


def overall_change(records, trailing_days: int = 7, min_samples: int = 30, *,
                   as_of=None) -> Optional[dict]:
    """The same comparison for all exercises together (``"__all__"``): a single
    test, ``got_worse`` when its one-sided p-value is at most OVERALL_ALPHA,
    with the larger of the noise factors of its own earlier days and of the
    exercises' (``day_tests``).

    Returns the dict described in ``regressions`` (exercise ``"__all__"``)
    plus ``got_worse``, whether or not it got worse; None when there is no
    earlier day, or too few samples, to compare with. Dates without an
    ``"__all__"`` record use the sample-weighted union of their exercises.
    """
    check_options(trailing_days, min_samples)
    data = Records.build(records)
    days = _until(data.overall, _as_date(as_of))
    result = compare(days, trailing_days, min_samples)
    if result is None:
        return None
    # One series has few earlier days to measure its noise on: take the
    # exercises' factor when it is larger.
    own, _ = noise_factor(_earlier_statistics(days, trailing_days, min_samples,
                                              CALIBRATION_DAYS))
    exercises = day_tests(data, trailing_days, min_samples, as_of=as_of)["noise_factor"]
    _test(result, max(own, exercises))
    result["got_worse"] = result["significant"] = result["change"] < 0 and (
        result["p_value"] is None or result["p_value"] <= OVERALL_ALPHA)
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
