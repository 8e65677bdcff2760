"""Tests for models.knowledge_state against the feature contract (docs/how-it-works.md).

Feature values are checked against arithmetic written out by hand here (not
against the implementation's own helpers); the batch replay is checked against
the one-attempt-at-a-time reference on random students.
"""

import math
import os
import random
import subprocess
import sys

import numpy as np
import pytest

from models.knowledge_state import (
    BASE_FEATURE_NAMES, NUM_BASE_FEATURES, WINDOW,
    ComponentCache, ExerciseState, KnowledgeState, TrainingRows, feature_names,
    random_component, reference_replay, replay_students, sessionize,
    sessionize_with_conflicts)
from models.problem_log import ProblemLog
from models.settings import DEFAULT_NUM_RANDOM_FEATURES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T0 = 1_704_164_645_000_000  # 2024-01-02T03:04:05Z in microseconds


def features_after(answers):
    state = ExerciseState()
    for answer in answers:
        state.update(answer)
    return state.features()


def log(time_done, exercise="e", correct=True, problem_number=None, problem_type="",
        user="u", **optional):
    return ProblemLog(user, exercise, problem_type, problem_number, time_done, correct,
                      **optional)


# --- ExerciseState features, by hand ---------------------------------------------

def test_constants_match_the_design():
    assert WINDOW == 20
    assert NUM_BASE_FEATURES == 7
    assert BASE_FEATURE_NAMES == ("bias", "ewma_3", "ewma_10", "streak", "log_num_done",
                                  "log_num_missed", "percent_correct")
    assert DEFAULT_NUM_RANDOM_FEATURES == 100
    assert feature_names(2) == list(BASE_FEATURE_NAMES) + ["random_1", "random_2"]


def test_empty_state_features():
    assert features_after([]) == [0.9, 0.9, 0.0, 0.0, 0.0, 0.8]


def test_features_after_one_wrong_answer():
    ewma_3, ewma_10, streak, log_done, log_missed, percent = features_after([0])
    assert ewma_3 == pytest.approx(0.667 * 0.9, rel=1e-14)    # 0.6003
    assert ewma_10 == pytest.approx(0.9 * 0.9, rel=1e-14)     # 0.81
    assert (streak, log_done, percent) == (0.0, 0.0, 0.0)     # ln 1 = 0
    assert log_missed == pytest.approx(math.log(2), rel=1e-15)


def test_features_after_1011():
    ewma_3, ewma_10, streak, log_done, log_missed, percent = features_after([1, 0, 1, 1])
    # e = w*a + (1-w)*e, from 0.9, oldest answer first; written inside out.
    expected_ewma_3 = 0.333 * 1 + 0.667 * (0.333 * 1 + 0.667 * (
        0.333 * 0 + 0.667 * (0.333 * 1 + 0.667 * 0.9)))
    expected_ewma_10 = 0.1 * 1 + 0.9 * (0.1 * 1 + 0.9 * (
        0.1 * 0 + 0.9 * (0.1 * 1 + 0.9 * 0.9)))
    assert ewma_3 == pytest.approx(expected_ewma_3, rel=1e-14)
    assert ewma_10 == pytest.approx(expected_ewma_10, rel=1e-14)
    # The same numbers worked through on paper:
    # ewma_3: 0.9333, 0.62251110, 0.74821490, 0.83205934
    # ewma_10: 0.91, 0.819, 0.8371, 0.85339
    assert ewma_3 == pytest.approx(0.83205934, abs=1e-8)
    assert ewma_10 == pytest.approx(0.85339, abs=1e-12)
    assert streak == 2.0
    assert log_done == pytest.approx(math.log(4), rel=1e-15)
    assert log_missed == pytest.approx(math.log(4 - 3 + 1), rel=1e-15)  # ln 2
    assert percent == 0.75


def test_window_of_25_answers_uses_only_last_20():
    # 5 wrong answers then 20 right: the wrong ones have left the window.
    ewma_3, ewma_10, streak, log_done, log_missed, percent = features_after([0] * 5 + [1] * 20)
    # From 0.9, 20 answers of 1: e_n = 1 - 0.1 * (1 - w)^n.
    assert ewma_3 == pytest.approx(1 - 0.1 * 0.667 ** 20, rel=1e-14)
    assert ewma_10 == pytest.approx(1 - 0.1 * 0.9 ** 20, rel=1e-14)
    assert streak == 20.0
    assert log_done == pytest.approx(math.log(20), rel=1e-15)
    assert log_missed == 0.0       # ln(20 - 20 + 1)
    assert percent == 1.0          # would be 0.8 over all 25


def test_window_keeps_a_wrong_answer_until_it_is_21_back():
    answers = [1] * 3 + [0] + [1] * 19          # 23 answers; the 0 is 20th from the end
    ewma_3, ewma_10, streak, log_done, log_missed, percent = features_after(answers)
    assert streak == 19.0
    assert log_done == pytest.approx(math.log(20))
    assert log_missed == pytest.approx(math.log(2))
    assert percent == 19 / 20
    # Window = [0] + [1]*19: from 0.9 -> 0.9*(1-w) -> then 19 ones.
    assert ewma_10 == pytest.approx(1 - (1 - 0.9 * 0.9) * 0.9 ** 19, rel=1e-13)
    assert ewma_3 == pytest.approx(1 - (1 - 0.9 * 0.667) * 0.667 ** 19, rel=1e-13)
    answers.append(1)                            # now the 0 leaves the window
    assert features_after(answers)[2:] == [20.0, math.log(20), 0.0, 1.0]


def test_streak_is_capped_by_the_window():
    assert features_after([1] * 25)[2] == 20.0
    assert features_after([1] * 7)[2] == 7.0
    assert features_after([1] * 7 + [0])[2] == 0.0


def test_knowledge_state_features_layout():
    cache = ComponentCache(seed=3, dim=4)
    state = KnowledgeState(cache)
    x = state.features("e")
    np.testing.assert_array_equal(x, [1.0, 0.9, 0.9, 0.0, 0.0, 0.0, 0.8, 0, 0, 0, 0])
    state.update(log(T0, "e", False, problem_number=1, problem_type="pt"))
    x = state.features("e")
    component = random_component(("e", "pt", False), 3, 4)
    assert x[0] == 1.0
    np.testing.assert_allclose(x[1:7], [0.667 * 0.9, 0.81, 0, 0, math.log(2), 0.0])
    np.testing.assert_array_equal(x[7:], component)
    # Another exercise has an empty ExerciseState but shares r.
    x_other = state.features("other")
    np.testing.assert_array_equal(x_other[1:7], [0.9, 0.9, 0.0, 0.0, 0.0, 0.8])
    np.testing.assert_array_equal(x_other[7:], component)


# --- no label leakage ---------------------------------------------------------------

def _student(rng, n, exercises=("a", "b", "c"), user="u"):
    logs = [log(T0 + int(rng.integers(0, 10 * n)) * 1_000_000,
                exercises[int(rng.integers(len(exercises)))], bool(rng.random() < 0.6),
                None, ("p1", "p2")[int(rng.integers(2))], user)
            for _ in range(n)]
    return sessionize(logs)[0]


def test_flipping_a_label_never_changes_its_own_row():
    rng = np.random.default_rng(5)
    logs = _student(rng, 40)
    cache = ComponentCache(seed=1, dim=8)
    base = reference_replay(logs, cache)
    base_batch = replay_students([logs], cache).features(cache)
    for i in range(len(logs)):
        flipped = list(logs)
        flipped[i] = logs[i]._replace(correct=not logs[i].correct)
        rows = reference_replay(flipped, cache)
        batch = replay_students([flipped], cache).features(cache)
        for j in range(i + 1):  # the row itself and everything before it
            np.testing.assert_array_equal(rows[j][1], base[j][1])
            np.testing.assert_array_equal(batch[j], base_batch[j])
        # ... while the label does reach later rows of the same exercise.
        later = [j for j in range(i + 1, len(logs)) if logs[j].exercise == logs[i].exercise]
        if later:
            assert not np.array_equal(rows[later[0]][1], base[later[0]][1])


# --- random components --------------------------------------------------------------

def test_random_component_is_unit_length_and_deterministic():
    key = ("fractions", "type_a", True)
    vector = random_component(key, seed=11, dim=100)
    assert vector.shape == (100,) and vector.dtype == np.float64
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-12)
    assert random_component(key, 11, 100).tobytes() == vector.tobytes()
    # Unit vector of standard normals: entries ~ N(0, 1/100); not all tiny/equal.
    assert 0.5 / 10 < np.std(vector) < 2 / 10
    assert len(np.unique(vector)) == 100


def test_random_component_differs_by_key_and_seed():
    base = random_component(("ex", "pt", True), 0, 50)
    others = [random_component(("ex", "pt", False), 0, 50),
              random_component(("ex", "pt2", True), 0, 50),
              random_component(("ex2", "pt", True), 0, 50),
              random_component(("ex", "pt", True), 1, 50),
              # field boundaries are not ambiguous
              random_component(("expt", "", True), 0, 50),
              random_component(("e", "xpt", True), 0, 50)]
    for other in others:
        # Independent unit vectors in 50-d: |cos| is ~0.14; a collision would be 1.
        assert abs(other @ base) < 0.6
    assert len({v.tobytes() for v in others + [base]}) == len(others) + 1


_SUBPROCESS = """
import sys
from models.knowledge_state import random_component
for key in [("fractions", "type_a", True), ("fractions", "type_a", False),
            ("\u00e9t\u00e9", "", True)]:
    for seed in (0, 42):
        sys.stdout.write(random_component(key, seed, 100).tobytes().hex() + "\\n")
"""


def test_random_component_identical_across_processes():
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=ROOT)
    output = subprocess.run([sys.executable, "-c", _SUBPROCESS], cwd=ROOT, env=env,
                            check=True, capture_output=True, text=True).stdout.split()
    expected = [random_component(key, seed, 100).tobytes().hex()
                for key in [("fractions", "type_a", True), ("fractions", "type_a", False),
                            ("\u00e9t\u00e9", "", True)]
                for seed in (0, 42)]
    assert output == expected
    assert len(set(expected)) == 6


def test_component_cache_memoises_and_records_used_keys():
    cache = ComponentCache(seed=9, dim=5)
    first = cache(("a", "", True))
    assert cache(("a", "", True)) is first
    np.testing.assert_array_equal(first, random_component(("a", "", True), 9, 5))
    cache(("b", "t", False))
    assert cache.used == {("a", "", True), ("b", "t", False)}


def test_component_caches_of_one_seed_and_dimension_share_their_vectors():
    first, second = ComponentCache(seed=11, dim=4), ComponentCache(seed=11, dim=4)
    vector = first(("x", "", True))
    assert second(("x", "", True)) is vector  # computed once in the process
    assert second.used == {("x", "", True)}
    other = ComponentCache(seed=12, dim=4)(("x", "", True))
    np.testing.assert_array_equal(other, random_component(("x", "", True), 12, 4))
    assert not np.array_equal(other, vector)


@pytest.mark.parametrize("keys", [(), (("c", "", True),),
                                  (("a", "", True), ("c|d", "t\x1f", False), ("b", "t", False))])
def test_component_matrix_stacks_the_keys_vectors_in_order(keys):
    cache = ComponentCache(seed=9, dim=5)
    cache(("a", "", True))  # one key already cached, the others not
    cache.used.clear()
    matrix = cache.matrix(keys)
    assert matrix.shape == (len(keys), 5)
    for row, key in zip(matrix, keys):
        np.testing.assert_array_equal(row, random_component(key, 9, 5))
    assert cache.used == set(keys)


# --- sessionize ----------------------------------------------------------------------

def test_sessionize_sorts_by_time_and_derives_problem_numbers():
    logs = [log(T0 + 30, "b"), log(T0 + 10, "a", False), log(T0 + 20, "a"),
            log(T0 + 5, "b", False), log(T0 + 40, "a")]
    out, duplicates = sessionize(logs)
    assert duplicates == 0
    assert [attempt.time_done - T0 for attempt in out] == [5, 10, 20, 30, 40]
    assert [(attempt.exercise, attempt.problem_number) for attempt in out] == [
        ("b", 1), ("a", 1), ("a", 2), ("b", 2), ("a", 3)]


def test_sessionize_keeps_given_problem_numbers():
    logs = [log(T0 + 3, "a", problem_number=7), log(T0 + 1, "a", problem_number=5),
            log(T0 + 2, "a"), log(T0 + 4, "b", problem_number=1)]
    out, _ = sessionize(logs)
    # Given numbers are kept; a missing one is this attempt's index on the exercise.
    assert [(attempt.exercise, attempt.problem_number) for attempt in out] == [
        ("a", 5), ("a", 2), ("a", 7), ("b", 1)]


def test_sessionize_removes_and_counts_exact_duplicates():
    a = log(T0, "a", True, problem_type="x", time_taken=5)
    b = log(T0, "a", True, problem_type="x", time_taken=4)   # same time, differs
    c = log(T0 + 1, "b")
    out, duplicates = sessionize([c, a, b, a, c, a])
    assert duplicates == 3
    assert len(out) == 3
    assert [attempt._replace(problem_number=None) for attempt in out] == [b, a, c]  # 4 < 5
    assert [attempt.problem_number for attempt in out] == [1, 2, 1]


def test_sessionize_drops_every_conflicting_duplicate():
    """Same exercise, time and problem number, different answers: none is kept
    (exact copies among them count as duplicates), and later problem numbers
    are derived without them."""
    right = log(T0, "a", True, problem_type="x")
    wrong = log(T0, "a", False, problem_type="y")
    numbered = log(T0, "a", False, 1)                # problem_number 1 vs None: no conflict
    later = log(T0 + 1, "a", True)
    other = log(T0, "b", False)                      # another exercise: no conflict
    out, duplicates, conflicts = sessionize_with_conflicts(
        [later, right, wrong, right, numbered, other])
    assert duplicates == 1
    assert sorted(conflicts) == sorted([right, wrong])
    assert [(attempt.exercise, attempt.time_done, attempt.problem_number) for attempt in out] == [
        ("a", T0, 1), ("b", T0, 1), ("a", T0 + 1, 2)]
    assert sessionize([later, right, wrong, right, numbered, other]) == (out, 1)


def test_sessionize_tie_break_is_independent_of_input_order():
    rng = random.Random(3)
    logs = []
    for _ in range(60):  # 60 attempts on only 6 distinct times: many ties
        logs.append(log(T0 + rng.randrange(6), rng.choice("abc"), rng.random() < 0.5,
                        rng.choice([None, 1, 2]), rng.choice(["", "p", "q"]),
                        time_taken=rng.choice([None, 3, 8]),
                        count_hints=rng.choice([None, 0, 1])))
    logs += logs[:10]  # and some exact duplicates
    expected = sessionize_with_conflicts(logs)
    kept, duplicates, conflicts = expected
    assert duplicates >= 10 and conflicts
    assert len(kept) + len(conflicts) == len(set(logs))
    assert [attempt.time_done for attempt in kept] == sorted(attempt.time_done for attempt in kept)
    for _ in range(20):
        shuffled = list(logs)
        rng.shuffle(shuffled)
        assert sessionize_with_conflicts(shuffled) == expected


def test_sessionize_tie_break_with_none_and_minus_one():
    a = log(T0, "a", time_taken=None)
    b = log(T0, "a", time_taken=-1)
    assert sessionize([a, b, a]) == sessionize([a, a, b])


def test_sessionize_empty():
    assert sessionize([]) == ([], 0)


# --- replay_students against the reference ---------------------------------------------

def _random_students(seed, count, num_exercises=4):
    rng = np.random.default_rng(seed)
    exercises = [f"ex{i}" for i in range(num_exercises)]
    students = []
    for s in range(count):
        n = int(rng.integers(0, 70))
        logs = []
        for _ in range(n):
            given = rng.random() < 0.3
            logs.append(log(T0 + int(rng.integers(0, 200)) * 1_000_000,
                            exercises[int(rng.integers(len(exercises)))],
                            bool(rng.random() < 0.65),
                            int(rng.integers(1, 4)) if given else None,
                            ("", "t1", "t2")[int(rng.integers(3))], f"user{s}"))
        students.append(sessionize(logs)[0])
    return students


def _reference_rows(students, cache, problem_number_range=(1, None)):
    rows = [row for logs in students
            for row in reference_replay(logs, cache, problem_number_range)]
    return ([r[0] for r in rows],
            np.array([r[1] for r in rows]).reshape(len(rows), NUM_BASE_FEATURES + cache.dim))


@pytest.mark.parametrize("problem_number_range", [(1, None), (1, 6), (2, 4)])
def test_replay_students_matches_reference(problem_number_range):
    students = _random_students(17, 40)
    assert any(len(s) == 0 for s in students)
    cache = ComponentCache(seed=2, dim=12)
    rows = replay_students(students, cache, problem_number_range)
    logs, x = _reference_rows(students, cache, problem_number_range)
    assert len(rows) == len(logs) > 100
    np.testing.assert_allclose(rows.features(cache), x, rtol=0, atol=1e-12)
    assert list(rows.user) == [attempt.user for attempt in logs]
    assert list(rows.exercise) == [attempt.exercise for attempt in logs]
    np.testing.assert_array_equal(rows.time_done, [attempt.time_done for attempt in logs])
    np.testing.assert_array_equal(rows.problem_number, [attempt.problem_number for attempt in logs])
    np.testing.assert_array_equal(rows.correct, [attempt.correct for attempt in logs])
    assert rows.time_done.dtype == np.int64 and rows.correct.dtype == bool
    low, high = problem_number_range
    assert rows.problem_number.min() >= low
    if high is not None:
        assert rows.problem_number.max() < high
        # the range really removed rows that the open range keeps
        assert len(replay_students(students, cache)) > len(rows)


def test_replay_students_range_skips_rows_but_not_state_updates():
    # Attempts 1..7 on one exercise, only 2..3 emitted: row of attempt 2 still
    # sees attempt 1 (and attempt 1's random component).
    logs = sessionize([log(T0 + i, "e", bool(i % 2), problem_type="p") for i in range(7)])[0]
    cache = ComponentCache(seed=0, dim=3)
    rows = replay_students([logs], cache, (2, 4))
    x = rows.features(cache)
    np.testing.assert_array_equal(rows.problem_number, [2, 3])
    np.testing.assert_allclose(x[0, :7], [1, 0.667 * 0.9, 0.81, 0, 0, math.log(2), 0],
                               rtol=1e-14)
    np.testing.assert_array_equal(x[0, 7:], random_component(("e", "p", False), 0, 3))
    np.testing.assert_array_equal(x[1, 7:], x[0, 7:])  # attempt 2 is no update


def test_replay_students_default_dimension_and_window_boundaries():
    # Long single-exercise runs push every student past the 20-answer window.
    rng = np.random.default_rng(8)
    students = []
    for s in range(6):
        logs = [log(T0 + i, "e" if rng.random() < 0.8 else "f", bool(rng.random() < 0.7),
                    None, "", f"s{s}") for i in range(45)]
        students.append(sessionize(logs)[0])
    # and one student with 25 right answers in a row: streak hits the cap of 20
    students.append(sessionize([log(T0 + i, "e", True, None, "", "s6")
                                for i in range(25)])[0])
    cache = ComponentCache(seed=4, dim=DEFAULT_NUM_RANDOM_FEATURES)
    rows = replay_students(students, cache)
    _, x = _reference_rows(students, cache)
    dense = rows.features(cache)
    assert dense.shape == (6 * 45 + 25, 7 + 100)
    np.testing.assert_allclose(dense, x, rtol=0, atol=1e-12)
    streak, log_done = dense[:, 3], dense[:, 4]
    assert streak.max() == 20.0
    np.testing.assert_array_equal(streak[-5:], 20.0)
    np.testing.assert_array_equal(streak[-25:-20], [0, 1, 2, 3, 4])
    assert log_done.max() == pytest.approx(math.log(20), rel=1e-15)


def test_replay_students_output_does_not_depend_on_the_batch():
    students = _random_students(23, 12)
    cache = ComponentCache(seed=5, dim=10)
    whole = replay_students(students, cache)
    whole_x = whole.features(cache)
    offsets = np.cumsum([0] + [len(s) for s in students])
    for i, student in enumerate(students):
        alone = replay_students([student], cache)
        part = whole.take(np.arange(offsets[i], offsets[i + 1]))
        assert alone.features(cache).tobytes() == whole_x[offsets[i]:offsets[i + 1]].tobytes()
        assert alone.features(cache).tobytes() == part.features(cache).tobytes()
        np.testing.assert_array_equal(alone.time_done, part.time_done)
    # A different company (other students first, order reversed) changes nothing.
    others = _random_students(99, 5)
    mixed = replay_students(others + students[::-1], cache).features(cache)
    offset = sum(len(s) for s in others)
    for student in students[::-1]:
        alone = replay_students([student], cache).features(cache)
        assert mixed[offset:offset + len(student)].tobytes() == alone.tobytes()
        offset += len(student)


def test_replay_students_empty():
    cache = ComponentCache(seed=0, dim=5)
    for batch in ([], [[]], [[], []]):
        rows = replay_students(batch, cache)
        assert len(rows) == 0
        assert rows.features(cache).shape == (0, 12)


def test_replay_students_records_used_components():
    logs = sessionize([log(T0, "a", True, 1, "p"), log(T0 + 1, "b", False, 1, "q"),
                       log(T0 + 2, "a", False, 2, "p")])[0]
    cache = ComponentCache(seed=0, dim=4)
    replay_students([logs], cache)
    assert {("a", "p", True), ("b", "q", False)} <= cache.used
    assert ("a", "p", False) not in cache.used


def test_r_changes_only_after_problem_number_one():
    logs = [log(T0 + i, ex, correct, number, ptype) for i, (ex, correct, number, ptype)
            in enumerate([("a", True, 1, "p"), ("a", False, 2, "p"), ("b", False, 1, "q"),
                          ("a", True, 3, "p"), ("b", True, 2, "q"), ("a", False, 1, "r"),
                          ("c", True, 4, "p"), ("c", True, None, "p"), ("d", True, 1, "p")])]
    logs = sessionize(logs)[0]
    assert logs[7].problem_number == 2  # derived: second attempt on c
    dim = 6
    cache = ComponentCache(seed=13, dim=dim)
    r = replay_students([logs], cache).features(cache)[:, NUM_BASE_FEATURES:]
    np.testing.assert_array_equal(r[0], np.zeros(dim))
    changed = []
    for i in range(1, len(logs)):
        previous = logs[i - 1]
        if previous.problem_number == 1:
            added = random_component((previous.exercise, previous.problem_type,
                                      previous.correct), 13, dim)
            np.testing.assert_allclose(r[i] - r[i - 1], added, rtol=0, atol=1e-14)
            changed.append(i)
        else:
            np.testing.assert_array_equal(r[i], r[i - 1])
    assert changed == [1, 3, 6]
    # r after everything = the components of the four problem_number == 1 attempts.
    expected = (random_component(("a", "p", True), 13, dim)
                + random_component(("b", "q", False), 13, dim)
                + random_component(("a", "r", False), 13, dim)
                + random_component(("d", "p", True), 13, dim))
    state = KnowledgeState(cache)
    for item in logs:
        state.update(item)
    np.testing.assert_allclose(state.random_features, expected, rtol=0, atol=1e-14)


# --- TrainingRows ---------------------------------------------------------------------

def test_split_by_exercise_partitions_rows_exactly():
    students = _random_students(31, 15)
    cache = ComponentCache(seed=1, dim=4)
    rows = replay_students(students, cache)
    x = rows.features(cache)
    parts = list(rows.split_by_exercise())
    names = [name for name, _ in parts]
    assert names == list(dict.fromkeys(rows.exercise))  # order of first appearance
    assert sum(len(part) for _, part in parts) == len(rows)
    seen = np.zeros(len(rows), dtype=int)
    for name, part in parts:
        index = np.flatnonzero(rows.exercise == name)
        seen[index] += 1
        assert set(part.exercise) == {name}
        # original order within the exercise, every column intact
        for column in ("user", "exercise", "time_done", "problem_number", "correct"):
            np.testing.assert_array_equal(getattr(part, column), getattr(rows, column)[index])
        assert part.features(cache).tobytes() == x[index].tobytes()
        # A block carries only the component keys its own rows use.
        assert len(set(part.update_ids.tolist())) == len(part.component_keys)
    np.testing.assert_array_equal(seen, 1)
    assert len(rows.dense_rows) and len(rows.update_ids)  # both forms of r were split
    # Concatenating the parts gives the rows back in exercise-major order.
    merged = TrainingRows.concatenate([part for _, part in parts])
    order = np.concatenate([np.flatnonzero(rows.exercise == name) for name in names])
    assert len(merged) == len(rows)
    np.testing.assert_array_equal(merged.time_done, rows.time_done[order])
    assert merged.features(cache).tobytes() == x[order].tobytes()


def test_split_by_exercise_small_example():
    students = [sessionize([log(T0 + 1, "b", True, 1, "", "u1"),
                            log(T0 + 2, "a", False, 1, "", "u1")])[0],
                sessionize([log(T0 + 3, "b", True, None, "", "u2"),
                            log(T0 + 5, "a", False, None, "", "u2")])[0],
                sessionize([log(T0 + 4, "c", True, None, "", "u3")])[0]]
    cache = ComponentCache(seed=0, dim=2)
    rows = replay_students(students, cache)
    parts = dict(rows.split_by_exercise())
    assert list(parts) == ["b", "a", "c"]
    np.testing.assert_array_equal(parts["b"].time_done - T0, [1, 3])
    np.testing.assert_array_equal(parts["a"].time_done - T0, [2, 5])
    np.testing.assert_array_equal(parts["c"].time_done - T0, [4])
    assert list(parts["a"].user) == ["u1", "u2"]
    # u1's attempt on a came after a problem_number == 1 attempt on b: r is set.
    x_a = parts["a"].features(cache)
    np.testing.assert_array_equal(x_a[0, 7:], random_component(("b", "", True), 0, 2))
    np.testing.assert_array_equal(x_a[1, 7:], random_component(("b", "", True), 0, 2))
    assert len(list(TrainingRows.concatenate([rows]).split_by_exercise())) == 3


def test_take_accepts_index_arrays_masks_and_slices():
    students = _random_students(41, 6)
    cache = ComponentCache(seed=3, dim=5)
    rows = replay_students(students, cache)
    x = rows.features(cache)
    n = len(rows)
    index = np.array([n - 1, 0, 5, 5, 2])
    np.testing.assert_array_equal(rows.take(index).features(cache), x[index])
    mask = rows.correct.copy()
    np.testing.assert_array_equal(rows.take(mask).features(cache), x[mask])
    np.testing.assert_array_equal(rows.take(slice(3, 9)).features(cache), x[3:9])
    np.testing.assert_array_equal(rows.take(index).time_done, rows.time_done[index])


def test_rows_carry_a_stable_user_hash():
    from models.knowledge_state import user_hash
    students = _random_students(43, 8)
    cache = ComponentCache(seed=0, dim=2)
    rows = replay_students(students, cache)
    assert rows.user_hash.dtype == np.uint64
    np.testing.assert_array_equal(rows.user_hash,
                                  np.array([user_hash(u) for u in rows.user], dtype=np.uint64))
    parts = [part for _, part in rows.split_by_exercise()]
    merged = TrainingRows.concatenate(parts)
    np.testing.assert_array_equal(merged.user_hash,
                                  np.array([user_hash(u) for u in merged.user], dtype=np.uint64))
    assert user_hash("user0") != user_hash("user1")
    assert 0 <= user_hash("user0") < 2 ** 64
    # stable across processes (not Python's per-process salted hash())
    env = dict(os.environ, PYTHONHASHSEED="777", PYTHONPATH=ROOT)
    other = subprocess.run(
        [sys.executable, "-c", "from models.knowledge_state import user_hash; "
         "print(user_hash('user0'), user_hash('\u00e9l\u00e8ve'))"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert other == [str(user_hash("user0")), str(user_hash("\u00e9l\u00e8ve"))]


def test_component_keys_are_unambiguous_for_any_names():
    """The separator inside names must not make two keys one vector, while
    names without it keep the vectors of models trained before the escaping."""
    dim = 8
    keys = [("a\x1fb", "c", True), ("a", "b\x1fc", True), ("a\x1b\x1fb", "c", True),
            ("a\x1b", "\x1fb\x1fc", True), ("a\x1fb\x1fc", "", True)]
    vectors = {random_component(key, 0, dim).tobytes() for key in keys}
    assert len(vectors) == len(keys)
    # Unchanged derivation for plain names: the digest of the old joined text.
    import hashlib
    text = "\x1f".join(("0", "fractions", "type_a", "1"))
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "little")
    expected = np.random.Generator(np.random.PCG64(seed)).standard_normal(dim)
    assert np.array_equal(random_component(("fractions", "type_a", True), 0, dim),
                          expected / np.linalg.norm(expected))


def test_long_histories_carry_r_densely_and_equal_the_reference():
    """A student who has started hundreds of exercises: rows past 2 D
    components carry r as floats, and every row still equals the
    one-attempt-at-a-time replay (through take, concatenate and pickling)."""
    import pickle
    dim = 4
    logs = [log(T0 + i, f"e{i // 2}", i % 3 != 0) for i in range(300)]
    students = [sessionize(logs)[0], sessionize([log(T0, "a", True, None, "", "u2")])[0]]
    components = ComponentCache(0, dim)
    rows = replay_students(students, components)
    assert len(rows.dense_rows) > 200 and len(rows.update_ids) < 300 * 2 * dim
    expected = np.array([x for student in students
                         for _, x in reference_replay(student, ComponentCache(0, dim))])
    np.testing.assert_allclose(rows.features(components), expected, rtol=0, atol=1e-12)
    half = len(rows) // 2
    again = TrainingRows.concatenate([pickle.loads(pickle.dumps(rows.take(slice(half, None)))),
                                      rows.take(np.arange(half))])
    np.testing.assert_allclose(again.features(components),
                               np.r_[expected[half:], expected[:half]], rtol=0, atol=1e-12)
