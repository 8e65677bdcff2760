"""Tests for models.problem_log: parsing raw records into ProblemLogs.

Every accepted input form is checked against a hand-computed epoch-microsecond
value, and every rejection against its stable reason code (the dead-letter
output and its counters are keyed by these codes).
"""

import datetime
from collections import OrderedDict
from types import MappingProxyType

import pytest

from models.problem_log import (
    FIELDS, EpochMicros, InvalidProblemLog, ProblemLog, ProblemLogParser, format_timestamp,
    missing_columns, parse_bool, parse_column_mapping, parse_problem_log,
    parse_timestamp_micros, suggest_column_mapping)

UTC = datetime.timezone.utc
# 2024-01-02 03:04:05 UTC: 19724 days after the epoch + 3h 4m 5s.
T0_SECONDS = 19724 * 86400 + 3 * 3600 + 4 * 60 + 5
T0_MICROS = T0_SECONDS * 1_000_000
assert T0_SECONDS == 1704164645


def record(**overrides):
    raw = {"user": "u1", "exercise": "addition_1", "problem_type": "pt",
           "problem_number": 3, "time_done": T0_SECONDS, "correct": True}
    raw.update(overrides)
    return raw


def reason_of(raw, mapping=None):
    with pytest.raises(InvalidProblemLog) as caught:
        parse_problem_log(raw, mapping)
    return caught.value.reason


# --- a well-formed record ----------------------------------------------------

def test_full_record_parses_to_exact_values():
    log = parse_problem_log(record(time_taken=12, count_hints=0, count_attempts=2))
    assert log == ProblemLog("u1", "addition_1", "pt", 3, T0_MICROS, True, 12, 0, 2)
    assert type(log.time_done) is int
    assert type(log.correct) is bool


def test_optional_fields_default_to_none_and_problem_type_to_empty():
    raw = {"user": "u", "exercise": "e", "time_done": 0, "correct": False}
    assert parse_problem_log(raw) == ProblemLog("u", "e", "", None, 0, False,
                                                None, None, None)


def test_strings_are_stripped_and_non_strings_stringified():
    log = parse_problem_log(record(user="  u7 ", exercise=" ex\t", problem_type=" t "))
    assert (log.user, log.exercise, log.problem_type) == ("u7", "ex", "t")
    log = parse_problem_log(record(user=42, exercise=7, problem_type=5))
    assert (log.user, log.exercise, log.problem_type) == ("42", "7", "5")


def test_any_mapping_is_a_record():
    assert parse_problem_log(OrderedDict(record())).time_done == T0_MICROS
    assert parse_problem_log(MappingProxyType(record())).user == "u1"


# --- timestamps ----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    # datetimes: aware (any offset) and naive (taken as UTC)
    (datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), T0_MICROS),
    (datetime.datetime(2024, 1, 2, 3, 4, 5), T0_MICROS),
    (datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), T0_MICROS + 123456),
    (datetime.datetime(2024, 1, 2, 5, 4, 5,
                       tzinfo=datetime.timezone(datetime.timedelta(hours=2))), T0_MICROS),
    (datetime.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC), -1_000_000),
    # epoch seconds: int, float, numeric strings
    (T0_SECONDS, T0_MICROS),
    (0, 0),
    (float(T0_SECONDS), T0_MICROS),
    (T0_SECONDS + 0.5, T0_MICROS + 500_000),
    (1.25, 1_250_000),
    (-1.5, -1_500_000),
    (str(T0_SECONDS), T0_MICROS),
    (f" {T0_SECONDS}.25 ", T0_MICROS + 250_000),
    (datetime.date(2024, 1, 2), T0_MICROS - (3 * 3600 + 4 * 60 + 5) * 1_000_000),
    # ISO-8601: Z, offsets, naive, fractional seconds, BigQuery text
    ("2024-01-02T03:04:05Z", T0_MICROS),
    ("2024-01-02T03:04:05.123456Z", T0_MICROS + 123456),
    ("2024-01-02T03:04:05.5Z", T0_MICROS + 500_000),
    ("2024-01-02T03:04:05+00:00", T0_MICROS),
    ("2024-01-02T05:34:05+02:30", T0_MICROS),
    ("2024-01-01T22:04:05-05:00", T0_MICROS),
    ("2024-01-02T03:04:05", T0_MICROS),
    ("2024-01-02 03:04:05", T0_MICROS),
    ("2024-01-02 03:04:05 UTC", T0_MICROS),
    ("2024-01-02 03:04:05.000250 UTC", T0_MICROS + 250),
    ("  2024-01-02 03:04:05 UTC  ", T0_MICROS),
    ("2024-01-02", T0_MICROS - (3 * 3600 + 4 * 60 + 5) * 1_000_000),
])
def test_timestamp_forms(value, expected):
    assert parse_timestamp_micros(value) == expected
    parsed = parse_problem_log(record(time_done=value)).time_done
    assert parsed == expected and type(parsed) is int


def test_epoch_seconds_keep_microsecond_precision():
    # 1704164645.123456 is not exactly representable; rounding (not truncation)
    # must still land on the intended microsecond, for float and text alike.
    assert parse_timestamp_micros(1704164645.123456) == 1704164645123456
    assert parse_timestamp_micros("1704164645.123456") == 1704164645123456
    assert parse_timestamp_micros(0.000001) == 1
    assert parse_timestamp_micros(0.1 + 0.2) == 300_000


@pytest.mark.parametrize("value", [
    True, False, "", "yesterday", "2024-13-01T00:00:00Z", "2024-01-02T25:00:00",
    "nan", "inf", "-inf", float("nan"), float("inf"), [T0_SECONDS], {"t": 1},
    b"2024-01-02", "1e3", "1_000", "\u0661\u0662\u0663", "\uff11\uff12",
    "\u0662\u0660\u0662\u0664-01-02",
])
def test_bad_timestamps(value):
    with pytest.raises(InvalidProblemLog) as caught:
        parse_timestamp_micros(value)
    assert caught.value.reason == "bad_timestamp"
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("value", ["yesterday", "nan", float("inf"), True, [1]])
def test_bad_timestamp_in_record(value):
    assert reason_of(record(time_done=value)) == "bad_timestamp"


@pytest.mark.parametrize("micros, text", [
    (0, "1970-01-01T00:00:00Z"),
    (T0_MICROS, "2024-01-02T03:04:05Z"),
    (T0_MICROS + 123456, "2024-01-02T03:04:05.123456Z"),
    (-1, "1969-12-31T23:59:59.999999Z"),
])
def test_format_timestamp_exact(micros, text):
    assert format_timestamp(micros) == text
    assert parse_timestamp_micros(text) == micros


def test_format_timestamp_round_trips():
    values = [0, 1, -1, 999_999, T0_MICROS, T0_MICROS + 1, 253402300799999999,
              -62135596800000000]  # 9999-12-31T23:59:59.999999Z, 0001-01-01
    values += [T0_MICROS + 7919 * i * 104729 for i in range(200)]
    for micros in values:
        text = format_timestamp(micros)
        assert text.endswith("Z")
        assert parse_timestamp_micros(text) == micros
    assert format_timestamp(253402300799999999) == "9999-12-31T23:59:59.999999Z"
    assert format_timestamp(-62135596800000000) == "0001-01-01T00:00:00Z"


# --- booleans ----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), (1, True), (0, False),
    ("true", True), ("FALSE", False), ("True", True), ("t", True), ("F", False),
    ("yes", True), ("No", False), ("y", True), ("n", False), ("1", True), ("0", False),
    (" true ", True),
])
def test_boolean_forms(value, expected):
    assert parse_bool(value) is expected
    assert parse_problem_log(record(correct=value)).correct is expected


@pytest.mark.parametrize("value", [2, -1, 1.0, 0.5, "maybe", "tru", "2", [], b"true"])
def test_bad_booleans(value):
    assert reason_of(record(correct=value)) == "bad_boolean"


# --- problem_number --------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    (3, 3), (1, 1), ("3", 3), ("3.0", 3), (" 4 ", 4), (3.0, 3), (None, None),
    ("", None), ("   ", None),
])
def test_problem_number_forms(value, expected):
    number = parse_problem_log(record(problem_number=value)).problem_number
    assert number == expected
    assert number is None or type(number) is int


def test_problem_number_absent_is_none():
    raw = record()
    del raw["problem_number"]
    assert parse_problem_log(raw).problem_number is None


@pytest.mark.parametrize("value", [0, -1, "0", "-1", "x", 2.5, "2.5", True, "nan",
                                   "inf", [3], 0.0])
def test_bad_problem_numbers(value):
    assert reason_of(record(problem_number=value)) == "bad_problem_number"


# --- optional integers ---------------------------------------------------------

@pytest.mark.parametrize("field", ["time_taken", "count_hints", "count_attempts"])
def test_optional_int_fields(field):
    assert getattr(parse_problem_log(record(**{field: 7})), field) == 7
    assert getattr(parse_problem_log(record(**{field: "7"})), field) == 7
    assert getattr(parse_problem_log(record(**{field: "7.0"})), field) == 7
    assert getattr(parse_problem_log(record(**{field: 7.0})), field) == 7
    assert getattr(parse_problem_log(record(**{field: ""})), field) is None
    assert getattr(parse_problem_log(record(**{field: None})), field) is None
    assert getattr(parse_problem_log(record(**{field: -3})), field) == -3
    parser = ProblemLogParser()
    bad_values = ("abc", 2.5, "2.5", True, [1], "nan", float("nan"), "1_000", "\u0661")
    for bad in bad_values:  # kept, with the field nulled and counted
        assert getattr(parser(record(**{field: bad})), field) is None, bad
    assert parser.nulled == {name: len(bad_values) if name == field else 0
                             for name in ("time_taken", "count_hints", "count_attempts")}


# --- required fields and non-records --------------------------------------------

@pytest.mark.parametrize("field, reason", [
    ("user", "missing_user"), ("exercise", "missing_exercise"),
    ("time_done", "missing_time_done"), ("correct", "missing_correct"),
])
def test_missing_required_fields(field, reason):
    absent = record()
    del absent[field]
    assert reason_of(absent) == reason
    assert reason_of(record(**{field: None})) == reason
    assert reason_of(record(**{field: ""})) == reason
    assert reason_of(record(**{field: "  \t"})) == reason


def test_missing_fields_are_reported_in_field_order():
    assert reason_of({}) == "missing_user"
    assert reason_of({"user": "u"}) == "missing_exercise"
    assert reason_of({"user": "u", "exercise": "e"}) == "missing_time_done"
    assert reason_of({"user": "u", "exercise": "e", "time_done": 1}) == "missing_correct"


@pytest.mark.parametrize("raw", [None, "u1,e,1,true", 42, ["u1", "e"], ("u1",), b"{}"])
def test_not_a_record(raw):
    with pytest.raises(InvalidProblemLog) as caught:
        parse_problem_log(raw)
    assert caught.value.reason == "not_a_record"
    assert caught.value.detail == type(raw).__name__


def test_invalid_problem_log_is_a_value_error_with_reason_and_detail():
    with pytest.raises(ValueError) as caught:
        parse_problem_log(record(correct="maybe"))
    error = caught.value
    assert isinstance(error, InvalidProblemLog)
    assert (error.reason, error.detail) == ("bad_boolean", "'maybe'")
    assert str(error) == "bad_boolean: 'maybe'"


# --- column mapping ----------------------------------------------------------------

def test_parse_column_mapping_valid():
    assert parse_column_mapping("user=student_id,exercise=skill, time_done = timestamp") == {
        "user": "student_id", "exercise": "skill", "time_done": "timestamp"}
    assert parse_column_mapping("") == {}
    assert parse_column_mapping(None) == {}
    assert parse_column_mapping(" , user=a,, ") == {"user": "a"}
    everything = ",".join(f"{field}=c_{field}" for field in FIELDS)
    assert parse_column_mapping(everything) == {f: f"c_{f}" for f in FIELDS}


@pytest.mark.parametrize("spec, message", [
    ("student=student_id", "unknown field 'student'"),
    ("user=a,User=b", "unknown field 'User'"),
    ("user=a,user=b", "'user' twice"),
    ("user=a,exercise=b,user=c", "'user' twice"),
    ("user", "is not FIELD=COLUMN"),
    ("user=a,exercise", "is not FIELD=COLUMN"),
    ("user=", "is not FIELD=COLUMN"),
    ("user= ", "is not FIELD=COLUMN"),
])
def test_parse_column_mapping_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_column_mapping(spec)


def test_column_mapping_reads_other_schemas():
    mapping = parse_column_mapping(
        "user=student_id,exercise=skill,time_done=timestamp,correct=is_correct,"
        "problem_number=attempt,time_taken=seconds")
    raw = {"student_id": "s9", "skill": "fractions", "timestamp": "2024-01-02T03:04:05Z",
           "is_correct": "t", "attempt": "2", "seconds": "30",
           # the default names are ignored once mapped away
           "user": "ignored", "exercise": "ignored", "correct": "f"}
    expected = ProblemLog("s9", "fractions", "", 2, T0_MICROS, True, 30, None, None)
    assert parse_problem_log(raw, mapping) == expected
    parser = ProblemLogParser(mapping)
    assert parser.columns == ("student_id", "skill", "problem_type", "attempt",
                              "timestamp", "is_correct", "seconds", "count_hints",
                              "count_attempts")
    assert parser(raw) == expected


def test_column_mapping_missing_column_names_the_source_column():
    parser = ProblemLogParser({"user": "student_id"})
    with pytest.raises(InvalidProblemLog) as caught:
        parser(record())  # has 'user' but not 'student_id'
    assert caught.value.reason == "missing_user"
    assert "'student_id'" in caught.value.detail


def test_column_mapping_bad_value_reason_uses_field_name():
    parser = ProblemLogParser({"problem_number": "n", "time_taken": "secs"})
    assert parser(record(n="5")).problem_number == 5
    assert parser(record(n="5", secs="slow")).time_taken is None
    assert parser.nulled["time_taken"] == 1
    with pytest.raises(InvalidProblemLog) as caught:
        parser(record(n="0"))
    assert caught.value.reason == "bad_problem_number"


def test_parser_is_reusable_and_matches_function():
    parser = ProblemLogParser()
    raws = [record(user=f"u{i}", time_done=T0_SECONDS + i, correct=i % 2)
            for i in range(5)]
    logs = [parser(raw) for raw in raws]
    assert logs == [parse_problem_log(raw) for raw in raws]
    assert [log.time_done for log in logs] == [T0_MICROS + i * 1_000_000 for i in range(5)]
    assert [log.correct for log in logs] == [False, True, False, True, False]


# --- timestamps outside BigQuery's TIMESTAMP range ---------------------------------

@pytest.mark.parametrize("seconds", [
    1704164645000,        # 2024-01-02 in epoch milliseconds (year ~55975 as seconds)
    1704164645000000,     # 2024-01-02 in epoch microseconds (beyond int64 micros)
    253402300800,         # 10000-01-01T00:00:00Z
    -62135596801,         # 0000-12-31T23:59:59Z
])
def test_out_of_range_epoch_seconds_are_bad_timestamps(seconds):
    assert reason_of(record(time_done=seconds)) == "bad_timestamp"


def test_range_limits_are_accepted_and_formattable():
    parse = ProblemLogParser(not_after=253402300799 * 1_000_000)  # a run in the year 9999
    for seconds, text in [(253402300799, "9999-12-31T23:59:59Z"),
                          (-62135596800, "0001-01-01T00:00:00Z")]:
        log = parse(record(time_done=seconds))
        assert log.time_done == seconds * 1_000_000
        assert format_timestamp(log.time_done) == text


# --- integers outside INT64 / beyond float precision ----------------------------------

@pytest.mark.parametrize("value", [2 ** 63, "9223372036854775808", "1e30"])
def test_problem_number_beyond_int64_is_bad(value):
    assert reason_of(record(problem_number=value)) == "bad_problem_number"


@pytest.mark.parametrize("field", ["problem_number", "time_taken"])
def test_integer_text_is_exact(field):
    assert getattr(parse_problem_log(record(**{field: "9007199254740993"})),
                   field) == 9007199254740993


# --- ids and names ------------------------------------------------------------------

@pytest.mark.parametrize("field", ["user", "exercise", "problem_type"])
@pytest.mark.parametrize("value", [{"name": "sh"}, ["a"], True, False, 1.5, float("nan"),
                                   float("inf"), "x" * 1025, "\u00e9" * 513, "a\ud800b"])
def test_names_that_are_not_text_are_dead_lettered(field, value):
    assert reason_of(record(**{field: value})) == f"bad_{field}"


@pytest.mark.parametrize("value, expected", [
    (42, "42"), (-7, "-7"), (" alice", "alice"), ("alice\u00a0", "alice"),
    ("\u2003alice\u3000", "alice"), ("\talice\n", "alice"), ("x" * 1024, "x" * 1024),
    ("\u00e9" * 512, "\u00e9" * 512), ("a|b=c\x1fd", "a|b=c\x1fd"),
])
def test_names_are_stripped_text_and_integers_their_decimal(value, expected):
    for field in ("user", "exercise", "problem_type"):
        assert getattr(parse_problem_log(record(**{field: value})), field) == expected


def test_attempts_after_the_run_started_are_future_timestamps():
    parser = ProblemLogParser(not_after=T0_MICROS)
    assert parser(record(time_done=T0_SECONDS)).time_done == T0_MICROS
    with pytest.raises(InvalidProblemLog) as caught:
        parser(record(time_done=T0_SECONDS + 0.000001))
    assert caught.value.reason == "future_timestamp"
    # Epoch milliseconds read as seconds: the year 5138 is in the future...
    assert reason_of(record(time_done=1e11)) == "future_timestamp"
    # ...and further out it is no timestamp at all.
    assert reason_of(record(time_done=1e12)) == "bad_timestamp"


def test_typed_micros_are_exact():
    assert parse_problem_log(record(time_done=EpochMicros(-62135596800000000))).time_done == \
        -62135596800000000
    assert reason_of(record(time_done=EpochMicros(253402300800000000))) == "bad_timestamp"


def test_column_mapping_suggestion_from_other_schemas():
    columns = ["student_id", "skill", "timestamp", "is_correct", "notes"]
    assert missing_columns(columns, {}) == ["user", "exercise", "time_done", "correct"]
    assert missing_columns(columns, {"user": "student_id"}) == ["exercise", "time_done",
                                                                  "correct"]
    assert suggest_column_mapping(columns, ["user", "exercise", "time_done", "correct"]) == {
        "user": "student_id", "exercise": "skill", "time_done": "timestamp",
        "correct": "is_correct"}
    # KDD-Cup style names, matched by their words; a column is used once.
    assert suggest_column_mapping(
        ["Anon Student Id", "KC(Default)", "First Transaction Time", "Correct First Attempt"],
        ["user", "exercise", "time_done", "correct"]) == {
        "user": "Anon Student Id", "exercise": "KC(Default)",
        "time_done": "First Transaction Time", "correct": "Correct First Attempt"}
    assert suggest_column_mapping(["a", "b"], ["user"]) == {}
