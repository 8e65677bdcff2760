"""models.student_state: replaying logs in time slices, each slice starting
from the state the previous one saved, gives the training rows of one replay
over all the logs. The reference is that one replay of everything (the
one-student-at-a-time specification is checked against it elsewhere)."""

import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from models.knowledge_state import ComponentCache, KnowledgeState, replay_batch, sessionize
from models.log_batch import LogBatch, sessionize_batch
from models.problem_log import ProblemLog
from models.student_state import Joined, StudentStates, from_arrow, to_arrow

T0 = 1_700_000_000_000_000
DIM = 8


def random_logs(rng, students=25, attempts=(0, 60)):
    """Students with ties, absent problem numbers, separators in names, and
    histories longer than the window on some exercises."""
    logs = []
    for s in range(students):
        user = rng.choice([f"u{s}", f"user|{s}\x1f", f"\u00e9{s}"])
        for _ in range(rng.randrange(*attempts)):
            logs.append(ProblemLog(
                user, rng.choice(["a", "b", "c\x1fd", "B"]), rng.choice(["", "p", "q"]),
                rng.choice([None, None, None, 1, 2]), T0 + rng.randrange(200) * 1000,
                rng.random() < 0.6, rng.choice([None, 7]), None, rng.choice([None, 1])))
    return logs


def sliced(logs, boundaries):
    """Logs split at times `boundaries` (each slice [b_i, b_i+1))."""
    edges = [-np.inf, *boundaries, np.inf]
    return [[log for log in logs if low <= log.time_done < high]
            for low, high in zip(edges, edges[1:])]


def run(logs, state, components, student_features=False):
    """One run: (rows, state after, Sessionized)."""
    result = sessionize_batch(LogBatch.from_logs(logs), None, prior=state)
    joined = Joined(state, result.logs, result.student_starts)
    rows = replay_batch(result.logs, result.student_starts, components,
                        prior=joined.events(), student_features=student_features)
    return rows, joined.advance(result.fingerprints), result


def through_parquet(state, tmp_path):
    path = tmp_path / "state.parquet"
    pq.write_table(to_arrow(state), path)
    return from_arrow(pq.read_table(path))


def rows_table(rows, components):
    """{(user, time, exercise, problem_number, correct): x} of a TrainingRows."""
    x = rows.features(components)
    keys = zip(rows.user.tolist(), rows.time_done.tolist(), rows.exercise.tolist(),
               rows.problem_number.tolist(), rows.correct.tolist())
    table = {}
    for key, features in zip(keys, x):
        table.setdefault(key, []).append(features)
    return table


def assert_same_rows(actual, expected):
    assert sorted(actual) == sorted(expected)
    for key, xs in expected.items():
        got = actual[key]
        assert len(got) == len(xs)
        np.testing.assert_allclose(np.sort(np.array(got), axis=0), np.sort(np.array(xs), axis=0),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("num_slices,seed,student_features",
                         [(3, 0, False), (3, 1, True), (10, 2, False), (10, 3, True)])
def test_sliced_replay_equals_one_replay(num_slices, seed, student_features, tmp_path):
    """With --student_features too: the counts over all exercises continue
    from the saved ones."""
    rng = random.Random(seed)
    logs = random_logs(rng)
    components = ComponentCache(seed=5, dim=DIM)
    full_rows, _, full = run(logs, StudentStates.empty(), components, student_features)

    boundaries = sorted(rng.sample(range(T0 + 1000, T0 + 200_000, 1000), num_slices - 1))
    state, parts, duplicates, copies = StudentStates.empty(), [], 0, 0
    kept = set(full.logs.logs())
    previous = []
    for part in sliced(logs, boundaries):
        # Overlapping exports: copies of attempts an earlier slice replayed
        # (recent enough to be in its window) arrive again.
        again = [log for log in previous[-3:] if log in kept or log.problem_number is None]
        copies += len(again)
        rows, state, result = run(part + again, state, components, student_features)
        state = through_parquet(state, tmp_path)
        parts.append(rows)
        duplicates += result.duplicates
        assert result.late == 0
        previous = part
    combined = {}
    for rows in parts:
        for key, xs in rows_table(rows, components).items():
            combined.setdefault(key, []).extend(xs)
    assert_same_rows(combined, rows_table(full_rows, components))
    assert duplicates == full.duplicates + copies


def test_state_holds_the_window_attempt_counts_and_first_attempts():
    components = ComponentCache(seed=1, dim=DIM)
    logs = [ProblemLog("s", "e", "t", None, T0 + i, i % 3 != 0, None, None, None)
            for i in range(25)]
    logs += [ProblemLog("s", "f", "x", None, T0 + 100, False, None, None, None),
             ProblemLog("s", "f", "y", 1, T0 + 101, True, None, None, None)]
    _, state, _ = run(logs, StudentStates.empty(), components)
    table = to_arrow(state).to_pylist()
    by_exercise = {row["exercise"]: row for row in table}
    assert by_exercise["e"]["attempts"] == 25
    assert by_exercise["e"]["correct_attempts"] == 16  # i % 3 != 0 for i < 25
    assert by_exercise["f"]["correct_attempts"] == 1
    # The last 20 of 25 answers: attempts 5..24 (i % 3 != 0).
    assert by_exercise["e"]["answers"] == [i % 3 != 0 for i in range(5, 25)]
    assert by_exercise["e"]["first_attempts"] == [
        {"problem_type": "t", "correct": False, "order": 0}]
    # Problem numbers derived 1 (x) and given 1 (y): two updates on f, in order.
    assert by_exercise["f"]["attempts"] == 2
    assert by_exercise["f"]["first_attempts"] == [
        {"problem_type": "x", "correct": False, "order": 1},
        {"problem_type": "y", "correct": True, "order": 2}]
    assert {row["last_time_done"].timestamp() * 1e6 for row in table} == {T0 + 101}


def test_late_attempts_are_counted_and_replayed_after_the_state():
    components = ComponentCache(seed=2, dim=DIM)
    early = [ProblemLog("s", "e", "", None, T0 + i * 10, True, None, None, None)
             for i in range(5)]
    _, state, _ = run(early, StudentStates.empty(), components)
    late = ProblemLog("s", "e", "", None, T0 + 15, False, None, None, None)
    new = ProblemLog("s", "e", "", None, T0 + 100, True, None, None, None)
    rows, state, result = run([new, late], state, components)
    assert result.late == 1
    # As serving would have: the state, then the late attempt, then the new one.
    reference = KnowledgeState(components)
    for log in sessionize(early)[0]:
        reference.update(log)
    expected = []
    for log in (late._replace(problem_number=6), new._replace(problem_number=7)):
        expected.append(reference.features(log.exercise))
        reference.update(log)
    np.testing.assert_allclose(rows.features(components), np.array(expected), atol=1e-12)
    assert list(rows.problem_number) == [6, 7]
    assert sessionize(early + [late, new])[0][1].time_done == T0 + 10  # not what a full replay does


def test_students_without_new_logs_are_carried_over_unchanged():
    components = ComponentCache(seed=3, dim=DIM)
    rng = random.Random(7)
    _, state, _ = run(random_logs(rng, students=6), StudentStates.empty(), components)
    others = [ProblemLog("new student", "a", "", None, T0, True, None, None, None)]
    _, after, _ = run(others, state, components)
    before_rows = {(row["user"], row["exercise"]): row for row in to_arrow(state).to_pylist()}
    after_rows = {(row["user"], row["exercise"]): row for row in to_arrow(after).to_pylist()}
    assert set(after_rows) == set(before_rows) | {("new student", "a")}
    for key, row in before_rows.items():
        assert after_rows[key] == row


def test_a_table_that_is_not_a_snapshot_is_refused():
    with pytest.raises(ValueError, match="not a state snapshot"):
        from_arrow(pa.table({"user": ["a"]}))


@pytest.mark.parametrize("seed,student_features", [(0, False), (1, True), (2, False), (3, True)])
def test_serving_from_a_saved_state_equals_serving_from_the_whole_history(
        seed, student_features, tmp_path):
    from models.serving import KnowledgeModel
    rng = random.Random(seed)
    components = ComponentCache(seed=9, dim=DIM)
    logs = random_logs(rng, students=8, attempts=(20, 70))
    width = 7 + (3 if student_features else 0) + DIM
    thetas = {exercise: np.array([rng.gauss(0, 1) for _ in range(width)])
              for exercise in ("a", "b", "c\x1fd", "B")}
    model = KnowledgeModel(thetas, components, student_features=student_features)
    cut = T0 + 120_000
    _, state, _ = run([log for log in logs if log.time_done < cut], StudentStates.empty(),
                      components)
    state = through_parquet(state, tmp_path)
    for user in sorted({log.user for log in logs}):
        history = [log for log in logs if log.user == user]
        newer = [log for log in history if log.time_done >= cut]
        saved = state.of_user(user)
        for exercise in thetas:
            whole = model.predict(history, exercise)
            from_state = model.predict(newer, exercise, saved=saved)
            assert abs(whole - from_state) <= 1e-12


def test_copies_are_recognised_within_a_day_of_the_students_last_attempt():
    components = ComponentCache(seed=4, dim=DIM)
    day = 86_400_000_000
    old = ProblemLog("s", "e", "", None, T0, True, None, None, None)
    recent = ProblemLog("s", "e", "", None, T0 + 2 * day, False, None, None, None)
    last = ProblemLog("s", "f", "", None, T0 + 2 * day + 5, True, None, None, None)
    _, state, _ = run([old, recent, last], StudentStates.empty(), components)
    assert to_arrow(state).column("recent_attempts").to_pylist() != [[], []]
    rows, _, result = run([old, recent], state, components)
    # The copy of `recent` is dropped; the copy of `old`, two days before the
    # student's last attempt, is not held any more: a late attempt.
    assert (result.duplicates, result.late, len(rows)) == (1, 1, 1)


def test_forgetting_recent_attempts_before_a_time_keeps_the_later_ones():
    components = ComponentCache(seed=4, dim=DIM)
    logs = [ProblemLog("s", "e", "", None, T0 + offset, True, None, None, None)
            for offset in (0, 10, 20)]
    logs.append(ProblemLog("t", "f", "", None, T0 + 5, False, None, None, None))
    _, state, _ = run(logs, StudentStates.empty(), components)
    forgot = state.forget_recent_before(T0 + 10)
    indptr = forgot.recent_indptr
    kept = {forgot.users[forgot.user[row]]: forgot.recent_times[indptr[row]:indptr[row + 1]]
            .tolist() for row in range(len(forgot))}
    assert kept == {"s": [T0 + 10, T0 + 20], "t": []}
    table = to_arrow(forgot)
    # Everything else is unchanged.
    before = to_arrow(state)
    for name in before.column_names:
        if name != "recent_attempts":
            assert table.column(name).equals(before.column(name)), name
