"""Hostile input: every physical record is trained on, dropped as a counted
duplicate, or dead-lettered with a reason (or counted as unreadable), and the
job never dies on data.

One run per format reads a directory of damaged files (tests/hostile_files.py)
next to a block of good records. Every expectation comes from how the files
were built (tests/hostile_files.py declares each line's fate by hand), never
from the pipeline's own summary; the summary is then checked against it, and
so are the dead-letter files and the training rows, case by case (dead
letters carry their file; every case has users of its own).

Pipelines run in-process (run()/main()) for speed; `python -m` exit statuses
are checked once per entry point in tests/test_hostile_options.py. The
key set (JSON) also goes through train_boosted and the monitor.
"""

import collections
import datetime
import glob
import json
import os
import types

import numpy as np
import pytest

from models.knowledge_state import random_component
from pipelines import monitor, train_boosted
from pipelines.cli import JobFailed
from pipelines.train_knowledge_model import run as train
from tests import hostile_files as hf
from transforms.columnar_store import read_vocabulary

COMMON = ["--min_samples", "5", "--num_random_features", str(hf.D), "--seed", str(hf.SEED),
          "--model_version", "hostile"]
FORMATS = ("json", "csv", "parquet", "avro")
EXTENSIONS = {"json": "jsonl", "csv": "csv", "parquet": "parquet", "avro": "avro"}
BUILDERS = {"json": hf.build_json_set, "csv": hf.build_csv_set,
            "parquet": hf.build_parquet_set, "avro": hf.build_avro_set}
CASES = {"json": hf.JSON_CASES, "csv": hf.CSV_CASES, "parquet": hf.PARQUET_CASES,
         "avro": hf.AVRO_CASES}
UNREADABLE = "unreadable_file"


# --------------------------------------------------------------------------- helpers

def _reject_constant(name):
    raise ValueError(f"non-finite number {name} in a JSON output")


def strict_loads(text):
    """json.loads that refuses NaN, Infinity and -Infinity."""
    return json.loads(text, parse_constant=_reject_constant)


def read_jsonl(pattern):
    """Lenient read (non-finite tokens and bad bytes allowed), for counting."""
    records = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8", errors="replace") as handle:
            records.extend(json.loads(line) for line in handle if line.strip())
    return records


def assert_outputs_strict_json(*directories):
    """Every .json/.jsonl file (and the JSON column of vocabulary .tsv files)
    under `directories` is valid UTF-8 and parses with a strict JSON parser."""
    checked = 0
    for directory in directories:
        for root, _, names in os.walk(directory):
            for name in names:
                path = os.path.join(root, name)
                if not name.endswith((".json", ".jsonl", ".tsv")):
                    continue
                with open(path, "rb") as handle:
                    text = handle.read().decode("utf-8")   # strict: no bad bytes
                if name.endswith(".json"):
                    strict_loads(text)
                    checked += 1
                    continue
                for number, line in enumerate(text.split("\n"), 1):
                    if not line.strip():
                        continue
                    try:
                        strict_loads(line.split("\t")[1] if name.endswith(".tsv") else line)
                    except ValueError as error:
                        raise AssertionError(f"{path}:{number}: {error}: {line[:200]!r}") from None
                    checked += 1
    assert checked, f"no JSON outputs under {directories}"


def nonzero(counts):
    return {key: value for key, value in (counts or {}).items() if value}


class Run:
    """A finished training run: summary, dead letters, training rows."""

    def __init__(self, output, rows, summary):
        self.output, self.rows, self.summary = str(output), str(rows), summary
        self.dead = read_jsonl(os.path.join(self.output, "dead_letter", "*.jsonl"))
        self.training_rows = read_jsonl(os.path.join(self.rows, "*.jsonl"))
        self.rows_by_user = collections.Counter(row["user"] for row in self.training_rows)

    def dead_reasons(self):
        """{reason: count} of the dead-letter files, unreadable stretches aside."""
        return dict(collections.Counter(r["reason"] for r in self.dead
                                        if r["reason"] != UNREADABLE))

    def read_dead(self, file_name, reason=None):
        return [r for r in self.dead
                if r.get("stage") == "read" and os.path.basename(str(r.get("file"))) == file_name
                and (reason is None or r["reason"] == reason)]


def training_argv(pattern, output, rows):
    return ["--input", pattern, "--output", str(output), "--training_rows_output", str(rows),
            *COMMON]


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def hostile_sets(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    return {fmt: BUILDERS[fmt](str(base / fmt)) for fmt in FORMATS}


def _pattern(cases, fmt):
    return os.path.join(os.path.dirname(cases["good"].path), f"*.{EXTENSIONS[fmt]}")


@pytest.fixture(scope="module")
def runs(hostile_sets, tmp_path_factory):
    """One training run per format, made on first use. The JSON run also
    passes a Beam runner option (--direct_num_workers 1), which must still
    be accepted."""
    done = {}

    def get(fmt):
        if fmt not in done:
            base = tmp_path_factory.mktemp(f"run_{fmt}")
            argv = training_argv(_pattern(hostile_sets[fmt], fmt), base / "out", base / "rows")
            if fmt == "json":
                argv += ["--direct_num_workers", "1"]
            try:
                done[fmt] = Run(base / "out", base / "rows", summary=train(argv))
            except Exception as error:  # noqa: BLE001  (any failure: reported in each test)
                done[fmt] = error
        if isinstance(done[fmt], Exception):   # run once, report in every test
            error = done[fmt]
            pytest.fail(f"the {fmt} training run died: {type(error).__name__}: "
                        f"{str(error)[-2000:]}")
        return done[fmt]
    return get


def expected_of(hostile_sets, fmt) -> hf.Expected:
    return hf.total(hostile_sets[fmt].values())


# --------------------------------------------------------------------------- every format

@pytest.mark.parametrize("fmt", FORMATS)
def test_physical_records_reconcile(fmt, runs, hostile_sets):
    """physical = read + unreadable, and read = trained + duplicates + dead-
    lettered + outside the window, each equal to the hand count."""
    summary, expected = runs(fmt).summary, expected_of(hostile_sets, fmt)
    got = {name: summary.get(name) for name in (
        "physical_records", "records_read", "records_unreadable", "records_trained_on",
        "duplicates_dropped", "dead_lettered_total", "records_outside_window")}
    assert got == {"physical_records": expected.physical_records,
                   "records_read": expected.records_read,
                   "records_unreadable": expected.records_unreadable,
                   "records_trained_on": expected.records_trained_on,
                   "duplicates_dropped": expected.duplicates_dropped,
                   "dead_lettered_total": expected.dead_lettered_total,
                   "records_outside_window": 0}
    assert summary["physical_records"] == summary["records_read"] + summary["records_unreadable"]
    assert summary["records_read"] == (summary["records_trained_on"]
                                       + summary["duplicates_dropped"]
                                       + summary["dead_lettered_total"]
                                       + summary["records_outside_window"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_dead_letter_reasons_match_hand_counts(fmt, runs, hostile_sets):
    """The dead-letter files hold exactly the hand-counted reasons, and the
    summary's dead_lettered says the same (unreadable stretches are not in it)."""
    run, expected = runs(fmt), expected_of(hostile_sets, fmt)
    assert run.dead_reasons() == dict(expected.dead_lettered)
    assert nonzero(run.summary["dead_lettered"]) == dict(expected.dead_lettered)
    assert UNREADABLE not in run.summary["dead_lettered"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_unreadable_stretches_are_counted_and_dead_lettered(fmt, runs, hostile_sets):
    """One `unreadable_file` dead letter per damaged stretch, in its file,
    saying what was lost; the summary counts the stretches (and bytes only
    where no record count was known)."""
    run, expected = runs(fmt), expected_of(hostile_sets, fmt)
    stretches = collections.Counter(os.path.basename(str(r.get("file"))) for r in run.dead
                                    if r["reason"] == UNREADABLE)
    assert stretches == expected.stretches_by_file
    for record in run.dead:
        if record["reason"] == UNREADABLE:
            assert record["stage"] == "read" and record["detail"]
    assert run.summary.get("unreadable_stretches") == expected.unreadable_stretches
    if expected.bytes_unreadable_positive:
        assert run.summary.get("bytes_unreadable", 0) > 0
    else:
        assert run.summary.get("bytes_unreadable") == 0


@pytest.mark.parametrize("fmt", FORMATS)
def test_training_rows_are_the_hand_counted_attempts(fmt, runs, hostile_sets):
    """Training rows per user are exactly the attempts declared as trained on
    (normalized names: integers as text, whitespace stripped)."""
    run, expected = runs(fmt), expected_of(hostile_sets, fmt)
    assert run.rows_by_user == expected.trained
    assert run.summary["rows_emitted"] == expected.records_trained_on
    assert run.summary["exercises_fitted"] >= 1


@pytest.mark.parametrize("fmt", ("json", "csv", "parquet"))
def test_bad_optional_fields_are_nulled_and_counted(fmt, runs, hostile_sets):
    """NaN, 'abc', 1.5, {} and infinities in time_taken/count_hints/
    count_attempts become null (counted per field); the attempt is kept."""
    run, expected = runs(fmt), expected_of(hostile_sets, fmt)
    assert nonzero(run.summary.get("optional_fields_nulled")) == dict(
        expected.optional_fields_nulled)


@pytest.mark.parametrize("fmt", FORMATS)
def test_outputs_are_strict_json_without_nan(fmt, runs):
    """Params, components, summary, dead letters and training rows parse with
    a strict JSON parser (no NaN/Infinity tokens, valid UTF-8); dead letters
    have stage, reason, detail, record (and file at the read stage)."""
    run = runs(fmt)
    assert_outputs_strict_json(run.output, run.rows)
    for record in run.dead:
        assert {"stage", "reason", "detail", "record"} <= set(record), record
        assert record["stage"] in ("read", "sessionize")
        if record["stage"] == "read":
            assert record.get("file"), record
    for params in read_jsonl(os.path.join(run.output, "params", "*.jsonl")):
        assert np.all(np.isfinite(params["theta"]))


# --------------------------------------------------------------------------- case by case

ALL_CASES = [(fmt, name) for fmt in FORMATS for name in CASES[fmt]]


@pytest.mark.parametrize("fmt, name", ALL_CASES, ids=[f"{f}-{n}" for f, n in ALL_CASES])
def test_case(fmt, name, runs, hostile_sets):
    """One damaged file: its read-stage dead letters by reason, its unreadable
    stretches, the training rows of its users and its users' sessionize-stage
    dead letters are exactly as declared when the file was built."""
    case, run = hostile_sets[fmt][name], runs(fmt)
    file_name = os.path.basename(case.path)
    expected = case.expected
    got_read = collections.Counter(r["reason"] for r in run.read_dead(file_name)
                                   if r["reason"] != UNREADABLE)
    assert got_read == expected.read_dead_by_file.get(file_name, collections.Counter()), \
        case.doc
    assert len(run.read_dead(file_name, UNREADABLE)) == expected.stretches_by_file[file_name]
    users = expected.users | set(expected.trained)
    assert collections.Counter({user: n for user, n in run.rows_by_user.items()
                                if user in users}) == expected.trained, case.doc
    sessionize = collections.Counter(
        (r["record"]["user"], r["reason"]) for r in run.dead
        if r.get("stage") == "sessionize" and r["record"].get("user") in users)
    assert sessionize == expected.sessionize_dead, case.doc


def test_non_finite_json_values_are_written_as_strings(runs, hostile_sets):
    """NaN/Infinity read from JSON are dead-lettered with the record written as
    the strings 'NaN', 'Infinity', '-Infinity'."""
    run = runs("json")

    def values(reason, field):
        return sorted(r["record"][field] for r in run.read_dead("nan_inf.jsonl", reason))
    assert values("bad_user", "user") == ["Infinity", "NaN"]
    assert values("bad_exercise", "exercise") == ["-Infinity", "NaN"]
    assert values("bad_timestamp", "time_done") == ["-Infinity", "Infinity", "NaN"]
    assert values("bad_boolean", "correct") == ["Infinity", "NaN"]


@pytest.mark.parametrize("fmt, file_name", [("json", "badutf8.jsonl"), ("csv", "badutf8.csv")])
def test_undecodable_lines_are_kept_as_text(fmt, file_name, runs):
    """A line with invalid UTF-8 is dead-lettered as bad_encoding with its text
    (replacement characters for the bad bytes), and only that line is lost."""
    records = runs(fmt).read_dead(file_name)
    assert [r["reason"] for r in records] == ["bad_encoding", "bad_encoding"]
    for record in records:
        text = json.dumps(record["record"], ensure_ascii=False)
        assert "\ufffd" in text and "ex_" in text, text


def test_bad_json_line_is_dead_lettered_as_written(runs):
    """A line that is not JSON is kept in the dead letter as the text it was."""
    records = runs("json").read_dead("misc.jsonl", "bad_json")
    assert sorted(r["record"] for r in records) == ['{"user": "misc_cut", "exercise"',
                                                    "{not json"]


def test_parquet_timestamps_of_every_unit_are_exact(runs, hostile_sets):
    """time_done columns in s, ms, us and ns (with or without a time zone) are
    read as the exact instant (ns truncated to us)."""
    rows = {row["user"]: row["time_done"] for row in runs("parquet").training_rows}
    for name in hf.PARQUET_CASES:
        case = hostile_sets["parquet"][name]
        for user, micros in (case.time_done or {}).items():
            assert user in rows, (name, user)
            moment = datetime.datetime.fromisoformat(rows[user])
            assert hf.micros(moment) == micros, (name, user, rows[user])


# --------------------------------------------------------------------------- names

def test_random_components_of_separator_names_differ():
    """(exercise 'a\\x1fb', type 'c') and ('a', 'b\\x1fc') are different keys, so
    their random components differ (a joined-text key would make them equal)."""
    for (first, second) in (hf.UNIT_SEPARATOR_PAIR, hf.PIPE_PAIR):
        for correct in (True, False):
            a = random_component((*first, correct), hf.SEED, 16)
            b = random_component((*second, correct), hf.SEED, 16)
            assert not np.allclose(a, b), (first, second)


def test_components_file_lists_separator_names_apart(runs):
    """components.jsonl lists each (exercise, problem_type, correct) key of the
    separator names on its own, with the vector random_component gives it."""
    saved = read_jsonl(os.path.join(runs("json").output, "components", "*.jsonl"))
    vectors = {(c["exercise"], c["problem_type"], c["correct"]): c["vector"] for c in saved}
    assert len(vectors) == len(saved), "a key is listed twice"
    for exercise, problem_type in hf.UNIT_SEPARATOR_PAIR + hf.PIPE_PAIR + hf.ODD_NAMES:
        key = (exercise, problem_type, True)
        assert key in vectors, key
        np.testing.assert_allclose(vectors[key], random_component(key, hf.SEED, hf.D),
                                   rtol=0, atol=1e-12)
    for first, second in (hf.UNIT_SEPARATOR_PAIR, hf.PIPE_PAIR):
        assert not np.allclose(vectors[(*first, True)], vectors[(*second, True)])


# --------------------------------------------------------------------------- train_boosted

@pytest.fixture(scope="module")
def boosted(hostile_sets, tmp_path_factory):
    """The hostile JSON set through train_boosted (store build + 1 iteration)."""
    output = tmp_path_factory.mktemp("boosted")
    summary = train_boosted.run(["--input", _pattern(hostile_sets["json"], "json"),
                                 "--output", str(output), "--iterations", "1",
                                 "--templates", "exercise,exercise_x_problem_type",
                                 "--min_feature_count", "1", "--seed", str(hf.SEED)])
    store = os.path.join(str(output), "store")
    with open(os.path.join(store, "store.json"), encoding="utf-8") as handle:
        counts = json.loads(handle.read())["counts"]
    return types.SimpleNamespace(summary=summary, output=str(output), store=store,
                                 counts=counts)


def test_boosted_store_counts_match_hand_counts(boosted, hostile_sets):
    """The store build accounts for every record like training does."""
    counts, expected = boosted.counts, expected_of(hostile_sets, "json")
    assert {name: counts.get(name) for name in (
        "physical_records", "records_read", "records_unreadable", "records_trained_on",
        "duplicates_dropped", "dead_lettered_total", "sparse_examples")} == {
        "physical_records": expected.physical_records, "records_read": expected.records_read,
        "records_unreadable": 0, "records_trained_on": expected.records_trained_on,
        "duplicates_dropped": expected.duplicates_dropped,
        "dead_lettered_total": expected.dead_lettered_total,
        "sparse_examples": expected.records_trained_on}
    assert nonzero(counts["dead_lettered"]) == dict(expected.dead_lettered)
    assert nonzero(counts.get("optional_fields_nulled")) == dict(expected.optional_fields_nulled)
    dead = read_jsonl(os.path.join(boosted.store, "dead_letter", "*.jsonl"))
    assert dict(collections.Counter(r["reason"] for r in dead)) == dict(expected.dead_lettered)


def test_boosted_vocabularies_keep_separator_names_apart(boosted, hostile_sets):
    """Exercise `col|x` with type `y` and exercise `col` with type `x|y` get
    different features; vocabulary files round-trip every name exactly (tabs,
    newlines, quotes included)."""
    expected = expected_of(hostile_sets, "json")
    directory = os.path.join(boosted.store, "vocabulary")
    exercises = read_vocabulary(directory, "exercise")
    assert sorted(exercises) == sorted(expected.exercises)
    pairs = read_vocabulary(directory, "exercise_x_problem_type")
    assert len(set(map(json.dumps, pairs))) == len(pairs) == len(expected.pairs)


def test_boosted_outputs_are_strict_json(boosted):
    """Weights, loss curve, summaries, store.json, vocabularies and dead letters
    of train_boosted parse strictly (no NaN/Infinity)."""
    assert_outputs_strict_json(boosted.output)


def test_boosted_without_usable_records_fails_with_one_line(tmp_path, capsys):
    """train_boosted on input where no record is usable: exit 1 and a one-line
    `error: ...` on stderr, no traceback (main() raising anything but
    SystemExit is what prints a traceback)."""
    path = hf.unusable_json(str(tmp_path / "in"))
    with pytest.raises(SystemExit) as exited:
        train_boosted.main(["--input", path, "--output", str(tmp_path / "out"),
                            "--iterations", "1"])
    stderr = capsys.readouterr().err
    assert exited.value.code == 1, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], stderr[-3000:]


# --------------------------------------------------------------------------- monitor

@pytest.fixture(scope="module")
def monitored(hostile_sets, runs, tmp_path_factory):
    """The hostile JSON set through the monitor, scored with the model the
    JSON training run fitted."""
    output = tmp_path_factory.mktemp("monitor")
    summary = monitor.run(["--input", _pattern(hostile_sets["json"], "json"),
                           "--params", runs("json").output, "--output", str(output)])
    return types.SimpleNamespace(summary=summary, output=str(output))


def test_monitor_counts_match_hand_counts(monitored, hostile_sets):
    """The monitor reads and accounts for the hostile JSON set like training."""
    summary, expected = monitored.summary, expected_of(hostile_sets, "json")
    assert {name: summary.get(name) for name in (
        "records_read", "records_unreadable", "duplicates_dropped", "dead_lettered_total")} == {
        "records_read": expected.records_read, "records_unreadable": 0,
        "duplicates_dropped": expected.duplicates_dropped,
        "dead_lettered_total": expected.dead_lettered_total}
    assert nonzero(summary["dead_lettered"]) == dict(expected.dead_lettered)
    dead = read_jsonl(os.path.join(monitored.output, "dead_letter", "*.jsonl"))
    assert dict(collections.Counter(r["reason"] for r in dead)) == dict(expected.dead_lettered)
    assert summary["rows_scored"] > 0


def test_monitor_outputs_are_strict_json(monitored):
    """Daily metrics, monitor_summary.json and dead letters parse strictly."""
    assert_outputs_strict_json(monitored.output)


def test_monitor_survives_year_one_logs(tmp_path):
    """Logs dated in year 1 do not crash the monitor, and a second run into the
    same --output works: each run ends normally or with the documented
    'nothing scored' JobFailed (exit 1), never another exception (a traceback)."""
    path = hf.year_one_logs(str(tmp_path / "in"))
    model = hf.hand_made_model(str(tmp_path / "model"))
    output = str(tmp_path / "out")
    argv = ["--input", path, "--params", model, "--output", output]
    for _ in range(2):
        try:
            monitor.run(argv)
        except JobFailed:
            pass
        assert_outputs_strict_json(output)
