"""Replay each student's KnowledgeState and emit training rows in blocks."""

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from models.knowledge_state import ComponentCache, replay_batch
from models.student_state import Joined
from transforms.read import METRICS_NAMESPACE

ROWS, COMPONENT_KEYS, STATES = "rows", "component_keys", "states"
# The keys of the row blocks (models.knowledge_state.exercise_shards): a
# replay batch gives at most this many blocks, however many exercises it has.
EXERCISE_SHARDS = 256


class StudentBatchDoFn(beam.DoFn):
    """Takes sessionized buckets, (bucket, (LogBatch, student_starts)), and
    hands their students, each a list of ProblemLogs, to replay_batch() about
    `batch_size` attempts at a time, so Beam's per-element cost is paid per
    block, not per attempt."""

    def __init__(self, batch_size: int):
        self.batch_size = batch_size

    def replay_batch(self, students):
        """Outputs for a list of students' logs (subclasses). Not named
        process_batch: Beam reserves that name for batched DoFns."""
        raise NotImplementedError

    def start_bundle(self):
        self.students, self.attempts = [], 0

    def process(self, element):
        batch, starts = element[1]
        logs = batch.logs()
        for start, stop in zip(starts[:-1].tolist(), starts[1:].tolist()):
            self.students.append(logs[start:stop])
            self.attempts += stop - start
            if self.attempts >= self.batch_size:
                yield from self._drain(lambda value: value)

    def finish_bundle(self):
        yield from self._drain(GlobalWindows.windowed_value)

    def _drain(self, wrap):
        if self.students:
            students, self.students, self.attempts = self.students, [], 0
            for output in self.replay_batch(students):
                yield wrap(output)


class _ReplayBuckets(beam.DoFn):
    """Replays every student of a bucket in one vectorized pass and emits one
    (shard, TrainingRows) block per exercise shard. Also emits the random-component
    keys each bundle used (a retried bundle emits them again; duplicates are
    removed downstream)."""

    def __init__(self, seed, num_random_features, problem_number_range, emit_from=None,
                 student_features=False):
        self.seed = seed
        self.student_features = student_features
        self.num_random_features = num_random_features
        self.problem_number_range = problem_number_range
        self.emit_from = emit_from
        self.rows_emitted = Metrics.counter(METRICS_NAMESPACE, "rows_emitted")
        self.rows_before_window = Metrics.counter(METRICS_NAMESPACE, "rows_before_window")

    def setup(self):
        self.components = ComponentCache(self.seed, self.num_random_features)

    def start_bundle(self):
        self.components.used.clear()

    def finish_bundle(self):
        for key in sorted(self.components.used):
            yield pvalue.TaggedOutput(COMPONENT_KEYS, GlobalWindows.windowed_value(key))

    def process(self, element):
        bucket, (batch, starts, *saved) = element
        joined = Joined(saved[0], batch, starts) if saved else None
        rows = replay_batch(batch, starts, self.components, self.problem_number_range,
                            joined and joined.events(), self.student_features)
        if joined:
            yield pvalue.TaggedOutput(STATES, (bucket, joined.advance(saved[1])))
        if self.emit_from is not None:
            inside = rows.time_done >= self.emit_from
            self.rows_before_window.inc(int(len(rows) - inside.sum()))
            rows = rows.take(inside)
        self.rows_emitted.inc(len(rows))
        yield from rows.split_by_shard(EXERCISE_SHARDS)


class ReplayKnowledgeState(beam.PTransform):
    """Sessionized buckets -> `rows`: (shard, TrainingRows) blocks (every row
    of an exercise in the shard exercise_shards gives it), and
    `component_keys`: the (exercise, problem_type, correct) keys whose random
    components the features used (with repeats across workers). With
    `emit_from` (epoch µs) earlier attempts only update the state. Buckets
    sessionized with saved states also give `states`: (bucket, StudentStates)
    after the bucket's logs. `student_features`: the rows also carry
    models.student_features' columns."""

    def __init__(self, seed: int, num_random_features: int, problem_number_range=(1, None),
                 emit_from=None, student_features: bool = False):
        super().__init__()
        self.replay = _ReplayBuckets(seed, num_random_features, problem_number_range, emit_from,
                                     student_features)

    def expand(self, students):
        return students | beam.ParDo(self.replay).with_outputs(COMPONENT_KEYS, STATES,
                                                               main=ROWS)
