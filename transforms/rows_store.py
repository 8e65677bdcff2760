"""The rows store: each run's sample of its training rows, kept so that a run
that continues from saved state (and so replays only new logs) still fits on
every row of the training window.

A run writes a partition: `rows-NNNNN.parquet` shards holding, per exercise,
the bottom-k sample of the rows it emitted (as they travel in memory: base
features and the keys of r's components; rows_table), a
`counts.parquet` of rows seen per (exercise, day of time_done), and
`DONE.json` last. A later run reads the finished partitions of its window,
keeps the rows and counts of days inside it, and merges them with its own
rows: the bottom-k of samples is the bottom-k of all their rows, and the
samples are drawn per day, so the fit sees the sample one run over the
whole window would draw, whichever days the window keeps.
"""

import datetime
import json
import zlib

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from models.knowledge_state import TrainingRows
from models.monitoring import day_of
from transforms.fit import SampleRowsPerExercise
from transforms.read import METRICS_NAMESPACE

DONE = "DONE.json"
COUNTS = "counts.parquet"
_SHARDS = 16


def _shard(exercise: str) -> int:
    return zlib.crc32(exercise.encode("utf-8", "surrogatepass")) % _SHARDS


class _ByDay(beam.DoFn):
    """(key, TrainingRows) -> ((key, day number), its rows of the day)."""

    def process(self, block):
        key, rows = block
        days = day_of(rows.time_done)
        for day in np.unique(days).tolist():
            yield (key, day), rows.take(days == day)


def _exercise_day(key, exercise):
    return exercise, key[1]


class SampleRowsByDay(beam.PTransform):
    """(key, TrainingRows) blocks (every row of an exercise under one key) ->
    ((exercise, day), (bottom-k sample, rows seen)): a sample per day, so
    that a later run that keeps only some days still has the exact sample of
    those days."""

    def __init__(self, max_samples: int, seed: int):
        super().__init__()
        self.max_samples, self.seed = max_samples, seed

    def expand(self, blocks):
        return (blocks
                | "ByDay" >> beam.ParDo(_ByDay())
                | "SampleDays" >> SampleRowsPerExercise(self.max_samples, self.seed,
                                                        key_of=_exercise_day))


class _WriteShard(beam.DoFn):
    def __init__(self, directory: str):
        self.directory = directory

    def process(self, element):
        shard, samples = element
        samples = sorted(samples, key=lambda sample: sample[0])  # by (exercise, day)
        table = rows_table(TrainingRows.concatenate([rows for _, (rows, _) in samples]))
        name = f"rows-{shard:05d}.parquet"
        with FileSystems.create(FileSystems.join(self.directory, name)) as handle:
            pq.write_table(table, handle)
        yield name


def _names(names: tuple, codes: np.ndarray):
    """Per-row names as a string column, built from the block's dictionary."""
    return pa.array(names, pa.string()).take(pa.array(codes, pa.int32()))


def rows_table(rows: TrainingRows):
    """TrainingRows as a Table with r as stored in memory: the keys of the
    row's components (Parquet dictionary-encodes them: a few bytes each) or,
    for rows of long histories, the D floats. x would take D + 7 floats a row."""
    keys = rows.component_keys or (("", "", False),)
    ids = rows.update_ids

    def key_part(part):
        names, codes = np.unique(np.array([key[part] for key in keys], dtype=object),
                                 return_inverse=True)
        return pa.DictionaryArray.from_arrays(pa.array(codes.reshape(-1)[ids], pa.int32()),
                                              pa.array(names.tolist(), pa.string()))
    dense = np.full(len(rows), -1, dtype=np.int64)
    dense[rows.dense_rows] = np.arange(len(rows.dense_rows))
    dense_lengths = np.where(dense >= 0, rows.dense_r.shape[1] if len(rows.dense_rows) else 0, 0)
    dense_values = rows.dense_r.reshape(-1) if len(rows.dense_rows) else np.zeros(0)

    def ragged(lengths, values):
        return pa.ListArray.from_arrays(pa.array(np.r_[0, np.cumsum(lengths)].astype(np.int32)),
                                        values)
    return pa.table({
        "exercise": _names(rows.exercises, rows.exercise_code),
        "user": _names(rows.users, rows.user_code),
        "user_hash": pa.array(rows.user_hash, pa.uint64()),
        "time_done": pa.array(rows.time_done, pa.int64()),
        "problem_number": pa.array(rows.problem_number, pa.int64()),
        "correct": pa.array(rows.correct, pa.bool_()),
        "base": pa.FixedSizeListArray.from_arrays(pa.array(rows.base.reshape(-1)),
                                                  rows.base.shape[1]),
        "updates": ragged(np.diff(rows.update_indptr), pa.StructArray.from_arrays(
            [key_part(0), key_part(1),
             pa.array(np.array([key[2] for key in keys], dtype=bool)[ids], pa.bool_())],
            names=["exercise", "problem_type", "correct"])),
        "dense_r": ragged(dense_lengths, pa.array(dense_values, pa.float64()))})


def rows_from_table(table) -> TrainingRows:
    """rows_table's inverse."""
    table = table.combine_chunks()

    def column(name):
        chunks = table.column(name).chunks
        return chunks[0]
    updates = column("updates")
    offsets = updates.offsets.to_numpy().astype(np.int64)
    exercise, problem_type, correct = (part.dictionary_encode() if part.type != pa.bool_()
                                       else part for part in updates.flatten().flatten())
    types = len(problem_type.dictionary)
    codes = ((exercise.indices.to_numpy().astype(np.int64) * types
              + problem_type.indices.to_numpy()) * 2
             + correct.to_numpy(zero_copy_only=False).astype(np.int64))
    unique, ids = np.unique(codes, return_inverse=True)
    exercises, problem_types = exercise.dictionary.to_pylist(), problem_type.dictionary.to_pylist()
    keys = tuple((exercises[code // 2 // types], problem_types[code // 2 % types], bool(code % 2))
                 for code in unique.tolist())
    dense_r = column("dense_r")
    dense_lengths = np.diff(dense_r.offsets.to_numpy())
    dense_rows = np.flatnonzero(dense_lengths)
    values = dense_r.flatten().to_numpy()
    base = column("base")
    users, exercises = column("user").dictionary_encode(), column("exercise").dictionary_encode()
    return TrainingRows(
        users.dictionary.to_pylist(), users.indices.to_numpy().astype(np.int32),
        column("user_hash").to_numpy().astype(np.uint64),
        exercises.dictionary.to_pylist(), exercises.indices.to_numpy().astype(np.int32),
        column("time_done").to_numpy().astype(np.int64),
        column("problem_number").to_numpy().astype(np.int64),
        column("correct").to_numpy(zero_copy_only=False).astype(bool),
        base.flatten().to_numpy().reshape(len(table), base.type.list_size),
        offsets - offsets[0], ids.astype(np.int32).reshape(-1), keys, dense_rows,
        values.reshape(len(dense_rows), -1) if len(dense_rows) else None)


class _WriteDone(beam.DoFn):
    """Writes counts.parquet, then DONE.json naming every file."""

    def __init__(self, directory: str, header: dict):
        self.directory, self.header = directory, header

    def process(self, _, shards, counts, after):
        counts = sorted(counts)  # ((exercise, day), rows seen)
        table = pa.table({
            "exercise": pa.array([exercise for (exercise, _), _ in counts], pa.string()),
            "day": pa.array([day for (_, day), _ in counts], pa.int32()).cast(pa.date32()),
            "rows": pa.array([rows for _, rows in counts], pa.int64())})
        with FileSystems.create(FileSystems.join(self.directory, COUNTS)) as handle:
            pq.write_table(table, handle)
        done = {**self.header, "files": sorted(shards), "rows_seen": sum(n for _, n in counts)}
        with FileSystems.create(FileSystems.join(self.directory, DONE)) as handle:
            handle.write(json.dumps(done, indent=2, sort_keys=True).encode("utf-8"))
        yield done


class WriteRowsPartition(beam.PTransform):
    """{"samples": SampleRowsByDay's ((exercise, day), (sample, seen)),
    "after": anything} -> a finished partition in `directory` (see the module
    docstring), marked finished only after "after" is computed (the run's
    snapshot: a partition is then never finished without it, which would
    count its days twice, as the next run would read them again)."""

    def __init__(self, directory: str, header: dict):
        super().__init__()
        self.directory, self.header = directory.rstrip("/"), header

    def expand(self, inputs):
        samples = inputs["samples"]
        shards = (samples
                  | "ByShard" >> beam.Map(lambda sample: (_shard(sample[0][0]), sample))
                  | "GroupShards" >> beam.GroupByKey()
                  | "WriteShards" >> beam.ParDo(_WriteShard(self.directory)))
        counts = samples | "Counts" >> beam.MapTuple(lambda key, sample: (key, sample[1]))
        pipeline = samples.pipeline
        return (pipeline
                | "Once" >> beam.Create([None])
                | "WriteDone" >> beam.ParDo(_WriteDone(self.directory, self.header),
                                            beam.pvalue.AsList(shards),
                                            beam.pvalue.AsList(counts),
                                            beam.pvalue.AsList(inputs["after"])))


class _ReadPartitionFile(beam.DoFn):
    """A partition's file -> (exercise, (sample, {exercise: 0})) from a rows
    shard, or (exercise, (no rows, {exercise: rows seen})) from its counts,
    for days >= `from_day`."""

    def __init__(self, from_day):
        self.from_day = from_day
        self.rows_read = Metrics.counter(METRICS_NAMESPACE, "stored_rows_read")

    def process(self, path):
        with FileSystems.open(path) as handle:
            table = pq.read_table(handle)
        if path.endswith(COUNTS):
            days = table.column("day").cast(pa.int32()).to_numpy()
            keep = days >= self.from_day
            seen = {}
            for exercise, rows in zip(np.array(table.column("exercise").to_pylist(),
                                               dtype=object)[keep].tolist(),
                                      table.column("rows").to_numpy()[keep].tolist()):
                seen[exercise] = seen.get(exercise, 0) + rows
            for exercise, rows in seen.items():
                yield exercise, (TrainingRows.empty(), {exercise: rows})
            return
        rows = rows_from_table(table)
        rows = rows.take(np.flatnonzero(day_of(rows.time_done) >= self.from_day))
        self.rows_read.inc(len(rows))
        for exercise, sample in rows.split_by_exercise():
            yield exercise, (sample, {exercise: 0})


class ReadRowsPartitions(beam.PTransform):
    """Files of finished partitions -> (exercise, (sample, {exercise: rows
    seen})) pieces of the days from `from_date` on (None: every day), as
    SampleRowsPerExercise takes them."""

    def __init__(self, paths, from_date: datetime.date = None):
        super().__init__()
        self.paths = list(paths)
        self.from_day = ((from_date - datetime.date(1970, 1, 1)).days if from_date
                         else np.iinfo(np.int32).min)

    def expand(self, pbegin):
        return (pbegin
                | "PartitionFiles" >> beam.Create(self.paths)
                | "Reshuffle" >> beam.Reshuffle()
                | "ReadPartitionFiles" >> beam.ParDo(_ReadPartitionFile(self.from_day)))


def read_done(directory: str) -> dict:
    with FileSystems.open(FileSystems.join(directory.rstrip("/"), DONE)) as handle:
        return json.loads(handle.read().decode("utf-8"))


def partition_files(directory: str, done: dict) -> list:
    directory = directory.rstrip("/")
    return [FileSystems.join(directory, name) for name in done["files"] + [COUNTS]]
