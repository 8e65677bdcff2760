"""ReplayKnowledgeState (transforms/replay.py) on three hand-made students: its
training rows equal the one-attempt-at-a-time specification,
models.knowledge_state.reference_replay, and it reports the random-component
keys the features used."""

import datetime
import zlib

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from models.knowledge_state import ComponentCache, reference_replay
from models.problem_log import ProblemLog
from tests.sample_logs import as_buckets
from transforms.replay import COMPONENT_KEYS, ROWS, ReplayKnowledgeState

SEED, DIM = 7, 4
T = int(datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc).timestamp()) * 10**6
S = 10**6


def log(user, exercise, seconds, correct, problem_number, problem_type=""):
    return ProblemLog(user, exercise, problem_type, problem_number, T + seconds * S, correct)


STUDENTS = [
    ("ann", [log("ann", "add", 0, True, 1), log("ann", "add", 10, False, 2),
             log("ann", "sub", 20, True, 1, "s1"), log("ann", "add", 30, True, 3),
             log("ann", "add", 40, False, 1), log("ann", "sub", 50, False, 2, "s1")]),
    ("bob", [log("bob", "sub", 5, False, 1), log("bob", "sub", 15, True, 2),
             log("bob", "mul", 25, True, 1, "m"), log("bob", "sub", 35, True, 3)]),
    ("cy", [log("cy", "add", 1, True, 1)]),
]



# (exercise, problem_type, correct) of every problem_number 1 attempt: the
# random components the students' vectors r are made of.
COMPONENTS = [("add", "", True), ("sub", "s1", True), ("add", "", False),
              ("sub", "", False), ("mul", "m", True)]


def reference_rows(problem_number_range=(1, None), emit_from=None, student_features=False):
    """{(user, exercise, time_done): (problem_number, correct, x)} by the specification."""
    rows = {}
    for _, logs in STUDENTS:
        for entry, x in reference_replay(logs, ComponentCache(SEED, DIM), problem_number_range,
                                         student_features):
            if emit_from is None or entry.time_done >= emit_from:
                rows[(entry.user, entry.exercise, entry.time_done)] = (
                    entry.problem_number, entry.correct, x)
    return rows


def equal_to_reference(expected):
    def check(blocks):
        components = ComponentCache(SEED, DIM)
        actual = {}
        for shard, rows in blocks:
            # Keyed by the exercises' shard: CRC-32 of the name, mod 256.
            assert {zlib.crc32(name.encode()) % 256 for name in rows.exercise} == {shard}
            for i, x in enumerate(rows.features(components)):
                key = (rows.user[i], rows.exercise[i], int(rows.time_done[i]))
                assert key not in actual, f"row {key} emitted twice"
                actual[key] = (int(rows.problem_number[i]), bool(rows.correct[i]), x)
        assert actual.keys() == expected.keys()
        for key, (number, correct, x) in expected.items():
            assert actual[key][:2] == (number, correct), key
            np.testing.assert_allclose(actual[key][2], x, rtol=0, atol=1e-12, err_msg=str(key))
    return check


def test_rows_equal_the_reference_replay():
    assert len(reference_rows()) == 11
    with TestPipeline() as pipeline:
        students = pipeline | beam.Create(as_buckets(STUDENTS))
        replayed = students | ReplayKnowledgeState(SEED, DIM)
        assert_that(replayed[ROWS], equal_to_reference(reference_rows()), label="rows")
        assert_that(replayed[COMPONENT_KEYS] | beam.Distinct(), equal_to(COMPONENTS),
                    label="component_keys")


def test_problem_number_range_and_emit_from_only_choose_rows():
    """Attempts outside the range or before emit_from emit no row but still
    update the state, so the rows that remain keep their features."""
    first_only = reference_rows((1, 2))
    late = reference_rows(emit_from=T + 25 * S)
    assert len(first_only) == 6 and len(late) == 5
    with TestPipeline() as pipeline:
        students = pipeline | beam.Create(as_buckets(STUDENTS))
        first = students | "FirstProblems" >> ReplayKnowledgeState(SEED, DIM, (1, 2))
        assert_that(first[ROWS], equal_to_reference(first_only), label="range")
        recent = students | "Recent" >> ReplayKnowledgeState(SEED, DIM, emit_from=T + 25 * S)
        assert_that(recent[ROWS], equal_to_reference(late), label="emit_from")
        # The state still used every component.
        assert_that(recent[COMPONENT_KEYS] | beam.Distinct(), equal_to(COMPONENTS),
                    label="component_keys")


def test_student_features_equal_the_reference_replay():
    """--student_features: the same rows, with the counts over all of the
    student's exercises (ann's last row: 5 attempts before it, 3 correct),
    also when earlier attempts are only replayed for the state."""
    expected = reference_rows(student_features=True)
    ann_last = expected[("ann", "sub", T + 50 * S)][2]
    np.testing.assert_allclose(ann_last[7:10], [np.log(6), np.log(4), 4 / 7], rtol=0, atol=1e-15)
    with TestPipeline() as pipeline:
        students = pipeline | beam.Create(as_buckets(STUDENTS))
        replayed = students | ReplayKnowledgeState(SEED, DIM, student_features=True)
        assert_that(replayed[ROWS], equal_to_reference(expected), label="rows")
        recent = students | "Recent" >> ReplayKnowledgeState(
            SEED, DIM, emit_from=T + 25 * S, student_features=True)
        assert_that(recent[ROWS], equal_to_reference(
            reference_rows(emit_from=T + 25 * S, student_features=True)), label="emit_from")
