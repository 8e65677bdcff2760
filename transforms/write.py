"""Output sinks: JSON lines files a person can read with `head`, and reading
them back."""

import json

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from models.knowledge_state import ComponentCache
from models.problem_log import format_timestamp
from transforms.dead_letter import to_json_line


class WriteJsonLines(beam.PTransform):
    """dicts -> sharded JSON lines (for large outputs: dead letter, rows)."""

    def __init__(self, path_prefix: str):
        super().__init__()
        self.path_prefix = path_prefix

    def expand(self, records):
        return (records
                | "ToJson" >> beam.Map(to_json_line)
                | "Write" >> beam.io.WriteToText(self.path_prefix, file_name_suffix=".jsonl"))


def read_json_lines(pattern: str) -> list:
    """Every record of the JSON lines files matching `pattern` (local or
    gs://), in file-name order."""
    paths = sorted(metadata.path for metadata in
                   FileSystems.match([pattern])[0].metadata_list)
    records = []
    for path in paths:
        with FileSystems.open(path) as handle:
            records.extend(json.loads(line) for line in
                           handle.read().decode("utf-8").splitlines() if line.strip())
    return records


class WriteSortedJsonLines(beam.PTransform):
    """dicts -> one JSON lines file sorted by `sort_key`. For outputs with one
    record per exercise or component: small enough for one worker, and a sorted
    single file diffs cleanly between runs."""

    def __init__(self, path_prefix: str, sort_key):
        super().__init__()
        self.path_prefix = path_prefix
        self.sort_key = sort_key

    def expand(self, records):
        sort_key = self.sort_key
        return (records
                | "ToJson" >> beam.Map(lambda record: (sort_key(record), to_json_line(record)))
                | "Gather" >> beam.combiners.ToList()
                | "Sort" >> beam.FlatMap(lambda pairs: [line for _, line in sorted(pairs)])
                | "Write" >> beam.io.WriteToText(self.path_prefix, file_name_suffix=".jsonl",
                                                 num_shards=1, shard_name_template=""))


def component_record(key, seed: int, dim: int) -> dict:
    exercise, problem_type, correct = key
    return {"exercise": exercise, "problem_type": problem_type, "correct": bool(correct),
            "vector": ComponentCache(seed, dim)(tuple(key)).tolist()}


class ComponentRecords(beam.PTransform):
    """Component keys (repeats allowed) -> one record with its vector per distinct key."""

    def __init__(self, seed: int, dim: int):
        super().__init__()
        self.seed = seed
        self.dim = dim

    def expand(self, keys):
        return (keys
                | "Distinct" >> beam.Distinct()
                | "Vector" >> beam.Map(component_record, self.seed, self.dim))


def component_sort_key(record: dict):
    return record["exercise"], record["problem_type"], record["correct"]


class TrainingRowRecords(beam.DoFn):
    """(exercise, TrainingRows) -> one dict per row with its dense x, for
    --training_rows_output."""

    def __init__(self, seed: int, dim: int):
        self.seed = seed
        self.dim = dim

    def setup(self):
        self.components = ComponentCache(self.seed, self.dim)

    def process(self, block):
        _, rows = block
        x = rows.features(self.components)
        users, exercises = rows.user, rows.exercise
        for i in range(len(rows)):
            yield {"user": users[i], "exercise": exercises[i],
                   "time_done": format_timestamp(int(rows.time_done[i])),
                   "problem_number": int(rows.problem_number[i]),
                   "correct": bool(rows.correct[i]), "x": x[i].tolist()}
