"""The ProblemLog source the input options describe: files, a BigQuery table or
a BigQuery query, with the date window. Shared by every pipeline that reads
ProblemLogs, so they accept the same inputs and fail the same way."""

import datetime
import os
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from models.problem_log import parse_column_mapping
from pipelines.options import date_window
from transforms.read import ReadProblemLogs, detect_format
from transforms.read_bigquery import (BQ_SCHEME, ReadProblemLogsFromBigQuery, TableRef,
                                      parse_dataset, parse_table, selected_fields,
                                      source_columns, table_schema, window_condition,
                                      windowed_query)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


class ProblemLogSource(NamedTuple):
    description: str          # what the run summary records as its input
    read: beam.PTransform     # pbegin -> `valid` chunks and `dead_letter`


def _bigquery_table(options):
    parts = (options.bq_project, options.bq_dataset, options.bq_table)
    if any(parts):
        if not all(parts):
            raise ValueError("--bq_project, --bq_dataset and --bq_table go together")
        if options.input:
            raise ValueError("give the table either as --input bq://... or as --bq_* options")
        return parse_table(".".join(parts), "--bq_project/--bq_dataset/--bq_table")
    if options.input.startswith(BQ_SCHEME):
        return parse_table(options.input)
    return None


def day_start_micros(day):
    if day is None:
        return None
    moment = datetime.datetime.combine(day, datetime.time(), datetime.timezone.utc)
    return (moment - _EPOCH) // datetime.timedelta(microseconds=1)


def _file_source(options, mapping, window) -> ProblemLogSource:
    matched = [metadata.path for metadata in
               FileSystems.match([options.input])[0].metadata_list]
    if not matched:
        raise ValueError(f"--input {options.input!r} matches no files")
    directories = [path for path in matched if os.path.isdir(path)]
    if directories:
        raise ValueError(f"--input {options.input!r} matches the directory "
                         f"{directories[0]!r}; name the files, e.g. "
                         f"'{directories[0].rstrip('/')}/*.avro'")
    file_format = (detect_format(options.input) if options.input_format == "auto"
                   else options.input_format)
    return ProblemLogSource(options.input, ReadProblemLogs(
        options.input, file_format, mapping, window=tuple(map(day_start_micros, window))))


def _table_source(table: TableRef, mapping, window) -> ProblemLogSource:
    try:
        schema = table_schema(table)
    except Exception as error:  # pylint: disable=broad-except  (any API failure)
        raise ValueError(f"cannot read the schema of BigQuery table {table.spec()}: "
                         f"{type(error).__name__}: {error}") from None
    fields = selected_fields(mapping, list(schema))
    time_column = source_columns(mapping)["time_done"]
    restriction = (window_condition(time_column, schema[time_column], window)
                   if any(window) else "")
    return ProblemLogSource(f"{BQ_SCHEME}{table.project}.{table.dataset}.{table.table}",
                            ReadProblemLogsFromBigQuery(mapping, table=table,
                                                        selected_fields=fields,
                                                        row_restriction=restriction))


def _query_source(options, mapping, window) -> ProblemLogSource:
    if not options.bq_temp_dataset:
        raise ValueError("--input_query needs --bq_temp_dataset project.dataset for its "
                         "result")
    temp_dataset = parse_dataset(options.bq_temp_dataset, "--bq_temp_dataset")
    query = windowed_query(options.input_query, source_columns(mapping)["time_done"], window)
    return ProblemLogSource("query", ReadProblemLogsFromBigQuery(
        mapping, query=query, temp_dataset=temp_dataset))


def problem_log_source(options, window=None) -> ProblemLogSource:
    """Check the input options and build the read of the days in `window`
    (first day, day after the last; default: the date-window options). Raises
    ValueError naming the option at fault."""
    mapping = parse_column_mapping(options.column_mapping)
    window = date_window(options) if window is None else window
    table = _bigquery_table(options)
    given = [name for name, present in (("--input", bool(options.input) or table),
                                        ("--input_query", bool(options.input_query)))
             if present]
    if not given:
        raise ValueError("--input (a file glob or bq://project.dataset.table) is required")
    if len(given) > 1:
        raise ValueError("give either --input or --input_query, not both")
    if options.input_query:
        return _query_source(options, mapping, window)
    if table is not None:
        return _table_source(table, mapping, window)
    return _file_source(options, mapping, window)
