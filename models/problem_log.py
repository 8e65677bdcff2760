"""The ProblemLog record: one student attempt at one problem of an exercise.

Parsing is strict and total: every raw record either becomes a ProblemLog or
raises InvalidProblemLog with a short machine-readable reason, so the pipeline
can dead-letter it instead of dying or guessing.
"""

import datetime
import math
from typing import Any, Mapping, NamedTuple, Optional

FIELDS = (
    "user",
    "exercise",
    "problem_type",
    "problem_number",
    "time_done",
    "correct",
    "time_taken",
    "count_hints",
    "count_attempts",
)
REQUIRED_FIELDS = ("user", "exercise", "time_done", "correct")
OPTIONAL_INT_FIELDS = ("time_taken", "count_hints", "count_attempts")

# The schema BigQuery uses when it exports the ProblemLog table to Avro:
# nullable columns are unions with null, TIMESTAMP is timestamp-micros.
PROBLEM_LOG_AVRO_SCHEMA = {
    "type": "record",
    "name": "Root",
    "fields": [
        {"name": "user", "type": "string"},
        {"name": "exercise", "type": "string"},
        {"name": "problem_type", "type": ["null", "string"], "default": None},
        {"name": "problem_number", "type": ["null", "long"], "default": None},
        {
            "name": "time_done",
            "type": {"type": "long", "logicalType": "timestamp-micros"},
        },
        {"name": "correct", "type": "boolean"},
        {"name": "time_taken", "type": ["null", "long"], "default": None},
        {"name": "count_hints", "type": ["null", "long"], "default": None},
        {"name": "count_attempts", "type": ["null", "long"], "default": None},
    ],
}

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)
_MIN_MICROS = (datetime.datetime.min.replace(tzinfo=datetime.timezone.utc) - _EPOCH) // _MICROSECOND
_MAX_MICROS = (datetime.datetime.max.replace(tzinfo=datetime.timezone.utc) - _EPOCH) // _MICROSECOND
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})


class InvalidProblemLog(ValueError):
    """A raw record that cannot be a ProblemLog; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ProblemLog(NamedTuple):
    """A validated attempt. time_done is integer microseconds since the epoch
    (exact, sortable, and what BigQuery stores)."""

    user: str
    exercise: str
    problem_type: str
    problem_number: Optional[int]
    time_done: int
    correct: bool
    time_taken: Optional[int] = None
    count_hints: Optional[int] = None
    count_attempts: Optional[int] = None


def parse_column_mapping(spec: str) -> dict:
    """'user=student_id,exercise=skill' -> {'user': 'student_id', ...}."""
    mapping = {}
    for item in filter(None, (part.strip() for part in (spec or "").split(","))):
        field, sep, column = item.partition("=")
        field, column = field.strip(), column.strip()
        if not sep or not column:
            raise ValueError(
                f"column mapping item {item!r} is not FIELD=COLUMN")
        if field not in FIELDS:
            raise ValueError(
                f"column mapping names unknown field {field!r}; "
                f"fields are {', '.join(FIELDS)}")
        if field in mapping:
            raise ValueError(f"column mapping names {field!r} twice")
        mapping[field] = column
    return mapping


def _missing(value: Any) -> bool:
    return value is None or (type(value) is str and not value.strip())


def parse_timestamp_micros(value: Any) -> int:
    """datetime, epoch seconds (number or numeric string) or ISO-8601 text
    (BigQuery's '2024-01-02 03:04:05 UTC' included) -> epoch microseconds.
    Naive datetimes are taken as UTC. Instants outside years 1-9999 (BigQuery's
    TIMESTAMP range; e.g. epoch milliseconds passed as seconds) are rejected."""
    micros = _timestamp_micros(value)
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise InvalidProblemLog("bad_timestamp", f"{value!r} is outside years 1-9999")
    return micros


def _timestamp_micros(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidProblemLog("bad_timestamp", repr(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return (value - _EPOCH) // _MICROSECOND
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidProblemLog("bad_timestamp", repr(value))
        return int(round(value * 1_000_000))
    if isinstance(value, str):
        text = value.strip()
        try:
            return _timestamp_micros(float(text))
        except ValueError:
            pass
        if text.endswith(" UTC"):
            text = text[:-4] + "+00:00"
        try:
            return _timestamp_micros(datetime.datetime.fromisoformat(text))
        except ValueError:
            raise InvalidProblemLog("bad_timestamp", repr(value)) from None
    raise InvalidProblemLog("bad_timestamp", repr(value))


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidProblemLog("bad_boolean", repr(value))


def _parse_int(field: str, value: Any) -> int:
    """An INT64: ints, integral floats, and text ('12', exact at any size, or
    '12.0'); anything else, or out of range, is bad_<field>."""
    if isinstance(value, bool):
        raise InvalidProblemLog(f"bad_{field}", repr(value))
    number = value
    if not isinstance(value, int):
        try:
            number = int(value.strip()) if isinstance(value, str) else None
        except ValueError:
            number = None
        if number is None:
            try:
                real = float(value)
            except (TypeError, ValueError):
                raise InvalidProblemLog(f"bad_{field}", repr(value)) from None
            if not real.is_integer():
                raise InvalidProblemLog(f"bad_{field}", repr(value))
            number = int(real)
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise InvalidProblemLog(f"bad_{field}", f"{value!r} is outside INT64")
    return number


class ProblemLogParser:
    """Validates raw records (dicts from Avro, JSON, CSV or Parquet) under one
    column mapping; the mapping is resolved once, not per record."""

    def __init__(self, column_mapping: Mapping = None):
        mapping = dict(column_mapping or {})
        self.columns = tuple(mapping.get(field, field) for field in FIELDS)

    def __call__(self, raw: Mapping) -> ProblemLog:
        # Hot path (one call per input record): plain lookups, no helpers for
        # the common well-typed case.
        if type(raw) is not dict and not isinstance(raw, Mapping):
            raise InvalidProblemLog("not_a_record", type(raw).__name__)
        (user_col, exercise_col, type_col, number_col, time_col, correct_col,
         *optional_cols) = self.columns
        get = raw.get
        user, exercise = get(user_col), get(exercise_col)
        time_done, correct = get(time_col), get(correct_col)
        if _missing(user):
            raise InvalidProblemLog("missing_user", f"column {user_col!r}")
        if _missing(exercise):
            raise InvalidProblemLog("missing_exercise", f"column {exercise_col!r}")
        if _missing(time_done):
            raise InvalidProblemLog("missing_time_done", f"column {time_col!r}")
        if _missing(correct):
            raise InvalidProblemLog("missing_correct", f"column {correct_col!r}")

        problem_type = get(type_col)
        problem_type = "" if problem_type is None else str(problem_type).strip()
        problem_number = get(number_col)
        if problem_number is not None and not (type(problem_number) is int
                                               and 1 <= problem_number <= _INT64_MAX):
            problem_number = (None if _missing(problem_number)
                              else _parse_int("problem_number", problem_number))
            if problem_number is not None and problem_number < 1:
                raise InvalidProblemLog("bad_problem_number", repr(problem_number))
        optional = [get(column) for column in optional_cols]
        for i, value in enumerate(optional):
            if value is not None and not (type(value) is int
                                          and _INT64_MIN <= value <= _INT64_MAX):
                optional[i] = (None if _missing(value)
                               else _parse_int(OPTIONAL_INT_FIELDS[i], value))
        if type(correct) is not bool:
            correct = parse_bool(correct)
        return ProblemLog(user if type(user) is str and user.strip() == user
                          else str(user).strip(),
                          exercise if type(exercise) is str and exercise.strip() == exercise
                          else str(exercise).strip(),
                          problem_type, problem_number, parse_timestamp_micros(time_done),
                          correct, *optional)


def parse_problem_log(raw: Mapping, column_mapping: Mapping = None) -> ProblemLog:
    """Validate one raw record; see ProblemLogParser."""
    return ProblemLogParser(column_mapping)(raw)


def format_timestamp(micros: int) -> str:
    """Epoch microseconds -> ISO-8601 UTC text ('...Z')."""
    moment = _EPOCH + datetime.timedelta(microseconds=micros)
    return moment.isoformat().replace("+00:00", "Z")
