"""Reading ProblemLogs from BigQuery: a table through the Storage Read API, or a
user's query through an export.

A table read asks only for the columns the ProblemLog needs (through the
column mapping) and pushes the date window down as a row restriction, so
BigQuery bills and streams just that. A query read wraps the user's SQL in a
window filter and runs with method EXPORT into the user's temp dataset.

Every identifier and date that reaches SQL is checked against a strict pattern
first and rendered by this module; only the user's own query is used verbatim.
Rows leave as the same per-user chunks and dead letters as a file read.
"""

import datetime
import re
from typing import NamedTuple, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.io.gcp.bigquery import ReadFromBigQuery

from models.problem_log import FIELDS
from transforms.read import BIGQUERY_BUCKETS, DEAD_LETTER, VALID, ValidateRows

BQ_SCHEME = "bq://"
# Project ids: 6-30 lowercase letters, digits, hyphens (legacy domain-scoped
# ids carry a 'domain.com:' prefix); dataset ids: letters, digits, underscores;
# table and column names: the same plus hyphens for tables.
_PROJECT = r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]"
_DATASET = r"[A-Za-z0-9_]{1,1024}"
_TABLE = r"[A-Za-z0-9_-]{1,1024}"
_TABLE_SPEC = re.compile(rf"({_PROJECT})[.:]({_DATASET})\.({_TABLE})")
_DATASET_SPEC = re.compile(rf"({_PROJECT})[.:]({_DATASET})")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,299}")
_WINDOW_TYPES = {"TIMESTAMP": "TIMESTAMP", "DATETIME": "DATETIME", "DATE": "DATE"}


class TableRef(NamedTuple):
    project: str
    dataset: str
    table: str

    def spec(self) -> str:
        """'project:dataset.table', the form Beam's table= expects."""
        return f"{self.project}:{self.dataset}.{self.table}"


def parse_table(text: str, option: str = "--input") -> TableRef:
    """'project.dataset.table' or 'project:dataset.table' (optionally bq://...)."""
    spec = text[len(BQ_SCHEME):] if text.startswith(BQ_SCHEME) else text
    match = _TABLE_SPEC.fullmatch(spec)
    if not match:
        raise ValueError(f"{option} {text!r} is not a BigQuery table "
                         f"'bq://project.dataset.table' (project ids are 6-30 lowercase "
                         f"letters, digits and hyphens; dataset and table names letters, "
                         f"digits and underscores)")
    return TableRef(*match.groups())


def parse_dataset(text: str, option: str) -> Tuple[str, str]:
    match = _DATASET_SPEC.fullmatch(text)
    if not match:
        raise ValueError(f"{option} {text!r} is not a BigQuery dataset 'project.dataset'")
    return match.groups()


def check_column(name: str, option: str = "--column_mapping") -> str:
    if not _COLUMN.fullmatch(name):
        raise ValueError(f"{option}: {name!r} is not a plain BigQuery column name "
                         f"(letters, digits, underscores)")
    return name


def source_columns(column_mapping: dict) -> dict:
    """ProblemLog field -> the source column it is read from (checked)."""
    return {field: check_column(column_mapping.get(field, field)) for field in FIELDS}


def selected_fields(column_mapping: dict, table_columns: Sequence[str]) -> list:
    """The source columns to read: every mapped column the table has (the
    caller checked the required ones are there; a missing optional one is read
    as null)."""
    columns = source_columns(column_mapping)
    present = set(table_columns)
    return [columns[field] for field in FIELDS if columns[field] in present]


def _literal(column_type: str, day: datetime.date) -> str:
    # The date came from datetime.date, so its isoformat is exactly YYYY-MM-DD.
    return f"{_WINDOW_TYPES[column_type]}('{day.isoformat()}')"


def window_condition(column: str, column_type: str,
                     window: Tuple[Optional[datetime.date], Optional[datetime.date]]) -> str:
    """SQL condition for start <= column < end ('' when the window is open)."""
    check_column(column)
    if column_type not in _WINDOW_TYPES:
        raise ValueError(f"a date window needs the time column {column!r} to be "
                         f"TIMESTAMP, DATETIME or DATE, not {column_type}")
    start, end = window
    conditions = []
    if start is not None:
        conditions.append(f"`{column}` >= {_literal(column_type, start)}")
    if end is not None:
        conditions.append(f"`{column}` < {_literal(column_type, end)}")
    return " AND ".join(conditions)


def windowed_query(query: str, column: str, window) -> str:
    """The user's query restricted to the window (its time column must be a
    TIMESTAMP). The user's SQL is theirs to write; only our part is generated."""
    condition = window_condition(column, "TIMESTAMP", window)
    query = query.strip().rstrip(";")
    return f"SELECT * FROM (\n{query}\n) WHERE {condition}" if condition else query


def table_schema(table: TableRef) -> dict:
    """Column name -> BigQuery type, read through the BigQuery API."""
    from apache_beam.io.gcp.bigquery_tools import BigQueryWrapper
    found = BigQueryWrapper().get_table(table.project, table.dataset, table.table)
    return {field.name: field.type.upper() for field in found.schema.fields}


class ReadProblemLogsFromBigQuery(beam.PTransform):
    """A BigQuery table or query -> `valid`: (student bucket, LogBatch) chunks
    and `dead_letter`, exactly like ReadProblemLogs for files.

    Table: pass `table` and its `selected_fields` and `row_restriction`
    (from selected_fields() and window_condition()). Query: pass `query` (already
    windowed) and `temp_dataset` (project, dataset) for the export."""

    def __init__(self, column_mapping=None, *, table: TableRef = None,
                 selected_fields: Sequence[str] = None, row_restriction: str = "",
                 query: str = "", temp_dataset: Tuple[str, str] = None,
                 max_buffered: int = 200000, num_buckets: int = BIGQUERY_BUCKETS):
        super().__init__()
        self.num_buckets = num_buckets
        if (table is None) == (not query):
            raise ValueError("read either a table or a query")
        self.column_mapping = column_mapping
        self.table, self.selected_fields = table, selected_fields
        self.row_restriction = row_restriction
        self.query, self.temp_dataset = query, temp_dataset
        self.max_buffered = max_buffered

    def read_transform(self) -> ReadFromBigQuery:
        if self.table is not None:
            return ReadFromBigQuery(
                table=self.table.spec(), method=ReadFromBigQuery.Method.DIRECT_READ,
                selected_fields=list(self.selected_fields or []) or None,
                row_restriction=self.row_restriction or None)
        from apache_beam.io.gcp.internal.clients import bigquery as bq_messages
        project, dataset = self.temp_dataset
        return ReadFromBigQuery(
            query=self.query, use_standard_sql=True, method=ReadFromBigQuery.Method.EXPORT,
            temp_dataset=bq_messages.DatasetReference(projectId=project, datasetId=dataset))

    def expand(self, pbegin):
        source = self.table.spec() if self.table is not None else "query"
        return (pbegin
                | "ReadFromBigQuery" >> self.read_transform()
                | "ValidateRows" >> beam.ParDo(
                    ValidateRows(source, self.column_mapping, self.max_buffered, None,
                                 self.num_buckets))
                .with_outputs(DEAD_LETTER, main=VALID))
