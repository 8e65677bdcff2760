"""Value types of numeric options: each rule stated once, as an argparse
`type=`.

    group.add_argument("--min_samples", type=positive_int, default=30)

argparse applies the type to the command-line text (and to a default given
as text) and reports a refusal as "argument --min_samples: must be at least 1,
got 0", so every entry point refuses a bad value while it parses, naming the
option, before any work (pipelines.options.checked_options turns that into a
one-line usage error, exit status 2). templates/generate.py derives each Flex
Template parameter's validation regex from the same type.

No Beam import: the small tools (generate_sample) use these too.
"""

import argparse
import math
import re

# Decimal numbers only: int() and float() alone would also take "1_000",
# " 7 ", non-ASCII digits, "nan" and "inf", which no template regex accepts.
_INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)
_NUMBER = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?", re.ASCII)


def _int(text) -> int:
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not isinstance(text, str) or not _INTEGER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer")
    return int(text)


def _float(text) -> float:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    elif isinstance(text, str) and _NUMBER.fullmatch(text):
        value = float(text)
    else:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number")
    if not math.isfinite(value):  # e.g. 1e999
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text) -> int:
    """An integer >= 1 (counts, sizes, limits)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text) -> int:
    """An integer >= 0 (day counts, thresholds, seeds)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def fraction_in_0_1(text) -> float:
    """A number in [0, 1): a fraction of something that must leave some behind."""
    value = _float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value:g}")
    return value


def non_negative_float(text) -> float:
    """A finite number >= 0 (penalties)."""
    value = _float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value:g}")
    return value


def positive_float(text) -> float:
    """A finite number > 0 (step sizes)."""
    value = _float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value:g}")
    return value


class IntBetween:
    """An integer in [low, high], as a type: `type=IntBetween(1, 500)`."""

    def __init__(self, low: int, high: int):
        if not 0 <= low <= high:
            raise ValueError(f"IntBetween needs 0 <= low <= high, got {low}, {high}")
        self.low, self.high = low, high

    def __call__(self, text) -> int:
        value = _int(text)
        if not self.low <= value <= self.high:
            raise argparse.ArgumentTypeError(
                f"must be in {self.low}..{self.high}, got {value}")
        return value

    def __repr__(self):
        return f"IntBetween({self.low}, {self.high})"
