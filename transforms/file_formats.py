"""Raw records out of ProblemLog files, one generator per format, that never
lose more than the damage itself. (One module of ~450 lines: the four readers
share the stats, the stretch accounting and the Arrow hand-off.)

Each reader yields dicts (one per physical record), `Unparsable` for a record
that could not even be decoded (it still counts as read, and is dead-lettered
with its reason) and `Unreadable` for a stretch of the file that holds records
which cannot be reached (it is reported, never silently skipped). `ReadStats`
counts the physical records the file declares or delimits, so a summary can
show `physical_records = records_read + records_unreadable`:

* JSON lines and CSV: one record per non-blank line; a line that is not UTF-8,
  not JSON, or has an unterminated quote costs that line only. A CSV quoted
  field cannot span lines (a physical line is a record).
* Parquet: row counts from the footer; a damaged row group costs its rows, a
  row that cannot be converted costs that row.
* Avro: counts from the block headers; a damaged block costs that block, and
  reading resumes at the next sync marker.

Typed timestamps (Avro timestamp-*, Parquet timestamp of any unit) are handed
on as exact `EpochMicros`, never as datetime objects (which stop at year 9999
and cost ~5 us each).
"""

import codecs
import csv
import io
import json
from typing import Dict, Iterator, Optional

import fastavro

from models.problem_log import EpochMicros
from transforms.arrow_validation import ArrowRows

_BOM = codecs.BOM_UTF8
_SEARCH_CHUNK = 1 << 20
_AVRO_SYNC_SIZE = 16
_AVRO_TIMESTAMP_SCALE = {"timestamp-micros": (1, 1), "timestamp-millis": (1000, 1),
                         "timestamp-nanos": (1, 1000),
                         "local-timestamp-micros": (1, 1), "local-timestamp-millis": (1000, 1)}
_PARQUET_TIMESTAMP_SCALE = {"s": (1_000_000, 1), "ms": (1000, 1), "us": (1, 1), "ns": (1, 1000)}
ARROW_SLICE_ROWS = 1 << 18
# Avro files up to this size are decoded by polars in one go (~25x faster than
# fastavro's dict per record); larger ones, and any file polars cannot read
# whole, take the block-by-block reader that resynchronises after damage.
POLARS_AVRO_MAX_BYTES = 2 << 30


class Unparsable:
    """A physical record that failed before it was even a mapping (bad JSON
    line, ragged CSV row, undecodable bytes)."""

    __slots__ = ("reason", "detail", "raw")

    def __init__(self, reason, detail, raw):
        self.reason, self.detail, self.raw = reason, detail, raw


class Unreadable:
    """A stretch of a file that could not be read: `records` lost when the
    file says how many (else None), `bytes` skipped when known (else None)."""

    __slots__ = ("detail", "records", "bytes")

    def __init__(self, detail: str, records: Optional[int] = None, skipped: Optional[int] = None):
        self.detail, self.records, self.bytes = detail, records, skipped

    def as_record(self) -> dict:
        return {"records_lost": self.records, "bytes_lost": self.bytes}


class ReadStats:
    """What one file held and what of it could not be reached."""

    __slots__ = ("physical", "unreadable_records", "unreadable_bytes", "stretches")

    def __init__(self):
        self.physical = self.unreadable_records = self.unreadable_bytes = self.stretches = 0

    def unreadable(self, detail: str, records: Optional[int] = None,
                   skipped: Optional[int] = None) -> Unreadable:
        self.stretches += 1
        self.unreadable_records += records or 0
        self.unreadable_bytes += skipped or 0
        return Unreadable(detail, records, skipped)


def _lines(handle) -> Iterator[bytes]:
    """Binary lines (any handle with readline: plain or decompressing), the
    byte-order mark of the first one removed."""
    first = True
    for line in iter(handle.readline, b""):
        if first:
            first = False
            if line.startswith(_BOM):
                line = line[len(_BOM):]
        yield line


def _decode(line: bytes):
    """(text, None) or (None, Unparsable) for a line that is not UTF-8."""
    try:
        return line.decode("utf-8").rstrip("\r\n"), None
    except UnicodeDecodeError as error:
        return None, Unparsable("bad_encoding", f"not UTF-8: {error}",
                                line.decode("utf-8", errors="replace").rstrip("\r\n"))


def _records(lines, stats: ReadStats):
    """Non-blank lines, each a physical record: (text, None), or (None, an
    Unparsable) for a line that is not UTF-8."""
    for line in lines:
        if line.strip():
            stats.physical += 1
            yield _decode(line)


def json_records(handle, stats: ReadStats, columns=None):
    for text, bad in _records(_lines(handle), stats):
        if bad is not None:
            yield bad
            continue
        try:
            yield json.loads(text)
        except ValueError as error:
            yield Unparsable("bad_json", str(error), text)


# A record is one physical line, read whole, so no cell can outgrow its line:
# the csv module's own cell limit (128 KiB by default; process-wide) would only
# turn a long cell into a lost row.
csv.field_size_limit(2 ** 31 - 1)


def _csv_cells(text: str):
    """One physical line -> its cells; csv.Error for an unterminated quote."""
    return next(csv.reader((text,), strict=True))


def csv_records(handle, stats: ReadStats, columns=None):
    lines = _lines(handle)
    header = next(lines, b"")
    text, bad = _decode(header)
    try:
        names = _csv_cells(text) if bad is None else None
    except (csv.Error, StopIteration):
        names = None
    if not names:
        raise ValueError(f"the first line is not a CSV header: {header[:200]!r}")
    for text, bad in _records(lines, stats):
        if bad is not None:
            yield bad
            continue
        try:
            cells = _csv_cells(text)
        except csv.Error as error:
            yield Unparsable("bad_csv_row", "a quote runs past the end of its line"
                             if "end of data" in str(error) else str(error), text)
            continue
        if len(cells) != len(names):
            yield Unparsable("bad_csv_row", f"{len(cells)} cells, the header has {len(names)}",
                             text)
            continue
        yield {name: (cell if cell != "" else None) for name, cell in zip(names, cells)}


def header_columns_csv(handle) -> Optional[list]:
    """The column names of a CSV file's header, None if it has none."""
    text, bad = _decode(next(_lines(handle), b""))
    try:
        return _csv_cells(text) if bad is None else None
    except (csv.Error, StopIteration):
        return None


# --- Parquet -----------------------------------------------------------------

def typed_rows(table, columns: Dict[str, str]) -> ArrowRows:
    """A typed table as the validators need it: the time column as integer
    (cast from a timestamp of any unit, with its scale to microseconds), NaN in
    float columns of integer fields as null (as pandas writes nullable ints)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    time_column, scale = columns.get("time_done"), None
    names = table.column_names
    if time_column in names and pa.types.is_timestamp(table.schema.field(time_column).type):
        scale = _PARQUET_TIMESTAMP_SCALE[table.schema.field(time_column).type.unit]
        index = names.index(time_column)
        table = table.set_column(index, time_column, table.column(index).cast(pa.int64()))
    for field in ("problem_number", "time_taken", "count_hints", "count_attempts"):
        name = columns.get(field)
        if name in names and pa.types.is_floating(table.schema.field(name).type):
            index = names.index(name)
            column = table.column(index)
            table = table.set_column(index, name, pc.if_else(pc.is_nan(column),
                                                              pa.scalar(None, column.type),
                                                              column))
    return ArrowRows(table, time_column if scale else None, scale)


def _slices(rows: ArrowRows):
    for start in range(0, rows.table.num_rows, ARROW_SLICE_ROWS):
        yield rows._replace(table=rows.table.slice(start, ARROW_SLICE_ROWS))


def parquet_records(handle, stats: ReadStats, columns: Dict[str, str]):
    import pyarrow.parquet as pq  # pyarrow is heavy; only Parquet reads need it
    parquet = pq.ParquetFile(handle)
    metadata = parquet.metadata
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        stats.physical += rows
        try:
            table = parquet.read_row_group(group)
        except Exception as error:  # noqa: BLE001 (damaged data)
            yield stats.unreadable(f"row group {group}: {type(error).__name__}: {error}", rows)
            continue
        yield from _slices(typed_rows(table, columns))


def schema_columns_parquet(handle) -> list:
    import pyarrow.parquet as pq
    return list(pq.ParquetFile(handle).schema_arrow.names)


# --- Avro ----------------------------------------------------------------------

def _avro_reader_schema(writer_schema):
    """The writer schema with timestamp logical types dropped (so they decode
    as plain longs) and {field: (multiply, divide)} to make them microseconds."""
    scales = {}

    def plain(schema, field):
        if isinstance(schema, list):
            return [plain(branch, field) for branch in schema]
        if isinstance(schema, dict) and schema.get("logicalType") in _AVRO_TIMESTAMP_SCALE:
            scales[field] = _AVRO_TIMESTAMP_SCALE[schema["logicalType"]]
            return schema["type"]
        return schema

    if not isinstance(writer_schema, dict) or writer_schema.get("type") != "record":
        return writer_schema, {}
    fields = [{**field, "type": plain(field["type"], field["name"])}
              for field in writer_schema["fields"]]
    return {**writer_schema, "fields": fields}, scales


class _Prefixed(io.RawIOBase):
    """`prefix` bytes, then `handle` from its current position: an Avro header
    in front of the blocks that follow a damaged stretch."""

    def __init__(self, prefix: bytes, handle):
        super().__init__()
        self.prefix, self.handle = prefix, handle

    def readable(self):
        return True

    def read(self, size=-1):
        if self.prefix:
            if size is None or size < 0:
                data, self.prefix = self.prefix + self.handle.read(), b""
                return data
            data, self.prefix = self.prefix[:size], self.prefix[size:]
            return data + (self.handle.read(size - len(data)) if len(data) < size else b"")
        return self.handle.read(size)

    def tell(self):
        return self.handle.tell() - len(self.prefix)


def _varint(data: bytes, position: int):
    """Avro zigzag long at `position` -> (value, next position) or None."""
    shift = result = 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (result >> 1) ^ -(result & 1), position
        shift += 7
    return None


def _next_sync(handle, sync: bytes, start: int) -> Optional[int]:
    """Offset of the first sync marker at or after `start`, None if none."""
    handle.seek(start)
    carry, offset = b"", start
    while True:
        chunk = handle.read(_SEARCH_CHUNK)
        if not chunk:
            return None
        data = carry + chunk
        found = data.find(sync)
        if found >= 0:
            return offset - len(carry) + found
        carry = data[-(len(sync) - 1):]
        offset += len(chunk)


def _damaged_block_records(head: bytes, stretch: int) -> Optional[int]:
    """The record count of a damaged block when its header is believable: the
    count and size parse and the size spans the stretch up to the next sync
    marker (or past the end of a truncated file)."""
    count = _varint(head, 0)
    size = _varint(head, count[1]) if count else None
    if not size or count[0] < 1 or size[0] < count[0]:
        return None
    framed = size[1] + size[0]
    return count[0] if framed == stretch - _AVRO_SYNC_SIZE or framed > stretch else None


def _zigzag(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _avro_header(metadata: Dict[str, str], schema, sync: bytes) -> bytes:
    """An Avro file header declaring `schema` (Avro spec: magic, metadata map,
    sync marker). Put in front of the file's blocks, it makes the decoder read
    the timestamp columns as plain longs: fastavro converts logical types by
    the writer's schema whatever the reader schema says."""
    entries = {**metadata, "avro.schema": json.dumps(schema)}
    out = bytearray(b"Obj\x01")
    out += _zigzag(len(entries))
    for key, value in entries.items():
        key_bytes = key.encode("utf-8")
        value_bytes = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        out += _zigzag(len(key_bytes)) + key_bytes + _zigzag(len(value_bytes)) + value_bytes
    return bytes(out + b"\x00" + sync)


def _to_micros(records, scales):
    for record in records:
        for field, (multiply, divide) in scales.items():
            value = record.get(field)
            if value is not None:
                record[field] = EpochMicros(value * multiply // divide)
    return records


def _framed_records(data: bytes, header_end: int, sync: bytes) -> Optional[int]:
    """Records in an Avro file whose every block is framed as the spec says
    (count, size, data, the file's sync marker), None if any is not."""
    position, total = header_end, 0
    while position < len(data):
        count = _varint(data, position)
        size = _varint(data, count[1]) if count else None
        if not size or count[0] < 0 or size[0] < 0:
            return None
        position = size[1] + size[0]
        if data[position:position + _AVRO_SYNC_SIZE] != sync:
            return None
        position += _AVRO_SYNC_SIZE
        total += count[0]
    return total


def _polars_avro(data: bytes, columns: Dict[str, str]) -> Optional[ArrowRows]:
    """The whole file as typed rows, or None when polars cannot read it or
    reads another number of records than the blocks declare (damage: the
    block reader then finds and reports it)."""
    try:
        import polars
        handle = io.BytesIO(data)
        fastavro.block_reader(handle)
        header_end = handle.tell()
        declared = _framed_records(data, header_end, data[header_end - _AVRO_SYNC_SIZE:
                                                          header_end])
        table = polars.read_avro(io.BytesIO(data)).to_arrow()
    except Exception:  # noqa: BLE001 (damaged, or a type polars lacks)
        return None
    return typed_rows(table, columns) if declared == table.num_rows else None


def avro_records(handle, stats: ReadStats, columns: Dict[str, str] = None):
    columns = columns or {}
    size = handle.seek(0, io.SEEK_END) if handle.seekable() else None
    if size is None or size <= POLARS_AVRO_MAX_BYTES:
        if size is not None:
            handle.seek(0)
        handle = io.BytesIO(handle.read())
        rows = _polars_avro(handle.getvalue(), columns)
        if rows is not None:
            stats.physical += rows.table.num_rows
            yield from _slices(rows)
            return
    else:
        handle.seek(0)
    yield from _avro_blocks(handle, stats)


def _avro_blocks(handle, stats: ReadStats):
    """Block by block with fastavro, resynchronising at the next sync marker
    after a damaged block."""
    header_reader = fastavro.block_reader(handle)
    position = handle.tell()
    handle.seek(position - _AVRO_SYNC_SIZE)
    sync = handle.read(_AVRO_SYNC_SIZE)
    schema, scales = _avro_reader_schema(header_reader.writer_schema)
    header = _avro_header(header_reader.metadata, schema, sync)
    while True:
        handle.seek(position)
        blocks = iter(fastavro.block_reader(_Prefixed(header, handle)))
        while True:
            try:
                block = next(blocks, None)
            except Exception as error:  # noqa: BLE001 (damaged framing)
                failure = f"{type(error).__name__}: {error}"
                break
            if block is None:
                return
            stats.physical += block.num_records
            try:
                records = list(block)
            except Exception as error:  # noqa: BLE001 (damaged data)
                yield stats.unreadable(
                    f"block at byte {position}: {type(error).__name__}: {error}",
                    block.num_records)
            else:
                yield from (_to_micros(records, scales) if scales else records)
            position = handle.tell()
        found = _next_sync(handle, sync, position + 1)
        end = handle.seek(0, io.SEEK_END) if found is None else found + _AVRO_SYNC_SIZE
        handle.seek(position)
        records = _damaged_block_records(handle.read(20), end - position)
        if records is not None:
            stats.physical += records
        yield stats.unreadable(
            f"bytes {position}-{end} ({failure}); "
            + ("reading resumed at the next block" if found is not None
               else "no block after them"),
            records, None if records is not None else end - position)
        if found is None:
            return
        position = end


def schema_columns_avro(handle) -> list:
    schema = fastavro.block_reader(handle).writer_schema
    return [field["name"] for field in schema.get("fields", [])] if isinstance(schema, dict) \
        else []


RECORD_READERS = {"avro": avro_records, "parquet": parquet_records,
                  "json": json_records, "csv": csv_records}
# Formats whose files declare their columns before the first record.
SCHEMA_READERS = {"avro": schema_columns_avro, "parquet": schema_columns_parquet,
                  "csv": header_columns_csv}
