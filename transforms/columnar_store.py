"""Sparse per-attempt features -> integerized columnar training store.

Sibyl's layout: every feature template (column) has its own dense id space in
decreasing order of frequency, and examples are stored column-wise (Parquet,
one list<int32> column per template plus label and holdout), so a training run
reads only the templates it uses.

Work moves in blocks: replay turns a batch of students into one
SparseExamples block whose values are ids into a block-local vocabulary, so
counting and integerizing cost one dict lookup per distinct value per block,
not per occurrence.
"""

import json
from typing import Dict, List, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import AsSingleton

from models.exercise_model import held_out
from models.integerize import id_map, vocabulary
from models.knowledge_state import user_hash
from models.sparse_features import student_features
from transforms import progress
from transforms.read import METRICS_NAMESPACE
from transforms.replay import StudentBatchDoFn

LABEL, HOLDOUT = "label", "holdout"


class SparseExamples:
    """A block of examples: for each template, CSR-style rows of ids into the
    block's own list of values; plus labels and holdout flags."""

    __slots__ = ("columns", "labels", "holdout")

    def __init__(self, columns: Dict[str, tuple], labels: np.ndarray, holdout: np.ndarray):
        self.columns = columns  # template -> (indptr int64, local ids int32, values list)
        self.labels = labels
        self.holdout = holdout

    def __getstate__(self):
        return self.columns, self.labels, self.holdout

    def __setstate__(self, state):
        self.columns, self.labels, self.holdout = state

    def __len__(self):
        return len(self.labels)


def sparse_examples(students: Sequence, templates: Sequence[str], seed: int,
                    holdout_fraction: float, problem_number_range=(1, None)) -> SparseExamples:
    """Feature rows for the attempts of sessionized students in the range."""
    low, high = problem_number_range
    local: Dict[str, Dict[str, int]] = {template: {} for template in templates}
    ids: Dict[str, List[int]] = {template: [] for template in templates}
    lengths: Dict[str, List[int]] = {template: [] for template in templates}
    labels, users = [], []
    for logs in students:
        student = user_hash(logs[0].user) if logs else 0
        for log, features in zip(logs, student_features(logs, templates)):
            if log.problem_number < low or (high is not None and log.problem_number >= high):
                continue
            labels.append(log.correct)
            users.append(student)
            for template in templates:
                values, index, out = features[template], local[template], ids[template]
                for value in values:
                    out.append(index.setdefault(value, len(index)))
                lengths[template].append(len(values))
    columns = {}
    for template in templates:
        indptr = np.zeros(len(labels) + 1, dtype=np.int64)
        np.cumsum(lengths[template], out=indptr[1:])
        columns[template] = (indptr, np.array(ids[template], dtype=np.int32),
                             list(local[template]))
    holdout = held_out(np.array(users, dtype=np.uint64), seed, holdout_fraction)
    return SparseExamples(columns, np.array(labels, dtype=bool), holdout)


def value_counts(block: SparseExamples):
    """(template, {value: occurrences in the block}) per template."""
    for template, (_, local_ids, values) in block.columns.items():
        counts = np.bincount(local_ids, minlength=len(values))
        yield template, dict(zip(values, counts.tolist()))


class _SumCounts(beam.CombineFn):
    def create_accumulator(self):
        return {}

    def add_input(self, totals, counts):
        for value, count in counts.items():
            totals[value] = totals.get(value, 0) + count
        return totals

    def merge_accumulators(self, accumulators):
        totals = {}
        for counts in accumulators:
            self.add_input(totals, counts)
        return totals

    def extract_output(self, totals):
        return totals


class _ReplayToExamples(StudentBatchDoFn):
    """Turns each batch of students into one SparseExamples block."""

    def __init__(self, templates, seed, holdout_fraction, problem_number_range, batch_size):
        super().__init__(batch_size)
        self.templates = tuple(templates)
        self.seed = seed
        self.holdout_fraction = holdout_fraction
        self.problem_number_range = problem_number_range
        self.examples = progress.counter(METRICS_NAMESPACE, "sparse_examples")

    def replay_batch(self, students):
        block = sparse_examples(students, self.templates, self.seed,
                                self.holdout_fraction, self.problem_number_range)
        self.examples.inc(len(block))
        yield block


class ReplaySparseExamples(beam.PTransform):
    """(user, sessionized logs) -> SparseExamples blocks."""

    def __init__(self, templates, seed, holdout_fraction, problem_number_range=(1, None),
                 batch_size=20000):
        super().__init__()
        self.replay = _ReplayToExamples(templates, seed, holdout_fraction,
                                        problem_number_range, batch_size)

    def expand(self, students):
        return students | beam.ParDo(self.replay)


class Vocabularies(beam.PTransform):
    """SparseExamples blocks -> one dict {template: [values, most frequent
    first]} (values seen fewer than min_count times are dropped), and
    per-template TSV files (id, value, count) under `directory`."""

    def __init__(self, directory: str, min_count: int):
        super().__init__()
        self.directory = directory
        self.min_count = min_count

    def expand(self, blocks):
        min_count, directory = self.min_count, self.directory
        vocabularies = (blocks
                        | "CountValues" >> beam.FlatMap(value_counts)
                        | "SumCounts" >> beam.CombinePerKey(_SumCounts())
                        | "Vocabulary" >> beam.MapTuple(
                            lambda template, totals: (template, totals,
                                                      vocabulary(totals, min_count))))
        _ = vocabularies | "WriteVocabulary" >> beam.Map(_write_vocabulary, directory)
        return (vocabularies
                | "Values" >> beam.MapTuple(lambda template, _, values: (template, values))
                | "AsDict" >> beam.combiners.ToDict())


def _write_vocabulary(element, directory):
    template, totals, values = element
    path = FileSystems.join(directory, f"{template}.tsv")
    with FileSystems.create(path) as handle:
        for index, value in enumerate(values):
            handle.write(f"{index}\t{json.dumps(value)}\t{totals[value]}\n".encode("utf-8"))


def read_vocabulary(directory: str, template: str) -> List[str]:
    path = FileSystems.join(directory, f"{template}.tsv")
    with FileSystems.open(path) as handle:
        return [json.loads(line.decode("utf-8").split("\t")[1]) for line in handle]


def store_schema(templates: Sequence[str]) -> pa.Schema:
    return pa.schema([(template, pa.list_(pa.int32())) for template in templates]
                     + [(LABEL, pa.bool_()), (HOLDOUT, pa.bool_())])


def integerized_table(block: SparseExamples, vocabularies: Dict[str, List[str]]) -> pa.Table:
    """A block as a Parquet-ready table of global ids; rare values are dropped."""
    arrays = []
    for template, (indptr, local_ids, values) in block.columns.items():
        ids = id_map(vocabularies.get(template, []))
        lookup = np.array([ids.get(value, -1) for value in values] + [-1], dtype=np.int32)
        global_ids = lookup[local_ids]
        keep = global_ids >= 0
        rows = np.repeat(np.arange(len(block)), np.diff(indptr))
        offsets = np.zeros(len(block) + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows[keep], minlength=len(block)), out=offsets[1:])
        arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(global_ids[keep])))
    arrays += [pa.array(block.labels), pa.array(block.holdout)]
    return pa.Table.from_arrays(arrays, schema=store_schema(list(block.columns)))


class WriteColumnarStore(beam.PTransform):
    """SparseExamples blocks + vocabularies -> Parquet files under `directory`."""

    def __init__(self, directory: str, templates: Sequence[str], vocabularies):
        super().__init__()
        self.directory = directory
        self.templates = tuple(templates)
        self.vocabularies = vocabularies

    def expand(self, blocks):
        return (blocks
                | "Integerize" >> beam.Map(integerized_table, AsSingleton(self.vocabularies))
                | "WriteParquet" >> beam.io.WriteToParquetBatched(
                    FileSystems.join(self.directory, "examples"), store_schema(self.templates),
                    file_name_suffix=".parquet"))
