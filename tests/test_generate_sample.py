"""Tests for the synthetic ProblemLog simulator and the sample writer.

The statistical tests use ~2000 students: large enough that the effects a
knowledge model must pick up (ability, practice, prerequisites) are far
outside noise, small enough to run in well under a second.
"""

import csv
import io
import json
import os
import subprocess
import sys

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from models import simulation
from models.problem_log import (
    FIELDS, PROBLEM_LOG_AVRO_SCHEMA, ProblemLog, format_timestamp, parse_problem_log,
    parse_timestamp_micros)
from pipelines import generate_sample

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def logs():
    return simulation.simulate(2000, seed=7)


@pytest.fixture(scope="module")
def small():
    return simulation.simulate(60, seed=11, exercises=12, days=5)


def _user_time_order(logs):
    return np.lexsort((logs["time_done"], logs.user_index))


# --- determinism and shape ---------------------------------------------------

def test_same_arguments_give_identical_arrays():
    first = simulation.simulate(300, seed=5)
    second = simulation.simulate(300, seed=5)
    assert set(first.columns) == set(simulation.COLUMNS)
    for name in simulation.COLUMNS:
        np.testing.assert_array_equal(first[name], second[name])


def test_another_seed_gives_other_data():
    first = simulation.simulate(300, seed=5)
    other = simulation.simulate(300, seed=6)
    assert (len(first) != len(other)
            or not np.array_equal(first["time_done"], other["time_done"]))


def test_exercise_bank_depends_on_seed_and_exercises_only():
    a = simulation.simulate(50, seed=3).bank
    b = simulation.simulate(500, seed=3).bank
    assert a.prerequisites == b.prerequisites
    np.testing.assert_array_equal(a.difficulty, b.difficulty)


def test_columns_have_problem_log_types(logs):
    cols = logs.columns
    assert tuple(cols) == simulation.COLUMNS
    assert all(len(v) == len(logs) for v in cols.values())
    assert cols["user"][0].startswith("u") and cols["exercise"][0].startswith("ex")
    assert cols["time_done"].dtype == np.int64
    assert cols["correct"].dtype == bool
    for name in ("problem_number", "time_taken", "count_hints", "count_attempts"):
        assert cols[name].dtype.kind == "i"
    assert (cols["time_taken"] >= 1).all() and (cols["count_attempts"] >= 1).all()
    assert ((cols["p_true"] > 0) & (cols["p_true"] < 1)).all()
    # KA semantics: correct means right first time without hints.
    assert (cols["count_hints"][cols["correct"]] == 0).all()


def test_rows_sorted_by_time_then_user(logs):
    order = np.lexsort((logs.user_index, logs["time_done"]))
    np.testing.assert_array_equal(order, np.arange(len(logs)))


def test_problem_number_is_per_user_exercise_index_in_time_order(logs):
    order = np.lexsort((logs["time_done"], logs.exercise_index, logs.user_index))
    pair = logs.user_index[order].astype(np.int64) * 1000 + logs.exercise_index[order]
    starts = np.r_[True, pair[1:] != pair[:-1]]
    group_first = np.maximum.accumulate(np.where(starts, np.arange(len(pair)), 0))
    expected = np.arange(len(pair)) - group_first + 1
    np.testing.assert_array_equal(logs["problem_number"][order], expected)


def test_time_done_unique_per_user_and_inside_days(logs):
    pairs = np.unique(np.stack([logs.user_index, logs["time_done"]]), axis=1)
    assert pairs.shape[1] == len(logs)
    assert logs["time_done"].min() >= simulation.START_TIME_MICROS
    assert logs["time_done"].max() < simulation.START_TIME_MICROS + 90 * 86_400_000_000


def test_mean_attempts_per_student_matches_constant():
    big = simulation.simulate(10_000, seed=2)
    mean = len(big) / 10_000
    target = simulation.MEAN_ATTEMPTS_PER_STUDENT
    assert abs(mean - target) < 0.05 * target


@pytest.mark.parametrize("kwargs", [
    dict(students=0, seed=1), dict(students=5, seed=-1),
    dict(students=5, seed=1, exercises=0), dict(students=5, seed=1, days=0)])
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        simulation.simulate(**kwargs)


# --- realism: what a knowledge model has to learn ---------------------------

def test_ability_matters(logs):
    ability = logs.ability[logs.user_index]
    low, high = np.quantile(logs.ability, [0.25, 0.75])
    correct = logs["correct"]
    assert correct[ability >= high].mean() > correct[ability <= low].mean() + 0.15


def test_practice_raises_correct_rate(logs):
    correct, number = logs["correct"], logs["problem_number"]
    assert correct[number >= 5].mean() > correct[number == 1].mean() + 0.1


def test_prerequisite_mastery_helps_first_attempts(logs):
    """Holds within each ability half too, so it is not only ability."""
    prerequisites = logs.bank.prerequisites
    order = _user_time_order(logs)
    rows = zip(logs.user_index[order].tolist(), logs.exercise_index[order].tolist(),
               logs["correct"][order].tolist(), logs["problem_number"][order].tolist())
    results, current, history = [], None, {}
    for user, exercise, correct, number in rows:
        if user != current:
            current, history = user, {}
        if number == 1 and prerequisites[exercise]:
            done = sum(history.get(p, (0, 0))[0] for p in prerequisites[exercise])
            right = sum(history.get(p, (0, 0))[1] for p in prerequisites[exercise])
            results.append((done > 0 and right >= 0.8 * done, correct,
                            logs.ability[user]))
        seen = history.get(exercise, (0, 0))
        history[exercise] = (seen[0] + 1, seen[1] + correct)
    ready, correct, ability = (np.array(c) for c in zip(*results))
    assert 100 < ready.sum() < len(ready) - 100
    assert correct[ready].mean() > correct[~ready].mean() + 0.1
    for half in (ability < np.median(ability), ability >= np.median(ability)):
        assert correct[ready & half].mean() > correct[~ready & half].mean()


def test_students_progress_to_harder_exercises(logs):
    order = _user_time_order(logs)
    user, exercise = logs.user_index[order], logs.exercise_index[order]
    per_user = np.bincount(user)
    position = np.arange(len(user)) - np.repeat(np.cumsum(per_user) - per_user, per_user)
    late = position >= np.repeat(per_user, per_user) / 2
    early_mean = np.bincount(user, exercise * ~late) / np.maximum(1, np.bincount(user, ~late))
    late_mean = np.bincount(user, exercise * late) / np.maximum(1, np.bincount(user, late))
    active = per_user >= 20
    assert (late_mean > early_mean)[active].mean() > 0.7


def test_activity_spreads_over_days(logs):
    day = (logs["time_done"] - simulation.START_TIME_MICROS) // 86_400_000_000
    per_user_days = np.bincount(np.unique(logs.user_index.astype(np.int64) * 1000 + day) // 1000)
    per_user = np.bincount(logs.user_index)
    assert np.median(per_user_days[per_user >= 40]) >= 3
    assert len(np.unique(day)) > 80


def test_some_heavy_users(logs):
    per_user = np.bincount(logs.user_index)
    mean = simulation.MEAN_ATTEMPTS_PER_STUDENT
    heavy = per_user >= 10 * mean
    assert 5 <= heavy.sum() <= 0.02 * len(per_user)
    assert per_user.max() <= 40 * mean


def test_some_exercises_have_few_attempts():
    logs = simulation.simulate(1000, seed=1)
    per_exercise = np.bincount(logs.exercise_index, minlength=60)
    assert 1 <= (per_exercise < 30).sum() <= 10
    assert per_exercise.max() > 5 * np.median(per_exercise)


def test_exercise_structure(logs):
    bank = logs.bank
    assert np.all(np.diff(bank.difficulty) >= 0)
    assert all(len(p) <= 3 and all(q < i for q in p)
               for i, p in enumerate(bank.prerequisites))
    assert sum(1 for p in bank.prerequisites if p) > len(bank) / 2
    types_seen = {}
    for exercise, problem_type in zip(logs["exercise"].tolist(), logs["problem_type"].tolist()):
        types_seen.setdefault(exercise, set()).add(problem_type)
    assert max(len(t) for t in types_seen.values()) == 4
    assert min(len(t) for t in types_seen.values()) == 1


def test_oracle_log_likelihood(logs):
    p = logs["p_true"]
    expected = np.mean(np.where(logs["correct"], np.log(p), np.log1p(-p)))
    assert simulation.oracle_log_likelihood(logs) == pytest.approx(expected)
    assert -0.69 < expected < -0.3


# --- writing ----------------------------------------------------------------

def _expected_logs(logs):
    values = [logs[f].tolist() for f in FIELDS]
    return [ProblemLog(*row) for row in zip(*values)]


def _read_shard(path, fmt):
    if fmt == "avro":
        with open(path, "rb") as handle:
            reader = fastavro.reader(handle)
            assert json.loads(reader.metadata["avro.schema"]) == PROBLEM_LOG_AVRO_SCHEMA
            return list(reader)
    if fmt == "json":
        with open(path, encoding="utf-8") as handle:
            return [json.loads(line) for line in handle]
    if fmt == "csv":
        with open(path, encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert tuple(reader.fieldnames) == FIELDS
            return list(reader)
    table = pq.read_table(path)
    assert str(table.schema.field("time_done").type) == "timestamp[us, tz=UTC]"
    return table.to_pylist()


@pytest.mark.parametrize("fmt", generate_sample.FORMATS)
def test_every_format_round_trips_through_parse_problem_log(small, tmp_path, fmt):
    paths = generate_sample.write_sample(small.columns, str(tmp_path), fmt, shards=3)
    names = [os.path.basename(p) for p in paths]
    assert names == [f"problem_logs-0000{i}-of-00003.{fmt}" for i in range(3)] + [
        "true_probabilities.csv"]
    parsed = [parse_problem_log(record)
              for path in paths[:-1] for record in _read_shard(path, fmt)]
    assert parsed == _expected_logs(small)


def test_true_probabilities_match_logs(small, tmp_path):
    generate_sample.write_sample(small.columns, str(tmp_path), "json")
    with open(tmp_path / "true_probabilities.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["user", "exercise", "time_done", "problem_number", "p_true"]
    with open(tmp_path / "problem_logs-00000-of-00001.json") as handle:
        records = [json.loads(line) for line in handle]
    assert len(rows) == len(records) == len(small)
    for row, record, p in zip(rows, records, small["p_true"].tolist()):
        assert (row["user"], row["exercise"], row["time_done"], int(row["problem_number"])) == (
            record["user"], record["exercise"], record["time_done"], record["problem_number"])
        assert float(row["p_true"]) == p


def test_iso_timestamps_match_format_timestamp():
    micros = np.array([simulation.START_TIME_MICROS, simulation.START_TIME_MICROS + 1,
                       simulation.START_TIME_MICROS + 86_400_000_000 + 123_456,
                       simulation.START_TIME_MICROS + 5_000_000, 0, 1_700_000_000_999_999,
                       -1, -86_400_000_000, 253_402_300_799_999_999])
    assert generate_sample.iso_timestamps(micros) == [format_timestamp(int(m)) for m in micros]


def test_rewriting_with_fewer_shards_removes_stale_shards(small, tmp_path):
    generate_sample.write_sample(small.columns, str(tmp_path), "csv", shards=3)
    generate_sample.write_sample(small.columns, str(tmp_path), "parquet", shards=1)
    assert sorted(os.listdir(tmp_path)) == [
        "problem_logs-00000-of-00001.parquet", "true_probabilities.csv"]


@pytest.mark.parametrize("fmt", generate_sample.FORMATS)
def test_more_shards_than_rows_writes_readable_empty_shards(tmp_path, fmt):
    tiny = simulation.simulate(1, seed=0, exercises=3, days=1)
    shards = len(tiny) + 2
    paths = generate_sample.write_sample(tiny.columns, str(tmp_path), fmt, shards)
    assert sum(len(_read_shard(p, fmt)) for p in paths[:-1]) == len(tiny)


# --- command line -----------------------------------------------------------

def _run_cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.generate_sample", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_writes_expected_files(tmp_path):
    out = tmp_path / "sample"
    result = _run_cli("--output", str(out), "--students", "40", "--seed", "3",
                      "--format", "json", "--shards", "2", "--exercises", "10",
                      "--days", "7")
    assert result.returncode == 0, result.stderr
    assert sorted(os.listdir(out)) == [
        "problem_logs-00000-of-00002.json", "problem_logs-00001-of-00002.json",
        "true_probabilities.csv"]
    expected = simulation.simulate(40, seed=3, exercises=10, days=7)
    assert f"logs: {len(expected)}" in result.stdout
    assert "oracle mean log likelihood: " in result.stdout


def test_cli_defaults_to_one_avro_file(tmp_path):
    summary = generate_sample.main(["--output", str(tmp_path), "--students", "20"])
    assert sorted(os.listdir(tmp_path)) == [
        "problem_logs-00000-of-00001.avro", "true_probabilities.csv"]
    assert summary["logs"] == len(simulation.simulate(20, seed=0))


def test_cli_help_documents_every_option():
    result = _run_cli("--help")
    assert result.returncode == 0
    for option in ("--output", "--students", "--seed", "--format", "--shards",
                   "--exercises", "--days"):
        assert option in result.stdout


def test_cli_rejects_bad_values(tmp_path):
    result = _run_cli("--output", str(tmp_path), "--students", "0")
    assert result.returncode == 2
    assert "--students" in result.stderr


@pytest.mark.parametrize("fmt", generate_sample.FORMATS)
def test_same_arguments_write_identical_files(small, tmp_path, fmt):
    first = generate_sample.write_sample(small.columns, str(tmp_path / "a"), fmt, 2)
    second = generate_sample.write_sample(small.columns, str(tmp_path / "b"), fmt, 2)
    for a, b in zip(first, second):
        with open(a, "rb") as one, open(b, "rb") as two:
            assert one.read() == two.read(), os.path.basename(a)


def test_avro_encoder_handles_extreme_values(tmp_path):
    """The hand-vectorised Avro encoder against fastavro's encoder and
    decoder on values the simulator never makes: negative and huge longs,
    non-ASCII text."""
    columns = {
        "user": np.array(["", "ü", "u" * 200, "日本"]),
        "exercise": np.array(["a", "b,c", 'q"', "x"]),
        "problem_type": np.array(["", "t", "t", "t"]),
        "problem_number": np.array([1, 63, 64, 2 ** 62]),
        # datetime's range: year 1 to year 9999
        "time_done": np.array([0, -1, -62_135_596_800_000_000,
                               253_402_300_799_999_999]),
        "correct": np.array([True, False, True, False]),
        "time_taken": np.array([-64, -65, 8191, 8192]),
        "count_hints": np.array([0, 1, -1, 2 ** 63 - 1]),
        "count_attempts": np.array([-(2 ** 63), 127, 128, 16384]),
    }
    # Byte for byte what fastavro encodes for each record.
    data, ends = generate_sample._avro_rows(columns, slice(0, 4))
    expected = []
    for row in zip(*(columns[field].tolist() for field in FIELDS)):
        encoded = io.BytesIO()
        fastavro.schemaless_writer(encoded, PROBLEM_LOG_AVRO_SCHEMA, dict(zip(FIELDS, row)))
        expected.append(encoded.getvalue())
    assert data == b"".join(expected)
    assert ends.tolist() == np.cumsum([len(e) for e in expected]).tolist()

    path = str(tmp_path / "x.avro")
    generate_sample._write_avro(path, columns, slice(0, 4), block_rows=3)
    with open(path, "rb") as handle:
        records = list(fastavro.reader(handle))
    for field in FIELDS:
        got = [r[field] for r in records]
        if field == "time_done":
            got = [parse_timestamp_micros(r[field]) for r in records]
        assert got == columns[field].tolist(), field
