"""Cap the rows of each exercise by a uniform sample, then fit per exercise."""

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from threadpoolctl import threadpool_limits

from models.evaluation import HOLDOUT_BY_L2, l2_selection
from models.exercise_model import (FitSettings, bottom_k, bottom_k_per_exercise, fit_exercise,
                                   fit_global, global_pool, sample_keys, select_l2)
from models.knowledge_state import ComponentCache, TrainingRows
from transforms import progress
from transforms.read import METRICS_NAMESPACE

FITTED, SKIPPED, GLOBAL_FIT = "fitted", "skipped", "global_fit"
_NO_ROWS = TrainingRows.empty()


class BottomKRowsFn(beam.CombineFn):
    """Keeps, per exercise, the `k` rows with the smallest hash keys: a
    uniform sample whose memory is bounded by k per exercise and which Beam
    can pre-combine on each worker before the shuffle. Also counts every
    row seen per exercise. With per_exercise=False the k rows are kept over
    all exercises together (the global fit's pool).

    Accumulator: [list of TrainingRows blocks, rows held, {exercise: rows
    seen}], modified in place (as Beam allows). Blocks are compacted only
    when they hold more than 2k rows per exercise, so adding a small block
    never copies the sample. Sample keys are computed only then, over all
    the blocks at once: per block they cost more than the rest of the
    combine with thousands of small exercises (measured)."""

    def __init__(self, k: int, seed: int, per_exercise: bool = True):
        self.k = k
        self.seed = seed
        self.per_exercise = per_exercise

    def create_accumulator(self):
        return [[], 0, {}]

    def _compact(self, accumulator):
        blocks, held, seen = accumulator
        if held > 2 * self.k * (max(len(seen), 1) if self.per_exercise else 1):
            rows = self._bottom_k(blocks)
            accumulator[0], accumulator[1] = [rows], len(rows)
        return accumulator

    def _bottom_k(self, blocks):
        rows = TrainingRows.concatenate(blocks)
        keys = sample_keys(rows, self.seed)
        if self.per_exercise:
            return bottom_k_per_exercise(rows, keys, self.k)
        return bottom_k(rows, keys, self.k)[0]

    def add_input(self, accumulator, element):
        """`element`: a TrainingRows block of any exercises, or (a sample,
        {exercise: rows seen}) from an earlier sampling (transforms.rows_store:
        a run's sample read back)."""
        rows, seen = (element if isinstance(element, tuple)
                      else (element, element.rows_per_exercise()))
        accumulator[0].append(rows)
        accumulator[1] += len(rows)
        _add_counts(accumulator[2], seen)
        return self._compact(accumulator)

    def merge_accumulators(self, accumulators):
        merged = self.create_accumulator()
        for blocks, held, seen in accumulators:
            merged[0].extend(blocks)
            merged[1] += held
            _add_counts(merged[2], seen)
            self._compact(merged)
        return merged

    def extract_output(self, accumulator):
        """(the sample, {exercise: rows seen}); per exercise, the sample's rows
        are grouped by exercise, each group in sample order."""
        blocks, _, seen = accumulator
        if not blocks:  # CombineGlobally over nothing
            return TrainingRows.empty(), seen
        return self._bottom_k(blocks), seen


def _add_counts(total: dict, counts: dict) -> None:
    for name, count in counts.items():
        total[name] = total.get(name, 0) + count


class _Fit(beam.DoFn):
    def __init__(self, settings: FitSettings, baseline=None):
        self.settings, self.baseline = settings, baseline
        self.fitted = progress.counter(METRICS_NAMESPACE, "exercises_fitted")

    def setup(self):
        # The matrices are small; multithreaded BLAS only fights the other
        # worker processes for cores (measured 10x slower on 2 cores).
        threadpool_limits(limits=1, user_api="blas")
        self.components = ComponentCache(self.settings.seed, self.settings.num_random_features)

    def process(self, element, global_fit=None):
        exercise, (rows, rows_available) = element
        prior = None if global_fit is None or global_fit["theta"] is None else np.asarray(
            global_fit["theta"])
        outcome, record = fit_exercise(exercise, rows, rows_available, self.settings,
                                       self.baseline, self.components, prior)
        self.components.used.clear()
        if outcome == FITTED:
            self.fitted.inc()
            yield record
        else:
            Metrics.counter(METRICS_NAMESPACE, f"exercises_skipped_{record['reason']}").inc()
            yield pvalue.TaggedOutput(SKIPPED, record)


def _by_exercise(element, key_of):
    key, (sample, seen) = element
    samples = dict(sample.split_by_exercise())
    for exercise, count in seen.items():
        yield key_of(key, exercise), (samples.get(exercise, _NO_ROWS), count)


def _exercise(key, exercise):
    return exercise


class SampleRowsPerExercise(beam.PTransform):
    """(key, TrainingRows blocks or (sample, {exercise: rows seen})) ->
    (exercise, (its bottom-k sample, rows seen)), for every exercise seen.
    All rows of one exercise must come under one key; a key may hold many
    exercises (the replay keys its blocks by exercise shard: a few hundred
    elements per replay batch instead of one per exercise, whose per-element
    cost dominated with thousands of exercises, measured). `key_of(key,
    exercise)` gives the output key (default: the exercise). Samples of
    samples are exact, so a run's sample can be kept and merged into a later
    run's."""

    def __init__(self, max_samples: int, seed: int, key_of=_exercise):
        super().__init__()
        self.max_samples, self.seed, self.key_of = max_samples, seed, key_of

    def expand(self, blocks):
        return (blocks
                | "BottomK" >> beam.CombinePerKey(BottomKRowsFn(self.max_samples, self.seed))
                | "ByExercise" >> beam.FlatMap(_by_exercise, self.key_of))


class _FitGlobal(beam.DoFn):
    def __init__(self, settings: FitSettings):
        self.settings = settings

    def setup(self):
        threadpool_limits(limits=1, user_api="blas")

    def process(self, pooled):
        rows, _ = pooled
        yield fit_global(rows, self.settings)


class FitGlobal(beam.PTransform):
    """(exercise, (sample, rows seen)) of SampleRowsPerExercise -> one
    models.exercise_model.fit_global record: the pooled training-side share
    of every exercise (global_pool), capped by a bottom-k sample over all of
    them (the same BottomKRowsFn as per exercise, so it is as deterministic),
    fitted once."""

    def __init__(self, settings: FitSettings):
        super().__init__()
        self.settings = settings

    def expand(self, samples):
        settings = self.settings
        return (samples
                | "GlobalPool" >> beam.Map(lambda element: global_pool(element[1][0], settings))
                | "GlobalSample" >> beam.CombineGlobally(
                    BottomKRowsFn(settings.global_max_rows, settings.seed, per_exercise=False))
                | "FitGlobal" >> beam.ParDo(_FitGlobal(settings)))


class FitPerExercise(beam.PTransform):
    """(key, TrainingRows) blocks, every row of an exercise under one key
    (the replay's exercise shard, or the exercise) -> {FITTED: parameter
    records, SKIPPED: records with a reason}. With `baseline` ({exercise: theta} of a version
    with the same features) each record also scores it on the same holdout
    rows. With settings.l2_candidates every candidate is fitted in the same
    pass, and the one with the best holdout log likelihood over all exercises
    (models.evaluation.l2_selection) gives every exercise's parameters.
    Blocks may also be (sample, {exercise: rows seen}) pairs, as
    transforms.rows_store reads them back.
    With settings.shrink_to_global a global fit over all exercises
    (FitGlobal, also output as GLOBAL_FIT) is the side input every exercise's
    fit is shrunk toward."""

    def __init__(self, settings: FitSettings, baseline=None):
        super().__init__()
        self.settings, self.baseline = settings, baseline

    def expand(self, blocks):
        samples = blocks | "SampleRowsPerExercise" >> SampleRowsPerExercise(
            self.settings.max_samples, self.settings.seed)
        outputs, side = {}, []
        if self.settings.shrink_to_global:
            outputs[GLOBAL_FIT] = samples | "GlobalFit" >> FitGlobal(self.settings)
            side = [pvalue.AsSingleton(outputs[GLOBAL_FIT])]
        fits = (samples
                | "Fit" >> beam.ParDo(_Fit(self.settings, self.baseline), *side)
                .with_outputs(SKIPPED, main=FITTED))
        fitted, candidates = fits[FITTED], self.settings.l2_candidates
        if candidates:
            chosen = (fitted
                      | "HoldoutByL2" >> beam.Map(   # not the thetas: one worker gathers these
                          lambda record: {key: record[key] for key in ("num_holdout",
                                                                       HOLDOUT_BY_L2)})
                      | "AllExercises" >> beam.combiners.ToList()
                      | "ChooseL2" >> beam.Map(
                          lambda records: l2_selection(records, candidates)["chosen"]))
            fitted = fitted | "KeepChosenL2" >> beam.Map(select_l2, pvalue.AsSingleton(chosen))
        return {FITTED: fitted, SKIPPED: fits[SKIPPED], **outputs}
