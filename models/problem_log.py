"""The ProblemLog record: one student attempt at one problem of an exercise.

Parsing is strict and total: every raw record either becomes a ProblemLog or
raises InvalidProblemLog with a short machine-readable reason, so the pipeline
can dead-letter it instead of dying or guessing.
"""

import datetime
import math
import re
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
# The file formats ProblemLogs are read from (transforms.read).
FORMATS = ("avro", "json", "csv", "parquet")
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
MIN_MICROS, MAX_MICROS = _MIN_MICROS, _MAX_MICROS  # BigQuery's TIMESTAMP range
_INT64_MIN, _INT64_MAX = -(2 ** 63), 2 ** 63 - 1
_TRUE = frozenset({"true", "t", "1", "yes", "y"})
_FALSE = frozenset({"false", "f", "0", "no", "n"})
# Numbers in text: ASCII digits only. Python's int()/float() also take "1_000",
# non-ASCII digits, "nan" and "1e3", which no export writes on purpose.
_INTEGER_TEXT = re.compile(r"[+-]?[0-9]+(?:\.0*)?", re.ASCII)
_SECONDS_TEXT = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)
MAX_ID_BYTES = 1024
# Attempts later than the run's start plus this are dead-lettered as
# future_timestamp (clock skew between the logging servers and the job).
FUTURE_ALLOWANCE_MICROS = 3600 * 1_000_000


class InvalidProblemLog(ValueError):
    """A raw record that cannot be a ProblemLog; `reason` is a stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EpochMicros(int):
    """A timestamp a typed reader (Avro, Parquet) already has as exact integer
    microseconds since the epoch, as opposed to a plain number, which is read
    as epoch seconds."""

    __slots__ = ()


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


def now_micros() -> int:
    return (datetime.datetime.now(datetime.timezone.utc) - _EPOCH) // _MICROSECOND


def parse_timestamp_micros(value: Any) -> int:
    """datetime or date (UTC), epoch seconds (a number or ASCII decimal text),
    EpochMicros, or ISO-8601 text (BigQuery's '2024-01-02 03:04:05 UTC'
    included) -> epoch microseconds. Naive datetimes are taken as UTC.
    Instants outside years 1-9999 (BigQuery's TIMESTAMP range; e.g. epoch
    milliseconds passed as seconds) are rejected."""
    micros = _timestamp_micros(value)
    if not _MIN_MICROS <= micros <= _MAX_MICROS:
        raise InvalidProblemLog("bad_timestamp", f"{value!r} is outside years 1-9999")
    return micros


def _timestamp_micros(value: Any) -> int:
    kind = type(value)
    if kind is EpochMicros:
        return int(value)
    if kind is bool:
        raise InvalidProblemLog("bad_timestamp", repr(value))
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return (value - _EPOCH) // _MICROSECOND
    if isinstance(value, datetime.date):
        return _timestamp_micros(datetime.datetime.combine(value, datetime.time()))
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise InvalidProblemLog("bad_timestamp", repr(value))
        return int(round(value * 1_000_000))
    if isinstance(value, str):
        text = value.strip()
        if _SECONDS_TEXT.fullmatch(text):
            return int(round(float(text) * 1_000_000))
        if text.endswith(" UTC"):
            text = text[:-4] + "+00:00"
        try:
            if text.isascii():
                return _timestamp_micros(datetime.datetime.fromisoformat(text))
        except (ValueError, OverflowError):
            pass
    raise InvalidProblemLog("bad_timestamp", repr(value))


def parse_bool(value: Any) -> bool:
    if type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidProblemLog("bad_boolean", repr(value))


def _parse_int(field: str, value: Any) -> int:
    """An INT64: ints, integral finite floats, and ASCII decimal text ('12',
    exact at any size, or '12.0'); anything else, or out of range, is
    bad_<field>."""
    kind = type(value)
    if kind is int:
        number = value
    elif kind is float and value.is_integer():
        number = int(value)
    elif kind is str and _INTEGER_TEXT.fullmatch(value.strip()):
        number = int(value.strip().partition(".")[0])
    else:
        raise InvalidProblemLog(f"bad_{field}", repr(value))
    if not _INT64_MIN <= number <= _INT64_MAX:
        raise InvalidProblemLog(f"bad_{field}", f"{value!r} is outside INT64")
    return number


def parse_name(field: str, value: Any) -> str:
    """An id or name: text with surrounding (Unicode) whitespace stripped, or
    an integer as its decimal text; objects, lists, booleans and floats are
    bad_<field> (their repr would be a made-up name), and so is text that is
    not valid Unicode or over MAX_ID_BYTES of UTF-8 (it cannot be a Datastore
    key)."""
    kind = type(value)
    if kind is str:
        text = value.strip()
    elif kind is int:
        text = str(value)
    else:
        raise InvalidProblemLog(f"bad_{field}", f"a {kind.__name__}, not text: {value!r:.200}")
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # a lone surrogate, e.g. JSON "\ud800"
            raise InvalidProblemLog(f"bad_{field}", f"not Unicode text: {value!r:.200}") from None
    if size > MAX_ID_BYTES:
        raise InvalidProblemLog(f"bad_{field}", f"{size} bytes > {MAX_ID_BYTES}")
    return text


class ProblemLogParser:
    """Validates raw records (dicts from Avro, JSON, CSV, Parquet or BigQuery)
    under one column mapping; the mapping is resolved once, not per record.

    `not_after` (epoch microseconds; default: now plus the allowance):
    attempts later than this are future_timestamp. `nulled` counts, per
    optional field, the bad values that were replaced by null: the model does
    not use those fields, so a bad one must not cost the attempt (which would
    change the student's later features)."""

    def __init__(self, column_mapping: Mapping = None, not_after: Optional[int] = None):
        mapping = dict(column_mapping or {})
        self.columns = tuple(mapping.get(field, field) for field in FIELDS)
        self.not_after = (now_micros() + FUTURE_ALLOWANCE_MICROS if not_after is None
                          else not_after)
        self.nulled = dict.fromkeys(OPTIONAL_INT_FIELDS, 0)

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
        user = parse_name("user", user)
        exercise = parse_name("exercise", exercise)

        problem_type = get(type_col)
        problem_type = "" if problem_type is None else parse_name("problem_type", problem_type)
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
                try:
                    optional[i] = (None if _missing(value)
                                   else _parse_int(OPTIONAL_INT_FIELDS[i], value))
                except InvalidProblemLog:
                    optional[i] = None
                    self.nulled[OPTIONAL_INT_FIELDS[i]] += 1
        if type(correct) is not bool:
            correct = parse_bool(correct)
        time_done = parse_timestamp_micros(time_done)
        if time_done > self.not_after:
            raise InvalidProblemLog("future_timestamp",
                                    f"{format_timestamp(time_done)} is after the run started")
        return ProblemLog(user, exercise, problem_type, problem_number, time_done,
                          correct, *optional)


def parse_problem_log(raw: Mapping, column_mapping: Mapping = None) -> ProblemLog:
    """Validate one raw record; see ProblemLogParser."""
    return ProblemLogParser(column_mapping)(raw)


def format_timestamp(micros: int) -> str:
    """Epoch microseconds -> ISO-8601 UTC text ('...Z')."""
    moment = _EPOCH + datetime.timedelta(microseconds=micros)
    return moment.isoformat().replace("+00:00", "Z")


# Column names that other ProblemLog schemas use for our fields, most likely
# first (KDD Cup / ASSISTments-style exports, LMS event tables).
_COLUMN_SYNONYMS = {
    "user": ("student_id", "user_id", "student", "userid", "anon_student_id", "learner_id",
             "learner", "account_id", "uid", "sid"),
    "exercise": ("skill", "skill_id", "skill_name", "exercise_id", "item_id", "item",
                 "problem_id", "question_id", "question", "kc", "concept", "task"),
    "time_done": ("timestamp", "time", "ts", "datetime", "date", "created_at", "answered_at",
                  "event_time", "start_time", "end_time"),
    "correct": ("is_correct", "correctness", "answer_correct", "outcome", "success", "score",
                "right"),
    "problem_type": ("type", "problem_template", "template", "item_type", "question_type"),
    "problem_number": ("attempt_number", "problem_index", "attempt", "order_id"),
    "time_taken": ("duration", "response_time", "ms_first_response", "time_spent"),
    "count_hints": ("hint_count", "hints"),
    "count_attempts": ("attempt_count", "attempts"),
}


def _normal(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def suggest_column_mapping(columns, missing) -> dict:
    """{field: column} guesses for the `missing` fields among a file's
    `columns` (for an error message: a person confirms them)."""
    free = {_normal(column): column for column in columns}
    guesses = {}
    for field in missing:
        candidates = [_normal(field), *_COLUMN_SYNONYMS.get(field, ())]
        match = next((free[name] for name in candidates if name in free), None)
        if match is None:
            tokens = {name: set(name.split("_")) for name in free}
            match = next((free[name] for candidate in candidates for name in free
                          if candidate in tokens[name]), None)
        if match is not None:
            guesses[field] = match
            free = {name: column for name, column in free.items() if column != match}
    return guesses


def missing_columns(columns, column_mapping: Mapping) -> list:
    """The required fields whose (mapped) column is not among `columns`."""
    present = set(columns)
    mapping = dict(column_mapping or {})
    return [field for field in REQUIRED_FIELDS if mapping.get(field, field) not in present]
