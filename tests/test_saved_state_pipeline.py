"""The trainer with --state_input/--state_output: runs over consecutive time
slices, each continuing from the previous run's snapshot, emit exactly the
training rows of one run over all the logs (the reference: that one run,
whose rows tests/test_pipeline.py checks against the specification)."""

import glob
import json
import os

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines import generate_sample
from pipelines.cli import UsageError
from pipelines.train_knowledge_model import run
from tests.jsonl import read_jsonl

COMMON = ["--model_version", "state-test", "--max_samples_per_exercise", "1000000",
          "--min_samples", "5"]


@pytest.fixture(scope="module")
def slices(tmp_path_factory):
    """The sample's records in 3 Avro files of consecutive time slices; the
    second and third also repeat the last 5 records of the slice before
    (an overlapping export)."""
    sample = str(tmp_path_factory.mktemp("sample"))
    generate_sample.main(["--output", sample, "--students", "120", "--seed", "4"])
    records, schema = [], None
    for path in sorted(glob.glob(os.path.join(sample, "*.avro"))):
        with open(path, "rb") as handle:
            reader = fastavro.reader(handle)
            schema = reader.writer_schema
            records.extend(reader)
    records.sort(key=lambda record: record["time_done"])
    times = [record["time_done"] for record in records]
    cuts = [times[len(times) // 3], times[2 * len(times) // 3]]
    parts = [[r for r in records if r["time_done"] < cuts[0]],
             [r for r in records if cuts[0] <= r["time_done"] < cuts[1]],
             [r for r in records if r["time_done"] >= cuts[1]]]
    directory = tmp_path_factory.mktemp("slices")
    paths = []
    for number, part in enumerate(parts):
        repeated = parts[number - 1][-5:] if number else []
        path = str(directory / f"slice-{number}.avro")
        with open(path, "wb") as handle:
            fastavro.writer(handle, schema, part + repeated)
        paths.append(path)
    return paths


def params_of(output):
    return {record["exercise"]: record
            for record in read_jsonl(os.path.join(output, "params", "*.jsonl"))}


def rows_of(directory):
    return {(row["user"], row["exercise"], row["time_done"], row["problem_number"],
             row["correct"]): row["x"]
            for row in read_jsonl(os.path.join(directory, "training_rows-*.jsonl"))}


@pytest.fixture(scope="module")
def full_and_sliced(slices, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    full = run(["--input", str(os.path.dirname(slices[0])) + "/slice-*.avro",
                "--output", str(base / "full"), "--training_rows_output",
                str(base / "full-rows"), *COMMON])
    summaries, state = [], None
    for number, path in enumerate(slices):
        args = ["--input", path, "--output", str(base / f"out-{number}"),
                "--training_rows_output", str(base / f"rows-{number}"),
                "--state_output", str(base / f"state-{number}"), *COMMON]
        if state:
            args += ["--state_input", state]
        summaries.append(run(args))
        state = str(base / f"state-{number}")
    return full, summaries, base


def test_sliced_runs_emit_the_full_runs_rows(full_and_sliced):
    full, summaries, base = full_and_sliced
    expected = rows_of(base / "full-rows")
    actual = {}
    for number in range(3):
        part = rows_of(base / f"rows-{number}")
        assert not set(part) & set(actual)
        actual.update(part)
    assert set(actual) == set(expected)
    difference = max(np.max(np.abs(np.array(actual[key]) - np.array(expected[key])))
                     for key in expected)
    assert difference <= 1e-12
    # The 10 repeated records are duplicates in both; nothing is late.
    assert full["duplicates_dropped"] == 10
    assert sum(summary["duplicates_dropped"] for summary in summaries) == 10
    assert [summary["late_attempts"] for summary in summaries] == [0, 0, 0]
    assert summaries[-1]["state_input"]["students"] == summaries[1]["state_students_written"]


def test_sliced_runs_with_student_features_emit_the_full_runs_rows(slices, tmp_path):
    """--student_features continues its counts over all exercises from each
    snapshot: the sliced runs' rows, student columns included, are the full
    run's."""
    features = [*COMMON, "--student_features"]
    run(["--input", str(os.path.dirname(slices[0])) + "/slice-*.avro", "--output",
         str(tmp_path / "full"), "--training_rows_output", str(tmp_path / "full-rows"),
         *features])
    state = None
    for number, path in enumerate(slices):
        run(["--input", path, "--output", str(tmp_path / f"out-{number}"),
             "--training_rows_output", str(tmp_path / f"rows-{number}"),
             "--state_output", str(tmp_path / f"state-{number}"), *features,
             *(["--state_input", state] if state else [])])
        state = str(tmp_path / f"state-{number}")
    expected = rows_of(tmp_path / "full-rows")
    actual = {}
    for number in range(3):
        actual.update(rows_of(tmp_path / f"rows-{number}"))
    assert set(actual) == set(expected)
    assert {len(x) for x in expected.values()} == {7 + 3 + 100}
    assert max(np.max(np.abs(np.array(actual[key]) - np.array(expected[key])))
               for key in expected) <= 1e-12


def test_the_last_snapshot_holds_every_student(full_and_sliced):
    full, summaries, base = full_and_sliced
    header = json.loads((base / "state-2" / "SNAPSHOT.json").read_text())
    assert header["students"] == full["students"] == summaries[-1]["state_students_written"]
    assert header["seed"] == 0 and header["num_random_features"] == 100
    assert sorted(os.listdir(base / "state-2")) == sorted(header["files"] + ["SNAPSHOT.json"])


def test_a_snapshot_of_another_seed_is_refused(full_and_sliced, slices, tmp_path):
    _, _, base = full_and_sliced
    with pytest.raises(UsageError, match="seed 0.*this run has seed 7"):
        run(["--input", slices[2], "--output", str(tmp_path / "out"), "--seed", "7",
             "--state_input", str(base / "state-1"), *COMMON])


def test_an_unfinished_snapshot_is_refused_and_the_previous_one_still_works(
        full_and_sliced, slices, tmp_path):
    _, _, base = full_and_sliced
    unfinished = tmp_path / "killed"
    unfinished.mkdir()
    for name in os.listdir(base / "state-1"):
        if name != "SNAPSHOT.json":  # a run killed before its last step
            (unfinished / name).write_bytes((base / "state-1" / name).read_bytes())
    with pytest.raises(UsageError, match="not a finished snapshot"):
        run(["--input", slices[2], "--output", str(tmp_path / "out"),
             "--state_input", str(unfinished), *COMMON])
    again = run(["--input", slices[2], "--output", str(tmp_path / "out"),
                 "--training_rows_output", str(tmp_path / "rows"),
                 "--state_input", str(base / "state-1"), *COMMON])
    assert again["rows_emitted"] > 0
    assert rows_of(tmp_path / "rows") == rows_of(base / "rows-2")


def test_an_existing_snapshot_needs_overwrite(full_and_sliced, slices, tmp_path):
    _, _, base = full_and_sliced
    with pytest.raises(UsageError, match="--state_output .* already holds a snapshot"):
        run(["--input", slices[0], "--output", str(tmp_path / "out"),
             "--state_output", str(base / "state-0"), *COMMON])


def test_dated_state_dir_bootstraps_continues_keeps_and_reruns(full_and_sliced, slices,
                                                                tmp_path):
    """--state_dir as the nightly job uses it: the first night replays
    everything, each night continues from the latest earlier snapshot,
    --state_keep prunes old ones, and re-running a night gives the same."""
    _, _, base = full_and_sliced
    root = tmp_path / "state"
    days = ["2026-03-01", "2026-03-02", "2026-03-04"]  # a night missed: 03-03
    for number, (path, day) in enumerate(zip(slices, days)):
        summary = run(["--input", path, "--output", str(tmp_path / "out"), "--overwrite",
                       "--training_rows_output", str(tmp_path / f"rows-{number}"),
                       "--state_dir", str(root), "--run_date", day, "--state_keep", "1",
                       *COMMON])
        assert rows_of(tmp_path / f"rows-{number}") == rows_of(base / f"rows-{number}")
        previous = days[number - 1] if number else None
        assert summary.get("state_input", {}).get("path") == (
            str(root / previous) if previous else None)
    assert sorted(os.listdir(root / "2026-03-01")) == []  # pruned: only 03-02 is kept
    # The last night fitted on its own rows and the stored samples of the
    # earlier nights: the full run's parameters.
    expected = params_of(base / "full")
    actual = params_of(tmp_path / "out")
    assert sorted(actual) == sorted(expected)
    for exercise, record in expected.items():
        assert actual[exercise]["num_rows_available"] == record["num_rows_available"]
        assert actual[exercise]["num_train"] == record["num_train"]
        np.testing.assert_allclose(actual[exercise]["theta"], record["theta"], rtol=0,
                                   atol=1e-9)
    first = (root / "2026-03-04" / "state-00000.parquet").read_bytes()
    run(["--input", slices[2], "--output", str(tmp_path / "out"), "--overwrite",
         "--state_dir", str(root), "--run_date", "2026-03-04", *COMMON])
    assert (root / "2026-03-04" / "state-00000.parquet").read_bytes() == first


def test_state_dir_with_student_features_fits_the_full_runs_parameters(slices, tmp_path):
    """The rows store keeps the student columns too (its rows are wider):
    the last night, fitting its own rows and the stored samples of earlier
    nights, gets one run's parameters over all the logs; a run without the
    option refuses those partitions."""
    features = [*COMMON, "--student_features"]
    run(["--input", os.path.dirname(slices[0]) + "/slice-*.avro",
         "--output", str(tmp_path / "full"), *features])
    root = tmp_path / "state"
    for path, day in zip(slices, ["2026-03-01", "2026-03-02", "2026-03-04"]):
        run(["--input", path, "--output", str(tmp_path / "out"), "--overwrite",
             "--state_dir", str(root), "--run_date", day, *features])
    expected, actual = params_of(tmp_path / "full"), params_of(tmp_path / "out")
    assert sorted(actual) == sorted(expected)
    for exercise, record in expected.items():
        assert actual[exercise]["num_train"] == record["num_train"]
        assert len(record["theta"]) == 7 + 3 + 100
        np.testing.assert_allclose(actual[exercise]["theta"], record["theta"], rtol=0,
                                   atol=1e-9)
    with pytest.raises(UsageError, match="written with --student_features"):
        run(["--input", slices[2], "--output", str(tmp_path / "out"), "--overwrite",
             "--state_dir", str(root), "--run_date", "2026-03-05", *COMMON])


def fingerprints_in(snapshot) -> int:
    return sum(len(row) for path in glob.glob(os.path.join(snapshot, "state-*.parquet"))
               for row in pq.read_table(path).column("recent_attempts").to_pylist())


def test_a_snapshot_of_a_dated_window_keeps_no_fingerprints(full_and_sliced, slices,
                                                            tmp_path):
    """A run that read logs up to the end of a day is continued by runs that
    read from that day on: no later copy can match an earlier attempt, so
    the snapshot drops the fingerprints an open-ended run keeps."""
    _, _, base = full_and_sliced
    with open(slices[0], "rb") as handle:
        last = max(record["time_done"] for record in fastavro.reader(handle))
    run(["--input", slices[0], "--output", str(tmp_path / "out"),
         "--state_output", str(tmp_path / "state"), "--end_date", last.date().isoformat(),
         *COMMON])
    assert fingerprints_in(base / "state-0") > 0
    assert fingerprints_in(tmp_path / "state") == 0
    assert (json.loads((tmp_path / "state" / "SNAPSHOT.json").read_text())["students"]
            == json.loads((base / "state-0" / "SNAPSHOT.json").read_text())["students"])


def test_state_dir_plan_picks_the_window_and_prunes(tmp_path):
    """resolve_state on a hand-made tree: snapshots of 03-01..03-05 (03-04
    unfinished), rows partitions of the same days (03-02 unfinished)."""
    from types import SimpleNamespace

    from pipelines.saved_state import resolve_state
    for day in ("01", "02", "03", "04", "05"):
        snapshot = tmp_path / f"2026-03-{day}"
        snapshot.mkdir()
        (snapshot / "state-00000.parquet").write_bytes(b"")
        if day != "04":
            (snapshot / "SNAPSHOT.json").write_text("{}")
        rows = tmp_path / "rows" / f"2026-03-{day}"
        rows.mkdir(parents=True)
        (rows / "rows-00000.parquet").write_bytes(b"")
        if day != "02":
            (rows / "DONE.json").write_text("{}")
    options = SimpleNamespace(state_dir=str(tmp_path), state_input="", state_output="",
                              run_date="2026-03-05", state_keep=2)
    import datetime
    plan = resolve_state(options, window_start=datetime.date(2026, 3, 1))
    # Latest finished snapshot before the run date: 03-03 (03-04 is unfinished).
    assert plan.state_input == str(tmp_path / "2026-03-03")
    assert plan.state_output == str(tmp_path / "2026-03-05")
    assert plan.rows_output == str(tmp_path / "rows" / "2026-03-05")
    # Partitions after the window's first day, before the run date, finished.
    assert plan.rows_inputs == [str(tmp_path / "rows" / f"2026-03-{day}") for day in ("03", "04")]
    # Keep the 2 newest finished snapshots (03-02, 03-03); unfinished 03-04 goes;
    # partitions outside the window or unfinished go.
    assert sorted(plan.expired) == sorted(
        [str(tmp_path / "2026-03-01"), str(tmp_path / "2026-03-04")]
        + [str(tmp_path / "rows" / f"2026-03-{day}") for day in ("01", "02")])
