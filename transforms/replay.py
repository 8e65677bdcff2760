"""Replay each student's KnowledgeState and emit training rows in blocks."""

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.transforms.window import GlobalWindows

from models.knowledge_state import ComponentCache, replay_students
from transforms.read import METRICS_NAMESPACE

ROWS, COMPONENT_KEYS = "rows", "component_keys"


class _ReplayBatches(beam.DoFn):
    """Buffers whole students until about `batch_size` attempts, then replays
    them together with numpy and emits one (exercise, TrainingRows) block per
    exercise: per-element Beam overhead is paid per block, not per attempt.
    Also emits the random-component keys each bundle used (a retried bundle
    emits them again; duplicates are removed downstream)."""

    def __init__(self, seed, num_random_features, problem_number_range, batch_size):
        self.seed = seed
        self.num_random_features = num_random_features
        self.problem_number_range = problem_number_range
        self.batch_size = batch_size
        self.rows_emitted = Metrics.counter(METRICS_NAMESPACE, "rows_emitted")

    def setup(self):
        self.components = ComponentCache(self.seed, self.num_random_features)

    def start_bundle(self):
        self.students = []
        self.attempts = 0
        self.components.used.clear()

    def process(self, element):
        _, logs = element
        self.students.append(logs)
        self.attempts += len(logs)
        if self.attempts >= self.batch_size:
            yield from self._flush(lambda value: value)

    def finish_bundle(self):
        yield from self._flush(GlobalWindows.windowed_value)
        for key in sorted(self.components.used):
            yield pvalue.TaggedOutput(COMPONENT_KEYS, GlobalWindows.windowed_value(key))

    def _flush(self, wrap):
        if not self.students:
            return
        rows = replay_students(self.students, self.components, self.problem_number_range)
        self.students, self.attempts = [], 0
        self.rows_emitted.inc(len(rows))
        for exercise, block in rows.split_by_exercise():
            yield wrap((exercise, block))


class ReplayKnowledgeState(beam.PTransform):
    """(user, sessionized logs) -> `rows`: (exercise, TrainingRows) blocks, and
    `component_keys`: the (exercise, problem_type, correct) keys whose random
    components the features used (with repeats across workers)."""

    def __init__(self, seed: int, num_random_features: int, problem_number_range=(1, None),
                 batch_size: int = 20000):
        super().__init__()
        self.replay = _ReplayBatches(seed, num_random_features, problem_number_range, batch_size)

    def expand(self, students):
        return students | beam.ParDo(self.replay).with_outputs(COMPONENT_KEYS, main=ROWS)
