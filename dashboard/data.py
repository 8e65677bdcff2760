"""The rows the charts draw: parsed records (models.regressions) as JSON-ready
lists of dicts, one dataset per kind of row.

Time is an integer count of milliseconds since 1970-01-01 UTC (what a
Vega-Lite temporal field takes), computed from the date's ordinal. No date is
ever shifted by a timedelta, so every date Python holds, 0001-01-01 to
9999-12-31, is drawn (JavaScript dates reach far beyond both). A day's point
sits at its midnight (``t``, where its tick label is), and the day owns the
half days on either side: version changes are drawn on the edge before the
day, and the x domain runs from half a day before the first day to half a
day after the last.

Lines break where days are missing: every drawn field ``f`` gets a segment id
``f_seg`` (consecutive calendar days with a value share one) and ``f_lone``
(a day with no neighbour, always drawn as a point).
"""

import dataclasses
import datetime
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from models.regressions import Day, trailing_series, version_changes

DAY_MS = 86_400_000
_EPOCH = datetime.date(1970, 1, 1).toordinal()


def day_start(date: datetime.date) -> int:
    return (date.toordinal() - _EPOCH) * DAY_MS


@dataclasses.dataclass(frozen=True)
class Span:
    """The days the time charts cover, first to last inclusive."""
    first: datetime.date
    last: datetime.date

    @property
    def days(self) -> int:
        return self.last.toordinal() - self.first.toordinal() + 1

    @property
    def domain(self) -> Tuple[int, int]:
        """Half a day either side of the first and last midnights (both ends
        stay inside years 0 .. 9999, which d3 prints as four digits)."""
        return day_start(self.first) - DAY_MS // 2, day_start(self.last) + DAY_MS // 2

    @property
    def one_year(self) -> bool:
        return self.first.year == self.last.year


def add_segments(rows: List[dict], *fields: str) -> List[dict]:
    """Sets ``<field>_seg`` and ``<field>_lone`` on rows (sorted by ``ordinal``)."""
    for field in fields:
        segment, previous, members = 0, None, {}
        for row in rows:
            if row.get(field) is None:
                continue
            if previous is None or row["ordinal"] - previous != 1:
                segment += 1
            row[f"{field}_seg"] = segment
            members.setdefault(segment, []).append(row)
            previous = row["ordinal"]
        for group in members.values():
            for row in group:
                row[f"{field}_lone"] = len(group) == 1
    return rows


def _day_row(day: Day, trailing: Dict[datetime.date, float]) -> dict:
    has_samples = day.samples > 0
    return {
        "ordinal": day.date.toordinal(),
        "t": day_start(day.date),
        "date": day.date.isoformat(),
        "samples": day.samples,
        "ll": day.ll if has_samples else None,
        "trailing": trailing.get(day.date),
        "observed": day.observed if has_samples else None,
        "predicted": day.predicted if has_samples else None,
        "auc": day.auc,
        "version": day.version,
    }


def overall_rows(overall: Sequence[Day], trailing_days: int, min_samples: int) -> List[dict]:
    trailing = dict(trailing_series(overall, trailing_days, min_samples))
    rows = [_day_row(day, trailing) for day in overall]
    return add_segments(rows, "ll", "trailing", "observed", "predicted", "auc")


def exercise_rows(exercises: Dict[str, List[Day]], names: Iterable[str], trailing_days: int,
                  min_samples: int, worse: Iterable[str] = ()) -> List[dict]:
    """Rows of the named exercises; ``red_point`` marks the latest day of an
    exercise that got worse, ``red`` that day and the day before it when
    consecutive (the step to it)."""
    worse = set(worse)
    out = []
    for name in names:
        days = exercises[name]
        trailing = dict(trailing_series(days, trailing_days, min_samples))
        rows = [dict(_day_row(day, trailing), exercise=name, red=False, red_point=False)
                for day in days]
        for row in rows:
            del row["auc"]      # per exercise AUC is not drawn
        add_segments(rows, "ll", "trailing")
        drawn = [row for row in rows if row["ll"] is not None]
        if name in worse and drawn:
            drawn[-1]["red"] = drawn[-1]["red_point"] = True
            if len(drawn) > 1 and drawn[-1]["ordinal"] - drawn[-2]["ordinal"] == 1:
                drawn[-2]["red"] = True
        out.extend(rows)
    return out


def version_rows(overall: Sequence[Day]) -> List[dict]:
    return [{"t": day_start(date) - DAY_MS // 2, "date": date.isoformat(),
             "label": f"model {label}", "row": i % 2,
             "caption": f"model version {label} from {date.isoformat()}"}
            for i, (date, label) in enumerate(version_changes(overall))]


def extent(values: Sequence[float], min_span: float) -> Optional[Tuple[float, float]]:
    """[low, high] around the values, at least `min_span` tall, padded by 6%."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        middle = (hi + lo) / 2
        lo, hi = middle - min_span / 2, middle + min_span / 2
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def calibration_rows(latest: Day, period: Day) -> List[dict]:
    """Calibration points of the whole period and of the latest day; ``area``
    (px^2) grows with the bin's share of its series' largest bin."""
    rows = []
    for day, series in ((period, "whole period"), (latest, "latest day")):
        points = []
        for b in usable_bins(day):
            predicted = b.predicted
            if predicted is None:
                predicted = (b.low + b.high) / 2
            points.append((b, min(max(predicted, 0.0), 1.0), min(max(b.observed, 0.0), 1.0)))
        largest = max([b.samples for b, _, _ in points] + [1])
        for b, x, y in points:
            radius = 3 + 8 * math.sqrt(b.samples / largest)
            rows.append({"series": series, "bin": b.index, "x": x, "y": y,
                         "low": b.low, "high": b.high, "samples": b.samples,
                         "predicted": b.predicted, "observed": b.observed,
                         "range": bin_range(b), "area": round(math.pi * radius ** 2, 1)})
    return rows


def usable_bins(day: Day):
    return [b for b in day.calibration
            if b.samples > 0 and b.observed is not None
            and (b.predicted is not None or (b.low is not None and b.high is not None))]


def bin_range(b) -> str:
    if b.low is None or b.high is None:
        return str(b.index)
    return f"{b.low:.1f}\u2013{b.high:.1f}"


def picker_names(exercises: Dict[str, List[Day]], limit: int,
                 worse: Sequence[str]) -> Tuple[List[Tuple[int, str]], List[str]]:
    """((total samples, name) of every exercise, busiest first), and the names
    the exercise picker offers: those that got worse, then the `limit` busiest."""
    totals = sorted(((sum(d.samples for d in days), name) for name, days in exercises.items()),
                    key=lambda t: (-t[0], t[1]))
    names = list(dict.fromkeys(list(worse) + [name for _, name in totals[:limit]]))
    return totals, names
