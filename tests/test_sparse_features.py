"""Tests for models.sparse_features (the Sibyl-style sparse templates).

Expected feature values are written out literally for hand-built students; a
from-scratch reference (recomputing each attempt from the logs before it) checks
random students; label-leakage tests flip one label at a time.
"""

import os
import random
import subprocess
import sys

import pytest

from models.problem_log import ProblemLog
from models.sparse_features import (
    ALL_TEMPLATES, ATTEMPTS_BUCKETS, DAY_MICROS, DAYS_BUCKETS, RATE_BUCKETS, STREAK_BUCKETS,
    STUDENT_ATTEMPTS_BUCKETS, STUDENT_TEMPLATES, TEMPLATES, attempts_bucket, days_bucket,
    parse_templates, rate_bucket, streak_bucket, student_attempts_bucket, student_features,
    validate_templates)

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
D = 86_400_000_000          # one day in microseconds
H = 3_600_000_000           # one hour


def log(time_done, exercise, correct, problem_type="", user="u"):
    return ProblemLog(user, exercise, problem_type, None, time_done, correct)


# Student A: exercises a, b, c; a's first attempt is right then wrong, b's first
# attempt is wrong then right.
STUDENT_A = [
    log(T0, "a", True, "t1"),
    log(T0 + H, "a", False, "t1"),
    log(T0 + 2 * D, "b", False, "t2"),
    log(T0 + 2 * D + 1, "a", True, "t1"),
    log(T0 + 10 * D, "b", True),
    log(T0 + 45 * D, "c", True, "t1"),
    log(T0 + 45 * D + H, "a", True, "t2"),
]

EXPECTED_A = [
    {"exercise": ["a"], "exercise_x_problem_type": ["a|t1"],
     "exercise_x_streak": ["a|streak=0"], "exercise_x_attempts": ["a|done=0"],
     "exercise_x_prior_outcome": [], "exercise_x_days_since_last": ["a|days=never"]},
    {"exercise": ["a"], "exercise_x_problem_type": ["a|t1"],
     "exercise_x_streak": ["a|streak=1"], "exercise_x_attempts": ["a|done=1"],
     "exercise_x_prior_outcome": [], "exercise_x_days_since_last": ["a|days=<1"]},
    {"exercise": ["b"], "exercise_x_problem_type": ["b|t2"],
     "exercise_x_streak": ["b|streak=0"], "exercise_x_attempts": ["b|done=0"],
     "exercise_x_prior_outcome": ["b|a=correct"],
     "exercise_x_days_since_last": ["b|days=never"]},
    # gap since a's previous attempt: 2 days - 1 hour + 1 microsecond
    {"exercise": ["a"], "exercise_x_problem_type": ["a|t1"],
     "exercise_x_streak": ["a|streak=0"], "exercise_x_attempts": ["a|done=2"],
     "exercise_x_prior_outcome": ["a|b=wrong"],
     "exercise_x_days_since_last": ["a|days=1-2"]},
    # missing problem type -> "b|"; gap 8 days
    {"exercise": ["b"], "exercise_x_problem_type": ["b|"],
     "exercise_x_streak": ["b|streak=0"], "exercise_x_attempts": ["b|done=1"],
     "exercise_x_prior_outcome": ["b|a=correct"],
     "exercise_x_days_since_last": ["b|days=7-29"]},
    # b's later correct answer does not change its first outcome
    {"exercise": ["c"], "exercise_x_problem_type": ["c|t1"],
     "exercise_x_streak": ["c|streak=0"], "exercise_x_attempts": ["c|done=0"],
     "exercise_x_prior_outcome": ["c|a=correct", "c|b=wrong"],
     "exercise_x_days_since_last": ["c|days=never"]},
    {"exercise": ["a"], "exercise_x_problem_type": ["a|t2"],
     "exercise_x_streak": ["a|streak=1"], "exercise_x_attempts": ["a|done=3-4"],
     "exercise_x_prior_outcome": ["a|b=wrong", "a|c=correct"],
     "exercise_x_days_since_last": ["a|days=30+"]},
]


def test_hand_built_student_every_template():
    rows = student_features(STUDENT_A)
    assert rows == EXPECTED_A
    for row in rows:
        assert list(row) == list(TEMPLATES)


# Student A's student-level templates, by hand: outcomes T F F T T T T, so before
# attempt i the student has i attempts and c correct with c = 0 1 1 1 2 3 4, and
# the smoothed rate (c+1)/(i+2) is 1/2, 2/3, 2/4, 2/5, 3/6, 4/7, 5/8
# = 50%, 66.7%, 50% (edge), 40%, 50% (edge), 57.1%, 62.5%.
EXPECTED_A_STUDENT = [
    {"student_attempts": [done], "student_rate": [f"rate={rate}"],
     "exercise_x_student_rate": [f"{exercise}|rate={rate}"]}
    for done, rate, exercise in [
        ("done=0", "50-59", "a"), ("done=1-4", "60-69", "a"), ("done=1-4", "50-59", "b"),
        ("done=1-4", "30-49", "a"), ("done=1-4", "50-59", "b"), ("done=5-9", "50-59", "c"),
        ("done=5-9", "60-69", "a")]]


def test_hand_built_student_student_level_templates():
    assert student_features(STUDENT_A, STUDENT_TEMPLATES) == EXPECTED_A_STUDENT
    every = student_features(STUDENT_A, ALL_TEMPLATES)
    assert every == [{**a, **b} for a, b in zip(EXPECTED_A, EXPECTED_A_STUDENT)]
    assert [list(row) for row in every] == [list(ALL_TEMPLATES)] * len(STUDENT_A)


def test_student_level_templates_span_exercises_in_a_long_run():
    # All correct, on three exercises in turn: before attempt i the rate is
    # (i+1)/(i+2): i=1 66.7%, i=2 75%, i=3 80% (edge), i=7 88.9%, i=8 90% (edge).
    logs = [log(T0 + i * H, f"x{i % 3}", True) for i in range(205)]
    rows = student_features(logs, STUDENT_TEMPLATES)
    done = [row["student_attempts"][0] for row in rows]
    assert [done[i] for i in (0, 1, 4, 5, 9, 10, 19, 20, 49, 50, 99, 100, 199, 200, 204)] == [
        "done=0", "done=1-4", "done=1-4", "done=5-9", "done=5-9", "done=10-19", "done=10-19",
        "done=20-49", "done=20-49", "done=50-99", "done=50-99", "done=100-199",
        "done=100-199", "done=200+", "done=200+"]
    rates = [row["student_rate"][0] for row in rows]
    assert rates[:10] == ["rate=50-59", "rate=60-69", "rate=70-79", "rate=80-89",
                          "rate=80-89", "rate=80-89", "rate=80-89", "rate=80-89",
                          "rate=90+", "rate=90+"]
    assert [row["exercise_x_student_rate"][0] for row in rows[7:10]] == [
        "x1|rate=80-89", "x2|rate=90+", "x0|rate=90+"]
    # All wrong: rate 1/(i+2): i=1 33.3%, i=2 25%.
    wrong = student_features([log(T0 + i, "y", False) for i in range(3)], ["student_rate"])
    assert [row["student_rate"] for row in wrong] == [
        ["rate=50-59"], ["rate=30-49"], ["rate=<30"]]


@pytest.mark.parametrize("attempts,label", [
    (0, "0"), (1, "1-4"), (4, "1-4"), (5, "5-9"), (9, "5-9"), (10, "10-19"), (19, "10-19"),
    (20, "20-49"), (49, "20-49"), (50, "50-99"), (99, "50-99"), (100, "100-199"),
    (199, "100-199"), (200, "200+"), (10_000, "200+")])
def test_student_attempts_bucket_edges(attempts, label):
    assert student_attempts_bucket(attempts) == label


@pytest.mark.parametrize("correct,attempts,label", [
    (0, 0, "50-59"),     # 1/2
    (0, 2, "<30"),       # 1/4 = 25%
    (2, 9, "<30"),       # 3/11 = 27.3%
    (2, 8, "30-49"),     # 3/10 = 30% exactly
    (0, 1, "30-49"),     # 1/3
    (48, 97, "30-49"),   # 49/99 = 49.5%
    (4, 8, "50-59"),     # 5/10 = 50% exactly
    (3, 8, "30-49"),     # 4/10
    (2, 3, "60-69"),     # 3/5 = 60% exactly
    (8, 11, "60-69"),    # 9/13 = 69.2%
    (6, 8, "70-79"),     # 7/10 = 70% exactly (0.7 is not exact in binary)
    (14, 17, "70-79"),   # 15/19 = 78.9%
    (3, 3, "80-89"),     # 4/5 = 80% exactly
    (16, 17, "80-89"),   # 17/19 = 89.5%
    (8, 8, "90+"),       # 9/10 = 90% exactly
    (100, 100, "90+")])  # 101/102
def test_rate_bucket_edges_in_integers(correct, attempts, label):
    assert rate_bucket(correct, attempts) == label


def test_student_bucket_labels_and_bad_inputs():
    assert STUDENT_ATTEMPTS_BUCKETS == (
        "0", "1-4", "5-9", "10-19", "20-49", "50-99", "100-199", "200+")
    assert RATE_BUCKETS == ("<30", "30-49", "50-59", "60-69", "70-79", "80-89", "90+")
    with pytest.raises(ValueError):
        student_attempts_bucket(-1)
    with pytest.raises(ValueError):
        rate_bucket(3, 2)
    with pytest.raises(ValueError):
        rate_bucket(-1, 2)


def test_long_run_streak_and_attempt_buckets():
    logs = [log(T0 + i * H, "x", True) for i in range(22)]
    rows = student_features(logs, ["exercise_x_streak", "exercise_x_attempts"])
    assert [row["exercise_x_streak"][0] for row in rows] == [
        "x|streak=0", "x|streak=1", "x|streak=2", "x|streak=3-4", "x|streak=3-4",
        "x|streak=5-9", "x|streak=5-9", "x|streak=5-9", "x|streak=5-9", "x|streak=5-9",
        "x|streak=10+", "x|streak=10+", "x|streak=10+", "x|streak=10+", "x|streak=10+",
        "x|streak=10+", "x|streak=10+", "x|streak=10+", "x|streak=10+", "x|streak=10+",
        "x|streak=10+", "x|streak=10+"]
    assert [row["exercise_x_attempts"][0] for row in rows] == [
        "x|done=0", "x|done=1", "x|done=2", "x|done=3-4", "x|done=3-4",
        "x|done=5-9", "x|done=5-9", "x|done=5-9", "x|done=5-9", "x|done=5-9",
        "x|done=10-19", "x|done=10-19", "x|done=10-19", "x|done=10-19", "x|done=10-19",
        "x|done=10-19", "x|done=10-19", "x|done=10-19", "x|done=10-19", "x|done=10-19",
        "x|done=20+", "x|done=20+"]


def test_streak_is_per_exercise_and_reset_by_a_wrong_answer():
    logs = [log(T0, "x", True), log(T0 + 1, "x", True), log(T0 + 2, "y", False),
            log(T0 + 3, "x", True), log(T0 + 4, "x", False), log(T0 + 5, "x", True),
            log(T0 + 6, "x", True)]
    rows = student_features(logs, ["exercise_x_streak"])
    assert [row["exercise_x_streak"] for row in rows] == [
        ["x|streak=0"], ["x|streak=1"], ["y|streak=0"], ["x|streak=2"],
        ["x|streak=3-4"], ["x|streak=0"], ["x|streak=1"]]


# --- bucket edges: each edge value and its neighbours ------------------------------

@pytest.mark.parametrize("streak, label", [
    (0, "0"), (1, "1"), (2, "2"), (3, "3-4"), (4, "3-4"), (5, "5-9"), (9, "5-9"),
    (10, "10+"), (11, "10+"), (10 ** 9, "10+")])
def test_streak_bucket_edges(streak, label):
    assert streak_bucket(streak) == label


@pytest.mark.parametrize("attempts, label", [
    (0, "0"), (1, "1"), (2, "2"), (3, "3-4"), (4, "3-4"), (5, "5-9"), (9, "5-9"),
    (10, "10-19"), (19, "10-19"), (20, "20+"), (21, "20+"), (10 ** 9, "20+")])
def test_attempts_bucket_edges(attempts, label):
    assert attempts_bucket(attempts) == label


DAYS_EDGE_CASES = [
    (None, "never"), (0, "<1"), (1, "<1"), (D - 1, "<1"), (D, "1-2"), (3 * D - 1, "1-2"),
    (3 * D, "3-6"), (7 * D - 1, "3-6"), (7 * D, "7-29"), (30 * D - 1, "7-29"),
    (30 * D, "30+"), (30 * D + 1, "30+"), (10 ** 6 * D, "30+")]


@pytest.mark.parametrize("gap, label", DAYS_EDGE_CASES)
def test_days_bucket_edges(gap, label):
    assert days_bucket(gap) == label


def test_days_edges_in_student_features_use_exact_microseconds():
    for gap, label in DAYS_EDGE_CASES:
        if gap is None:
            continue
        logs = [log(T0, "e", True), log(T0 + gap, "e", True)]
        rows = student_features(logs, ["exercise_x_days_since_last"])
        assert rows[1]["exercise_x_days_since_last"] == ["e|days=" + label], gap


def test_bucket_labels_and_negative_inputs():
    assert STREAK_BUCKETS == ("0", "1", "2", "3-4", "5-9", "10+")
    assert ATTEMPTS_BUCKETS == ("0", "1", "2", "3-4", "5-9", "10-19", "20+")
    assert DAYS_BUCKETS == ("never", "<1", "1-2", "3-6", "7-29", "30+")
    assert DAY_MICROS == 24 * 3600 * 10 ** 6
    for helper in (streak_bucket, attempts_bucket, days_bucket):
        with pytest.raises(ValueError):
            helper(-1)


# --- prior outcome ----------------------------------------------------------------

def test_prior_outcome_uses_first_attempt_and_order_of_first_attempt():
    logs = [log(T0, "p", False), log(T0 + 1, "q", True), log(T0 + 2, "p", True),
            log(T0 + 3, "p", True), log(T0 + 4, "q", False), log(T0 + 5, "r", True)]
    rows = student_features(logs, ["exercise_x_prior_outcome"])
    assert [row["exercise_x_prior_outcome"] for row in rows] == [
        [], ["q|p=wrong"], ["p|q=correct"], ["p|q=correct"], ["q|p=wrong"],
        ["r|p=wrong", "r|q=correct"]]


def test_exercise_is_never_its_own_prior():
    for student in random_students(30, seed=3):
        for item, row in zip(student, student_features(student)):
            e = item.exercise
            own = {f"{e}|{e}=correct", f"{e}|{e}=wrong"}
            assert not own & set(row["exercise_x_prior_outcome"])
            others = [value.split("|", 1)[1].rsplit("=", 1)[0]
                      for value in row["exercise_x_prior_outcome"]]
            assert e not in others
            assert len(others) == len(set(others))


# --- no label leakage --------------------------------------------------------------

def flipped(logs, i):
    return logs[:i] + [logs[i]._replace(correct=not logs[i].correct)] + logs[i + 1:]


def test_flipping_a_label_never_changes_that_attempt_or_earlier_ones():
    for student in random_students(20, seed=5):
        base = student_features(student)
        for i in range(len(student)):
            changed = student_features(flipped(student, i))
            assert changed[:i + 1] == base[:i + 1]


def test_flipping_a_label_changes_later_streak_and_prior_outcome():
    changed = student_features(flipped(STUDENT_A, 0))  # a's first answer now wrong
    assert changed[0] == EXPECTED_A[0]
    assert changed[1]["exercise_x_streak"] == ["a|streak=0"]  # was streak=1
    assert changed[2]["exercise_x_prior_outcome"] == ["b|a=wrong"]  # was a=correct
    assert changed[5]["exercise_x_prior_outcome"] == ["c|a=wrong", "c|b=wrong"]
    # a's second attempt is not its first: flipping it moves streaks, not priors
    changed = student_features(flipped(STUDENT_A, 1))  # now right, right
    assert changed[:2] == EXPECTED_A[:2]
    assert changed[3]["exercise_x_streak"] == ["a|streak=2"]  # was streak=0
    assert changed[6]["exercise_x_streak"] == ["a|streak=3-4"]  # was streak=1
    assert changed[2]["exercise_x_prior_outcome"] == ["b|a=correct"]


# --- against a from-scratch reference on random students -------------------------

def random_students(count, seed):
    rng = random.Random(seed)
    students = []
    for s in range(count):
        t = T0 + rng.randrange(10 * D)
        logs = []
        for _ in range(rng.randrange(1, 60)):
            t += rng.choice([0, 1, H, D - 1, D, 3 * D, 7 * D, 30 * D, rng.randrange(40 * D)])
            logs.append(log(t, f"ex{rng.randrange(12):03d}", rng.random() < 0.7,
                            rng.choice(["", "t1", "t2"]), user=f"u{s}"))
        students.append(logs)
    return students


def reference_features(logs):
    """Each attempt recomputed from scratch from the logs strictly before it."""
    rows = []
    for i, item in enumerate(logs):
        e, earlier = item.exercise, logs[:i]
        same = [x for x in earlier if x.exercise == e]
        streak = 0
        for x in reversed(same):
            if not x.correct:
                break
            streak += 1
        first = {}
        for x in earlier:
            first.setdefault(x.exercise, x.correct)
        rows.append({
            "exercise": [e],
            "exercise_x_problem_type": [f"{e}|{item.problem_type}"],
            "exercise_x_streak": [f"{e}|streak={streak_bucket(streak)}"],
            "exercise_x_attempts": [f"{e}|done={attempts_bucket(len(same))}"],
            "exercise_x_prior_outcome": [
                f"{e}|{other}={'correct' if outcome else 'wrong'}"
                for other, outcome in first.items() if other != e],
            "exercise_x_days_since_last": [
                f"{e}|days={days_bucket(item.time_done - same[-1].time_done if same else None)}"],
            "student_attempts": [f"done={student_attempts_bucket(i)}"],
            "student_rate": [f"rate={rate_bucket(sum(x.correct for x in earlier), i)}"],
            "exercise_x_student_rate": [
                f"{e}|rate={rate_bucket(sum(x.correct for x in earlier), i)}"],
        })
    return rows


def test_matches_from_scratch_reference_on_random_students():
    for student in random_students(40, seed=7):
        reference = reference_features(student)
        assert student_features(student) == [
            {t: row[t] for t in TEMPLATES} for row in reference]
        assert student_features(student, ALL_TEMPLATES) == reference


# --- templates, shape, determinism -------------------------------------------------

def test_template_subset_returns_only_those_keys_in_requested_order():
    subset = ["exercise_x_days_since_last", "exercise"]
    rows = student_features(STUDENT_A, subset)
    assert [list(row) for row in rows] == [subset] * len(STUDENT_A)
    assert rows == [{name: row[name] for name in subset} for row in EXPECTED_A]
    only_prior = student_features(STUDENT_A, ("exercise_x_prior_outcome",))
    assert [row["exercise_x_prior_outcome"] for row in only_prior] == [
        row["exercise_x_prior_outcome"] for row in EXPECTED_A]


def test_template_validation_and_parsing():
    assert TEMPLATES == ("exercise", "exercise_x_problem_type", "exercise_x_streak",
                         "exercise_x_attempts", "exercise_x_prior_outcome",
                         "exercise_x_days_since_last")
    assert parse_templates(" exercise_x_streak, exercise,exercise_x_streak ") == (
        "exercise_x_streak", "exercise")
    assert validate_templates(TEMPLATES) == TEMPLATES
    assert ALL_TEMPLATES == TEMPLATES + (
        "student_attempts", "student_rate", "exercise_x_student_rate")
    assert parse_templates("student_rate,exercise") == ("student_rate", "exercise")
    with pytest.raises(ValueError, match="exercise_x_nope"):
        student_features(STUDENT_A, ["exercise", "exercise_x_nope"])
    with pytest.raises(ValueError):
        parse_templates("")
    with pytest.raises(TypeError):
        student_features(STUDENT_A, "exercise")


def test_empty_student_and_unsorted_input():
    assert student_features([]) == []
    with pytest.raises(ValueError, match="time order"):
        student_features([log(T0 + 1, "a", True), log(T0, "a", True)])
    # equal timestamps are allowed (sessionize breaks ties deterministically)
    rows = student_features([log(T0, "a", True), log(T0, "a", True)])
    assert rows[1]["exercise_x_days_since_last"] == ["a|days=<1"]


def test_deterministic_and_lists_not_shared_between_attempts():
    students = random_students(5, seed=11)
    assert [student_features(s) for s in students] == [student_features(s) for s in students]
    rows = student_features(STUDENT_A)
    rows[5]["exercise_x_prior_outcome"].append("junk")
    rows[6]["exercise_x_prior_outcome"].clear()
    assert student_features(STUDENT_A) == EXPECTED_A
    assert rows[:5] == EXPECTED_A[:5]


def test_module_does_not_import_apache_beam():
    code = ("import sys, models.sparse_features; "
            "sys.exit('apache_beam' in sys.modules)")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


def test_names_full_of_separators_never_share_a_feature():
    """Exercise 'col|x' with type 'y' and exercise 'col' with type 'x|y' (and
    other splits of the same characters) give distinct feature values, and so
    do (exercise, earlier exercise) pairs in the prior-outcome template."""
    pairs = [("col|x", "y"), ("col", "x|y"), ("col\\", "|x|y"), ("col\\|x", "y"),
             ("a=b", "c"), ("a", "b=c"), ("a|b=correct", ""), ("a", "b=correct|"),
             ("a", "b=correct"), ("a|b", "correct")]
    by_type, by_prior = {}, {}
    for exercise, other in pairs:
        earlier = ProblemLog("u", other, "", 1, 0, True)   # `other` as an exercise
        (_, row) = student_features([earlier, ProblemLog("u", exercise, other, 1, 1, True)])
        (type_value,) = row["exercise_x_problem_type"]
        (prior_value,) = row["exercise_x_prior_outcome"]
        assert by_type.setdefault(type_value, (exercise, other)) == (exercise, other)
        assert by_prior.setdefault(prior_value, (exercise, other)) == (exercise, other)
    assert len(by_type) == len(by_prior) == len(pairs)
    (row,) = student_features([log(T0, "a|rate=50-59", True)], ["exercise_x_student_rate"])
    assert row["exercise_x_student_rate"] == ["a\\|rate\\=50-59|rate=50-59"]
