"""SessionizeByStudent (transforms/sessionize.py) on hand-made chunks: time
order across chunks, exact duplicates dropped, conflicting duplicates and
students over the attempt cap dead-lettered, problem numbers derived; every
expectation written out by hand."""

import datetime

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from models.log_batch import LogBatch
from models.problem_log import ProblemLog
from transforms.read import DEAD_LETTER
from transforms.run_summary import counter_values
from transforms.sessionize import SessionizeByStudent

T = int(datetime.datetime(2026, 1, 1, 10, tzinfo=datetime.timezone.utc).timestamp()) * 10**6
S = 10**6  # one second in microseconds


def log(user, exercise, seconds, correct, problem_number=None):
    """A ProblemLog as the reader emits it: a plain tuple of its fields."""
    return (user, exercise, "", problem_number, T + seconds * S, correct, None, None, None)


def chunk(bucket, logs):
    """A reader's (bucket, LogBatch) chunk."""
    return bucket, LogBatch.from_logs([ProblemLog(*fields) for fields in logs])


def students_of(element):
    """A sessionized bucket -> (user, [log tuples]) per student, in order."""
    _, (batch, starts) = element
    logs = [tuple(log) for log in batch.logs()]
    return [(logs[start][0], logs[start:stop])
            for start, stop in zip(starts[:-1].tolist(), starts[1:].tolist())]


CHUNKS = [
    # ann: two chunks (as from two files), out of order, one exact duplicate.
    # (Buckets as a reader would key them: ann and bob share one.)
    chunk(0, [log("ann", "add", 20, True), log("ann", "sub", 10, False)]),
    chunk(0, [log("ann", "add", 5, False), log("ann", "add", 20, True),
              log("ann", "sub", 30, True)]),
    # bob: two answers to the same problem at the same time disagree.
    chunk(0, [log("bob", "add", 0, True, 1), log("bob", "add", 1, True, 2),
              log("bob", "add", 0, False, 1)]),
    # cy: 5 attempts, over the cap of 4.
    chunk(1, [log("cy", "add", second, True) for second in (3, 1, 5, 2, 4)]),
    # dee: exactly the cap (so is ann, once her duplicate is dropped).
    chunk(1, [log("dee", "mul", second, second != 2) for second in (2, 4, 1, 3)]),
]
CAP = 4
STUDENTS = [
    # Time order; problem_number, where absent, counts the student's attempts
    # at that exercise.
    ("ann", [log("ann", "add", 5, False, 1), log("ann", "sub", 10, False, 1),
             log("ann", "add", 20, True, 2), log("ann", "sub", 30, True, 2)]),
    ("bob", [log("bob", "add", 1, True, 2)]),
    ("dee", [log("dee", "mul", 1, True, 1), log("dee", "mul", 2, False, 2),
             log("dee", "mul", 3, True, 3), log("dee", "mul", 4, True, 4)]),
]


def record(user, exercise, time_done, correct, problem_number):
    return {"user": user, "exercise": exercise, "problem_type": "",
            "problem_number": problem_number, "time_done": time_done, "correct": correct,
            "time_taken": None, "count_hints": None, "count_attempts": None}


CONFLICT = ("another attempt with the same user, exercise, time_done and problem_number has a "
            "different `correct`")
TOO_MANY = "student has 5 attempts > --max_attempts_per_student 4"
DEAD_LETTERS = [
    ("conflicting_duplicate", CONFLICT, record("bob", "add", "2026-01-01T10:00:00Z", True, 1)),
    ("conflicting_duplicate", CONFLICT, record("bob", "add", "2026-01-01T10:00:00Z", False, 1)),
] + [
    ("too_many_attempts", TOO_MANY, record("cy", "add", f"2026-01-01T10:00:0{n}Z", True, n))
    for n in (1, 2, 3, 4, 5)
]


def test_students_in_order_with_duplicates_and_dead_letters():
    pipeline = TestPipeline()
    sessions = pipeline | beam.Create(CHUNKS) | SessionizeByStudent(CAP)
    assert_that(sessions.students | beam.FlatMap(students_of), equal_to(STUDENTS),
                label="students")
    assert_that(sessions[DEAD_LETTER]
                | beam.Map(lambda r: (r.pop("stage"), r["reason"], r["detail"], r["record"])),
                equal_to([("sessionize",) + dead for dead in DEAD_LETTERS]),
                label="dead_letters")
    result = pipeline.run()
    result.wait_until_finish()
    counters = counter_values(result)
    assert {name: counters.get(name, 0) for name in (
        "students", "students_skipped", "duplicates_dropped", "dead_letter_too_many_attempts",
        "dead_letter_conflicting_duplicate")} == {
        "students": 3, "students_skipped": 1, "duplicates_dropped": 1,
        "dead_letter_too_many_attempts": 5, "dead_letter_conflicting_duplicate": 2}


def test_the_cap_counts_attempts_after_duplicates_are_dropped():
    # cy's 4 logs hold one exact copy: 3 distinct attempts fit a cap of 3.
    chunks = [chunk(3, [log("cy", "add", 1, True), log("cy", "add", 2, False),
                        log("cy", "add", 1, True), log("cy", "add", 3, True)])]
    with TestPipeline() as pipeline:
        sessions = pipeline | beam.Create(chunks) | SessionizeByStudent(3)
        assert_that(sessions.students | beam.FlatMap(students_of), equal_to([
            ("cy", [log("cy", "add", 1, True, 1), log("cy", "add", 2, False, 2),
                    log("cy", "add", 3, True, 3)])]), label="students")
        assert_that(sessions[DEAD_LETTER], equal_to([]), label="dead_letters")
