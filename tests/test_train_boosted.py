"""End-to-end tests of pipelines.train_boosted on the DirectRunner: the
columnar store against features computed in memory, and the Beam training
against the in-memory boosting loop on the same examples."""

import collections
import glob
import os
import shutil
import types

import fastavro
import numpy as np
import pyarrow.parquet as pq
import pytest

from models.boosting import train_in_memory
from models.exercise_model import held_out
from models.knowledge_state import sessionize, user_hash
from models.problem_log import ProblemLogParser
from models.sparse_features import ALL_TEMPLATES, STUDENT_TEMPLATES, student_features
from pipelines import generate_sample
from pipelines.train_boosted import run
from tests.jsonl import read_jsonl
from transforms.boosted_training import table_to_blocks
from transforms.columnar_store import read_vocabulary

ITERATIONS = 6
MIN_COUNT = 2


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sample"))
    generate_sample.main(["--output", directory, "--students", "200", "--seed", "5"])
    return directory


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("boosted"))
    summary = run(["--input", os.path.join(sample, "*.avro"), "--output", output,
                   "--l1", "1,10", "--iterations", str(ITERATIONS),
                   "--min_feature_count", str(MIN_COUNT)])
    return types.SimpleNamespace(summary=summary, output=output,
                                 store=os.path.join(output, "store"))


@pytest.fixture(scope="module")
def reference_features(sample):
    """Every attempt's features (every template, the store holds them all), label
    and holdout flag, computed in memory one student at a time."""
    parse = ProblemLogParser()
    by_user = collections.defaultdict(list)
    for path in glob.glob(os.path.join(sample, "*.avro")):
        with open(path, "rb") as handle:
            for raw in fastavro.reader(handle):
                log = parse(raw)
                by_user[log.user].append(log)
    examples = []
    for logs in by_user.values():
        ordered, _ = sessionize(logs)
        holdout = bool(held_out(np.array([user_hash(ordered[0].user)], dtype=np.uint64),
                                0, 0.1)[0])
        for log, features in zip(ordered, student_features(ordered, ALL_TEMPLATES)):
            examples.append((features, log.correct, holdout))
    return examples


def store_table(store, columns=None):
    return pq.ParquetDataset(glob.glob(os.path.join(store, "examples-*.parquet"))).read(
        columns=columns)


def test_store_build_accounts_for_every_record(trained, reference_features):
    build = trained.summary["store_build"]
    assert build["records_read"] == build["records_replayed"] == len(reference_features)
    assert build["sparse_examples"] == len(reference_features)
    assert build["dead_lettered_total"] == 0


def test_vocabularies_are_ordered_by_frequency(trained, reference_features):
    for template in ALL_TEMPLATES:
        counts = collections.Counter(value for features, _, _ in reference_features
                                     for value in features[template])
        expected = sorted((value for value, n in counts.items() if n >= MIN_COUNT),
                          key=lambda value: (-counts[value], value))
        assert read_vocabulary(os.path.join(trained.store, "vocabulary"), template) == expected
        assert counts[expected[0]] == max(counts.values())  # the most frequent is id 0


def test_store_round_trips_to_the_features(trained, reference_features):
    table = store_table(trained.store)
    assert table.num_rows == len(reference_features)
    vocabularies = {t: read_vocabulary(os.path.join(trained.store, "vocabulary"), t)
                    for t in ALL_TEMPLATES}
    stored = collections.Counter()
    for row in table.to_pylist():
        stored[(tuple(tuple(vocabularies[t][i] for i in row[t]) for t in ALL_TEMPLATES),
                row["label"], row["holdout"])] += 1
    expected = collections.Counter()
    for features, label, holdout in reference_features:
        kept = tuple(tuple(v for v in features[t] if v in set(vocabularies[t]))
                     for t in ALL_TEMPLATES)
        expected[(kept, label, holdout)] += 1
    assert stored == expected


def test_training_equals_the_in_memory_loop_on_the_store(trained):
    templates = tuple(trained.summary["templates"])
    vocabulary_dir = os.path.join(trained.store, "vocabulary")
    sizes = {t: len(read_vocabulary(vocabulary_dir, t)) for t in templates}
    blocks = list(table_to_blocks(store_table(trained.store), templates, sizes))
    train = next(block for name, block in blocks if name == "train")
    expected = train_in_memory(train.x, train.labels, [1.0, 10.0], iterations=ITERATIONS,
                               unpenalised=[0])
    names = ["bias"] + [f"{t}={v}" for t in templates
                        for v in read_vocabulary(vocabulary_dir, t)]
    weights = read_jsonl(os.path.join(trained.output, "weights", "weights.jsonl"))
    for model, l1 in enumerate([1.0, 10.0]):
        ours = np.zeros(len(names))
        for record in weights:
            if record["l1"] == l1:
                ours[names.index(record["feature"])] = record["weight"]
        np.testing.assert_allclose(ours, expected.weights[model], rtol=1e-9, atol=1e-12)


def test_loss_curve_decreases_and_l1_sparsifies(trained):
    curve = read_jsonl(os.path.join(trained.output, "loss_curve.jsonl"))
    assert len(curve) == 2 * ITERATIONS
    for l1 in (1.0, 10.0):
        objective = [row["train_objective"] for row in curve if row["l1"] == l1]
        assert all(b <= a for a, b in zip(objective, objective[1:]))
        assert objective[-1] < objective[0]
        assert all(row["holdout_mean_log_loss"] > 0 for row in curve)
    models = {model["l1"]: model for model in trained.summary["models"]}
    assert models[10.0]["nonzero_weights"] < models[1.0]["nonzero_weights"]
    for model in models.values():
        assert model["holdout_log_likelihood"] > -0.6931  # beats predicting 1/2
        assert 0.5 < model["holdout_auc"] <= 1
    knowledge = trained.summary["knowledge_model"]
    assert knowledge["holdout_log_likelihood"] < 0 and knowledge["holdout_rows"] > 0


def test_the_chosen_l1_is_the_best_on_the_holdout_from_the_written_weights(trained):
    """Each model's holdout log likelihood recomputed from weights.jsonl and the
    store's holdout rows; the summary must choose their argmax."""
    templates = trained.summary["templates"]
    vocabulary_dir = os.path.join(trained.store, "vocabulary")
    names = {f"{t}={v}": (t, v) for t in templates for v in read_vocabulary(vocabulary_dir, t)}
    ids = {t: read_vocabulary(vocabulary_dir, t) for t in templates}
    rows = [row for row in store_table(trained.store, templates + ["label", "holdout"])
            .to_pylist() if row["holdout"]]
    weights = read_jsonl(os.path.join(trained.output, "weights", "weights.jsonl"))
    figures = {}
    for l1 in (1.0, 10.0):
        w = {r["feature"]: r["weight"] for r in weights if r["l1"] == l1}
        total = 0.0
        for row in rows:
            margin = w.get("bias", 0.0) + sum(
                w.get(f"{t}={ids[t][i]}", 0.0) for t in templates for i in row[t])
            p = 1 / (1 + np.exp(-margin))
            total += np.log(p if row["label"] else 1 - p)
        figures[l1] = total / len(rows)
    assert set(w for r in weights for w in [r["feature"]]) <= set(names) | {"bias"}
    selection = trained.summary["l1_selection"]
    np.testing.assert_allclose(selection["holdout_log_likelihood"],
                               [figures[1.0], figures[10.0]], rtol=1e-9)
    assert figures[1.0] != figures[10.0]
    assert selection["chosen"] == max(figures, key=figures.get)
    assert trained.summary["chosen_model"] == {
        "l1": selection["chosen"],
        "weights": os.path.join(trained.output, "weights", "weights.jsonl")}


def test_training_reads_only_the_requested_templates(trained, tmp_path):
    summary = run(["--store", trained.store, "--output", str(tmp_path),
                   "--templates", "exercise,exercise_x_streak", "--iterations", "3",
                   "--loss", "exponential", "--feature_shards", "2", "--initial_step", "2"])
    assert summary["store_built"] is False
    assert summary["l1_selection"]["candidates"] == [1.0]  # one --l1 value: reported
    assert summary["l1_selection"]["chosen"] == summary["chosen_model"]["l1"] == 1.0
    vocabulary_dir = os.path.join(trained.store, "vocabulary")
    expected = 1 + sum(len(read_vocabulary(vocabulary_dir, t))
                       for t in ("exercise", "exercise_x_streak"))
    assert summary["models"][0]["features"] == expected - 1
    features = {r["feature"].split("=")[0]
                for r in read_jsonl(str(tmp_path / "weights" / "weights.jsonl"))}
    assert features <= {"bias", "exercise", "exercise_x_streak"}
    objective = [row["train_objective"]
                 for row in read_jsonl(str(tmp_path / "loss_curve.jsonl"))]
    assert all(b <= a for a, b in zip(objective, objective[1:])) and objective[-1] < objective[0]


def test_student_templates_train_from_the_store_and_old_stores_ask_for_a_rebuild(
        trained, tmp_path):
    templates = ("exercise",) + STUDENT_TEMPLATES
    summary = run(["--store", trained.store, "--output", str(tmp_path / "student"),
                   "--templates", ",".join(templates), "--iterations", "2"])
    vocabulary_dir = os.path.join(trained.store, "vocabulary")
    assert summary["models"][0]["features"] == sum(
        len(read_vocabulary(vocabulary_dir, t)) for t in templates)
    # A store built before the student templates existed has no such column.
    old = tmp_path / "old_store"
    shutil.copytree(trained.store, old)
    os.remove(old / "vocabulary" / "student_rate.tsv")
    from pipelines.cli import UsageError
    with pytest.raises(UsageError, match="student_rate.*--rebuild_store"):
        run(["--store", str(old), "--output", str(tmp_path / "old"),
             "--templates", "exercise,student_rate"])


def test_bad_templates_are_a_clear_error(trained, tmp_path):
    from pipelines.cli import UsageError
    with pytest.raises(UsageError, match="--templates"):
        run(["--store", trained.store, "--output", str(tmp_path), "--templates", "nope"])
    with pytest.raises(UsageError, match="--l1"):
        run(["--store", trained.store, "--output", str(tmp_path), "--l1", "-1"])
    # The store's holdout split was made with seed 0: another seed needs a rebuild.
    with pytest.raises(UsageError, match="--seed 0"):
        run(["--store", trained.store, "--output", str(tmp_path), "--seed", "7"])
