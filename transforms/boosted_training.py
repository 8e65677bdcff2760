"""Read the columnar store, train boosted models, evaluate them on the holdout."""

from typing import Dict, List, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.pvalue import AsSingleton
from scipy import sparse

from models import boosting
from models.logistic import auc
from transforms.boosting import ExampleBlock, TrainBoosted
from transforms.columnar_store import HOLDOUT, LABEL


def feature_names(templates: Sequence[str], vocabularies: Dict[str, List[str]]) -> List[str]:
    """Names of the global feature ids: the bias, then each template's
    vocabulary in order (the layout table_to_blocks builds)."""
    return ["bias"] + [f"{template}={value}" for template in templates
                       for value in vocabularies[template]]


def table_to_blocks(table, templates: Sequence[str], sizes: Dict[str, int]):
    """A Parquet record batch -> ("train" | "holdout", ExampleBlock). Global
    feature ids: 0 is the bias, then each template's ids shifted past the
    templates before it."""
    rows = table.num_rows
    columns = [sparse.csr_matrix(np.ones((rows, 1)))]
    for template in templates:
        column = table.column(template).combine_chunks()
        columns.append(sparse.csr_matrix(
            (np.ones(len(column.values)), np.asarray(column.values, dtype=np.int32),
             np.asarray(column.offsets, dtype=np.int64)), shape=(rows, sizes[template])))
    x = sparse.hstack(columns, format="csr")
    labels = np.asarray(table.column(LABEL).to_numpy(zero_copy_only=False), dtype=bool)
    holdout = np.asarray(table.column(HOLDOUT).to_numpy(zero_copy_only=False), dtype=bool)
    for name, mask in (("train", ~holdout), ("holdout", holdout)):
        if mask.any():
            yield name, ExampleBlock(x[mask], labels[mask])


def log_odds_scale(loss: str) -> float:
    """The margin's multiple that is the log-odds: exponential loss is minimised
    by half the log-odds (Friedman, Hastie and Tibshirani 2000)."""
    return 2.0 if loss == "exponential" else 1.0


class _HoldoutLoss(beam.DoFn):
    """Per-model total loss and example count of a holdout block at the
    state's accepted weights."""

    def __init__(self, loss: str):
        self.loss = loss

    def process(self, block, state):
        margins = (block.x @ state.weights.T).T * log_odds_scale(self.loss)
        losses, _ = boosting.losses_and_weights(margins, block.labels, "logistic")
        yield losses.sum(axis=1), block.x.shape[0]


def _add_pairs(pairs):
    """[(per-model loss, count)] -> (summed loss, total count)."""
    total, count = None, 0
    for value, n in pairs:
        total = value if total is None else total + value
        count += n
    return total, count


def curve_records(iterations, l1_values):
    """Loss curve rows from (iteration, state, (holdout loss, count)) items."""
    records = []
    for iteration, state, (holdout_loss, holdout_count) in sorted(iterations,
                                                                   key=lambda item: item[0]):
        for model, l1 in enumerate(l1_values):
            records.append({
                "iteration": iteration, "l1": l1,
                "train_objective": float(state.objective[model]),
                "step": float(state.step[model]),
                "nonzero_weights": int(np.count_nonzero(state.weights[model][1:])),
                "holdout_mean_log_loss": (float(holdout_loss[model] / holdout_count)
                                          if holdout_count else None),
            })
    return records


def evaluate(state, holdout_blocks: List[ExampleBlock], l1_values, loss) -> List[dict]:
    """Per model: holdout mean log likelihood (logistic link) and AUC, sparsity."""
    if holdout_blocks:
        x = sparse.vstack([block.x for block in holdout_blocks], format="csr")
        labels = np.concatenate([block.labels for block in holdout_blocks])
    else:
        x, labels = None, np.zeros(0, dtype=bool)
    results = []
    for model, l1 in enumerate(l1_values):
        weights = state.weights[model]
        record = {"l1": l1, "features": len(weights) - 1,
                  "nonzero_weights": int(np.count_nonzero(weights[1:])),
                  "holdout_examples": int(len(labels)),
                  "holdout_log_likelihood": None, "holdout_auc": None}
        record["sparsity"] = 1 - record["nonzero_weights"] / max(record["features"], 1)
        if len(labels):
            margins = (x @ weights) * log_odds_scale(loss)
            losses, _ = boosting.losses_and_weights(margins[None, :], labels, "logistic")
            record["holdout_log_likelihood"] = float(-losses.mean())
            record["holdout_auc"] = auc(margins, labels)
        results.append(record)
    return results


def l1_selection(models: List[dict]) -> dict:
    """The model set's L1 with the best holdout log likelihood, from evaluate()'s
    records (in --l1 order), reported like the knowledge model's l2_selection.
    Deterministic: ties go to the earlier --l1 value; a model without a figure
    (no holdout examples) is never chosen over one with a figure, and with no
    figure at all the first --l1 value is kept (`chosen_on_holdout` is then
    false)."""
    scores = [model["holdout_log_likelihood"] for model in models]
    scored = [i for i, score in enumerate(scores) if score is not None]
    best = max(scored, key=lambda i: (scores[i], -i)) if scored else 0
    return {"candidates": [model["l1"] for model in models], "holdout_log_likelihood": scores,
            "holdout_examples": models[best]["holdout_examples"] if models else 0,
            "chosen": models[best]["l1"] if models else None,
            "chosen_on_holdout": bool(scored)}


def weight_records(state, l1_values, names):
    """Non-zero weights with readable feature names (the writer sorts them)."""
    for model, l1 in enumerate(l1_values):
        weights = state.weights[model]
        for index in np.flatnonzero(weights):
            yield {"l1": l1, "feature": names[index], "weight": float(weights[index])}


class TrainAndEvaluate(beam.PTransform):
    """Parquet record batches -> dict of PCollections: `final_state`,
    `curve` (list of records), `evaluation` (list of per-model records)."""

    def __init__(self, templates, sizes, l1_values, loss, iterations, shards=1,
                 initial_step=1.0):
        super().__init__()
        self.shards = shards
        self.initial_step = initial_step
        self.templates = tuple(templates)
        self.sizes = dict(sizes)
        self.l1_values = tuple(l1_values)
        self.loss = loss
        self.iterations = iterations

    def expand(self, tables):
        templates, sizes = self.templates, self.sizes
        split = tables | "ToBlocks" >> beam.FlatMap(table_to_blocks, templates, sizes)
        train = split | "Train" >> beam.Filter(lambda kv: kv[0] == "train") | (
            "TrainBlocks" >> beam.Values())
        holdout = split | "Holdout" >> beam.Filter(lambda kv: kv[0] == "holdout") | (
            "HoldoutBlocks" >> beam.Values())
        size = tables.pipeline | "NumFeatures" >> beam.Create(
            [1 + sum(sizes[template] for template in templates)])
        states = train | "Boost" >> TrainBoosted(size, self.l1_values, self.loss,
                                                 self.iterations, shards=self.shards,
                                                 initial_step=self.initial_step)
        holdout_losses = []
        for iteration, state in enumerate(states):
            holdout_losses.append(
                holdout
                | f"HoldoutLoss{iteration:03d}" >> beam.ParDo(_HoldoutLoss(self.loss),
                                                             AsSingleton(state))
                | f"SumHoldout{iteration:03d}" >> beam.combiners.ToList()
                | f"Total{iteration:03d}" >> beam.Map(_add_pairs))
        iterations = [(state | f"Pair{i:03d}" >> beam.Map(
            lambda state, loss, number: (number, state, loss),
            AsSingleton(holdout_losses[i]), i + 1)) for i, state in enumerate(states)]
        l1_values = self.l1_values
        curve = (iterations | "AllIterations" >> beam.Flatten()
                 | "GatherCurve" >> beam.combiners.ToList()
                 | "Curve" >> beam.Map(curve_records, l1_values))
        holdout_list = holdout | "GatherHoldout" >> beam.combiners.ToList()
        evaluation = states[-1] | "Evaluate" >> beam.Map(
            evaluate, AsSingleton(holdout_list), l1_values, self.loss)
        return {"final_state": states[-1], "curve": curve, "evaluation": evaluation}

