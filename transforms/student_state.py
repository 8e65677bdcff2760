"""Read and write student-state snapshots (models.student_state) as Parquet.

A snapshot is a directory of `state-NNNNN.parquet` shards (one per student
bucket of the run that wrote it) and a `SNAPSHOT.json` header written last,
once every shard is: a directory without the header is an unfinished
snapshot, which readers refuse.
"""

import json

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from models.student_state import from_arrow, to_arrow
from transforms.read import METRICS_NAMESPACE

HEADER = "SNAPSHOT.json"
SHARD_PATTERN = "state-*.parquet"


def shard_name(bucket: int) -> str:
    return f"state-{bucket:05d}.parquet"


class _ReadShard(beam.DoFn):
    """Snapshot shard path -> (bucket, StudentStates) of this run's buckets,
    a row group at a time."""

    def __init__(self, num_buckets: int):
        self.num_buckets = num_buckets
        self.students_read = Metrics.counter(METRICS_NAMESPACE, "state_students_read")

    def process(self, path):
        with FileSystems.open(path) as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.num_row_groups):
                try:
                    states = from_arrow(parquet.read_row_group(group))
                except ValueError as error:
                    raise ValueError(f"state snapshot shard {path}: {error}") from None
                self.students_read.inc(states.num_students)
                yield from states.by_bucket(self.num_buckets)


class ReadStudentStates(beam.PTransform):
    """The shards of a checked snapshot -> (bucket, StudentStates) chunks
    bucketed as the run's ProblemLogs are (a student's rows may come in
    several chunks; they are never split across row groups of one shard)."""

    def __init__(self, paths, num_buckets: int):
        super().__init__()
        self.paths, self.num_buckets = list(paths), num_buckets

    def expand(self, pbegin):
        return (pbegin
                | "ShardPaths" >> beam.Create(self.paths)
                | "Reshuffle" >> beam.Reshuffle()
                | "ReadShards" >> beam.ParDo(_ReadShard(self.num_buckets)))


class _WriteShard(beam.DoFn):
    def __init__(self, directory: str, recent_from):
        self.directory, self.recent_from = directory, recent_from
        self.students_written = Metrics.counter(METRICS_NAMESPACE, "state_students_written")

    def process(self, element):
        bucket, states = element
        if self.recent_from is not None:
            states = states.forget_recent_before(self.recent_from)
        path = FileSystems.join(self.directory, shard_name(bucket))
        # A retried bundle rewrites the same file: the shard is idempotent.
        with FileSystems.create(path) as handle:
            pq.write_table(to_arrow(states), handle)
        students = states.num_students
        self.students_written.inc(students)
        yield {"file": shard_name(bucket), "students": students, "rows": len(states)}


class _WriteHeader(beam.DoFn):
    def __init__(self, directory: str, header: dict):
        self.directory, self.header = directory, header

    def process(self, shards):
        shards = sorted(shards, key=lambda shard: shard["file"])
        header = {**self.header, "files": [shard["file"] for shard in shards],
                  "students": sum(shard["students"] for shard in shards),
                  "rows": sum(shard["rows"] for shard in shards)}
        with FileSystems.create(FileSystems.join(self.directory, HEADER)) as handle:
            handle.write(json.dumps(header, indent=2, sort_keys=True).encode("utf-8"))
        yield header


class WriteStudentStates(beam.PTransform):
    """(bucket, StudentStates) -> the shards, then the header (`header` plus
    the shard list and counts) once all of them are written. `recent_from`:
    the end of the logs the run read (epoch µs), when later runs read only
    logs from there on: the fingerprints of earlier attempts are dropped."""

    def __init__(self, directory: str, header: dict, recent_from=None):
        super().__init__()
        self.directory, self.header = directory.rstrip("/"), header
        self.recent_from = recent_from

    def expand(self, states):
        return (states
                | "WriteShards" >> beam.ParDo(_WriteShard(self.directory, self.recent_from))
                | "AllShards" >> beam.combiners.ToList()
                | "WriteHeader" >> beam.ParDo(_WriteHeader(self.directory, self.header)))


def read_header(directory: str) -> dict:
    """The header of a finished snapshot; ValueError when there is none."""
    path = FileSystems.join(directory.rstrip("/"), HEADER)
    try:
        with FileSystems.open(path) as handle:
            return json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as error:
        if not FileSystems.exists(path):
            raise ValueError(f"--state_input {directory!r} is not a finished snapshot: it has "
                             f"no {HEADER} (a run that wrote it did not finish, or the path "
                             f"is wrong)") from None
        raise ValueError(f"--state_input {directory!r}: cannot read {HEADER}: {error}") from None


def snapshot_files(directory: str) -> list:
    """Every file a snapshot in `directory` consists of, header first (so a
    deletion in this order never leaves a snapshot that looks finished)."""
    directory = directory.rstrip("/")
    matches = FileSystems.match([FileSystems.join(directory, HEADER),
                                 FileSystems.join(directory, SHARD_PATTERN)])
    return [metadata.path for match in matches for metadata in match.metadata_list]
