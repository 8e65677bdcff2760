"""Monitoring report: which exercises got worse, and a dashboard to look at.

Input: the daily metric records of the monitoring pipeline, one per
(date, exercise) plus one per date with exercise ``"__all__"`` (every exercise
together)::

    {"date": "2026-11-22", "exercise": "fractions_1", "model_version": "v1",
     "samples": 812, "mean_log_likelihood": -0.55, "observed_correct": 0.71,
     "mean_predicted_correct": 0.69, "auc": 0.72,   # or null
     "calibration": [{"bin": 0, "low": 0.0, "high": 0.1, "samples": 3,
                      "observed_correct": 0.33, "mean_predicted": 0.07}, ...]}

* ``regressions(records)``: the exercises whose latest day's mean log
  likelihood is below their trailing (sample-weighted) average, worst first.
* ``overall_change(records)``: the same comparison for ``"__all__"``, so a
  report can say whether the model as a whole got worse.
* ``render_dashboard(records)``: one self-contained HTML page (inline CSS and SVG; no script, font or image is
  fetched), readable offline and in a mail attachment.

Pure Python (no Beam): transforms/monitoring.py reads the daily files and
writes the page.

Conventions: log likelihoods are natural-log means per attempt, so higher
(closer to 0) is better and a negative change is a regression. Days are
compared as they exist: an exercise's trailing window is its previous
``trailing_days`` days *with data*, not calendar days. Several records for one
(date, exercise) with different model versions are combined (weighted by
samples); for the same model version the last one read wins.
"""

import dataclasses
import datetime
import html
import math
from typing import Dict, List, Optional, Sequence, Tuple

from models.evaluation import weighted_mean

ALL_EXERCISES = "__all__"
# A drop counts as a regression only when it exceeds this many standard
# errors of the difference of means (per-attempt spread from the records):
# with thousands of exercises a plain "below the average" flags half of them.
SIGNIFICANCE_Z = 2.0

# A light, neutral palette (colour-blind safe pairs: blue/orange).
_INK = "#1f2933"
_MUTED = "#5f6b7a"
_GRID = "#e6e9ee"
_AXIS = "#9aa5b1"
_BLUE = "#2f6db0"
_BLUE_LIGHT = "#a9c4e4"
_ORANGE = "#d8772a"
_RED = "#c2372e"
_GREEN = "#2e7d4f"
_PURPLE = "#7b5ea7"
_GREY = "#8a94a3"


# --------------------------------------------------------------------------
# Records

@dataclasses.dataclass(frozen=True)
class _Bin:
    index: int
    low: Optional[float]
    high: Optional[float]
    samples: int
    observed: Optional[float]
    predicted: Optional[float]


@dataclasses.dataclass(frozen=True)
class _Day:
    date: datetime.date
    exercise: str
    versions: Tuple[str, ...]
    samples: int
    ll: Optional[float]
    ll_squared: Optional[float]  # mean of squared log likelihoods: the day's spread
    observed: Optional[float]
    predicted: Optional[float]
    auc: Optional[float]
    calibration: Tuple[_Bin, ...]

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


def _parse(record) -> _Day:
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
        bins.append(_Bin(int(index), _number(item.get("low")), _number(item.get("high")),
                         _count(item.get("samples")), _number(item.get("observed_correct")),
                         _number(item.get("mean_predicted"))))
    ll, spread = (_number(record.get(name)) for name in ("mean_log_likelihood",
                                                         "log_likelihood_std"))
    return _Day(
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


def _combine(days: Sequence[_Day], date: datetime.date, exercise: str) -> _Day:
    """Sample-weighted union of several records (model versions, exercises or
    days). AUC does not combine, so it is kept only for a single record."""
    if len(days) == 1 and days[0].date == date and days[0].exercise == exercise:
        return days[0]
    bins: Dict[int, List[_Bin]] = {}
    for day in days:
        for b in day.calibration:
            bins.setdefault(b.index, []).append(b)
    calibration = tuple(
        _Bin(index,
             next((b.low for b in group if b.low is not None), None),
             next((b.high for b in group if b.high is not None), None),
             sum(b.samples for b in group),
             weighted_mean((b.samples, b.observed) for b in group),
             weighted_mean((b.samples, b.predicted) for b in group))
        for index, group in sorted(bins.items()))
    return _Day(
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
class _Data:
    exercises: Dict[str, List[_Day]]   # exercise -> days sorted by date
    overall: List[_Day]                # "__all__" per date (derived when absent)
    ignored: int                       # malformed records skipped

    @classmethod
    def build(cls, records) -> "_Data":
        if isinstance(records, _Data):
            return records
        if isinstance(records, dict):
            records = [records]
        keyed: Dict[Tuple[str, datetime.date], Dict[Tuple[str, ...], _Day]] = {}
        ignored = 0
        for record in records:
            try:
                day = _parse(record)
            except (ValueError, TypeError):
                ignored += 1
                continue
            keyed.setdefault((day.exercise, day.date), {})[day.versions] = day
        exercises: Dict[str, List[_Day]] = {}
        given_overall: Dict[datetime.date, _Day] = {}
        for (exercise, date), by_version in keyed.items():
            day = _combine(list(by_version.values()), date, exercise)
            if exercise == ALL_EXERCISES:
                given_overall[date] = day
            else:
                exercises.setdefault(exercise, []).append(day)
        by_date: Dict[datetime.date, List[_Day]] = {}
        for days in exercises.values():
            days.sort(key=lambda d: d.date)
            for day in days:
                by_date.setdefault(day.date, []).append(day)
        overall = []
        for date in sorted(set(given_overall) | set(by_date)):
            overall.append(given_overall.get(date)
                           or _combine(by_date[date], date, ALL_EXERCISES))
        return cls(exercises=exercises, overall=overall, ignored=ignored)

    @property
    def empty(self) -> bool:
        return not self.overall


# --------------------------------------------------------------------------
# Regressions

def _check(trailing_days: int, min_samples: int, top: Optional[int] = None) -> None:
    if int(trailing_days) < 1:
        raise ValueError("trailing_days must be at least 1")
    if min_samples < 0:
        raise ValueError("min_samples must be >= 0")
    if top is not None and top < 0:
        raise ValueError("top must be >= 0 (or None for all)")


def _usable(days: Sequence[_Day]) -> List[_Day]:
    return [d for d in days if d.samples > 0 and d.ll is not None]


def _compare(days: Sequence[_Day], trailing_days: int, min_samples: int) -> Optional[dict]:
    """The latest usable day against the sample-weighted mean of the
    `trailing_days` usable days before it; None below `min_samples`."""
    days = _usable(days)
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
    _check(trailing_days, min_samples, top)
    data = _Data.build(records)
    found = []
    for days in data.exercises.values():
        result = _compare(days, trailing_days, min_samples)
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
    _check(trailing_days, min_samples)
    result = _compare(_Data.build(records).overall, trailing_days, min_samples)
    if result is not None:
        result["got_worse"] = result["significant"]
    return result


def _trailing_series(days: Sequence[_Day], trailing_days: int,
                     min_samples: int) -> List[Tuple[datetime.date, float]]:
    days = _usable(days)
    out = []
    for i in range(1, len(days)):
        window = days[max(0, i - trailing_days):i]
        weight = sum(d.samples for d in window)
        if weight >= max(min_samples, 1):
            out.append((days[i].date, sum(d.samples * d.ll for d in window) / weight))
    return out


# --------------------------------------------------------------------------
# Formatting

def _esc(value) -> str:
    return html.escape(str(value), quote=True)


def _minus(text: str) -> str:
    return text.replace("-", "\u2212")


def _fmt(value: Optional[float], digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if not signed and abs(value) < 0.5 * 10 ** -digits:
        value = 0.0     # no "-0.000"
    return _minus(f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}")


def _fmt_int(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{int(round(value)):,}"


def _fmt_pct(value: Optional[float], digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def _fmt_date(date: datetime.date, year: bool = True) -> str:
    text = f"{date:%b} {date.day}"
    return f"{text}, {date.year}" if year else text


def _decimals(step: float) -> int:
    for digits in range(7):
        if abs(round(step, digits) - step) < 1e-9 * max(1.0, abs(step)):
            return digits
    return 6


def _tick_formatter(ticks: Sequence[float], step: float, counts: bool = False):
    if not counts:
        digits = _decimals(step)
        return lambda v: _fmt(v, digits)
    top = max((abs(t) for t in ticks), default=0)
    unit, suffix = (1e6, "M") if top >= 1e6 else (1e3, "k") if top >= 1e4 else (1, "")
    digits = _decimals(step / unit)

    def fmt(v):
        if v == 0:
            return "0"
        return f"{v / unit:,.{digits}f}{suffix}"
    return fmt


def _nice_ticks(lo: float, hi: float, count: int = 5) -> Tuple[float, float, List[float], float]:
    """Round tick values covering [lo, hi]: (start, end, ticks, step)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        lo, hi = 0.0, 1.0
    if hi - lo <= 1e-12:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))
    start = math.floor(lo / step + 1e-9) * step
    end = math.ceil(hi / step - 1e-9) * step
    n = int(round((end - start) / step))
    return start, end, [start + i * step for i in range(n + 1)], step


def _text_width(text: str, size: float) -> float:
    return 0.58 * size * len(text)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


# --------------------------------------------------------------------------
# SVG charts

@dataclasses.dataclass
class _Series:
    name: str
    color: str
    points: List[Tuple[datetime.date, float, str]]   # date, value, tooltip
    width: float = 2.0
    dash: str = ""
    markers: bool = True
    last_color: str = ""     # draw the last day (and the step to it) in this colour


class _TimeAxis:
    """Days as bands: a day's point sits in the middle of its band."""

    def __init__(self, first: datetime.date, last: datetime.date, left: float, width: float):
        self.first, self.days = first, (last - first).days + 1
        self.left, self.width = left, width

    @property
    def band(self) -> float:
        return self.width / self.days

    def x(self, date: datetime.date) -> float:
        return self.left + ((date - self.first).days + 0.5) * self.band

    def edge(self, date: datetime.date) -> float:
        return self.left + (date - self.first).days * self.band

    def ticks(self, max_ticks: int) -> List[datetime.date]:
        if self.days <= 1:
            return [self.first]
        step = next((s for s in (1, 2, 3, 7, 14, 28, 56, 91, 182, 364)
                     if self.days / s <= max_ticks), 728)
        last = self.first + datetime.timedelta(days=self.days - 1)
        if step >= 7:   # weekly and longer ticks on Mondays
            start = self.first + datetime.timedelta(days=-self.first.weekday() % 7)
        else:
            start = self.first
        ticks = []
        day = start
        while day <= last:
            ticks.append(day)
            day += datetime.timedelta(days=step)
        return ticks


def _path(points: Sequence[Tuple[float, float, datetime.date]]) -> str:
    """An SVG path through (x, y) points, broken where days are missing."""
    parts, previous = [], None
    for x, y, date in points:
        joined = previous is not None and (date - previous).days == 1
        parts.append(f"{'L' if joined else 'M'}{x:.1f},{y:.1f}")
        previous = date
    return " ".join(parts)


def _time_chart(*, first: datetime.date, last: datetime.date, width: int, height: int,
                series: Sequence[_Series] = (),
                bars: Sequence[Tuple[datetime.date, float, str]] = (),
                bar_color: str = _BLUE_LIGHT, y_title: str = "", counts: bool = False,
                zero_based: bool = False, min_span: float = 0.0,
                versions: Sequence[Tuple[datetime.date, str]] = (), compact: bool = False,
                label: str = "") -> str:
    font = 10 if compact else 11.5
    top = 8 if compact else (38 if versions else 12)
    left = 44 if compact else 66
    right = 8 if compact else 14
    bottom = 20 if compact else 40 if first.year == last.year else 52
    plot_w, plot_h = width - left - right, height - top - bottom
    axis = _TimeAxis(first, last, left, plot_w)

    values = [v for s in series for _, v, _ in s.points] + [v for _, v, _ in bars]
    if zero_based or not values:
        lo, hi = 0.0, max(values + [0.0]) or 1.0
    else:
        lo, hi = min(values), max(values)
        if hi - lo < min_span:
            middle = (hi + lo) / 2
            lo, hi = middle - min_span / 2, middle + min_span / 2
        pad = (hi - lo) * 0.06
        lo, hi = lo - pad, hi + pad
    y0, y1, yticks, ystep = _nice_ticks(lo, hi, 3 if compact else 5)
    if zero_based:
        y0 = 0.0
        yticks = [t for t in yticks if t >= 0]
    fmt = _tick_formatter(yticks, ystep, counts)

    def y(value):
        return top + plot_h * (1 - (value - y0) / ((y1 - y0) or 1))

    out = [f'<svg viewBox="0 0 {width} {height}" class="chart" role="img" '
           f'aria-label="{_esc(label)}" font-size="{font}">']
    # horizontal grid and y tick labels
    for t in yticks:
        yy = y(t)
        out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{yy:.1f}" y2="{yy:.1f}" '
                   f'stroke="{_GRID}" stroke-width="1"/>')
        out.append(f'<text x="{left - 6}" y="{yy + font * 0.35:.1f}" text-anchor="end" '
                   f'fill="{_MUTED}">{_esc(fmt(t))}</text>')
    if y_title and not compact:
        cy = top + plot_h / 2
        out.append(f'<text transform="translate(14,{cy:.1f}) rotate(-90)" text-anchor="middle" '
                   f'fill="{_MUTED}">{_esc(y_title)}</text>')
    # x axis
    base = top + plot_h
    out.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}" '
               f'stroke="{_AXIS}" stroke-width="1"/>')
    if compact:
        ticks = [first] if first == last else [first, last]
    else:
        ticks = axis.ticks(max(2, int(plot_w // 80)))
    previous_year = None
    for i, day in enumerate(ticks):
        xx = axis.x(day)
        anchor = "middle"
        if compact and len(ticks) == 2:
            anchor = "start" if i == 0 else "end"
            xx = axis.edge(day) if i == 0 else axis.edge(day) + axis.band
        out.append(f'<line x1="{axis.x(day):.1f}" x2="{axis.x(day):.1f}" y1="{base}" '
                   f'y2="{base + 4}" stroke="{_AXIS}"/>')
        out.append(f'<text x="{xx:.1f}" y="{base + font + 5:.1f}" text-anchor="{anchor}" '
                   f'fill="{_MUTED}">{_esc(_fmt_date(day, year=False))}</text>')
        if not compact and day.year != previous_year and first.year != last.year:
            out.append(f'<text x="{xx:.1f}" y="{base + 2 * font + 8:.1f}" text-anchor="middle" '
                       f'fill="{_MUTED}">{day.year}</text>')
        previous_year = day.year
    if not compact:
        caption = "date (UTC)" + (f", {first.year}" if first.year == last.year else "")
        out.append(f'<text x="{left + plot_w:.1f}" y="{height - 4}" text-anchor="end" '
                   f'fill="{_MUTED}">{_esc(caption)}</text>')
    # model version changes: a dashed line at the start of the first day of the
    # new version, labelled above the plot (labels that would collide drop a row)
    label_ends = [-1e9, -1e9]
    for day, text in versions:
        xx = axis.edge(day)
        out.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{top - (0 if compact else 4)}" '
                   f'y2="{base}" stroke="{_PURPLE}" stroke-width="1.2" stroke-dasharray="4 3">'
                   f'<title>{_esc(f"model version {text} from {day.isoformat()}")}</title></line>')
        if compact:
            continue
        short = _truncate(text, 22)
        caption = f"model {short}"
        w = _text_width(caption, font)
        row = 0 if xx - 3 > label_ends[0] else 1 if xx - 3 > label_ends[1] else 0
        anchor, tx = "start", xx + 4
        if tx + w > width - 2:
            anchor, tx = "end", xx - 4
        ty = top - 8 - (1 - row) * (font + 4)
        out.append(f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{anchor}" fill="{_PURPLE}" '
                   f'font-weight="600">{_esc(caption)}</text>')
        label_ends[row] = tx + w if anchor == "start" else xx
    # bars
    bar_w = max(1.0, min(axis.band * 0.72, 40.0))
    for day, value, tip in bars:
        yy = y(max(value, 0.0))
        out.append(f'<rect x="{axis.x(day) - bar_w / 2:.1f}" y="{yy:.1f}" width="{bar_w:.1f}" '
                   f'height="{max(base - yy, 0.0):.1f}" fill="{bar_color}" rx="1">'
                   f'<title>{_esc(tip)}</title></rect>')
    # lines with markers (markers only when there is room, or for lone days)
    for s in series:
        pts = [(axis.x(d), y(v), d) for d, v, _ in s.points]
        if len(pts) > 1:
            dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
            out.append(f'<path d="{_path(pts)}" fill="none" stroke="{s.color}" '
                       f'stroke-width="{s.width}" stroke-linejoin="round" '
                       f'stroke-linecap="round"{dash}/>')
        dates = {d for _, _, d in pts}
        r = 2.2 if compact else 3.0
        for (xx, yy, d), (_, _, tip) in zip(pts, s.points, strict=True):
            lone = (d - datetime.timedelta(days=1) not in dates
                    and d + datetime.timedelta(days=1) not in dates)
            if s.markers and (lone or axis.band >= (7 if compact else 12)):
                out.append(f'<circle cx="{xx:.1f}" cy="{yy:.1f}" r="{r}" fill="{s.color}" '
                           f'stroke="#fff" stroke-width="1"><title>{_esc(tip)}</title></circle>')
            elif tip:
                out.append(f'<circle cx="{xx:.1f}" cy="{yy:.1f}" r="{r + 2}" fill="transparent">'
                           f'<title>{_esc(tip)}</title></circle>')
        if s.last_color and pts:
            xx, yy, d = pts[-1]
            if len(pts) > 1 and (d - pts[-2][2]).days == 1:
                out.append(f'<line x1="{pts[-2][0]:.1f}" y1="{pts[-2][1]:.1f}" x2="{xx:.1f}" '
                           f'y2="{yy:.1f}" stroke="{s.last_color}" stroke-width="{s.width + 0.6}" '
                           f'stroke-linecap="round"/>')
            out.append(f'<circle cx="{xx:.1f}" cy="{yy:.1f}" r="{r + 0.8}" fill="{s.last_color}" '
                       f'stroke="#fff" stroke-width="1"><title>{_esc(s.points[-1][2])}</title>'
                       f'</circle>')
    out.append("</svg>")
    return "".join(out)


def _calibration_chart(latest: _Day, period: _Day, size: int = 440) -> str:
    left, right, top, bottom = 58, 16, 14, 46
    plot = size - left - max(right, 0)
    plot_h = size - top - bottom

    def x(v):
        return left + plot * v

    def y(v):
        return top + plot_h * (1 - v)

    out = [f'<svg viewBox="0 0 {size} {size}" class="chart calibration" role="img" '
           f'aria-label="calibration: observed versus predicted fraction correct" '
           f'font-size="11.5">']
    for i in range(6):
        t = i / 5
        out.append(f'<line x1="{left}" x2="{left + plot}" y1="{y(t):.1f}" y2="{y(t):.1f}" '
                   f'stroke="{_GRID}"/>')
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + plot_h}" '
                   f'stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{y(t) + 4:.1f}" text-anchor="end" '
                   f'fill="{_MUTED}">{t:.1f}</text>')
        out.append(f'<text x="{x(t):.1f}" y="{top + plot_h + 16:.1f}" text-anchor="middle" '
                   f'fill="{_MUTED}">{t:.1f}</text>')
    out.append(f'<rect x="{left}" y="{top}" width="{plot}" height="{plot_h}" fill="none" '
               f'stroke="{_AXIS}"/>')
    out.append(f'<line x1="{x(0):.1f}" y1="{y(0):.1f}" x2="{x(1):.1f}" y2="{y(1):.1f}" '
               f'stroke="{_GREY}" stroke-width="1.2" stroke-dasharray="5 4"/>')
    out.append(f'<text x="{left + plot / 2:.1f}" y="{size - 8}" text-anchor="middle" '
               f'fill="{_MUTED}">mean predicted P(correct)</text>')
    out.append(f'<text transform="translate(16,{top + plot_h / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" fill="{_MUTED}">observed fraction correct</text>')

    def points(day: _Day):
        pts = []
        for b in day.calibration:
            if b.samples <= 0 or b.observed is None:
                continue
            predicted = b.predicted
            if predicted is None and b.low is not None and b.high is not None:
                predicted = (b.low + b.high) / 2
            if predicted is None:
                continue
            pts.append((min(max(predicted, 0.0), 1.0), min(max(b.observed, 0.0), 1.0), b))
        return pts

    for day, color, name, filled in ((period, _BLUE, "whole period", True),
                                     (latest, _ORANGE, "latest day", False)):
        pts = points(day)
        dmax = max([b.samples for _, _, b in pts] + [1])
        if len(pts) > 1:
            d = " ".join(f"{'M' if i == 0 else 'L'}{x(px):.1f},{y(py):.1f}"
                         for i, (px, py, _) in enumerate(pts))
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.5" '
                       f'stroke-opacity="0.75"/>')
        for px, py, b in pts:
            r = 3 + 8 * math.sqrt(b.samples / dmax)
            tip = (f"{name}, bin {b.index} "
                   f"[{_fmt(b.low, 1)}, {_fmt(b.high, 1)}): {b.samples:,} samples, "
                   f"predicted {_fmt(b.predicted)}, observed {_fmt(b.observed)}")
            fill = color if filled else "#fff"
            opacity = "0.85" if filled else "1"
            out.append(f'<circle cx="{x(px):.1f}" cy="{y(py):.1f}" r="{r:.1f}" fill="{fill}" '
                       f'fill-opacity="{opacity}" stroke="{color}" stroke-width="1.6">'
                       f'<title>{_esc(tip)}</title></circle>')
    out.append("</svg>")
    return "".join(out)


# --------------------------------------------------------------------------
# Page

_CSS = """
:root{--bg:#f5f6f8;--card:#fff;--ink:#1f2933;--muted:#5f6b7a;--line:#e3e7ec;
--red:#c2372e;--green:#2e7d4f;--purple:#7b5ea7;--blue:#2f6db0;--orange:#d8772a}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--ink);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue","Noto Sans",
"DejaVu Sans","Liberation Sans",Arial,sans-serif}
main{max-width:1200px;margin:0 auto;padding:22px 20px 36px}
header h1{font-size:22px;line-height:1.2;margin:0 0 4px;font-weight:650}
header .sub{color:var(--muted)}
h2{font-size:16px;margin:0 0 2px;font-weight:650}
h3{font-size:13px;margin:0;font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.note{color:var(--muted);font-size:12.5px;margin:0 0 10px}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:14px 16px;
margin-top:14px}
.banner{border-radius:8px;padding:10px 14px;margin-top:14px;border:1px solid;font-size:14px}
.banner.bad{background:#fdf0ee;border-color:#efc1bb;color:#8f231b}
.banner.good{background:#eef7f1;border-color:#bfdcc9;color:#1f5c39}
.banner.neutral{background:#f0f2f5;border-color:var(--line);color:var(--muted)}
.kpis{display:grid;grid-template-columns:repeat(auto-fit,minmax(190px,1fr));gap:12px;margin-top:14px}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:11px 14px}
.kpi .label{font-size:11.5px;color:var(--muted);text-transform:uppercase;letter-spacing:.05em}
.kpi .value{font-size:25px;font-weight:650;margin-top:1px;font-variant-numeric:tabular-nums;
white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.kpi .value.long{font-size:17px;line-height:36px}
.kpi .delta{font-size:12.5px;color:var(--muted)}
.kpi .delta.bad{color:var(--red)}.kpi .delta.good{color:var(--green)}
.bad{color:var(--red)}.good{color:var(--green)}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(400px,1fr));gap:14px}
.grid2 > .card{margin-top:0;min-width:0}
.row{display:grid;grid-template-columns:minmax(300px,440px) 1fr;gap:22px;align-items:start}
.for-narrow{display:none}
@media (max-width:760px){.row{grid-template-columns:1fr}.grid2{grid-template-columns:1fr}
.for-wide{display:none}.for-narrow{display:block}}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;font-size:12.5px;color:var(--muted);
margin:2px 0 6px}
.legend span{display:inline-flex;align-items:center;gap:6px}
.legend i{display:inline-block;width:18px;height:0;border-top:2.5px solid var(--c)}
.legend i.dash{border-top-style:dashed}
.legend i.box{width:11px;height:11px;border:0;background:var(--c);border-radius:2px}
.legend i.dot{width:10px;height:10px;border-radius:50%;border:2px solid var(--c);
background:var(--f)}
svg.chart{display:block;width:100%;height:auto;overflow:visible}
.multiples{display:grid;grid-template-columns:repeat(auto-fill,minmax(255px,1fr));gap:10px}
.panel{border:1px solid var(--line);border-radius:6px;padding:8px 10px 4px;min-width:0}
.panel.worse{border-color:#eab8b1;background:#fffaf9}
.panel .meta{display:flex;justify-content:space-between;gap:8px;font-size:11.5px;color:var(--muted);
font-variant-numeric:tabular-nums}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums;font-size:13px}
th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:right;white-space:nowrap}
th{font-size:11.5px;color:var(--muted);font-weight:600;text-transform:uppercase;letter-spacing:.04em;
border-bottom:1.5px solid #cfd5dc}
th.l,td.l{text-align:left}
td.name{max-width:260px;overflow:hidden;text-overflow:ellipsis;font-weight:600}
td.bar{width:120px}
td.bar div{height:8px;background:#e8a59e;border-radius:2px;margin-left:auto}
.tag{display:inline-block;font-size:11px;padding:0 6px;border-radius:9px;background:#efe9f7;
color:var(--purple);margin-left:4px}
.empty{padding:18px;text-align:center;color:var(--muted);background:#f7f8fa;border-radius:6px}
.empty strong{color:var(--green)}
.scroll{overflow-x:auto}
footer{color:var(--muted);font-size:12px;margin-top:18px;line-height:1.5}
"""


def _legend(items: Sequence[Tuple[str, str, str]]) -> str:
    """(kind, colour, text) with kind line, dash, box or dot/ring."""
    spans = []
    for kind, color, text in items:
        if kind == "ring":
            key = f'<i class="dot" style="--c:{color};--f:#fff"></i>'
        elif kind == "dot":
            key = f'<i class="dot" style="--c:{color};--f:{color}"></i>'
        else:
            cls = "" if kind == "line" else f' class="{kind}"'
            key = f'<i{cls} style="--c:{color}"></i>'
        spans.append(f"<span>{key}{_esc(text)}</span>")
    return f'<div class="legend">{"".join(spans)}</div>'


def _responsive(chart, wide: Tuple[int, int], narrow: Tuple[int, int] = (400, 230)) -> str:
    """The chart drawn twice, for wide and for narrow screens (CSS picks one),
    so its text stays legible on a phone without any script."""
    return (f'<div class="for-wide">{chart(*wide)}</div>'
            f'<div class="for-narrow">{chart(*narrow)}</div>')


def _version_changes(days: Sequence[_Day]) -> List[Tuple[datetime.date, str]]:
    changes, previous = [], None
    for day in days:
        if not day.versions:
            continue
        if previous is not None and day.versions != previous:
            changes.append((day.date, day.version))
        previous = day.versions
    return changes


def _plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _change_text(change: Optional[dict]) -> Tuple[str, str]:
    """(css class, text) for a headline delta."""
    if change is None:
        return "", "no earlier days to compare with"
    cls = "bad" if change["change"] < 0 else "good"
    arrow = "\u25bc" if change["change"] < 0 else "\u25b2"
    return cls, (f"{arrow} {_fmt(change['change'], signed=True)} vs the previous "
                 f"{_plural(change['trailing_days'], 'day')} "
                 f"({_fmt(change['trailing_mean_log_likelihood'])})")


def _no_data_page(title: str, ignored: int) -> str:
    extra = (f"<p class=\"note\">{ignored:,} malformed record{'s' if ignored != 1 else ''} "
             f"ignored.</p>") if ignored else ""
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
            f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body><main>"
            f"<header><h1>{_esc(title)}</h1></header>"
            f"<div class=\"card\"><div class=\"empty\">There is no monitoring data to show: "
            f"no daily metric records were given.</div>{extra}</div></main></body></html>\n")


def render_dashboard(records, title: str = "Knowledge model monitoring", *,
                     trailing_days: int = 7, min_samples: int = 30, top: int = 10,
                     multiples: int = 12, generated_at: Optional[str] = None) -> str:
    """One self-contained HTML page (inline CSS and SVG, no scripts or fetches).

    Shows the latest day's headline numbers and model version(s); mean log
    likelihood and samples per day for all exercises together, with model
    version changes marked; observed vs predicted fraction correct and AUC per
    day; small multiples of the `multiples` exercises with the most samples;
    a calibration plot (latest day and whole period); and the `top` exercises
    that got worse the most versus their trailing average (``regressions``).
    """
    _check(trailing_days, min_samples, top)
    data = _Data.build(records)
    if data.empty:
        return _no_data_page(title, data.ignored)
    overall = data.overall
    first, last = overall[0].date, overall[-1].date
    latest = overall[-1]
    n_days = len(overall)
    change = overall_change(data, trailing_days, min_samples)
    worse = regressions(data, trailing_days, min_samples, top)
    all_versions = sorted({v for d in overall for v in d.versions}.union(
        *({v for d in days for v in d.versions} for days in data.exercises.values())))
    changes = _version_changes(overall)
    if generated_at is None:
        generated_at = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
             f"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
             f"<title>{_esc(title)} \u2014 {_esc(last.isoformat())}</title>"
             f"<style>{_CSS}</style></head><body><main>"]
    period = (f"{_fmt_date(first)} \u2013 {_fmt_date(last)}" if first != last
              else _fmt_date(first))
    parts.append(
        f"<header><h1>{_esc(title)}</h1><div class=\"sub\">{_esc(period)} \u00b7 "
        f"{_plural(n_days, 'day')} with data \u00b7 "
        f"{_plural(len(data.exercises), 'exercise')} \u00b7 "
        f"model version{'s' if len(all_versions) != 1 else ''} "
        f"{_esc(', '.join(all_versions) or 'unknown')} \u00b7 generated {_esc(generated_at)}"
        f"</div></header>")

    # (a) status banner and headline numbers for the latest day
    if change is None:
        parts.append(f"<div class=\"banner neutral\">Latest day {_esc(latest.date.isoformat())}: "
                     f"not enough history to compare with (at least one earlier day and "
                     f"{min_samples:,} samples on each side are needed).</div>")
    else:
        verdict = ("bad", "The model as a whole got worse") if change["got_worse"] else (
            "good", "No model-wide regression")
        parts.append(
            f"<div class=\"banner {verdict[0]}\"><strong>{verdict[1]}</strong> on "
            f"{_esc(change['date'])}: mean log likelihood "
            f"{_esc(_fmt(change['mean_log_likelihood']))} vs "
            f"{_esc(_fmt(change['trailing_mean_log_likelihood']))} over the previous "
            f"{_plural(change['trailing_days'], 'day')} "
            f"(change {_esc(_fmt(change['change'], signed=True))}"
            + (f", standard error {_esc(_fmt(change['standard_error']))}"
               if change["standard_error"] is not None else "") + ").</div>")

    usable = _usable(overall)
    prior = overall[:-1][-trailing_days:]
    if not prior:
        samples_delta = "first day with data"
    else:
        average = sum(d.samples for d in prior) / len(prior)
        samples_delta = (
            _minus(f"{100 * (latest.samples - average) / average:+.0f}% vs "
                   f"{_fmt_int(average)} a day over the previous {_plural(len(prior), 'day')}")
            if average else "no samples on the previous days")
    ll_cls, ll_delta = _change_text(change)
    version_note = (f"since {_fmt_date(changes[-1][0])}" if changes
                    else "every day shown" if n_days > 1 else "")
    if len(latest.versions) > 1:
        version_note = "several versions on this day"
    if latest.observed is None or latest.predicted is None:
        correct_note = "no predictions"
    else:
        gap = 100 * (latest.predicted - latest.observed)
        correct_note = _minus(f"predicted {_fmt_pct(latest.predicted)} ({gap:+.1f} points)")
    kpis = [
        ("Samples", _fmt_int(latest.samples), "", samples_delta),
        ("Mean log likelihood", _fmt(latest.ll), ll_cls, ll_delta),
        ("AUC", _fmt(latest.auc), "",
         "all exercises together" if latest.auc is not None else "not available for this day"),
        ("Observed correct", _fmt_pct(latest.observed), "", correct_note),
        ("Model version", latest.version, "", version_note),
    ]
    parts.append("<div class=\"kpis\">")
    for label, value, cls, delta in kpis:
        parts.append(f"<div class=\"kpi\"><div class=\"label\">{_esc(label)}</div>"
                     f"<div class=\"value{' long' if len(value) > 11 else ''}\" "
                     f"title=\"{_esc(value)}\">{_esc(value)}</div>"
                     f"<div class=\"delta {cls}\">{_esc(delta)}</div></div>")
    parts.append("</div>")
    parts.append(f"<p class=\"note\" style=\"margin-top:8px\">Headline numbers are for the latest "
                 f"day, {_esc(_fmt_date(latest.date))} (UTC), all exercises together.</p>")

    # (b) all exercises together over time
    trailing = _trailing_series(overall, trailing_days, min_samples)
    ll_series = [
        _Series("daily mean", _BLUE, [
            (d.date, d.ll, f"{d.date.isoformat()}: {_fmt(d.ll)} ({d.samples:,} samples, "
                           f"model {d.version})") for d in usable]),
        _Series("trailing mean", _GREY, [
            (date, value, f"{date.isoformat()}: trailing mean {_fmt(value)}")
            for date, value in trailing], width=1.6, dash="5 4", markers=False),
    ]
    legend = [("line", _BLUE, "mean log likelihood per day")]
    if trailing:
        legend.append(("dash", _GREY, f"sample-weighted mean of the previous {trailing_days} days"))
    if changes:
        legend.append(("dash", _PURPLE, "model version change"))
    parts.append("<section class=\"card\"><h2>Mean log likelihood, all exercises</h2>"
                 "<p class=\"note\">Natural log of the predicted probability of the observed "
                 "answer, averaged over attempts (nats per attempt; higher is better).</p>")
    parts.append(_legend(legend))
    parts.append(_responsive(lambda w, h: _time_chart(
        first=first, last=last, width=w, height=h, series=ll_series,
        y_title="log likelihood (nats)", min_span=0.02, versions=changes,
        label="mean log likelihood per day, all exercises"), wide=(1160, 300)))
    parts.append("</section>")

    parts.append("<section class=\"card\"><h2>Samples per day, all exercises</h2>"
                 "<p class=\"note\">Attempts scored by the model each day.</p>")
    parts.append(_responsive(lambda w, h: _time_chart(
        first=first, last=last, width=w, height=h, counts=True, zero_based=True,
        bars=[(d.date, d.samples, f"{d.date.isoformat()}: {d.samples:,} samples")
              for d in overall],
        y_title="attempts", versions=changes, label="samples per day, all exercises"),
        wide=(1160, 190), narrow=(400, 170)))
    parts.append("</section>")

    correct_series = [
        _Series("observed", _BLUE, [(d.date, d.observed, f"{d.date.isoformat()}: observed "
                                     f"{_fmt_pct(d.observed)}")
                                    for d in overall if d.observed is not None and d.samples]),
        _Series("predicted", _ORANGE, [(d.date, d.predicted, f"{d.date.isoformat()}: predicted "
                                        f"{_fmt_pct(d.predicted)}")
                                       for d in overall if d.predicted is not None and d.samples],
                dash="6 3"),
    ]
    auc_points = [(d.date, d.auc, f"{d.date.isoformat()}: AUC {_fmt(d.auc)}")
                  for d in overall if d.auc is not None]
    parts.append("<div class=\"grid2\" style=\"margin-top:14px\">")
    parts.append("<section class=\"card\"><h2>Fraction correct: observed vs predicted</h2>"
                 "<p class=\"note\">All exercises; a gap between the lines is miscalibration.</p>")
    parts.append(_legend([("line", _BLUE, "observed"), ("dash", _ORANGE, "mean predicted")]))
    parts.append(_responsive(lambda w, h: _time_chart(
        first=first, last=last, width=w, height=h, series=correct_series,
        y_title="fraction correct", min_span=0.04, versions=changes,
        label="observed and predicted fraction correct"), wide=(560, 220)))
    parts.append("</section><section class=\"card\"><h2>AUC, all exercises</h2>"
                 "<p class=\"note\">How well predictions rank correct above wrong answers "
                 "(0.5 = chance).</p>")
    if auc_points:
        parts.append(_legend([("line", _BLUE, "AUC per day")]))
        parts.append(_responsive(lambda w, h: _time_chart(
            first=first, last=last, width=w, height=h,
            series=[_Series("AUC", _BLUE, auc_points)], y_title="AUC", min_span=0.04,
            versions=changes, label="AUC per day"), wide=(560, 220)))
    else:
        parts.append("<div class=\"empty\">No AUC in these records (null: one class only, or "
                     "not computed).</div>")
    parts.append("</section></div>")

    # (e) regressions
    parts.append(f"<section class=\"card\"><h2>Exercises that got worse</h2>"
                 f"<p class=\"note\">Each exercise's latest day against the sample-weighted "
                 f"mean of its previous {_plural(trailing_days, 'day')} with data; exercises with "
                 f"fewer than {min_samples:,} samples on the latest day or in that window are "
                 f"left out. A drop is listed when it exceeds {SIGNIFICANCE_Z:g} standard errors "
                 f"of the difference (from the per-attempt spread), so day-to-day noise is not. "
                 f"Worst first, at most {top}.</p>")
    if worse:
        biggest = max(-r["change"] for r in worse) or 1.0
        rows = []
        for i, r in enumerate(worse, 1):
            trailing_versions = r["trailing_model_versions"]
            version = _esc(r["model_version"])
            if trailing_versions and trailing_versions != [r["model_version"]]:
                version += (f"<span class=\"tag\" title=\"trailing window used "
                            f"{_esc(', '.join(trailing_versions))}\">was "
                            f"{_esc(_truncate(', '.join(trailing_versions), 20))}</span>")
            rows.append(
                f"<tr><td>{i}</td><td class=\"l name\" title=\"{_esc(r['exercise'])}\">"
                f"{_esc(r['exercise'])}</td><td class=\"l\">{_esc(r['date'])}</td>"
                f"<td>{_esc(_fmt(r['mean_log_likelihood']))}</td>"
                f"<td>{_esc(_fmt(r['trailing_mean_log_likelihood']))}</td>"
                f"<td class=\"bad\" title=\"{r['change']:.6f}\"><strong>"
                f"{_esc(_fmt(r['change'], signed=True))}</strong></td>"
                f"<td class=\"bar\"><div style=\"width:{100 * -r['change'] / biggest:.0f}%\">"
                f"</div></td>"
                f"<td>{r['samples']:,}</td><td>{r['trailing_samples']:,}</td>"
                f"<td class=\"l\">{version}</td></tr>")
        parts.append(
            "<div class=\"scroll\"><table><thead><tr><th>#</th><th class=\"l\">Exercise</th>"
            "<th class=\"l\">Latest day</th><th>Log lik.</th><th>Trailing</th><th>Change</th>"
            "<th></th><th>Samples</th><th>Trailing samples</th><th class=\"l\">Model version</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")
    else:
        compared = sum(1 for days in data.exercises.values()
                       if _compare(days, trailing_days, min_samples) is not None)
        reason = (f"none of the {compared:,} exercises compared got worse" if compared else
                  "no exercise has enough history to compare yet")
        parts.append(f"<div class=\"empty\"><strong>No regressions</strong>: {_esc(reason)}."
                     f"</div>")
    parts.append("</section>")

    # (c) small multiples of the busiest exercises
    totals = sorted(((sum(d.samples for d in days), name) for name, days in data.exercises.items()),
                    key=lambda t: (-t[0], t[1]))[:multiples]
    if totals:
        worse_names = {r["exercise"]: r for r in worse}
        shown = len(totals)
        parts.append(f"<section class=\"card\"><h2>Mean log likelihood per exercise</h2>"
                     f"<p class=\"note\">The {_plural(shown, 'exercise')} with the most samples "
                     f"over the period, largest first; each panel has its own scale (at least "
                     f"0.1 nats tall). A red last day: the exercise is in the table above. "
                     f"Gaps are days without data.</p><div class=\"multiples\">")
        for total, name in totals:
            days = data.exercises[name]
            points = [(d.date, d.ll, f"{d.date.isoformat()}: {_fmt(d.ll)} ({d.samples:,} samples)")
                      for d in _usable(days)]
            regression = worse_names.get(name)
            line = _Series(name, _BLUE, points, width=1.6, last_color=_RED if regression else "")
            chart = _time_chart(first=first, last=last, width=280, height=120,
                                series=[line], min_span=0.1,
                                versions=changes, compact=True,
                                label=f"mean log likelihood per day, {name}")
            compared = regression or _compare(days, trailing_days, min_samples)
            if compared is not None:
                status = (f"<span class=\"{'bad' if compared['change'] < 0 else 'good'}\" "
                          f"title=\"latest {_esc(_fmt(compared['mean_log_likelihood']))}, trailing "
                          f"{_esc(_fmt(compared['trailing_mean_log_likelihood']))}\">"
                          f"{_esc(_fmt(compared['change'], signed=True))} vs trailing</span>")
            elif points:
                status = f"latest {_esc(_fmt(points[-1][1]))}"
            else:
                status = "no log likelihood"
            parts.append(
                f"<div class=\"panel\">"
                f"<h3 title=\"{_esc(name)}\">{_esc(name)}</h3>"
                f"<div class=\"meta\"><span>{total:,} samples</span>{status}</div>"
                f"{chart}</div>")
        parts.append("</div></section>")

    # (d) calibration
    period_day = _combine(overall, last, ALL_EXERCISES)
    parts.append("<section class=\"card\"><h2>Calibration, all exercises</h2>"
                 "<p class=\"note\">Per bin of predicted P(correct): the mean prediction against "
                 "the observed fraction correct. Point area grows with the bin's samples.</p>"
                 "<div class=\"row\"><div>")
    if any(b.samples for b in period_day.calibration):
        parts.append(_legend([("dot", _BLUE, f"whole period ({period_day.samples:,} samples)"),
                              ("ring", _ORANGE, f"latest day ({latest.samples:,} samples)"),
                              ("dash", _GREY, "perfect calibration")]))
        parts.append(_calibration_chart(latest, period_day))
    else:
        parts.append("<div class=\"empty\">No calibration bins in these records.</div>")
    parts.append("</div><div class=\"scroll\">")
    latest_bins = {b.index: b for b in latest.calibration}
    rows = []
    for b in period_day.calibration:
        lb = latest_bins.get(b.index)
        bounded = b.low is not None and b.high is not None
        rng = f"{_fmt(b.low, 1)}\u2013{_fmt(b.high, 1)}" if bounded else str(b.index)
        rows.append(
            f"<tr><td class=\"l\">{_esc(rng)}</td>"
            f"<td>{_fmt_int(lb.samples if lb else 0)}</td>"
            f"<td>{_esc(_fmt(lb.predicted if lb else None))}</td>"
            f"<td>{_esc(_fmt(lb.observed if lb else None))}</td>"
            f"<td>{_fmt_int(b.samples)}</td><td>{_esc(_fmt(b.predicted))}</td>"
            f"<td>{_esc(_fmt(b.observed))}</td></tr>")
    if rows:
        parts.append("<table><thead><tr><th class=\"l\" rowspan=\"2\">Predicted</th>"
                     "<th colspan=\"3\" style=\"text-align:center\">Latest day</th>"
                     "<th colspan=\"3\" style=\"text-align:center\">Whole period</th></tr>"
                     "<tr><th>Samples</th><th>Mean pred.</th><th>Observed</th>"
                     "<th>Samples</th><th>Mean pred.</th><th>Observed</th></tr></thead>"
                     "<tbody>" + "".join(rows) + "</tbody></table>")
    parts.append("</div></div></section>")

    notes = []
    if data.ignored:
        notes.append(f"{data.ignored:,} malformed record{'s' if data.ignored != 1 else ''} "
                     f"ignored.")
    parts.append(
        "<footer>Log likelihoods are natural-log means per attempt (nats); a negative change "
        "is a regression. Dates are UTC. Dashed purple lines mark the first day a new model "
        "version was scored. Hover over points and bars for exact values. "
        + _esc(" ".join(notes)) + "</footer>")
    parts.append("</main></body></html>\n")
    return "".join(parts)
