"""Parallel boosting as Beam steps: one map and one combine per iteration.

Examples travel in blocks (a CSR matrix of binary feature ids plus labels), so
each element carries thousands of examples. An iteration reads the current
BoostingState as a side input, computes the per-feature statistics of every
block into dense numpy arrays (Sibyl's arrays, not hash maps), sums them with a
combine and advances the state. The statistics can be cut into feature-range
shards, each its own combine key, so large vocabularies are summed in parallel.
Iterations are unrolled in the graph.
"""

import apache_beam as beam
import numpy as np
from scipy import sparse
from apache_beam.metrics import Metrics
from apache_beam.pvalue import AsSingleton

from models import boosting
from transforms import progress
from transforms.read import METRICS_NAMESPACE


class ExampleBlock:
    """Examples as a binary CSR design matrix and their labels.

    Pickles as the CSR structure only (int32 ids, packed labels): the matrix's
    data array is all ones and would otherwise be two thirds of the bytes Beam
    moves into every iteration."""

    __slots__ = ("x", "labels")

    def __init__(self, x, labels):
        self.x = x
        self.labels = labels

    def __getstate__(self):
        return (self.x.shape, self.x.indptr, self.x.indices.astype(np.int32, copy=False),
                np.packbits(self.labels), len(self.labels))

    def __setstate__(self, state):
        shape, indptr, indices, packed, count = state
        self.x = sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=shape)
        self.labels = np.unpackbits(packed, count=count).astype(bool)


class _SumStatistics(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, accumulator, stats):
        return stats if accumulator is None else accumulator + stats

    def merge_accumulators(self, accumulators):
        total = None
        for stats in accumulators:
            if stats is not None:
                total = stats if total is None else total + stats
        return total

    def extract_output(self, accumulator):
        return accumulator


class _BlockStatistics(beam.DoFn):
    """ExampleBlock -> (shard, Statistics of that shard's features)."""

    def __init__(self, loss: str, shards: int):
        self.loss = loss
        self.shards = shards
        self.active_features = Metrics.counter(METRICS_NAMESPACE, "boosting_active_features")

    def process(self, block, state):
        self.active_features.inc(block.x.nnz * len(state.proposal))
        stats = boosting.statistics(state.proposal, block.x, block.labels, self.loss)
        yield from stats.shards(self.shards)


def _advance(stats, state, l1_values, unpenalised, loss, max_active):
    l1 = boosting.penalties(l1_values, state.weights.shape[1], unpenalised)
    advanced = boosting.advance(state, stats, l1, loss, max_active)
    progress.add("boosting_iterations")
    return advanced


class BoostingIteration(beam.PTransform):
    """(example blocks) -> the next state (a singleton PCollection), from the
    current `state` and the examples' `max_active` (singleton PCollections)."""

    def __init__(self, state, max_active, l1_values, loss: str, unpenalised=(0,),
                 shards: int = 1):
        super().__init__()
        self.shards = shards
        self.state = state
        self.max_active = max_active
        self.l1_values = tuple(l1_values)
        self.loss = loss
        self.unpenalised = tuple(unpenalised)

    def expand(self, blocks):
        return (blocks
                | "Statistics" >> beam.ParDo(_BlockStatistics(self.loss, self.shards),
                                             AsSingleton(self.state))
                | "SumPerShard" >> beam.CombinePerKey(_SumStatistics())
                | "Gather" >> beam.combiners.ToList()
                | "Whole" >> beam.Map(boosting.Statistics.from_shards)
                | "Advance" >> beam.Map(_advance, AsSingleton(self.state), self.l1_values,
                                        self.unpenalised, self.loss,
                                        AsSingleton(self.max_active)))


class TrainBoosted(beam.PTransform):
    """Training example blocks -> the BoostingState after each iteration (a
    list of singleton PCollections: the last is the model, all of them give
    the loss curve). `num_features` is a singleton PCollection, since the
    vocabulary is only known once the data has been counted."""

    def __init__(self, num_features, l1_values, loss: str, iterations: int,
                 unpenalised=(0,), initial_step: float = 1.0, shards: int = 1):
        super().__init__()
        self.shards = shards
        self.num_features = num_features
        self.l1_values = tuple(l1_values)
        self.loss = loss
        self.iterations = iterations
        self.unpenalised = tuple(unpenalised)
        self.initial_step = initial_step

    def expand(self, blocks):
        models, step = len(self.l1_values), self.initial_step
        state = self.num_features | "InitialState" >> beam.Map(
            lambda features: boosting.initial_state(models, features, step))
        max_active = (blocks
                      | "ActiveFeatures" >> beam.Map(
                          lambda block: int(block.x.sum(axis=1).max()) if block.x.shape[0] else 0)
                      | "MaxActive" >> beam.CombineGlobally(max))
        states = []
        for iteration in range(self.iterations):
            state = blocks | f"Iteration{iteration:03d}" >> BoostingIteration(
                state, max_active, self.l1_values, self.loss, self.unpenalised, self.shards)
            states.append(state)
        return states
