"""The ProblemLog source the input options describe: files, a BigQuery table or
a BigQuery query, with the date window. Shared by every pipeline that reads
ProblemLogs, so they accept the same inputs and fail the same way."""

import datetime
import math
import os
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from models.problem_log import (FIELDS, missing_columns, parse_column_mapping,
                                suggest_column_mapping)
from pipelines.options import date_window
from transforms.file_formats import SCHEMA_READERS
from transforms.read import BIGQUERY_BUCKETS, ReadProblemLogs, detect_format
from transforms.read_bigquery import (BQ_SCHEME, ReadProblemLogsFromBigQuery, TableRef,
                                      parse_dataset, parse_table, selected_fields,
                                      source_columns, table_schema, window_condition,
                                      windowed_query)

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
# Files whose header or schema is checked before the job starts (each costs an
# open, and for Parquet a footer read: a bound for exports of thousands of shards).
SCHEMA_CHECKED_FILES = 20
LOGS_PER_BUCKET = 250_000
# Rough bytes per ProblemLog by format (compressed Avro/Parquet exports; text),
# measured on the sample generator's files: only the bucket count depends on it.
_BYTES_PER_LOG = {"avro": 14, "parquet": 12, "csv": 80, "json": 170}


class ProblemLogSource(NamedTuple):
    description: str          # what the run summary records as its input
    read: beam.PTransform     # pbegin -> `valid` chunks and `dead_letter`
    num_buckets: int          # the student buckets of the `valid` chunks


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


def student_buckets(file_format: str, total_bytes: int) -> int:
    """About LOGS_PER_BUCKET logs per bucket, estimated from the input's size;
    a power of two, at least 4 (two workers' worth of parallel replay)."""
    logs = total_bytes / _BYTES_PER_LOG[file_format]
    return max(4, 1 << max(0, math.ceil(math.log2(max(logs / LOGS_PER_BUCKET, 1)))))


def _file_source(options, mapping, window) -> ProblemLogSource:
    found = FileSystems.match([options.input])[0].metadata_list
    matched = [metadata.path for metadata in found]
    if not matched:
        raise ValueError(f"--input {options.input!r} matches no files")
    directories = [path for path in matched if os.path.isdir(path)]
    if directories:
        raise ValueError(f"--input {options.input!r} matches the directory "
                         f"{directories[0]!r}; name the files, e.g. "
                         f"'{directories[0].rstrip('/')}/*.avro'")
    file_format = (detect_format(options.input) if options.input_format == "auto"
                   else options.input_format)
    _check_file_columns(options.input, sorted(matched)[:SCHEMA_CHECKED_FILES], file_format,
                        mapping)
    buckets = options.student_buckets or student_buckets(
        file_format, sum(metadata.size_in_bytes for metadata in found))
    return ProblemLogSource(options.input, ReadProblemLogs(
        options.input, file_format, mapping, window=tuple(map(day_start_micros, window)),
        num_buckets=buckets), buckets)


def _file_columns(path: str, file_format: str):
    """The columns a file declares (CSV header, Parquet or Avro schema), or
    None when it declares none or cannot be read (the job then dead-letters
    it; damage in data files is not a command-line error)."""
    try:
        with FileSystems.open(path) as handle:
            return SCHEMA_READERS[file_format](handle)
    except Exception:  # noqa: BLE001 (damaged or not this format)
        return None


def mapping_problem(where: str, columns, mapping) -> str:
    """'' if `columns` hold every required field (after `mapping`), else an
    error naming the missing fields and a --column_mapping to try."""
    missing = missing_columns(columns, mapping)
    if not missing:
        return ""
    guesses = {**mapping, **suggest_column_mapping(columns, missing)}
    suggestion = ",".join(f"{field}={guesses.get(field, '<column>')}" for field in FIELDS
                          if field in guesses or field in missing)
    return (f"{where} has no column for {', '.join(missing)} (its columns: "
            f"{', '.join(columns) or 'none'}); map them with --column_mapping, e.g. "
            f"--column_mapping {suggestion}")


def _check_file_columns(pattern: str, paths, file_format: str, mapping) -> None:
    """Refuse before any work when a file's declared columns cannot give the
    required fields: otherwise the whole job would run to dead-letter every
    record."""
    if file_format not in SCHEMA_READERS:
        return
    for path in paths:
        columns = _file_columns(path, file_format)
        if columns is not None:
            problem = mapping_problem(f"--input {pattern!r}: {path}", columns, mapping)
            if problem:
                raise ValueError(problem)


def _table_source(table: TableRef, mapping, window, buckets: int) -> ProblemLogSource:
    try:
        schema = table_schema(table)
    except Exception as error:  # noqa: BLE001 (any API failure)
        raise ValueError(f"cannot read the schema of BigQuery table {table.spec()}: "
                         f"{type(error).__name__}: {error}") from None
    problem = mapping_problem(f"BigQuery table {table.spec()}", list(schema), mapping)
    if problem:
        raise ValueError(problem)
    fields = selected_fields(mapping, list(schema))
    time_column = source_columns(mapping)["time_done"]
    restriction = (window_condition(time_column, schema[time_column], window)
                   if any(window) else "")
    return ProblemLogSource(f"{BQ_SCHEME}{table.project}.{table.dataset}.{table.table}",
                            ReadProblemLogsFromBigQuery(mapping, table=table,
                                                        selected_fields=fields,
                                                        row_restriction=restriction,
                                                        num_buckets=buckets), buckets)


def _query_source(options, mapping, window, buckets: int) -> ProblemLogSource:
    if not options.bq_temp_dataset:
        raise ValueError("--input_query needs --bq_temp_dataset project.dataset for its "
                         "result")
    temp_dataset = parse_dataset(options.bq_temp_dataset, "--bq_temp_dataset")
    query = windowed_query(options.input_query, source_columns(mapping)["time_done"], window)
    return ProblemLogSource("query", ReadProblemLogsFromBigQuery(
        mapping, query=query, temp_dataset=temp_dataset, num_buckets=buckets), buckets)


def check_input_options(options):
    """The input options' own checks, with no file or network access, so an
    entry point can refuse a bad command line before any I/O. Returns
    (column mapping, BigQuery table or None). Raises ValueError naming the
    option at fault."""
    mapping = parse_column_mapping(options.column_mapping)
    table = _bigquery_table(options)
    if table is not None or options.input_query:
        source_columns(mapping)
    if options.input_query and options.bq_temp_dataset:
        parse_dataset(options.bq_temp_dataset, "--bq_temp_dataset")
    given = [name for name, present in (("--input", bool(options.input) or table),
                                        ("--input_query", bool(options.input_query)))
             if present]
    if not given:
        raise ValueError("--input (a file glob or bq://project.dataset.table) is required")
    if len(given) > 1:
        raise ValueError("give either --input or --input_query, not both")
    return mapping, table


def problem_log_source(options, window=None) -> ProblemLogSource:
    """Check the input options and build the read of the days in `window`
    (first day, day after the last; default: the date-window options). Raises
    ValueError naming the option at fault."""
    window = date_window(options) if window is None else window
    mapping, table = check_input_options(options)
    buckets = options.student_buckets or BIGQUERY_BUCKETS
    if options.input_query:
        return _query_source(options, mapping, window, buckets)
    if table is not None:
        return _table_source(table, mapping, window, buckets)
    return _file_source(options, mapping, window)
