"""End-to-end tests of pipelines.train_knowledge_model on the DirectRunner,
checked against an in-memory reference built from the one-attempt-at-a-time
specification code (models.knowledge_state.reference_replay), not from the
batched code the pipeline runs."""

import csv
import datetime
import glob
import json
import os
import subprocess
import sys
import types

import fastavro
import numpy as np
import pytest

from models.exercise_model import holdout_mask
from models.knowledge_state import ComponentCache, reference_replay, sessionize, user_hash
from models.logistic import fit_logistic, objective
from models.problem_log import ProblemLogParser, format_timestamp
from models import serving
from pipelines import generate_sample
from pipelines.train_knowledge_model import run
from tests.jsonl import read_jsonl

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 0
D = 100
L2 = 30.0
COMMON = ["--model_version", "test-v1", "--max_samples_per_exercise", "1000000"]


def params_by_exercise(output):
    return {record["exercise"]: record
            for record in read_jsonl(os.path.join(output, "params", "*.jsonl"))}


def without_time(params):
    return {exercise: {k: v for k, v in record.items() if k != "trained_at"}
            for exercise, record in params.items()}


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sample"))
    generate_sample.main(["--output", directory, "--students", "300", "--seed", "3"])
    return directory


@pytest.fixture(scope="module")
def raw_records(sample):
    records = []
    for path in sorted(glob.glob(os.path.join(sample, "*.avro"))):
        with open(path, "rb") as handle:
            records.extend(fastavro.reader(handle))
    return records


@pytest.fixture(scope="module")
def trained(sample, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("out"))
    rows = str(tmp_path_factory.mktemp("rows"))
    summary = run(["--input", os.path.join(sample, "*.avro"), "--output", output,
                   "--training_rows_output", rows, *COMMON])
    return types.SimpleNamespace(summary=summary, output=output, rows=rows)


@pytest.fixture(scope="module")
def logs_by_user(raw_records):
    """The sample's records parsed, grouped by user in file order."""
    parse = ProblemLogParser()
    by_user = {}
    for raw in raw_records:
        log = parse(raw)
        by_user.setdefault(log.user, []).append(log)
    return by_user


@pytest.fixture(scope="module")
def reference(logs_by_user):
    """Rows by the specification-shaped replay, grouped by exercise."""
    by_user = logs_by_user
    components = ComponentCache(SEED, D)
    rows = {}
    for logs in by_user.values():
        ordered, _ = sessionize(logs)
        for log, x in reference_replay(ordered, components):
            rows.setdefault(log.exercise, []).append((log, x))
    return types.SimpleNamespace(rows=rows, students=len(by_user), components=components)


def reference_fit(exercise_rows):
    """Holdout split and fit for one exercise, from reference rows."""
    users = np.array([user_hash(log.user) for log, _ in exercise_rows], dtype=np.uint64)
    holdout = holdout_mask(types.SimpleNamespace(user_hash=users), SEED, 0.1)
    x = np.array([x for _, x in exercise_rows])
    y = np.array([log.correct for log, _ in exercise_rows], dtype=np.float64)
    return x, y, holdout


def test_training_rows_equal_reference(trained, reference):
    emitted = read_jsonl(os.path.join(trained.rows, "*.jsonl"))
    expected = {(log.user, log.exercise, format_timestamp(log.time_done)): (log, x)
                for rows in reference.rows.values() for log, x in rows}
    assert len(emitted) == len(expected) == trained.summary["rows_emitted"]
    for row in emitted:
        log, x = expected[(row["user"], row["exercise"], row["time_done"])]
        assert row["correct"] == log.correct
        assert row["problem_number"] == log.problem_number
        np.testing.assert_allclose(row["x"], x, rtol=0, atol=1e-12)


def test_parameters_equal_reference(trained, reference):
    params = params_by_exercise(trained.output)
    skipped = read_jsonl(os.path.join(trained.output, "skipped_exercises", "*.jsonl"))
    assert set(params) | {s["exercise"] for s in skipped} == set(reference.rows)
    assert len(params) >= 40
    for exercise, record in params.items():
        x, y, holdout = reference_fit(reference.rows[exercise])
        assert record["num_train"] == int((~holdout).sum())
        assert record["num_holdout"] == int(holdout.sum())
        assert record["num_rows_available"] == len(y)
        theta = fit_logistic(x[~holdout], y[~holdout], L2).theta
        # Same optimum: the objective agrees tightly, and so do the predicted
        # logits (theta itself may drift along nearly flat directions).
        ours = objective(np.array(record["theta"]), x[~holdout], y[~holdout], L2)[0]
        assert ours == pytest.approx(objective(theta, x[~holdout], y[~holdout], L2)[0],
                                     rel=1e-9)
        np.testing.assert_allclose(x @ record["theta"], x @ theta, atol=1e-3)
        assert len(record["theta"]) == 7 + D
        assert record["model_version"] == "test-v1"
    for record in skipped:
        assert record["reason"] in ("too_few_samples", "single_class"), record
        if record["reason"] == "too_few_samples":
            assert record["num_train"] < 30
        else:
            x, y, holdout = reference_fit(reference.rows[record["exercise"]])
            assert len(set(y[~holdout])) == 1


def test_theta_matches_independent_solver(trained, reference):
    from sklearn.linear_model import LogisticRegression  # test-only dependency
    params = params_by_exercise(trained.output)
    largest = sorted(params, key=lambda e: -params[e]["num_train"])[:3]
    for exercise in largest:
        x, y, holdout = reference_fit(reference.rows[exercise])
        x, y = x[~holdout], y[~holdout]
        model = LogisticRegression(C=1.0 / L2, tol=1e-10, max_iter=100000)
        model.fit(x[:, 1:], y)
        sklearn_theta = np.r_[model.intercept_, model.coef_[0]]
        ours = objective(np.array(params[exercise]["theta"]), x, y, L2)[0]
        theirs = objective(sklearn_theta, x, y, L2)[0]
        assert ours <= theirs * (1 + 1e-8)
        assert ours == pytest.approx(theirs, rel=1e-6)


def test_summary_accounts_for_every_record(trained, raw_records, reference):
    summary = trained.summary
    assert summary["records_read"] == len(raw_records)
    assert summary["records_valid"] == len(raw_records)
    assert summary["dead_lettered_total"] == 0
    assert summary["students"] == reference.students
    assert summary["rows_emitted"] == sum(len(rows) for rows in reference.rows.values())
    assert summary["exercises_fitted"] + summary["exercises_skipped_total"] == len(reference.rows)
    on_disk = json.load(open(os.path.join(trained.output, "run_summary.json")))
    assert on_disk["records_read"] == summary["records_read"]
    assert on_disk["model"]["feature_names"][:3] == ["bias", "ewma_3", "ewma_10"]


def test_components_file_holds_the_vectors_used(trained, reference):
    saved = read_jsonl(os.path.join(trained.output, "components", "*.jsonl"))
    keys = [(c["exercise"], c["problem_type"], c["correct"]) for c in saved]
    assert keys == sorted(keys)
    assert set(keys) == reference.components.used
    for component, key in zip(saved, keys):
        np.testing.assert_array_equal(component["vector"], reference.components(key))


def test_holdout_beats_base_rate(trained):
    params = [p for p in params_by_exercise(trained.output).values() if p["num_holdout"] >= 20]
    assert len(params) >= 10
    weight = np.array([p["num_holdout"] for p in params])
    model = np.array([p["holdout_log_likelihood"] for p in params])
    base = np.array([p["holdout_base_rate_log_likelihood"] for p in params])
    assert np.average(model, weights=weight) > np.average(base, weights=weight) + 0.02
    assert np.mean(model > base) > 0.6
    assert all(p["holdout_auc"] is None or 0 <= p["holdout_auc"] <= 1 for p in params)


def test_sampling_caps_rows_per_exercise(sample, trained, tmp_path):
    summary = run(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path),
                   "--model_version", "test-v1", "--max_samples_per_exercise", "300"])
    capped = params_by_exercise(str(tmp_path))
    full = params_by_exercise(trained.output)
    assert summary["rows_emitted"] == trained.summary["rows_emitted"]
    for exercise, record in capped.items():
        assert record["num_train"] + record["num_holdout"] == min(
            300, full[exercise]["num_rows_available"])
        assert record["num_rows_available"] == full[exercise]["num_rows_available"]


def test_identical_parameters_with_two_workers(sample, trained, tmp_path):
    run(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path), *COMMON,
         "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
    assert without_time(params_by_exercise(str(tmp_path))) == without_time(
        params_by_exercise(trained.output))


@pytest.mark.parametrize("file_format", ["json", "csv", "parquet"])
def test_every_format_gives_the_same_parameters(file_format, trained, tmp_path):
    data = tmp_path / "data"
    generate_sample.main(["--output", str(data), "--students", "300", "--seed", "3",
                          "--format", file_format, "--shards", "2"])
    output = tmp_path / "out"
    # The logs, not the simulator's true_probabilities.csv beside them (a CSV
    # without ProblemLog columns, which the job refuses before it starts).
    run(["--input", str(data / f"problem_logs-*.{file_format}"), "--output", str(output),
         *COMMON])
    assert without_time(params_by_exercise(str(output))) == without_time(
        params_by_exercise(trained.output))


@pytest.mark.parametrize("history_days", [0, 10])
def test_date_window_trains_on_exactly_those_days(history_days, sample, raw_records, tmp_path):
    """--start_date/--end_date (inclusive) with --history_days equals replaying
    the logs from history_days before the start and keeping the rows of the
    window; logs outside what is read are counted, not dead-lettered."""
    start, end = datetime.date(2026, 2, 1), datetime.date(2026, 2, 28)
    read_from = start - datetime.timedelta(days=history_days)
    parse = ProblemLogParser()
    logs = [parse(raw) for raw in raw_records]

    def day(log):
        return datetime.datetime.fromtimestamp(log.time_done / 1e6, datetime.timezone.utc).date()
    read = [log for log in logs if read_from <= day(log) <= end]
    assert 0 < len(read) < len(logs)
    by_user = {}
    for log in read:
        by_user.setdefault(log.user, []).append(log)
    components = ComponentCache(SEED, D)
    replayed = [(log, x) for user_logs in by_user.values()
                for log, x in reference_replay(sessionize(user_logs)[0], components)]
    expected = {(log.user, log.exercise, format_timestamp(log.time_done)): x
                for log, x in replayed if day(log) >= start}

    rows_dir = tmp_path / "rows"
    summary = run(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path / "out"),
                   "--start_date", start.isoformat(), "--end_date", end.isoformat(),
                   "--history_days", str(history_days),
                   "--training_rows_output", str(rows_dir), *COMMON])
    rows = read_jsonl(str(rows_dir / "*.jsonl"))
    assert summary["records_outside_window"] == len(logs) - len(read)
    assert summary["rows_before_window"] == len(replayed) - len(expected)
    assert (summary["rows_before_window"] > 0) == (history_days > 0)
    assert summary["rows_emitted"] == len(rows) == len(expected)
    for row in rows:
        np.testing.assert_allclose(
            row["x"], expected[(row["user"], row["exercise"], row["time_done"])], atol=1e-12)
    assert summary["records_read"] == (summary["records_replayed"] + summary["duplicates_dropped"]
                                       + summary["dead_lettered_total"]
                                       + summary["records_outside_window"])


def test_column_mapping_reads_other_schemas(raw_records, trained, tmp_path):
    renames = {"user": "student_id", "exercise": "skill", "time_done": "timestamp"}
    path = tmp_path / "logs.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        fields = list(raw_records[0])
        writer.writerow([renames.get(field, field) for field in fields])
        for record in raw_records:
            writer.writerow([record[f].isoformat() if f == "time_done" else record[f]
                             for f in fields])
    output = tmp_path / "out"
    run(["--input", str(path), "--output", str(output), *COMMON, "--column_mapping",
         "user=student_id,exercise=skill,time_done=timestamp"])
    assert without_time(params_by_exercise(str(output))) == without_time(
        params_by_exercise(trained.output))


def test_bad_rows_are_dead_lettered_and_counted(raw_records, tmp_path):
    good = [dict(r, time_done=r["time_done"].isoformat()) for r in raw_records[:3000]]
    template = dict(good[0])
    bad = {
        "missing_user": dict(template, user=None),
        "missing_exercise": dict(template, exercise=""),
        "missing_time_done": {k: v for k, v in template.items() if k != "time_done"},
        "missing_correct": dict(template, correct=None),
        "bad_timestamp": dict(template, time_done="yesterday"),
        "bad_boolean": dict(template, correct="maybe"),
        "bad_problem_number": dict(template, problem_number=0),
        "not_a_record": [1, 2, 3],
    }
    # A bad optional value costs only the value: the attempt is trained on.
    nulled = dict(template, count_hints="lots", time_done=format_timestamp(1_767_000_000_000_000))
    attempts = {}
    for record in good:
        attempts[record["user"]] = attempts.get(record["user"], 0) + 1
    limit = max(attempts.values())
    heavy = [dict(template, user="heavy", problem_number=None,
                  time_done=format_timestamp(1_767_225_600_000_000 + i * 1_000_000))
             for i in range(limit + 1)]
    duplicates = good[:5]
    lines = [json.dumps(r) for r in good + [nulled] + list(bad.values()) + heavy + duplicates]
    lines.insert(10, "{not json")
    lines.insert(20, "")  # blank lines are not records
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n")

    output = str(tmp_path / "out")
    summary = run(["--input", str(path), "--output", output, *COMMON,
                   "--max_attempts_per_student", str(limit)])

    dead = read_jsonl(os.path.join(output, "dead_letter", "*.jsonl"))
    reasons = {}
    for record in dead:
        reasons[record["reason"]] = reasons.get(record["reason"], 0) + 1
        assert record["detail"] and "record" in record and record["stage"]
    expected = {reason: 1 for reason in bad}
    expected["bad_json"] = 1
    expected["too_many_attempts"] = len(heavy)
    assert reasons == expected
    assert summary["dead_lettered"] == expected
    records = len(good) + 1 + len(bad) + 1 + len(heavy) + len(duplicates)
    assert summary["records_read"] == summary["physical_records"] == records
    assert summary["records_unreadable"] == 0
    assert summary["optional_fields_nulled"] == {"count_hints": 1}
    assert summary["duplicates_dropped"] == len(duplicates)
    assert summary["students_skipped"] == 1
    # Every good row is replayed once; nothing else is.
    assert summary["rows_emitted"] == len(good) + 1 == summary["records_replayed"]
    assert (summary["records_replayed"] + summary["duplicates_dropped"]
            + summary["dead_lettered_total"] == summary["records_read"])
    bad_json = next(r for r in dead if r["reason"] == "bad_json")
    assert bad_json["record"] == "{not json"


def test_unreadable_file_is_dead_lettered_not_fatal(sample, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    original = glob.glob(os.path.join(sample, "*.avro"))[0]
    content = open(original, "rb").read()
    (data / "good.avro").write_bytes(content)
    (data / "truncated.avro").write_bytes(content[: len(content) // 2])
    summary = run(["--input", str(data / "*.avro"), "--output", str(tmp_path / "out"),
                   *COMMON])
    # Not a record of its own: the stretch is counted apart from dead letters.
    assert summary["dead_lettered"] == {}
    assert summary["unreadable_stretches"] == 1
    assert summary["exercises_fitted"] > 0
    with open(original, "rb") as handle:
        blocks = [(block.offset, block.num_records) for block in fastavro.block_reader(handle)]
    records = sum(count for _, count in blocks)
    cut = len(content) // 2
    ends = [offset for offset, _ in blocks[1:]] + [len(content)]
    whole = sum(count for (_, count), end in zip(blocks, ends) if end <= cut)
    (cut_block,) = [count for (offset, count), end in zip(blocks, ends) if offset < cut < end]
    assert summary["records_read"] == records + whole
    assert summary["records_unreadable"] == cut_block  # its header says how many
    assert summary["physical_records"] == 2 * records - (records - whole - cut_block)
    (dead,) = read_jsonl(str(tmp_path / "out" / "dead_letter" / "*.jsonl"))
    assert dead["file"].endswith("truncated.avro") and dead["reason"] == "unreadable_file"
    assert dead["record"] == {"records_lost": summary["records_unreadable"] or None,
                              "bytes_lost": summary["bytes_unreadable"] or None}


def test_l2_candidates_keep_the_best_on_the_holdout(sample, trained, capsys, tmp_path):
    """Every candidate is fitted in one pass; the one with the best holdout log
    likelihood over all exercises gives each exercise exactly the parameters a
    run with that --l2 gives."""
    candidates = [3.0, L2, 300.0]
    summary = run(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path),
                   *COMMON, "--l2_candidates", ",".join(f"{l2:g}" for l2 in candidates)])
    selection = summary["l2_selection"]
    scores = selection["holdout_log_likelihood"]
    assert selection["candidates"] == candidates
    assert selection["chosen"] == candidates[int(np.argmax(scores))]
    assert selection["holdout_rows"] == trained.summary["evaluation"]["holdout_rows"]
    assert scores[1] == pytest.approx(trained.summary["evaluation"]["holdout_log_likelihood"])
    assert summary["evaluation"]["holdout_log_likelihood"] == pytest.approx(max(scores))
    assert f"--l2 {selection['chosen']:g} chosen on the holdout" in capsys.readouterr().out

    chosen = params_by_exercise(str(tmp_path))
    if selection["chosen"] == L2:
        single = trained.output
    else:
        single = str(tmp_path / "single")
        run(["--input", os.path.join(sample, "*.avro"), "--output", single, *COMMON,
             "--l2", str(selection["chosen"])])
    added = {"l2", "l2_candidates", "holdout_log_likelihood_by_l2"}
    assert without_time({exercise: {k: v for k, v in record.items() if k not in added}
                         for exercise, record in chosen.items()}) == without_time(
        params_by_exercise(single))
    for record in chosen.values():
        assert record["l2"] == selection["chosen"] and record["l2_candidates"] == candidates
        assert record["holdout_log_likelihood_by_l2"][candidates.index(selection["chosen"])] \
            == record["holdout_log_likelihood"]


def test_shrink_to_global_with_l2_candidates(sample, trained, capsys, tmp_path):
    """The global fit is written and summarised, every exercise says it was
    shrunk, the parameters change, and --l2_candidates still chooses the
    exercises' penalty (the global fit keeps --l2). The maths is checked
    against independent solvers in tests/test_transforms_fit.py."""
    summary = run(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path),
                   *COMMON, "--shrink_to_global", "--l2_candidates", "10,30,100"])
    (written,) = read_jsonl(str(tmp_path / "global_fit" / "global_fit.jsonl"))
    assert summary["global_fit"] == written
    assert summary["model"]["shrink_to_global"] is True
    assert "shrink_to_global" not in trained.summary["model"]
    assert written["l2"] == L2 and len(written["theta"]) == 1 + 6 + D
    assert 0 < written["num_rows"] <= 60 * 1000 and written["converged"]
    assert summary["l2_selection"]["chosen"] in (10.0, 30.0, 100.0)
    assert "Exercises shrunk toward a global fit over" in capsys.readouterr().out
    shrunk, plain = params_by_exercise(str(tmp_path)), params_by_exercise(trained.output)
    assert set(shrunk) == set(plain)   # --min_samples still decides what is fitted
    assert all(record["shrunk_to_global"] for record in shrunk.values())
    assert all(np.max(np.abs(np.subtract(shrunk[e]["theta"], plain[e]["theta"]))) > 1e-3
               for e in shrunk)


def test_student_features_end_to_end(sample, logs_by_user, tmp_path):
    """--student_features: the training rows equal the one-attempt-at-a-time
    reference with the student counts, the summary names the columns, and the
    model serving loads from the output predicts each attempt exactly as
    sigmoid(theta . x) of its training row."""
    output, rows_dir = str(tmp_path / "out"), str(tmp_path / "rows")
    summary = run(["--input", os.path.join(sample, "*.avro"), "--output", output,
                   "--training_rows_output", rows_dir, *COMMON, "--student_features"])
    assert summary["model"]["student_features"] is True
    names = summary["model"]["feature_names"]
    assert names[7:10] == ["log_student_done", "log_student_correct",
                           "student_percent_correct"] and len(names) == 10 + D
    by_user = logs_by_user
    components = ComponentCache(SEED, D)
    expected = {}
    for logs in by_user.values():
        for entry, x in reference_replay(sessionize(logs)[0], components,
                                         student_features=True):
            expected[(entry.user, entry.exercise, format_timestamp(entry.time_done))] = x
    emitted = read_jsonl(os.path.join(rows_dir, "*.jsonl"))
    assert len(emitted) == len(expected)
    for row in emitted:
        np.testing.assert_allclose(row["x"], expected[(row["user"], row["exercise"],
                                                       row["time_done"])], rtol=0, atol=1e-12)
    model = serving.load_local(output)
    assert model.student_features
    params = params_by_exercise(output)
    assert all(len(record["theta"]) == 10 + D for record in params.values())
    x_by_key = {(row["user"], row["exercise"], row["time_done"]): row["x"] for row in emitted}
    for user in sorted(by_user)[:20]:
        for entry, p in model.predict_each(by_user[user]):
            if entry.exercise in params:
                x = x_by_key[(entry.user, entry.exercise, format_timestamp(entry.time_done))]
                logit = np.dot(params[entry.exercise]["theta"], x)
                assert p == pytest.approx(1 / (1 + np.exp(-logit)), abs=1e-12)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "pipelines.train_knowledge_model", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_help_documents_every_option():
    result = cli("--help")
    assert result.returncode == 0
    for option in ("--input", "--output", "--input_format", "--column_mapping",
                   "--max_attempts_per_student", "--problem_number_range",
                   "--num_random_features", "--seed", "--max_samples_per_exercise",
                   "--min_samples", "--holdout_fraction", "--l2", "--l2_candidates",
                   "--model_version", "--training_rows_output", "--overwrite"):
        assert option in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--input", "/nonexistent/*.avro"], "matches no files"),
    (["--input", "{tmp}/logs.txt"], "--input_format"),
    (["--input", "{sample}"], "matches the directory"),
    (["--input", "{sample}/*.avro", "--problem_number_range", "6,1"], "LO < HI"),
    (["--input", "{sample}/*.avro", "--holdout_fraction", "1.5"], "--holdout_fraction"),
    (["--input", "{sample}/*.avro", "--column_mapping", "student=id"], "unknown field"),
    (["--input", "{sample}/*.avro", "--l2_candidates", "10,x"], "--l2_candidates"),
    (["--input", "{sample}/*.avro", "--l2_candidates", "10,-1"], "values >= 0"),
    (["--input", "{sample}/*.avro", "--l2_candidates", "10,30", "--holdout_fraction", "0"],
     "--holdout_fraction > 0"),
])
def test_bad_options_exit_with_a_clear_message(args, message, sample, tmp_path):
    (tmp_path / "logs.txt").write_text("user,exercise\n")
    args = [arg.format(sample=sample, tmp=tmp_path) for arg in args]
    result = cli(*args, "--output", str(tmp_path / "out"))
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_run_that_fits_nothing_fails(sample, tmp_path):
    # Avro read as CSV: the file is dead-lettered and nothing can be trained.
    result = cli("--input", os.path.join(sample, "*.avro"), "--input_format", "csv",
                 "--output", str(tmp_path))
    assert result.returncode == 1
    assert "no exercise was fitted" in result.stderr
    summary = json.load(open(tmp_path / "run_summary.json"))
    files = len(glob.glob(os.path.join(sample, "*.avro")))
    assert summary["unreadable_stretches"] == files and summary["records_read"] == 0
    assert summary["bytes_unreadable"] == sum(
        os.path.getsize(path) for path in glob.glob(os.path.join(sample, "*.avro")))


def test_existing_output_needs_overwrite(trained):
    result = cli("--input", trained.summary["input"], "--output", trained.output)
    assert result.returncode == 2
    assert "--overwrite" in result.stderr


def test_thousands_of_tiny_exercises(tmp_path):
    """2,000 exercises of two attempts each (a long tail, as real curricula
    have): every one is fitted and the components are exactly the keys used.
    Before blocks carried only their own component keys, this shape grew with
    exercises x keys and ran out of memory."""
    exercises = 2000
    lines = []
    for i in range(exercises):  # 1,000 students of four exercises each
        for user, correct in ((f"s{i % 500}", True), (f"t{i % 500}", False)):
            lines.append(json.dumps({"user": user, "exercise": f"e{i:04d}",
                                     "time_done": 1_700_000_000 + i, "correct": correct}))
    path = tmp_path / "tail.jsonl"
    path.write_text("\n".join(lines) + "\n")
    output = str(tmp_path / "out")
    summary = run(["--input", str(path), "--output", output, "--min_samples", "2",
                   "--holdout_fraction", "0", "--num_random_features", "4",
                   "--model_version", "tail"])
    assert summary["exercises_fitted"] == exercises
    assert summary["rows_emitted"] == 2 * exercises
    components = read_jsonl(os.path.join(output, "components", "*.jsonl"))
    assert sorted((c["exercise"], c["correct"]) for c in components) == sorted(
        (f"e{i:04d}", correct) for i in range(exercises) for correct in (True, False))
