"""Numbers, dates and counts as the page shows them (also Jinja filters).

Negative numbers use the typographic minus (U+2212), as the charts' d3
formats do; "n/a" stands for a missing value. These return plain text: the
template escapes it.
"""

import datetime
from typing import Optional


def minus(text: str) -> str:
    return text.replace("-", "\u2212")


def fmt(value: Optional[float], digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if not signed and abs(value) < 0.5 * 10 ** -digits:
        value = 0.0     # no "-0.000"
    return minus(f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}")


def fmt_int(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{round(value):,}"


def fmt_pct(value: Optional[float], digits: int = 1) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def year(date: datetime.date) -> str:
    """Four digits below year 1000 too ("0001"), so an early year reads as one."""
    return f"{date.year:04d}"


def fmt_date(date: datetime.date, with_year: bool = True) -> str:
    text = f"{date:%b} {date.day}"
    return f"{text}, {year(date)}" if with_year else text


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "\u2026"


FILTERS = {"fmt": fmt, "fmt_int": fmt_int, "fmt_pct": fmt_pct, "fmt_date": fmt_date,
           "plural": plural, "truncate_text": truncate}
