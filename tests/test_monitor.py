"""pipelines.monitor end to end: the daily aggregates equal an in-memory
computation from serving predictions, a day monitored twice is not doubled, a
deliberately worse model shows up as a regression while a fixed one raises
(almost) no alarm for a month, and the metrics fit the BigQuery table schema."""

import collections
import datetime
import json
import os
import shutil

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from models import regressions, serving
from models.monitoring import ALL_EXERCISES, NUM_SCORE_BINS, accumulate, metrics_record
from pipelines import generate_sample, monitor
from pipelines.cli import UsageError
from pipelines.train_knowledge_model import run as train
from tests.jsonl import read_jsonl
from tests.sample_logs import histories
from transforms.monitoring import METRICS_BIGQUERY_SCHEMA, WriteDailyMetricsToBigQuery

START, END = datetime.date(2026, 2, 1), datetime.date(2026, 2, 20)
WHOLE_HISTORY = ["--history_days", "60"]  # the sample starts on 2026-01-01


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sample"))
    generate_sample.main(["--output", directory, "--students", "200", "--seed", "7"])
    return directory


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("model"))
    train(["--input", os.path.join(sample, "*.avro"), "--output", output,
           "--model_version", "good"])
    return output


@pytest.fixture(scope="module")
def monitored(sample, trained, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("monitor"))
    summary = monitor.run(["--input", os.path.join(sample, "*.avro"), "--params", trained,
                           "--output", output, "--start_date", START.isoformat(),
                           "--end_date", END.isoformat(), *WHOLE_HISTORY])
    return output, summary


def _day(micros):
    return datetime.datetime.fromtimestamp(micros / 1e6, datetime.timezone.utc).date()


def in_memory_predictions(sample, model):
    """(day, exercise, p, correct, user) of every attempt in the window, from serving."""
    predictions = []
    for history in histories(sample).values():
        for log, p in model.predict_each(history):
            if p is not None and START <= _day(log.time_done) <= END:
                predictions.append((_day(log.time_done).isoformat(), log.exercise, p,
                                    log.correct, log.user))
    return predictions


def test_daily_aggregates_equal_an_in_memory_computation(sample, trained, monitored):
    output, summary = monitored
    predictions = in_memory_predictions(sample, serving.load_local(trained))
    groups = collections.defaultdict(list)
    for day, exercise, p, correct, user in predictions:
        groups[(day, exercise)].append((p, correct, user))
        groups[(day, ALL_EXERCISES)].append((p, correct, user))

    records = {(r["date"], r["exercise"]): r
               for r in read_jsonl(os.path.join(output, "metrics", "daily", "*.jsonl"))}
    assert records.keys() == groups.keys()
    assert summary["rows_scored"] == len(predictions)
    for key, rows in groups.items():
        p = np.array([row[0] for row in rows])
        y = np.array([row[1] for row in rows])
        record = records[key]
        assert record["model_version"] == "good"
        assert record["samples"] == len(rows)
        assert record["students"] == len({row[2] for row in rows})
        ll = np.where(y, np.log(p), np.log1p(-p))
        assert record["mean_log_likelihood"] == pytest.approx(ll.mean(), abs=1e-9)
        assert record["log_likelihood_std"] == pytest.approx(ll.std(), abs=1e-6)
        assert record["observed_correct"] == pytest.approx(y.mean(), abs=1e-12)
        assert record["mean_predicted_correct"] == pytest.approx(p.mean(), abs=1e-12)
        if 0 < y.sum() < len(y):
            # The histogram AUC is the exact AUC of scores rounded down to a bin.
            binned = np.floor(p * NUM_SCORE_BINS)
            assert record["auc"] == pytest.approx(roc_auc_score(y, binned), abs=1e-12)
        else:
            assert record["auc"] is None
        for calibration in record["calibration"]:
            inside = (p >= calibration["low"]) & (p < calibration["high"])
            assert calibration["samples"] == inside.sum()
            if inside.any():
                assert calibration["observed_correct"] == pytest.approx(y[inside].mean())
                assert calibration["mean_predicted"] == pytest.approx(p[inside].mean())
    with open(os.path.join(output, "metrics", "daily", f"{START}.csv"), encoding="utf-8") as f:
        assert len(f.read().splitlines()) == 1 + sum(1 for day, _ in records if day == str(START))


def test_accumulators_add_up_in_any_split():
    rng = np.random.default_rng(0)
    days = rng.integers(0, 3, 500)
    exercises = rng.choice(np.array(["a", "b", "c"], dtype=object), 500)
    logits, correct = rng.normal(size=500), rng.random(500) < 0.6
    whole = accumulate(days, exercises, logits, correct)
    parts = [accumulate(days[s], exercises[s], logits[s], correct[s])
             for s in (slice(0, 123), slice(123, 500))]
    for key, accumulator in whole.items():
        merged = sum(part.get(key, 0) for part in parts)
        np.testing.assert_allclose(merged, accumulator, rtol=0, atol=1e-9)
        assert metrics_record(key[0], key[1], "v", merged)["samples"] == metrics_record(
            key[0], key[1], "v", accumulator)["samples"]
    # students add up when each part holds whole students (as the replay's batches do)
    users = rng.integers(0, 40, 500)
    whole = accumulate(days, exercises, logits, correct, users)
    parts = [accumulate(days[s], exercises[s], logits[s], correct[s], users[s])
             for s in (users % 2 == 0, users % 2 == 1)]
    for key in whole:
        merged = sum(part.get(key, 0) for part in parts)
        in_group = (days == key[0]) & ((exercises == key[1]) | (key[1] == ALL_EXERCISES))
        assert metrics_record(key[0], key[1], "v", merged)["students"] == len(
            set(users[in_group]))


def test_monitoring_a_day_twice_does_not_double_it(sample, trained, monitored, tmp_path):
    output, _ = monitored
    before = read_jsonl(os.path.join(output, "metrics", "daily", "*.jsonl"))
    again = monitor.run(["--input", os.path.join(sample, "*.avro"), "--params", trained,
                         "--output", output, "--start_date", END.isoformat(),
                         "--end_date", END.isoformat(), *WHOLE_HISTORY])
    assert again["days_in_output"]["count"] == (END - START).days + 1
    assert read_jsonl(os.path.join(output, "metrics", "daily", "*.jsonl")) == before


def deliberately_worse(trained, directory, only=None):
    """A copy of the trained model with every slope negated (the bias kept):
    it now reads a student's history backwards. `only`: just that exercise."""
    shutil.copytree(trained, directory)
    params = read_jsonl(os.path.join(directory, "params", "params.jsonl"))
    with open(os.path.join(directory, "params", "params.jsonl"), "w", encoding="utf-8") as f:
        for record in params:
            if only in (None, record["exercise"]):
                record["theta"] = record["theta"][:1] + [-v for v in record["theta"][1:]]
            f.write(json.dumps(record) + "\n")
    summary_path = os.path.join(directory, "run_summary.json")
    with open(summary_path, encoding="utf-8") as handle:
        summary = json.load(handle)
    summary["model"]["model_version"] = "worse"
    with open(summary_path, "w", encoding="utf-8") as handle:
        json.dump(summary, handle)
    return directory


def test_a_worse_model_shows_up_as_a_regression(sample, trained, tmp_path):
    worse = deliberately_worse(trained, str(tmp_path / "worse"))
    output = str(tmp_path / "monitor")
    common = ["--input", os.path.join(sample, "*.avro"), "--output", output,
              "--regression_min_samples", "10"]
    good = monitor.run(common + ["--params", trained, "--start_date", "2026-02-03",
                                 "--end_date", "2026-02-16"])
    assert not good["overall_change"]["got_worse"]
    last = monitor.run(common + ["--params", worse, "--start_date", "2026-02-17",
                                 "--end_date", "2026-02-17"])
    change = last["overall_change"]
    assert change["got_worse"] and change["change"] < -2 * change["standard_error"]
    assert change["model_version"] == "worse" and change["trailing_model_versions"] == ["good"]
    on_the_last_day = [r for r in last["regressions"] if r["date"] == "2026-02-17"]
    assert on_the_last_day and all(r["model_version"] == "worse" for r in on_the_last_day)
    with open(os.path.join(output, "dashboard.html"), encoding="utf-8") as handle:
        page = handle.read()
    assert "The model as a whole got worse" in page
    assert on_the_last_day[0]["exercise"] in page


def test_datastore_params_give_the_same_metrics(datastore, sample, trained, monitored,
                                                tmp_path):
    train(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path / "model"),
           "--model_version", "good", "--params_sink", "datastore",
           "--datastore_project", datastore.project])
    output = str(tmp_path / "monitor")
    monitor.run(["--input", os.path.join(sample, "*.avro"), "--params", "datastore",
                 "--datastore_project", datastore.project, "--output", output,
                 "--start_date", START.isoformat(), "--end_date", END.isoformat(),
                 *WHOLE_HISTORY])
    assert read_jsonl(os.path.join(output, "metrics", "daily", "*.jsonl")) == read_jsonl(
        os.path.join(monitored[0], "metrics", "daily", "*.jsonl"))


def test_bad_params_are_a_usage_error(sample, tmp_path):
    with pytest.raises(UsageError, match="--params .* is not a training output directory"):
        monitor.run(["--input", os.path.join(sample, "*.avro"), "--params", str(tmp_path),
                     "--output", str(tmp_path / "out")])


def test_metrics_fit_the_bigquery_schema_and_replace_their_partition(bigquery, monitored):
    records = read_jsonl(os.path.join(monitored[0], "metrics", "daily", f"{START}.jsonl"))
    bigquery.create_table("monitoring", "metrics", METRICS_BIGQUERY_SCHEMA["fields"])
    bigquery.insert_rows("monitoring", "metrics", records)  # raises on any row error
    rows = bigquery.query("SELECT exercise, samples FROM monitoring.metrics")
    assert sorted((r["exercise"], int(r["samples"])) for r in rows) == sorted(
        (r["exercise"], r["samples"]) for r in records)

    write = WriteDailyMetricsToBigQuery("p:d.t").write_transform()
    assert write.table_reference(records[0]) == f"p:d.t${START:%Y%m%d}"
    assert write.write_disposition == "WRITE_TRUNCATE"
    assert write.method == write.Method.FILE_LOADS


def test_a_fixed_model_raises_almost_no_alarm_and_a_degraded_exercise_still_does(tmp_path):
    """The nightly regression test on simulated data with one fixed model,
    38 nights in a row (each night sees the days up to it), then one night
    where the busiest exercise's parameters are broken."""
    sample = str(tmp_path / "sample")
    generate_sample.main(["--output", sample, "--students", "2000", "--seed", "1"])
    model, output = str(tmp_path / "model"), str(tmp_path / "monitor")
    train(["--input", os.path.join(sample, "*.avro"), "--output", model,
           "--model_version", "fixed"])
    common = ["--input", os.path.join(sample, "*.avro"), "--output", output,
              "--history_days", "40"]
    monitor.run(common + ["--params", model, "--start_date", "2026-02-01",
                          "--end_date", "2026-03-10"])
    records = regressions.Records.build(
        read_jsonl(os.path.join(output, "metrics", "daily", "*.jsonl")))
    nights = [day.date for day in records.overall][7:]
    assert len(nights) == 31
    flagged, plain, model_wide = [], 0, 0
    for night in nights:
        tested = regressions.day_tests(records, as_of=night)
        flagged += [(str(night), r["exercise"]) for r in tested["tests"] if r["significant"]]
        plain += sum(1 for r in tested["tests"] if r["change"] < -2 * r["standard_error"])
        model_wide += regressions.overall_change(records, as_of=night)["got_worse"]
    assert plain >= 31          # the old 2-sigma rule: more than a false alarm a night
    assert len(flagged) <= 1, flagged
    assert model_wide <= 1

    busiest = max(records.exercises, key=lambda name: sum(
        day.samples for day in records.exercises[name][-7:]))
    broken = deliberately_worse(model, str(tmp_path / "broken"), only=busiest)
    summary = monitor.run(common + ["--params", broken, "--start_date", "2026-03-11",
                                    "--end_date", "2026-03-11"])
    assert [r["exercise"] for r in summary["regressions"]] == [busiest]
    assert summary["regression_test"]["noise_factor_calibrated"]
