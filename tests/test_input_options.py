"""Input options: BigQuery identifiers, SQL we generate, the date window."""

import datetime
import types

import pytest

from pipelines.input_source import mapping_problem, problem_log_source
from pipelines.options import date_window
from transforms.read_bigquery import (TableRef, parse_dataset, parse_table, selected_fields,
                                      window_condition, windowed_query)

NOV = datetime.date(2026, 11, 23)


def _options(**values):
    defaults = dict(input="", input_query="", bq_project="", bq_dataset="", bq_table="",
                    bq_temp_dataset="", column_mapping="", input_format="auto",
                    start_date="", end_date="", window_days=0, run_date="", student_buckets=0)
    return types.SimpleNamespace(**{**defaults, **values})


@pytest.mark.parametrize("text", ["bq://my-project.logs.problem_logs",
                                  "my-project.logs.problem_logs",
                                  "my-project:logs.problem_logs"])
def test_table_specs_parse(text):
    assert parse_table(text) == TableRef("my-project", "logs", "problem_logs")


@pytest.mark.parametrize("text", [
    "bq://my-project.logs",                              # no table
    "bq://my-project.logs.t; DROP TABLE x",               # injection
    "bq://my-project.logs.t`",                           # quote
    "bq://My_Project.logs.t",                            # not a project id
    "bq://proj.logs.t",                                  # too short a project id
])
def test_bad_table_specs_name_the_option(text):
    with pytest.raises(ValueError, match="--input"):
        parse_table(text)


def test_temp_dataset_is_checked():
    assert parse_dataset("my-project.tmp", "--bq_temp_dataset") == ("my-project", "tmp")
    with pytest.raises(ValueError, match="--bq_temp_dataset"):
        parse_dataset("my-project.tmp.x", "--bq_temp_dataset")


def test_selected_fields_follow_the_column_mapping_and_the_table():
    mapping = {"user": "student_id", "exercise": "skill"}
    columns = ["student_id", "skill", "time_done", "correct", "problem_number", "other"]
    assert selected_fields(mapping, columns) == [
        "student_id", "skill", "problem_number", "time_done", "correct"]
    assert mapping_problem("the table", columns, mapping) == ""
    assert mapping_problem("the table", columns, {}) == (
        "the table has no column for user, exercise (its columns: student_id, skill, "
        "time_done, correct, problem_number, other); map them with --column_mapping, e.g. "
        "--column_mapping user=student_id,exercise=skill")
    with pytest.raises(ValueError, match="--column_mapping"):
        selected_fields({"user": "a b"}, columns)


def test_window_conditions_are_rendered_from_checked_parts():
    window = (datetime.date(2026, 11, 1), datetime.date(2026, 11, 8))
    assert window_condition("time_done", "TIMESTAMP", window) == (
        "`time_done` >= TIMESTAMP('2026-11-01') AND `time_done` < TIMESTAMP('2026-11-08')")
    assert window_condition("day", "DATE", (None, window[1])) == "`day` < DATE('2026-11-08')"
    with pytest.raises(ValueError, match="TIMESTAMP, DATETIME or DATE"):
        window_condition("time_done", "INT64", window)
    with pytest.raises(ValueError):
        window_condition("time`done", "TIMESTAMP", window)


def test_a_query_is_wrapped_in_the_window_and_left_alone_without_one():
    query = "SELECT * FROM `p.d.t`;"
    window = (datetime.date(2026, 11, 1), None)
    assert windowed_query(query, "ts", window) == (
        "SELECT * FROM (\nSELECT * FROM `p.d.t`\n) WHERE `ts` >= TIMESTAMP('2026-11-01')")
    assert windowed_query(query, "ts", (None, None)) == "SELECT * FROM `p.d.t`"


def test_window_days_counts_back_from_the_run_date():
    assert date_window(_options(window_days=7), today=NOV) == (
        datetime.date(2026, 11, 16), NOV)
    assert date_window(_options(window_days=1, run_date="2026-03-01")) == (
        datetime.date(2026, 2, 28), datetime.date(2026, 3, 1))


def test_start_and_end_dates_are_inclusive_days():
    assert date_window(_options(start_date="2026-11-01", end_date="2026-11-07")) == (
        datetime.date(2026, 11, 1), datetime.date(2026, 11, 8))
    assert date_window(_options()) == (None, None)


@pytest.mark.parametrize("values, option", [
    (dict(start_date="2026-13-01"), "--start_date"),
    (dict(end_date="yesterday"), "--end_date"),
    (dict(start_date="2026-11-08", end_date="2026-11-01"), "--end_date"),
    (dict(window_days=7, start_date="2026-11-01"), "--window_days"),
    (dict(run_date="2026-11-01"), "--run_date"),
    (dict(window_days=3, run_date="2026-02-30"), "--run_date"),
])
def test_bad_windows_name_the_option(values, option):
    with pytest.raises(ValueError, match=option):
        date_window(_options(**values))


@pytest.mark.parametrize("values, message", [
    (dict(), "--input"),
    (dict(input="a/*.avro", input_query="SELECT 1"), "either --input or --input_query"),
    (dict(input_query="SELECT 1"), "--bq_temp_dataset"),
    (dict(bq_project="my-project", bq_dataset="d"), "go together"),
    (dict(input="bq://p.d.t"), "--input"),
])
def test_input_combinations_are_checked(values, message):
    with pytest.raises(ValueError, match=message):
        problem_log_source(_options(**values))


def test_a_query_source_reads_the_windowed_query_by_export():
    source = problem_log_source(_options(
        input_query="SELECT * FROM `my-project.logs.t`", bq_temp_dataset="my-project.tmp",
        start_date="2026-11-01", column_mapping="time_done=ts"))
    read = source.read.read_transform()
    assert read.method == read.Method.EXPORT
    assert source.read.query.endswith("WHERE `ts` >= TIMESTAMP('2026-11-01')")
    assert read._kwargs["temp_dataset"].datasetId == "tmp"
