"""ReadFromBigQuery(DIRECT_READ) against the local bqemulator, on the DirectRunner.

Proves what the BigQuery source of the pipeline will see: only the selected
fields, only the rows of the time window, and the Python types Beam yields.
"""

import datetime
import uuid

import apache_beam as beam
import pytest
from apache_beam.io.gcp.bigquery import ReadFromBigQuery
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to

UTC = datetime.timezone.utc
DATASET = "logs"
PROBLEM_LOG_SCHEMA = [
    {"name": "user", "type": "STRING", "mode": "REQUIRED"},
    {"name": "exercise", "type": "STRING", "mode": "REQUIRED"},
    {"name": "problem_type", "type": "STRING", "mode": "NULLABLE"},
    {"name": "problem_number", "type": "INT64", "mode": "NULLABLE"},
    {"name": "time_done", "type": "TIMESTAMP", "mode": "REQUIRED"},
    {"name": "correct", "type": "BOOL", "mode": "REQUIRED"},
    {"name": "time_taken", "type": "INT64", "mode": "NULLABLE"},
    {"name": "count_hints", "type": "INT64", "mode": "NULLABLE"},
    {"name": "count_attempts", "type": "INT64", "mode": "NULLABLE"},
]
WINDOW = "time_done >= TIMESTAMP('2026-01-02') AND time_done < TIMESTAMP('2026-01-04')"
SELECTED = ["user", "exercise", "time_done", "correct"]


def _rows():
    """20 attempts over 5 days, 6 h apart; includes both window edges and NULLs."""
    start = datetime.datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    return [{
        "user": f"u{i % 3}",
        "exercise": ("addition", "subtraction")[i % 2],
        "problem_type": None if i % 5 == 0 else f"t{i % 2}",
        "problem_number": i // 6 + 1,
        "time_done": start + datetime.timedelta(hours=6 * i, microseconds=123 * (i % 2)),
        "correct": i % 3 != 0,
        "time_taken": None if i % 4 == 0 else 10 + i,
        "count_hints": i % 2,
        "count_attempts": 1,
    } for i in range(20)]


ROWS = _rows()
IN_WINDOW = [r for r in ROWS if datetime.datetime(2026, 1, 2, tzinfo=UTC) <= r["time_done"]
             < datetime.datetime(2026, 1, 4, tzinfo=UTC)]


@pytest.fixture
def problem_log(bigquery):
    """A fresh, seeded ProblemLog table; returns its ``project:dataset.table`` spec."""
    table = f"problem_log_{uuid.uuid4().hex[:8]}"
    spec = bigquery.create_table(DATASET, table, PROBLEM_LOG_SCHEMA)
    bigquery.insert_rows(DATASET, table, ROWS)
    return spec


def test_direct_read_honours_selected_fields_and_row_restriction(problem_log):
    assert len(IN_WINDOW) == 8  # 2026-01-02T00:00 is in, 2026-01-04T00:00 is out
    expected = [{k: r[k] for k in SELECTED} for r in IN_WINDOW]
    with beam.Pipeline() as p:
        rows = p | ReadFromBigQuery(
            table=problem_log, method=ReadFromBigQuery.Method.DIRECT_READ,
            selected_fields=SELECTED, row_restriction=WINDOW)
        assert_that(rows, equal_to(expected))


def _types(row):
    return {k: (type(v).__name__, v.utcoffset() if isinstance(v, datetime.datetime) else None)
            for k, v in row.items()}


def test_direct_read_types(problem_log):
    """TIMESTAMP -> tz-aware UTC datetime (micros kept), INT64 -> int, BOOL -> bool,
    NULL -> None."""
    zero = datetime.timedelta(0)
    full = {"user": ("str", None), "exercise": ("str", None), "problem_type": ("str", None),
            "problem_number": ("int", None), "time_done": ("datetime", zero),
            "correct": ("bool", None), "time_taken": ("int", None),
            "count_hints": ("int", None), "count_attempts": ("int", None)}
    expected = [dict(full, **{k: ("NoneType", None) for k, v in r.items() if v is None})
                for r in ROWS]
    with beam.Pipeline() as p:
        rows = p | ReadFromBigQuery(table=problem_log, method=ReadFromBigQuery.Method.DIRECT_READ)
        assert_that(rows, equal_to(ROWS), label="values")
        assert_that(rows | beam.Map(_types), equal_to(expected), label="types")


def test_direct_read_with_project_option_keeps_datasets(bigquery, problem_log):
    """With --project set, Beam's post-read cleanup must not wipe the seeded dataset."""
    options = PipelineOptions(project=bigquery.project)
    with beam.Pipeline(options=options) as p:
        rows = p | ReadFromBigQuery(table=problem_log, method=ReadFromBigQuery.Method.DIRECT_READ,
                                    selected_fields=["user"], row_restriction=WINDOW)
        assert_that(rows | beam.combiners.Count.Globally(), equal_to([len(IN_WINDOW)]))
    table = problem_log.split(".")[1]
    assert len(bigquery.query(f"SELECT user FROM {DATASET}.{table}")) == len(ROWS)


def test_jobs_query_runs_standard_sql(bigquery, problem_log):
    """jobs.query validates generated SQL; TIMESTAMPs come back as micros strings."""
    table = problem_log.split(".")[1]
    got = bigquery.query(f"SELECT user, time_done FROM {DATASET}.{table} "
                         f"WHERE {WINDOW} ORDER BY time_done")
    assert got == [{"user": r["user"],
                    "time_done": str(int(r["time_done"].timestamp()) * 10**6
                                     + r["time_done"].microsecond)} for r in IN_WINDOW]


def test_beam_patches_are_undone(bigquery_emulator):
    import google.auth
    from apache_beam.io.gcp import bigquery as beam_bq
    from apache_beam.io.gcp.internal.clients.bigquery import BigqueryV2

    before = (google.auth.default, beam_bq.bq_storage, BigqueryV2.BASE_URL)
    with bigquery_emulator.beam_pointed_at_emulator():
        assert BigqueryV2.BASE_URL == bigquery_emulator.base_url
        assert google.auth.default()[1] == bigquery_emulator.project
    assert (google.auth.default, beam_bq.bq_storage, BigqueryV2.BASE_URL) == before
