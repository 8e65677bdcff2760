"""Cap the rows of each exercise by a uniform sample, then fit per exercise."""

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from threadpoolctl import threadpool_limits

from models.exercise_model import FitSettings, bottom_k, fit_exercise, sample_keys
from models.knowledge_state import TrainingRows
from transforms.read import METRICS_NAMESPACE

FITTED, SKIPPED = "fitted", "skipped"


class BottomKRowsFn(beam.CombineFn):
    """Keeps the `k` rows with the smallest hash keys: a uniform sample whose
    memory is bounded by k per exercise and which Beam can pre-combine on each
    worker before the shuffle. Also counts every row seen.

    Accumulator: (list of (TrainingRows, keys) blocks, rows held, rows seen).
    Blocks are compacted only when they hold more than 2k rows, so adding a
    small block never copies the whole sample."""

    def __init__(self, k: int, seed: int):
        self.k = k
        self.seed = seed

    def create_accumulator(self):
        return [], 0, 0

    def _compact(self, blocks, held, seen):
        if held <= 2 * self.k:
            return blocks, held, seen
        rows, keys = bottom_k(TrainingRows.concatenate([b for b, _ in blocks]),
                              np.concatenate([k for _, k in blocks]), self.k)
        return [(rows, keys)], len(rows), seen

    def add_input(self, accumulator, rows):
        blocks, held, seen = accumulator
        return self._compact(blocks + [(rows, sample_keys(rows, self.seed))],
                             held + len(rows), seen + len(rows))

    def merge_accumulators(self, accumulators):
        blocks, held, seen = [], 0, 0
        for more_blocks, more_held, more_seen in accumulators:
            blocks, held, seen = self._compact(blocks + more_blocks, held + more_held,
                                               seen + more_seen)
        return blocks, held, seen

    def extract_output(self, accumulator):
        blocks, _, seen = accumulator
        rows, _ = bottom_k(TrainingRows.concatenate([b for b, _ in blocks]),
                           np.concatenate([k for _, k in blocks]), self.k)
        return rows, seen


class _Fit(beam.DoFn):
    def __init__(self, settings: FitSettings):
        self.settings = settings
        self.fitted = Metrics.counter(METRICS_NAMESPACE, "exercises_fitted")

    def setup(self):
        # The matrices are small; multithreaded BLAS only fights the other
        # worker processes for cores (measured 10x slower on 2 cores).
        threadpool_limits(limits=1, user_api="blas")

    def process(self, element):
        exercise, (rows, rows_available) = element
        outcome, record = fit_exercise(exercise, rows, rows_available, self.settings)
        if outcome == FITTED:
            self.fitted.inc()
            yield record
        else:
            Metrics.counter(METRICS_NAMESPACE, f"exercises_skipped_{record['reason']}").inc()
            yield pvalue.TaggedOutput(SKIPPED, record)


class FitPerExercise(beam.PTransform):
    """(exercise, TrainingRows) blocks -> `fitted` parameter records and
    `skipped` records with a reason."""

    def __init__(self, settings: FitSettings):
        super().__init__()
        self.settings = settings

    def expand(self, blocks):
        return (blocks
                | "SampleRowsPerExercise" >> beam.CombinePerKey(
                    BottomKRowsFn(self.settings.max_samples, self.settings.seed))
                | "Fit" >> beam.ParDo(_Fit(self.settings)).with_outputs(SKIPPED, main=FITTED))
