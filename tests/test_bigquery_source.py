"""ProblemLogs from BigQuery, against a real BigQuery API server (bqemulator):
a windowed table read trains exactly what the same window over files trains,
asks only for the needed columns, and dead-letters bad rows with their table.

The query path (EXPORT) cannot run against the emulator: it does not create a
query job's destination table, which the export reads. Its generated SQL is
run here through the emulator's jobs.query instead."""

import datetime
import glob
import os

import fastavro
import pytest

from pipelines import generate_sample
from pipelines.cli import UsageError
from pipelines.train_knowledge_model import run
from tests.jsonl import read_jsonl
from transforms.read_bigquery import windowed_query

DATASET = "logs"
SCHEMA = [("student_id", "STRING"), ("exercise", "STRING"), ("problem_type", "STRING"),
          ("problem_number", "INT64"), ("time_done", "TIMESTAMP"), ("correct", "BOOL"),
          ("time_taken", "INT64"), ("extra_column", "STRING")]
START, END = datetime.date(2026, 2, 1), datetime.date(2026, 2, 14)
COMMON = ["--model_version", "bq-test", "--max_samples_per_exercise", "1000000",
          "--min_samples", "10", "--column_mapping", "user=student_id"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sample"))
    generate_sample.main(["--output", directory, "--students", "100", "--seed", "11"])
    records = []
    for path in sorted(glob.glob(os.path.join(directory, "*.avro"))):
        with open(path, "rb") as handle:
            for record in fastavro.reader(handle):
                record["student_id"] = record.pop("user")
                record.pop("count_hints"), record.pop("count_attempts")  # not in the table
                records.append(record)
    return directory, records


@pytest.fixture(scope="module")
def table(bigquery_emulator, sample):
    """The sample as a table, loaded once for the module's tests."""
    _, records = sample
    name = "problem_logs"
    bigquery_emulator.create_table(DATASET, name, SCHEMA)
    for start in range(0, len(records), 2000):
        bigquery_emulator.insert_rows(DATASET, name, records[start:start + 2000])
    return f"bq://{bigquery_emulator.project}.{DATASET}.{name}"


def _in_window(record, history_days=0):
    return (START - datetime.timedelta(days=history_days) <= record["time_done"].date()
            <= END)


def test_windowed_table_read_trains_like_the_same_window_over_files(bigquery, table, sample,
                                                                   tmp_path):
    directory, records = sample
    window = ["--start_date", START.isoformat(), "--end_date", END.isoformat(),
              "--history_days", "7"]
    from_table = run(["--input", table, "--output", str(tmp_path / "bq"), *window, *COMMON])
    from_files = run(["--input", os.path.join(directory, "*.avro"),
                      "--output", str(tmp_path / "files"), *window,
                      *COMMON[:-2]])  # the Avro files use the standard column names

    inside = sum(_in_window(record, history_days=7) for record in records)
    assert 0 < inside < len(records)
    # The window (with its history) was applied by BigQuery: only those rows
    # were read at all.
    assert from_table["records_read"] == inside
    assert from_table["records_outside_window"] == 0
    assert from_files["records_outside_window"] == len(records) - inside
    assert from_table["input"] == table

    def params(output):
        return {r["exercise"]: {k: v for k, v in r.items() if k != "trained_at"}
                for r in read_jsonl(str(tmp_path / output / "params" / "*.jsonl"))}
    assert params("bq") == params("files")
    assert len(params("bq")) > 0


def test_missing_required_column_names_it(bigquery, tmp_path):
    bigquery.create_table(DATASET, "no_user", [("exercise", "STRING"),
                                               ("time_done", "TIMESTAMP"), ("correct", "BOOL")])
    with pytest.raises(UsageError, match="has no column for user .*--column_mapping"):
        run(["--input", f"bq://{bigquery.project}.{DATASET}.no_user",
             "--output", str(tmp_path)])


def test_a_missing_table_is_a_usage_error(bigquery, tmp_path):
    bigquery.create_dataset(DATASET)
    with pytest.raises(UsageError, match="cannot read the schema of BigQuery table"):
        run(["--input", f"bq://{bigquery.project}.{DATASET}.nope", "--output", str(tmp_path)])


def test_bad_rows_from_a_table_are_dead_lettered_with_the_table(bigquery, sample, tmp_path):
    _, records = sample
    name = "with_bad_rows"
    bigquery.create_table(DATASET, name, SCHEMA)
    good = records[:3000]
    bad = [dict(records[0], exercise=None), dict(records[1], correct=None)]
    bigquery.insert_rows(DATASET, name, good + bad)
    summary = run(["--input", f"bq://{bigquery.project}.{DATASET}.{name}",
                   "--output", str(tmp_path), *COMMON])
    assert summary["records_read"] == len(good) + len(bad)
    assert summary["dead_lettered"] == {"missing_correct": 1, "missing_exercise": 1}
    dead = read_jsonl(str(tmp_path / "dead_letter" / "*.jsonl"))
    assert {d["source"] for d in dead} == {f"{bigquery.project}:{DATASET}.{name}"}
    assert {d["reason"] for d in dead} == {"missing_correct", "missing_exercise"}


def test_the_windowed_query_runs_and_selects_the_window(bigquery, table, sample):
    _, records = sample
    user_query = (f"SELECT student_id AS user, exercise, time_done, correct "
                  f"FROM `{bigquery.project}.{DATASET}.problem_logs`")
    rows = bigquery.query(windowed_query(user_query, "time_done", (
        START, END + datetime.timedelta(days=1))))
    assert len(rows) == sum(map(_in_window, records))
    assert set(rows[0]) == {"user", "exercise", "time_done", "correct"}


def test_a_table_read_asks_only_for_problem_log_columns(bigquery, table):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.input_source import problem_log_source
    from pipelines.jobs.train_knowledge_model import KnowledgeModelOptions
    options = PipelineOptions(["--input", table, "--window_days", "14", "--run_date",
                               "2026-02-15", "--column_mapping", "user=student_id"])
    read = problem_log_source(options.view_as(KnowledgeModelOptions)).read
    assert read.selected_fields == ["student_id", "exercise", "problem_type", "problem_number",
                                    "time_done", "correct", "time_taken"]
    assert read.row_restriction == ("`time_done` >= TIMESTAMP('2026-02-01') AND "
                                    "`time_done` < TIMESTAMP('2026-02-15')")
