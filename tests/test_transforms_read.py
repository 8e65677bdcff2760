"""ReadProblemLogs (transforms/read.py) on tiny hand-written JSON-lines and CSV
files: the valid logs, in (student bucket, LogBatch) chunks, and the dead
letters with their reasons, every expectation written out by hand."""

import datetime
import json

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from models.knowledge_state import user_hash
from transforms.read import DEFAULT_BUCKETS, DEAD_LETTER, VALID, ReadProblemLogs
from transforms.run_summary import counter_values

UTC = datetime.timezone.utc
T = int(datetime.datetime(2026, 1, 1, 10, tzinfo=UTC).timestamp())   # epoch seconds
US = 1_000_000
NOT_AFTER = int(datetime.datetime(2026, 6, 1, tzinfo=UTC).timestamp()) * US
FUTURE = int(datetime.datetime(2027, 1, 1, tzinfo=UTC).timestamp())


def write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def logs_of(chunk, num_buckets=DEFAULT_BUCKETS):
    """A (bucket, LogBatch) chunk -> its logs as plain tuples, after checking
    that every one is in its student's bucket."""
    bucket, batch = chunk
    logs = [tuple(log) for log in batch.logs()]
    assert all(user_hash(log[0]) % num_buckets == bucket for log in logs), chunk
    return logs


def dead_letter_summary(path):
    """Dead letters -> (reason, record) pairs, after checking what every one
    carries: the stage, a detail and the file it came from."""
    def summary(record):
        assert record["stage"] == "read" and record["detail"], record
        assert record["file"] == path, record
        return record["reason"], json.dumps(record["record"], sort_keys=True)
    return summary


JSON_LINES = [
    json.dumps({"user": "ann", "exercise": "add", "time_done": T, "correct": True,
                "problem_number": 1}),
    json.dumps({"user": "bob", "exercise": "sub", "problem_type": "p1",
                "time_done": "2026-01-01T11:00:00Z", "correct": "false", "time_taken": 12}),
    # A bad optional field is nulled, not fatal.
    json.dumps({"user": "ann", "exercise": "add", "time_done": T + 60, "correct": 1,
                "problem_number": "2", "count_hints": "many"}),
    "",                                                          # blank: skipped
    "{not json",
    json.dumps({"exercise": "add", "time_done": T, "correct": True}),
    json.dumps({"user": "cy", "exercise": "add", "time_done": T, "correct": "maybe"}),
    json.dumps({"user": "cy", "exercise": "add", "time_done": FUTURE, "correct": True}),
    json.dumps({"user": "cy", "exercise": "add", "time_done": T, "correct": True,
                "problem_number": 0}),
    json.dumps([1, 2]),
]
# ProblemLog fields: user, exercise, problem_type, problem_number, time_done
# (epoch microseconds), correct, time_taken, count_hints, count_attempts.
ANN_1 = ("ann", "add", "", 1, T * US, True, None, None, None)
ANN_2 = ("ann", "add", "", 2, (T + 60) * US, True, None, None, None)
BOB_1 = ("bob", "sub", "p1", None, (T + 3600) * US, False, 12, None, None)
JSON_DEAD_LETTERS = [
    ("bad_json", json.dumps("{not json")),
    ("missing_user", json.dumps({"correct": True, "exercise": "add", "time_done": T},
                                sort_keys=True)),
    ("bad_boolean", json.dumps({"correct": "maybe", "exercise": "add", "time_done": T,
                                "user": "cy"}, sort_keys=True)),
    ("future_timestamp", json.dumps({"correct": True, "exercise": "add", "time_done": FUTURE,
                                     "user": "cy"}, sort_keys=True)),
    ("bad_problem_number", json.dumps({"correct": True, "exercise": "add", "problem_number": 0,
                                       "time_done": T, "user": "cy"}, sort_keys=True)),
    ("not_a_record", json.dumps([1, 2])),
]


def test_json_lines_valid_chunks_and_dead_letters(tmp_path):
    path = write_lines(tmp_path / "logs.jsonl", JSON_LINES)
    pipeline = TestPipeline()
    logs = pipeline | ReadProblemLogs(path, not_after=NOT_AFTER)
    assert_that(logs[VALID] | beam.FlatMap(logs_of), equal_to([ANN_1, ANN_2, BOB_1]),
                label="valid")
    assert_that(logs[DEAD_LETTER] | beam.Map(dead_letter_summary(path)),
                equal_to(JSON_DEAD_LETTERS), label="dead_letters")
    result = pipeline.run()
    result.wait_until_finish()
    counters = counter_values(result)
    assert {name: counters.get(name) for name in (
        "files_read", "physical_records", "records_read", "records_valid",
        "bad_optional_count_hints", "dead_letter_bad_json", "dead_letter_missing_user",
        "dead_letter_future_timestamp")} == {
        "files_read": 1, "physical_records": 9, "records_read": 9, "records_valid": 3,
        "bad_optional_count_hints": 1, "dead_letter_bad_json": 1,
        "dead_letter_missing_user": 1, "dead_letter_future_timestamp": 1}


def test_the_time_window_drops_records_without_dead_letters(tmp_path):
    path = write_lines(tmp_path / "logs.json", JSON_LINES[:3])
    window = ((T + 30) * US, (T + 3600) * US)          # [10:00:30, 11:00): ANN_2 only
    with TestPipeline() as pipeline:
        logs = pipeline | ReadProblemLogs(path, file_format="json", window=window,
                                          not_after=NOT_AFTER)
        assert_that(logs[VALID] | beam.FlatMap(logs_of), equal_to([ANN_2]), label="valid")
        assert_that(logs[DEAD_LETTER], equal_to([]), label="dead_letters")


CSV_LINES = [
    "student,skill,ts,right,problem_number",
    "ann,add,2026-01-01T10:00:00Z,true,1",
    "ann,add,2026-01-01T10:01:00Z,0,",                 # empty cell: no problem_number
    "bob,add,2026-01-01 10:02:00 UTC,yes,3",
    "bob,add,2026-01-01T10:03:00Z",                    # too few cells
    "cy,,2026-01-01T10:04:00Z,true,1",                 # empty exercise
    "dee,add,yesterday,true,1",
    'eve,"add,2026-01-01T10:05:00Z,true,1',             # a quote that never closes
]
MAPPING = {"user": "student", "exercise": "skill", "time_done": "ts", "correct": "right"}
CSV_VALID = {
    "ann": [("ann", "add", "", 1, T * US, True, None, None, None),
            ("ann", "add", "", None, (T + 60) * US, False, None, None, None)],
    "bob": [("bob", "add", "", 3, (T + 120) * US, True, None, None, None)],
}


def _row(student, skill, ts, right, problem_number):
    return json.dumps({"student": student, "skill": skill, "ts": ts, "right": right,
                       "problem_number": problem_number}, sort_keys=True)


CSV_DEAD_LETTERS = [
    ("bad_csv_row", json.dumps("bob,add,2026-01-01T10:03:00Z")),
    ("missing_exercise", _row("cy", None, "2026-01-01T10:04:00Z", "true", "1")),
    ("bad_timestamp", _row("dee", "add", "yesterday", "true", "1")),
    ("bad_csv_row", json.dumps('eve,"add,2026-01-01T10:05:00Z,true,1')),
]


def test_csv_with_a_column_mapping(tmp_path):
    path = write_lines(tmp_path / "logs.csv", CSV_LINES)
    with TestPipeline() as pipeline:
        logs = pipeline | ReadProblemLogs(path, column_mapping=MAPPING, not_after=NOT_AFTER)
        assert_that(logs[VALID] | beam.FlatMap(logs_of),
                    equal_to([log for logs in CSV_VALID.values() for log in logs]),
                    label="valid")
        assert_that(logs[DEAD_LETTER] | beam.Map(dead_letter_summary(path)),
                    equal_to(CSV_DEAD_LETTERS), label="dead_letters")


def test_small_buffers_split_a_user_into_chunks_in_file_order(tmp_path):
    path = write_lines(tmp_path / "logs.csv", CSV_LINES)

    def chunked_in_order(chunks):
        assert len(chunks) == 3, chunks                # max_buffered=1: a chunk per log
        by_user = {}
        for chunk in chunks:
            (log,) = logs_of(chunk, 2)
            by_user.setdefault(log[0], []).append(log)
        assert {user: sorted(logs, key=lambda log: log[4]) for user, logs in by_user.items()
                } == CSV_VALID

    with TestPipeline() as pipeline:
        logs = pipeline | ReadProblemLogs(path, column_mapping=MAPPING, max_buffered=1,
                                          not_after=NOT_AFTER, num_buckets=2)
        assert_that(logs[VALID], chunked_in_order)
