"""models.log_batch: the columnar batch and its vectorized sessionize, checked
against the one-student-at-a-time models.knowledge_state.sessionize_with_conflicts."""

import pickle
from collections import Counter
import random

import numpy as np
import pytest

from models.knowledge_state import sessionize_with_conflicts, user_hash
from models.log_batch import LogBatch, sessionize_batch, unique_codes
from models.problem_log import ProblemLog

T0 = 1_700_000_000_000_000


def random_logs(rng, students=30, ties=True):
    logs = []
    for s in range(students):
        user = rng.choice([f"u{s}", f" u{s}\u00e9", f"user|{s}"])
        for _ in range(rng.randrange(0, 25)):
            logs.append(ProblemLog(
                user, rng.choice(["a", "b", "c\x1fd", "B"]), rng.choice(["", "p", "q"]),
                rng.choice([None, None, 1, 2, 3]),
                T0 + rng.randrange(8 if ties else 10 ** 9), rng.random() < 0.6,
                rng.choice([None, -1, 0, 7]), rng.choice([None, 0, 2]), rng.choice([None, 1])))
    logs += rng.sample(logs, min(len(logs), 15))  # exact duplicates
    rng.shuffle(logs)
    return logs


def reference(logs, max_attempts):
    by_user = {}
    for log in logs:
        by_user.setdefault(log.user, []).append(log)
    kept, duplicates, conflicting, too_many, over = {}, 0, [], [], 0
    for user, user_logs in by_user.items():
        ordered, dups, conflicts = sessionize_with_conflicts(user_logs)
        duplicates += dups
        conflicting += conflicts
        if len(ordered) > max_attempts:
            too_many += ordered
            over += 1
        elif ordered:
            kept[user] = ordered
    return kept, duplicates, conflicting, too_many, over


@pytest.mark.parametrize("seed", range(12))
def test_sessionize_batch_equals_the_one_student_reference(seed):
    rng = random.Random(seed)
    logs = random_logs(rng, ties=seed % 3 != 0)
    max_attempts = 18
    kept, duplicates, conflicting, too_many, over = reference(logs, max_attempts)
    result = sessionize_batch(LogBatch.from_logs(logs), max_attempts)
    rows = result.logs.logs()
    students = {rows[start].user: rows[start:stop] for start, stop in
                zip(result.student_starts[:-1], result.student_starts[1:])}
    assert students == kept
    assert list(students) == sorted(kept)  # students in name order
    assert result.duplicates == duplicates
    assert Counter(result.conflicting) == Counter(conflicting)
    assert Counter(result.too_many) == Counter(too_many)
    assert result.students_over == over


def test_batches_round_trip_through_take_concatenate_and_pickle():
    rng = random.Random(5)
    logs = random_logs(rng)
    batch = LogBatch.from_logs(logs)
    assert batch.logs() == logs
    halves = [batch.take(np.arange(0, len(logs), 2)), batch.take(np.arange(1, len(logs), 2))]
    assert set(halves[0].users) == {log.user for log in logs[::2]}  # only the names used
    joined = LogBatch.concatenate([pickle.loads(pickle.dumps(half)) for half in halves])
    assert joined.logs() == logs[::2] + logs[1::2]
    assert np.array_equal(joined.user_hashes(),
                          np.array([user_hash(log.user) for log in joined.logs()],
                                   dtype=np.uint64))


def test_buckets_hold_whole_students():
    rng = random.Random(7)
    logs = random_logs(rng, students=60)
    batch = LogBatch.from_logs(logs)
    seen = {}
    for bucket, part in batch.by_bucket(5):
        for log in part.logs():
            assert user_hash(log.user) % 5 == bucket
            assert seen.setdefault(log.user, bucket) == bucket
    assert sum(len(part) for _, part in batch.by_bucket(5)) == len(logs)


def test_empty_batches():
    assert len(LogBatch.from_logs([])) == 0
    assert len(LogBatch.concatenate([LogBatch.empty(), LogBatch.empty()])) == 0
    result = sessionize_batch(LogBatch.empty(), 3)
    assert len(result.logs) == 0 and list(result.student_starts) == [0]


@pytest.mark.parametrize("domain, size", [(50, 10_000), (1 << 20, 30), (7, 0), (3, 1)])
def test_unique_codes_equals_numpy_unique(domain, size):
    """Both paths (presence mask for a narrow domain, sort for a wide one)."""
    codes = np.random.default_rng(domain).integers(0, domain, size)
    used, inverse = unique_codes(codes, domain)
    expected_used, expected_inverse = np.unique(codes, return_inverse=True)
    np.testing.assert_array_equal(used, expected_used)
    np.testing.assert_array_equal(inverse, expected_inverse)
    assert inverse.dtype == np.int32
