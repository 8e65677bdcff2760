"""Reading ProblemLogs from files and validating them.

Each file is read and validated inside one DoFn call, and the valid logs leave
it already grouped by user (one list per user and chunk of the file): Beam's
per-element cost in Python is several microseconds, so one element per record
would cost more than the parsing itself. Parallelism is therefore per file;
BigQuery exports (and generate_sample --shards) write many files.

Every raw record ends up either in a ProblemLog or in a dead-letter record with
its reason; counters in the METRICS_NAMESPACE count both.
"""

from typing import Optional

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from models.log_batch import LogBatch
from models.problem_log import (FIELDS, FORMATS, FUTURE_ALLOWANCE_MICROS, InvalidProblemLog,
                                ProblemLogParser, now_micros)
from transforms import progress
from transforms.arrow_validation import ArrowRows, row_dicts, validate_table
from transforms.dead_letter import dead_letter_record
from transforms.file_formats import RECORD_READERS, ReadStats, Unparsable, Unreadable

METRICS_NAMESPACE = "knowledge_model"
# Records read between two live progress updates (transforms.progress).
PROGRESS_EVERY = 4096
_EXTENSIONS = {".avro": "avro", ".json": "json", ".jsonl": "json", ".ndjson": "json",
               ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
VALID, DEAD_LETTER = "valid", "dead_letter"
# Students are grouped by user_hash % buckets: one GroupByKey over a few
# thousand keys (the source system's MergeReader), each bucket sorted and
# replayed in one vectorized pass. Pipelines size it from the input.
DEFAULT_BUCKETS = 64
# A table's size is not known before the read: sized for the production scale
# (10^9 logs -> ~250k logs per bucket).
BIGQUERY_BUCKETS = 4096
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".deflate", ".zst", ".lzo")


def detect_format(pattern: str) -> str:
    """File format from the glob's extension (compression suffixes ignored)."""
    name = pattern.lower()
    for suffix in _COMPRESSION_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for extension, file_format in _EXTENSIONS.items():
        if name.endswith(extension):
            return file_format
    raise ValueError(
        f"cannot tell the format of --input {pattern!r} from its extension "
        f"({', '.join(sorted(_EXTENSIONS))}); pass --input_format {'|'.join(FORMATS)}")


def _compressed(path: str) -> bool:
    return path.lower().endswith(_COMPRESSION_SUFFIXES)


def _until_unreadable(records, stats: ReadStats, handle, size: Optional[int]):
    """The records of a file; if the file turns out corrupt or truncated where
    its reader cannot resynchronise, what was read stays and the rest becomes
    one Unreadable stretch, so it is reported instead of failing the job."""
    count = 0
    try:
        for record in records:
            count += 1
            yield record
    except Exception as error:  # noqa: BLE001 (any reader error)
        try:
            left = None if size is None else size if not count else size - handle.tell()
        except Exception:  # noqa: BLE001 (closed or unseekable)
            left = None
        yield stats.unreadable(f"{type(error).__name__}: {error} (after {count} records)",
                               skipped=left)


class _Validator:
    """Raw record -> ProblemLog, a dead-letter output, or None when it falls
    outside the time window [start, end) (µs since the epoch; None: open)."""

    def __init__(self, column_mapping, window, source_field: str, not_after: int):
        self.source_field = source_field
        self.parse = ProblemLogParser(dict(column_mapping or {}), not_after)
        self.columns = dict(zip(FIELDS, self.parse.columns))
        self.start, self.end = window or (None, None)
        # Counted locally and published in bulk: a Beam counter update per
        # record would cost about as much as parsing it.
        self.counts = dict.fromkeys(("records_read", "records_valid", "records_outside_window"), 0)
        self.stats = ReadStats()
        self.progress_pending = 0   # records read not yet in the progress lines

    def publish_progress(self):
        progress.add("records_read", self.progress_pending)
        self.progress_pending = 0

    def publish_counts(self):
        stats, self.stats = self.stats, ReadStats()
        counts = {**self.counts, "physical_records": stats.physical,
                  "records_unreadable": stats.unreadable_records,
                  "bytes_unreadable": stats.unreadable_bytes,
                  "unreadable_stretches": stats.stretches,
                  **{f"bad_optional_{field}": value
                     for field, value in self.parse.nulled.items()}}
        for name, value in counts.items():
            if value:
                Metrics.counter(METRICS_NAMESPACE, name).inc(value)
        self.counts = dict.fromkeys(self.counts, 0)
        self.parse.nulled = dict.fromkeys(self.parse.nulled, 0)
        self.publish_progress()

    def table(self, rows: ArrowRows):
        """Typed rows -> (LogBatch of the rows the vectorized checks prove valid
        and inside the window, indices of the rows for __call__)."""
        batch, outside, slow = validate_table(rows, self.columns, self.parse.not_after,
                                              (self.start, self.end))
        self.counts["records_read"] += rows.table.num_rows - len(slow)
        self.counts["records_valid"] += len(batch)
        self.counts["records_outside_window"] += outside
        self.progress_pending += rows.table.num_rows - len(slow)
        self.publish_progress()
        return batch, slow

    def __call__(self, raw, source: str):
        kind = type(raw)
        if kind is Unreadable:
            record = dead_letter_record("read", "unreadable_file", raw.detail, raw.as_record())
            record[self.source_field] = source
            return pvalue.TaggedOutput(DEAD_LETTER, record)
        self.counts["records_read"] += 1
        self.progress_pending += 1
        if self.progress_pending >= PROGRESS_EVERY:
            self.publish_progress()
        try:
            if kind is Unparsable:
                raise InvalidProblemLog(raw.reason, raw.detail)
            log = self.parse(raw)
        except InvalidProblemLog as error:
            Metrics.counter(METRICS_NAMESPACE, f"dead_letter_{error.reason}").inc()
            record = dead_letter_record("read", error.reason, error.detail,
                                        raw.raw if kind is Unparsable else raw)
            record[self.source_field] = source
            return pvalue.TaggedOutput(DEAD_LETTER, record)
        if ((self.start is not None and log.time_done < self.start)
                or (self.end is not None and log.time_done >= self.end)):
            self.counts["records_outside_window"] += 1
            return None
        self.counts["records_valid"] += 1
        return log


class _BucketChunks:
    """Valid logs as LogBatch columns, split by student bucket every
    `max_buffered` logs so memory stays bounded (a student's logs may therefore
    be in several chunks; the bucket's GroupByKey brings them together)."""

    def __init__(self, max_buffered: int, num_buckets: int):
        self.max_buffered, self.num_buckets = max_buffered, num_buckets
        self.logs, self.batches, self.buffered = [], [], 0

    def add(self, log) -> list:
        self.logs.append(log)
        self.buffered += 1
        return self.flush() if self.buffered >= self.max_buffered else []

    def add_batch(self, batch: LogBatch) -> list:
        self.batches.append(batch)
        self.buffered += len(batch)
        return self.flush() if self.buffered >= self.max_buffered else []

    def flush(self) -> list:
        batch = LogBatch.concatenate(self.batches + [LogBatch.from_logs(self.logs)])
        self.logs, self.batches, self.buffered = [], [], 0
        return list(batch.by_bucket(self.num_buckets)) if len(batch) else []


def default_not_after() -> int:
    """Attempts later than this (the run's start plus the clock-skew allowance)
    are future_timestamp; fixed when the graph is built, so every worker agrees."""
    return now_micros() + FUTURE_ALLOWANCE_MICROS


class _ReadFile(beam.DoFn):
    """ReadableFile -> (student bucket, LogBatch) chunks, plus tagged dead
    letters."""

    def __init__(self, file_format: str, column_mapping, max_buffered: int, window,
                 not_after: int, num_buckets: int):
        self.read_records = RECORD_READERS[file_format]
        self.column_mapping, self.window = column_mapping, window
        self.max_buffered, self.num_buckets = max_buffered, num_buckets
        self.not_after = not_after
        self.files_read = Metrics.counter(METRICS_NAMESPACE, "files_read")

    def setup(self):
        self.validate = _Validator(self.column_mapping, self.window, "file", self.not_after)

    def process(self, readable_file):
        metadata = readable_file.metadata
        path = metadata.path
        size = None if _compressed(path) else metadata.size_in_bytes
        chunks = _BucketChunks(self.max_buffered, self.num_buckets)
        stats = self.validate.stats
        with readable_file.open() as handle:
            records = self.read_records(handle, stats, self.validate.columns)
            for raw in _until_unreadable(records, stats, handle, size):
                if type(raw) is ArrowRows:
                    batch, slow = self.validate.table(raw)
                    yield from chunks.add_batch(batch)
                    raws = row_dicts(raw, slow)
                else:
                    raws = (raw,)
                for raw_record in raws:
                    log = self.validate(raw_record, path)
                    if type(log) is pvalue.TaggedOutput:
                        yield log
                    elif log is not None:
                        yield from chunks.add(log)
        yield from chunks.flush()
        self.validate.publish_counts()
        self.files_read.inc()


class ValidateRows(beam.DoFn):
    """Row dicts (e.g. from BigQuery) -> the same bucketed chunks and dead
    letters as a file read, chunked per bundle."""

    def __init__(self, source: str, column_mapping, max_buffered: int, window,
                 num_buckets: int, not_after: int = None):
        self.source, self.column_mapping, self.window = source, column_mapping, window
        self.max_buffered, self.num_buckets = max_buffered, num_buckets
        self.not_after = default_not_after() if not_after is None else not_after

    def setup(self):
        self.validate = _Validator(self.column_mapping, self.window, "source", self.not_after)

    def start_bundle(self):
        self.chunks = _BucketChunks(self.max_buffered, self.num_buckets)

    def process(self, row):
        self.validate.stats.physical += 1
        log = self.validate(row, self.source)
        if type(log) is pvalue.TaggedOutput:
            yield log
        elif log is not None:
            yield from self.chunks.add(log)

    def finish_bundle(self):
        self.validate.publish_counts()
        for chunk in self.chunks.flush():
            yield GlobalWindows.windowed_value(chunk)


class ReadProblemLogs(beam.PTransform):
    """File glob -> `valid`: (student bucket, LogBatch) chunks (a student's logs
    may span chunks) and `dead_letter`: dicts with stage, reason, detail, record."""

    def __init__(self, pattern: str, file_format: str = None, column_mapping=None,
                 max_buffered: int = 200000, window=None, not_after: int = None,
                 num_buckets: int = DEFAULT_BUCKETS):
        super().__init__()
        self.num_buckets = num_buckets
        self.window = window
        self.not_after = default_not_after() if not_after is None else not_after
        self.pattern = pattern
        self.file_format = file_format or detect_format(pattern)
        if self.file_format not in FORMATS:
            raise ValueError(f"unknown input format {self.file_format!r}; use one of {FORMATS}")
        self.column_mapping = column_mapping
        self.max_buffered = max_buffered

    def expand(self, pbegin):
        return (pbegin
                | "MatchFiles" >> fileio.MatchFiles(self.pattern)
                | "ReadMatches" >> fileio.ReadMatches()
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadAndValidate" >> beam.ParDo(
                    _ReadFile(self.file_format, self.column_mapping, self.max_buffered,
                              self.window, self.not_after, self.num_buckets))
                .with_outputs(DEAD_LETTER, main=VALID))
