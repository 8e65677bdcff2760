"""Training into Datastore (the real emulator): versions equal the files,
activation is gated, re-runs are idempotent, the registry CLI works, serving
predicts exactly what training saw, and a run that dies mid-write leaves the
previous version active."""

import json
import os

import numpy as np
import pytest
from google.api_core import exceptions

from models import param_store, serving
from models.problem_log import format_timestamp
from pipelines import generate_sample, model_registry
from pipelines.cli import JobFailed, UsageError
from pipelines.train_knowledge_model import run
from tests.datastore_emulator import DatastoreEmulator
from tests.jsonl import read_jsonl
from tests.sample_logs import histories as sample_histories
from transforms import datastore_sink


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sample"))
    generate_sample.main(["--output", directory, "--students", "150", "--seed", "5"])
    return directory


def train(sample, output, project, version, *extra):
    return run(["--input", os.path.join(sample, "*.avro"), "--output", str(output),
                "--overwrite", "--params_sink", "datastore", "--datastore_project", project,
                "--model_version", version, *extra])


def test_a_version_in_datastore_equals_the_files_and_becomes_active(datastore, sample,
                                                                    tmp_path):
    summary = train(sample, tmp_path, datastore.project, "v1")
    registry = param_store.Registry(datastore.project)
    header, params, components = registry.load("v1")

    files_params = {r["exercise"]: r for r in read_jsonl(str(tmp_path / "params/*.jsonl"))}
    assert {r["exercise"]: r for r in params} == files_params
    files_components = read_jsonl(str(tmp_path / "components/*.jsonl"))
    assert sorted(components, key=lambda r: json.dumps(r, sort_keys=True)) == sorted(
        files_components, key=lambda r: json.dumps(r, sort_keys=True))
    assert header["num_exercises"] == summary["exercises_fitted"] == len(files_params)
    assert header["run_id"] == summary["datastore"]["run_id"]
    assert registry.active_version() == summary["datastore"]["active_version"] == "v1"
    (written,) = read_jsonl(str(tmp_path / "datastore/*.jsonl"))
    assert written["num_exercises"] == len(files_params)
    assert written["num_components"] == len(files_components)
    assert (written["activated"], written["deploy_decision"]) == (True, "deploy_policy always")
    assert json.loads(header["evaluation"]) == summary["evaluation"] == written["evaluation"]


def test_serving_predicts_what_training_rows_say(datastore, sample, tmp_path):
    """Training/serving skew check: a prediction from the student's history
    equals sigmoid(theta . x) of the training row for that attempt."""
    rows_dir = tmp_path / "rows"
    train(sample, tmp_path / "out", datastore.project, "v1",
          "--training_rows_output", str(rows_dir))
    from_datastore = serving.load_active(datastore.project)
    from_files = serving.load_local(str(tmp_path / "out"))
    assert from_datastore.model_version == from_files.model_version == "v1"

    expected = {}
    for row in read_jsonl(str(rows_dir / "*.jsonl")):
        theta = from_files.params.get(row["exercise"])
        if theta is not None:
            key = (row["user"], row["exercise"], row["time_done"], row["problem_number"])
            expected[key] = 1 / (1 + np.exp(-(theta @ np.asarray(row["x"]))))
    assert len(expected) > 1000

    served = {}
    histories = sample_histories(sample)
    for user, history in histories.items():
        for log, prediction in from_datastore.predict_each(history):
            if prediction is not None:
                served[(user, log.exercise, format_timestamp(log.time_done),
                        log.problem_number)] = prediction
    assert served.keys() == expected.keys()
    np.testing.assert_allclose([served[key] for key in expected], list(expected.values()),
                               rtol=0, atol=1e-12)

    # predict() from a history cut just before one attempt says the same.
    user = sorted(histories)[0]
    log, prediction = from_datastore.predict_each(histories[user])[5]
    before = [other for other in histories[user] if other.time_done < log.time_done]
    assert from_files.predict(before, log.exercise) == pytest.approx(prediction, abs=1e-12)
    assert from_files.predict(before, "no-such-exercise") is None


def test_rerunning_a_version_replaces_it_without_stale_entities(datastore, sample, tmp_path):
    train(sample, tmp_path, datastore.project, "v1")
    train(sample, tmp_path, datastore.project, "v2")
    with pytest.raises(UsageError, match="'v2' is the active version"):
        train(sample, tmp_path, datastore.project, "v2")

    # v1 again, fitting fewer exercises: the version holds only the new ones.
    summary = train(sample, tmp_path, datastore.project, "v1", "--min_samples", "400")
    registry = param_store.Registry(datastore.project)
    header, params, _ = registry.load("v1")
    assert 0 < len(params) == summary["exercises_fitted"] == header["num_exercises"]
    assert {r["exercise"] for r in params} == {
        r["exercise"] for r in read_jsonl(str(tmp_path / "params/*.jsonl"))}
    assert registry.active()["history"] == ["v1", "v2"]


def test_registry_cli_lists_shows_activates_and_rolls_back(datastore, sample, tmp_path,
                                                          capsys):
    for version in ("v1", "v2"):
        train(sample, tmp_path, datastore.project, version)
    cli = ["--project", datastore.project]

    listing = model_registry.run(cli + ["list"]).splitlines()
    assert [(line[0], line[2:].split()[0]) for line in listing[1:]] == [("*", "v2"),
                                                                         (" ", "v1")]
    shown = json.loads(model_registry.run(cli + ["show", "v1"]))
    assert shown["active"] is False and shown["model_version"] == "v1"

    assert model_registry.run(cli + ["rollback"]) == "active version: 'v2' -> 'v1'"
    assert model_registry.run(cli + ["activate", "v2"]) == "active version: 'v1' -> 'v2'"
    assert param_store.Registry(datastore.project).active()["history"] == ["v1"]

    with pytest.raises(SystemExit) as exit_info:
        model_registry.main(cli + ["activate", "v3"])
    assert exit_info.value.code == 1
    assert "'v3' does not exist" in capsys.readouterr().err


def test_emulator_stopped_mid_write_leaves_the_old_version_active(sample, tmp_path,
                                                                  monkeypatch):
    data_dir = tmp_path / "datastore"
    data_dir.mkdir()
    project = "failure-test"
    emulator = DatastoreEmulator(project=project, data_dir=str(data_dir))
    try:
        monkeypatch.setenv("DATASTORE_EMULATOR_HOST", emulator.host)
        train(sample, tmp_path / "out1", project, "v1")

        commits = []
        original = param_store.Registry.put_entities

        def stop_after_first_commit(registry, entities):
            commits.append(len(entities))
            if len(commits) == 2:
                emulator.stop()
            return original(registry, entities)

        monkeypatch.setattr(param_store.Registry, "put_entities", stop_after_first_commit)
        with pytest.raises(JobFailed) as failure:
            train(sample, tmp_path / "out2", project, "v2", "--datastore_batch_size", "50",
                  "--datastore_write_attempts", "2")
        message = str(failure.value)
        assert "model version 'v2' was not activated" in message
        assert "ServiceUnavailable" in message
        assert len(commits) >= 2
    finally:
        emulator.stop()

    monkeypatch.undo()
    restarted = DatastoreEmulator(project=project, data_dir=str(data_dir))
    try:
        monkeypatch.setenv("DATASTORE_EMULATOR_HOST", restarted.host)
        registry = param_store.Registry(project)
        assert registry.active_version() == "v1"
        assert [v["model_version"] for v in registry.versions()] == ["v1"]
        with pytest.raises(param_store.ModelNotFound):
            registry.load("v2")
        assert len(registry.load("v1")[1]) > 0
    finally:
        restarted.stop()


def test_if_better_refuses_a_worse_model_and_says_why(datastore, sample, tmp_path):
    train(sample, tmp_path / "good", datastore.project, "good")
    # A huge L2 penalty flattens every exercise towards its base rate.
    worse = train(sample, tmp_path / "worse", datastore.project, "worse", "--l2", "100000",
                  "--deploy_policy", "if_better")
    evaluation = worse["evaluation"]
    assert evaluation["baseline_version"] == "good"
    assert evaluation["new_log_likelihood_on_compared"] < evaluation["baseline_log_likelihood"]
    assert worse["datastore"]["activated"] is False
    assert worse["datastore"]["deploy_decision"].startswith("worse: holdout log likelihood")
    registry = param_store.Registry(datastore.project)
    assert registry.active_version() == "good"
    assert registry.version("worse")["deploy_decision"] == worse["datastore"]["deploy_decision"]

    # The baseline figures are the good model's own holdout figures: same rows.
    good = {r["exercise"]: r for r in read_jsonl(str(tmp_path / "good/params/*.jsonl"))}
    for record in read_jsonl(str(tmp_path / "worse/params/*.jsonl")):
        assert record["holdout_baseline_log_likelihood"] == pytest.approx(
            good[record["exercise"]]["holdout_log_likelihood"], abs=1e-12)

    better = train(sample, tmp_path / "again", datastore.project, "again",
                   "--deploy_policy", "if_better")
    assert better["datastore"]["activated"] is True
    assert registry.active_version() == "again"


class _FlakyRegistry:
    """put_entities raises the given errors in turn, then succeeds."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def put_entities(self, entities):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def _commit(registry, attempts):
    """One commit of three entities through the sink's DoFn, backoff ~1 ms."""
    commit = datastore_sink._CommitBatches(
        "p", "", datastore_sink.RetrySettings(attempts=attempts, initial_backoff_seconds=0.001,
                                              max_backoff_seconds=0.002))
    commit.registry = registry
    entities = [(("Kind", str(i)), {"x": i}) for i in range(3)]
    return list(commit.process(entities))


def test_transient_commit_errors_are_retried_up_to_the_attempts():
    registry = _FlakyRegistry(exceptions.ServiceUnavailable("down"), ConnectionError("reset"))
    assert _commit(registry, attempts=3) == [3]
    assert registry.calls == 3

    registry = _FlakyRegistry(*[exceptions.ServiceUnavailable("down")] * 3)
    with pytest.raises(datastore_sink.DatastoreWriteError,
                       match="failed after 3 attempt\\(s\\): ServiceUnavailable") as failure:
        _commit(registry, attempts=3)
    assert registry.calls == 3
    assert isinstance(failure.value.__cause__, exceptions.ServiceUnavailable)


def test_other_commit_errors_are_not_retried():
    registry = _FlakyRegistry(exceptions.ServiceUnavailable("down"),
                              exceptions.PermissionDenied("no"))
    with pytest.raises(datastore_sink.DatastoreWriteError,
                       match="failed after 2 attempt\\(s\\): PermissionDenied"):
        _commit(registry, attempts=8)
    assert registry.calls == 2
    registry = _FlakyRegistry(exceptions.ServiceUnavailable("down"))
    with pytest.raises(datastore_sink.DatastoreWriteError, match="after 1 attempt"):
        _commit(registry, attempts=1)
    assert registry.calls == 1
