"""Validating typed columns (Parquet, Avro through Arrow) without a Python
object per record.

validate_table() splits a table's rows in two: rows whose values the
vectorized checks prove valid become a LogBatch directly; every other row
(null or empty required field, wrong type, bad name, out of range, anything
unusual) goes through the per-record ProblemLogParser, which gives the exact
reason. The fast path only ever accepts a row with the values the parser would
give it, so the two paths agree by construction; names are checked once per
distinct value with the parser's own function.
"""

from typing import Dict, List, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from models.log_batch import LogBatch
from models.problem_log import (MAX_MICROS, MIN_MICROS, OPTIONAL_INT_FIELDS, EpochMicros,
                                InvalidProblemLog, parse_name)

_INT64_MAX = 2 ** 63 - 1


class ArrowRows(NamedTuple):
    """Raw rows as a typed table. `time_scale` (multiply, divide) turns
    `time_column`'s integers into microseconds when it was a timestamp column
    (cast to int64 by the reader), else None."""
    table: pa.Table
    time_column: Optional[str]
    time_scale: Optional[tuple]


def _names(column: pa.ChunkedArray, field: str, optional: bool):
    """(codes per row, dictionary, ok per row) for a name column: every distinct
    value parsed once; ok is False where the parser would not accept the row
    as is (null, empty, bad) and the row must take the per-record path."""
    kind = column.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or pa.types.is_string_view(kind) or pa.types.is_integer(kind)):
        return None
    encoded = pc.dictionary_encode(column.combine_chunks())
    values = encoded.dictionary.to_pylist()
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    valid = encoded.is_valid().to_numpy(zero_copy_only=False)
    index: Dict[str, int] = {}
    codes_of_value = np.full(len(values) + 1, -1, dtype=np.int64)
    for i, value in enumerate(values):
        if not optional and isinstance(value, str) and not value.strip():
            continue  # missing_<field>
        try:
            name = parse_name(field, value)
        except InvalidProblemLog:
            continue
        codes_of_value[i] = index.setdefault(name, len(index))
    if optional:
        codes_of_value[-1] = index.setdefault("", len(index))  # null problem_type: ""
    codes = codes_of_value[np.where(valid, indices, len(values)).astype(np.int64)]
    return codes, tuple(index), codes >= 0


def _integers(column: pa.ChunkedArray, low: int):
    """(values, present, ok) of an integer field: ints, or floats that are
    integral (NaN is null, as pandas writes nullable ints); ok is False for
    values the parser would reject or null out (they take the per-record path)."""
    kind = column.type
    array = column.combine_chunks()
    present = array.is_valid().to_numpy(zero_copy_only=False)
    if pa.types.is_integer(kind):
        raw = array.fill_null(0).to_numpy(zero_copy_only=False)
        values = raw.astype(np.int64)
        fits = raw <= _INT64_MAX if pa.types.is_uint64(kind) else True
        return values, present, ~present | ((values >= low) & fits)
    if pa.types.is_floating(kind):
        floats = array.fill_null(np.nan).to_numpy(zero_copy_only=False).astype(np.float64)
        present = ~np.isnan(floats)
        finite = np.isfinite(floats) & (np.abs(floats) < 2.0 ** 62)
        values = np.where(finite, floats, 0).astype(np.int64)
        ok = ~present | (finite & (values == floats) & (values >= low))
        return values, present, ok
    return None


def validate_table(rows: ArrowRows, columns: Dict[str, str], not_after: int, window):
    """-> (LogBatch of the rows proven valid and inside the window, the number
    of those outside the window, indices of the rows for the per-record path)."""
    table = rows.table
    n = table.num_rows
    ok = np.ones(n, dtype=bool)
    names = set(table.column_names)

    def column(field):
        return table.column(columns[field]) if columns[field] in names else None

    coded = {}
    for field, optional in (("user", False), ("exercise", False), ("problem_type", True)):
        source = column(field)
        if source is None:
            if not optional:
                return LogBatch.empty(), 0, np.arange(n)
            coded[field] = (np.zeros(n, dtype=np.int64), ("",))
            continue
        result = _names(source, field, optional)
        if result is None:
            return LogBatch.empty(), 0, np.arange(n)
        codes, dictionary, good = result
        coded[field] = (codes, dictionary)
        ok &= good

    time_column, correct_column = column("time_done"), column("correct")
    if (time_column is None or rows.time_scale is None or correct_column is None
            or not pa.types.is_boolean(correct_column.type)):
        return LogBatch.empty(), 0, np.arange(n)
    raw_time = time_column.combine_chunks()
    ok &= raw_time.is_valid().to_numpy(zero_copy_only=False)
    multiply, divide = rows.time_scale
    raw = raw_time.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    limit = _INT64_MAX // multiply
    in_range = (raw >= -limit) & (raw <= limit)
    time_done = np.where(in_range, raw, 0) * multiply // divide
    ok &= in_range & (time_done >= MIN_MICROS) & (time_done <= min(MAX_MICROS, not_after))
    correct_array = correct_column.combine_chunks()
    ok &= correct_array.is_valid().to_numpy(zero_copy_only=False)
    correct = correct_array.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)

    integers = {}
    for field, low in (("problem_number", 1),) + tuple((name, -2 ** 63)
                                                        for name in OPTIONAL_INT_FIELDS):
        source = column(field)
        if source is None:
            integers[field] = (np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool))
            continue
        result = _integers(source, low)
        if result is None:
            return LogBatch.empty(), 0, np.arange(n)
        values, present, good = result
        integers[field] = (np.where(present, values, 0), present)
        ok &= good

    start, end = window or (None, None)
    inside = np.ones(n, dtype=bool)
    if start is not None:
        inside &= time_done >= start
    if end is not None:
        inside &= time_done < end
    keep = np.flatnonzero(ok & inside)
    optional = np.column_stack([integers[name][0] for name in OPTIONAL_INT_FIELDS])
    present = np.column_stack([integers[name][1] for name in OPTIONAL_INT_FIELDS])
    batch = LogBatch(coded["user"][1], coded["user"][0].astype(np.int32),
                     coded["exercise"][1], coded["exercise"][0].astype(np.int32),
                     coded["problem_type"][1], coded["problem_type"][0].astype(np.int32),
                     integers["problem_number"][0], time_done, correct, optional, present
                     ).take(keep)
    return batch, int((ok & ~inside).sum()), np.flatnonzero(~ok)


def row_dicts(rows: ArrowRows, index: np.ndarray) -> List:
    """The rows at `index` as dicts for the per-record parser, timestamps as
    EpochMicros; a row that cannot be converted is an Unparsable of its own
    instead of costing its neighbours."""
    from transforms.file_formats import Unparsable  # file_formats imports this module
    table = rows.table.take(pa.array(index, type=pa.int64()))
    try:
        records = table.to_pylist()
    except Exception:  # noqa: BLE001 (any conversion error)
        records = []
        for i in range(table.num_rows):
            try:
                records.extend(table.slice(i, 1).to_pylist())
            except Exception as error:  # noqa: BLE001 (this one row)
                records.append(Unparsable("unreadable_record",
                                          f"{type(error).__name__}: {error}",
                                          {"row": int(index[i])}))
    if rows.time_scale is not None:
        multiply, divide = rows.time_scale
        time_column = rows.time_column
        for record in records:
            if type(record) is dict and record.get(time_column) is not None:
                record[time_column] = EpochMicros(record[time_column] * multiply // divide)
    return records
