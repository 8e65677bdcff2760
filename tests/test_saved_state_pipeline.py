"""The trainer with --state_input/--state_output: runs over consecutive time
slices, each continuing from the previous run's snapshot, emit exactly the
training rows of one run over all the logs (the reference: that one run,
whose rows tests/test_pipeline.py checks against the specification)."""

import glob
import json
import os

import fastavro
import numpy as np
import pytest

from pipelines import generate_sample
from pipelines.options import UsageError
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
    first = (root / "2026-03-04" / "state-00000.parquet").read_bytes()
    run(["--input", slices[2], "--output", str(tmp_path / "out"), "--overwrite",
         "--state_dir", str(root), "--run_date", "2026-03-04", *COMMON])
    assert (root / "2026-03-04" / "state-00000.parquet").read_bytes() == first
