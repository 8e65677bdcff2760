"""Reading ProblemLogs from files and validating them.

Each file is read and validated inside one DoFn call, and the valid logs leave
it already grouped by user (one list per user and chunk of the file): Beam's
per-element cost in Python is several microseconds, so one element per record
would cost more than the parsing itself. Parallelism is therefore per file;
BigQuery exports (and generate_sample --shards) write many files.

Every raw record ends up either in a ProblemLog or in a dead-letter record with
its reason; counters in the METRICS_NAMESPACE count both.
"""

import csv
import io
import json

import apache_beam as beam
import fastavro
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from models.problem_log import InvalidProblemLog, ProblemLogParser
from transforms.dead_letter import dead_letter_record

METRICS_NAMESPACE = "knowledge_model"
FORMATS = ("avro", "json", "csv", "parquet")
_EXTENSIONS = {".avro": "avro", ".json": "json", ".jsonl": "json", ".ndjson": "json",
               ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
VALID, DEAD_LETTER = "valid", "dead_letter"


def detect_format(pattern: str) -> str:
    """File format from the glob's extension (compression suffixes ignored)."""
    name = pattern.lower()
    for suffix in (".gz", ".bz2", ".deflate", ".zst", ".lzo"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    for extension, file_format in _EXTENSIONS.items():
        if name.endswith(extension):
            return file_format
    raise ValueError(
        f"cannot tell the format of --input {pattern!r} from its extension "
        f"({', '.join(sorted(_EXTENSIONS))}); pass --input_format {'|'.join(FORMATS)}")


class _Unparsable:
    """A raw record that failed before it was even a mapping (bad JSON line,
    ragged CSV row)."""

    __slots__ = ("reason", "detail", "raw")

    def __init__(self, reason, detail, raw):
        self.reason, self.detail, self.raw = reason, detail, raw


def _avro_records(handle):
    yield from fastavro.reader(handle)


def _parquet_records(handle):
    import pyarrow.parquet as pq  # pyarrow is heavy; only Parquet reads need it
    for batch in pq.ParquetFile(handle).iter_batches(batch_size=65536):
        yield from batch.to_pylist()


def _json_records(handle):
    for line in io.TextIOWrapper(handle, encoding="utf-8"):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except ValueError as error:
            yield _Unparsable("bad_json", str(error), line.rstrip("\n"))


def _csv_records(handle):
    # newline="" keeps quoted newlines inside their field.
    for row in csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline="")):
        if None in row:
            yield _Unparsable("bad_csv_row", "more cells than header columns", row)
        else:
            yield {key: (value if value != "" else None) for key, value in row.items()}


def _until_unreadable(records):
    """The records of a file; if the file turns out corrupt or truncated, what
    was read stays and the rest becomes one `unreadable_file` record, so it can
    be found and re-exported instead of failing the whole job."""
    count = 0
    try:
        for record in records:
            count += 1
            yield record
    except Exception as error:  # pylint: disable=broad-except  (any reader error)
        yield _Unparsable("unreadable_file",
                          f"{type(error).__name__}: {error} (after {count} records)", {})


_RECORD_READERS = {"avro": _avro_records, "parquet": _parquet_records,
                   "json": _json_records, "csv": _csv_records}


class _Validator:
    """Raw record -> ProblemLog, a dead-letter output, or None when it falls
    outside the time window [start, end) (µs since the epoch; None: open)."""

    def __init__(self, column_mapping, window, source_field: str):
        self.source_field = source_field
        self.parse = ProblemLogParser(dict(column_mapping or {}))
        self.start, self.end = window or (None, None)
        # Counted locally and published in bulk: a Beam counter update per
        # record would cost about as much as parsing it.
        self.counts = dict.fromkeys(("records_read", "records_valid", "records_outside_window"), 0)

    def publish_counts(self):
        for name, value in self.counts.items():
            Metrics.counter(METRICS_NAMESPACE, name).inc(value)
        self.counts = dict.fromkeys(self.counts, 0)

    def __call__(self, raw, source: str):
        self.counts["records_read"] += 1
        try:
            if type(raw) is _Unparsable:
                raise InvalidProblemLog(raw.reason, raw.detail)
            log = self.parse(raw)
        except InvalidProblemLog as error:
            Metrics.counter(METRICS_NAMESPACE, f"dead_letter_{error.reason}").inc()
            record = dead_letter_record("read", error.reason, error.detail,
                                        raw.raw if type(raw) is _Unparsable else raw)
            record[self.source_field] = source
            return pvalue.TaggedOutput(DEAD_LETTER, record)
        if ((self.start is not None and log.time_done < self.start)
                or (self.end is not None and log.time_done >= self.end)):
            self.counts["records_outside_window"] += 1
            return None
        self.counts["records_valid"] += 1
        return log


class _UserChunks:
    """Valid logs grouped by user, handed out every `max_buffered` logs so
    memory stays bounded (one user may therefore appear in several chunks).
    Plain tuples: Beam's default coder encodes them natively, a NamedTuple goes
    through pickle one by one (7x slower)."""

    def __init__(self, max_buffered: int):
        self.max_buffered = max_buffered
        self.by_user, self.buffered = {}, 0

    def add(self, log) -> list:
        chunk = self.by_user.get(log.user)
        if chunk is None:
            self.by_user[log.user] = [tuple(log)]
        else:
            chunk.append(tuple(log))
        self.buffered += 1
        return self.flush() if self.buffered >= self.max_buffered else []

    def flush(self) -> list:
        chunks = list(self.by_user.items())
        self.by_user, self.buffered = {}, 0
        return chunks


class _ReadFile(beam.DoFn):
    """ReadableFile -> (user, [ProblemLog fields as a plain tuple]) chunks, plus
    tagged dead letters."""

    def __init__(self, file_format: str, column_mapping, max_buffered: int, window):
        self.read_records = _RECORD_READERS[file_format]
        self.column_mapping, self.window = column_mapping, window
        self.max_buffered = max_buffered
        self.files_read = Metrics.counter(METRICS_NAMESPACE, "files_read")

    def setup(self):
        self.validate = _Validator(self.column_mapping, self.window, "file")

    def process(self, readable_file):
        path = readable_file.metadata.path
        chunks = _UserChunks(self.max_buffered)
        with readable_file.open() as handle:
            for raw in _until_unreadable(self.read_records(handle)):
                log = self.validate(raw, path)
                if type(log) is pvalue.TaggedOutput:
                    yield log
                elif log is not None:
                    yield from chunks.add(log)
        yield from chunks.flush()
        self.validate.publish_counts()
        self.files_read.inc()


class ValidateRows(beam.DoFn):
    """Row dicts (e.g. from BigQuery) -> the same per-user chunks and dead
    letters as a file read, chunked per bundle."""

    def __init__(self, source: str, column_mapping, max_buffered: int, window):
        self.source, self.column_mapping, self.window = source, column_mapping, window
        self.max_buffered = max_buffered

    def setup(self):
        self.validate = _Validator(self.column_mapping, self.window, "source")

    def start_bundle(self):
        self.chunks = _UserChunks(self.max_buffered)

    def process(self, row):
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
    """File glob -> `valid`: (user, [tuple(ProblemLog)]) chunks (a user's logs
    may span chunks) and `dead_letter`: dicts with stage, reason, detail, record."""

    def __init__(self, pattern: str, file_format: str = None, column_mapping=None,
                 max_buffered: int = 200000, window=None):
        super().__init__()
        self.window = window
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
                              self.window))
                .with_outputs(DEAD_LETTER, main=VALID))
