"""Command-line mistakes stop before any work: exit status 2, a message that
names the mistake (and the fix), nothing written under --output, no network
call.

Each entry point is run once as `python -m pipelines.X` (a misspelled
option); the other checks call its main() in-process, which is the same code
path up to the interpreter start (command_line turns UsageError into exit 2).
"""

import contextlib
import os
import re
import socket
import subprocess
import sys

import pytest
from apache_beam.options.pipeline_options import GoogleCloudOptions

from pipelines import monitor, train_boosted, train_knowledge_model
from pipelines.options import checked_options
from tests import hostile_files as hf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMON = ["--min_samples", "5", "--num_random_features", str(hf.D)]
MAPPING = "user=student_id,exercise=skill,time_done=timestamp,correct=is_correct"
SUGGESTION = f"--column_mapping {MAPPING}"
REQUIRED = ("user", "exercise", "time_done", "correct")
RENAMED = {"csv": hf.renamed_csv, "parquet": hf.renamed_parquet, "avro": hf.renamed_avro}


def cli(module, *args, timeout=300, env=None):
    return subprocess.run([sys.executable, "-m", f"pipelines.{module}", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def files_under(directory):
    return [os.path.join(root, name) for root, _, names in os.walk(directory)
            for name in names]


def names_option(text, option):
    """`option` itself appears in `text` (not only as the prefix of a longer one)."""
    return re.search(re.escape(option) + r"(?![\w-])", text) is not None


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    renamed = {fmt: build(str(base / fmt)) for fmt, build in RENAMED.items()}
    return {"good": hf.good_jsonl(str(base / "good")), "renamed": renamed}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """The monitor's --params: a hand-made model directory (no training run)."""
    return hf.hand_made_model(str(tmp_path_factory.mktemp("model")))


# --------------------------------------------------------------------------- misspelled options

MISSPELLED = [
    ("train_knowledge_model", ["--num_random_feature", "50"], "--num_random_features"),
    ("train_boosted", ["--iteration", "5"], "--iterations"),
    ("monitor", ["--trailing_day", "3"], "--trailing_days"),
    ("generate_sample", ["--studnets", "10"], "--students"),
]


@pytest.mark.parametrize("module, bad, suggestion", MISSPELLED,
                         ids=[module for module, _, _ in MISSPELLED])
def test_misspelled_option_stops_with_a_suggestion(module, bad, suggestion, inputs, model,
                                                    tmp_path):
    """`python -m pipelines.X` with one misspelled option (everything else
    valid): exit 2, stderr names the bad option and the closest valid one,
    nothing is written under --output."""
    valid = {"train_knowledge_model": ["--input", inputs["good"], *COMMON],
             "train_boosted": ["--input", inputs["good"]],
             "monitor": ["--input", inputs["good"], "--params", model],
             "generate_sample": ["--seed", "1"]}[module]
    output = tmp_path / "out"
    result = cli(module, *valid, *bad, "--output", str(output))
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    assert names_option(result.stderr, bad[0]), result.stderr[-3000:]
    assert suggestion in result.stderr, result.stderr[-3000:]
    assert files_under(output) == []


def test_option_with_dashes_instead_of_underscores_is_refused(inputs, tmp_path, capsys):
    """`--min-samples 10` is not `--min_samples`: refused with the suggestion
    (in-process main(): exit 2 before anything runs)."""
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        train_knowledge_model.main(["--input", inputs["good"], "--output", str(output),
                                    "--num_random_features", str(hf.D), "--min-samples", "10"])
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr[-3000:]
    assert names_option(stderr, "--min-samples") and "--min_samples" in stderr, stderr[-3000:]
    assert files_under(output) == []


# --------------------------------------------------------------------------- other entry points

FOREIGN = [
    # Training options (TrainingOptions): the monitor trains nothing.
    ("monitor", ["--seed", "3"], "error: unknown option --seed"),
    ("monitor", ["--holdout_fraction", "0.2"], "error: unknown option --holdout_fraction"),
    ("monitor", ["--overwrite"], "error: unknown option --overwrite"),
    # train_boosted's own options.
    ("train_knowledge_model", ["--store", "store/"], "error: unknown option --store"),
    ("train_knowledge_model", ["--loss", "exponential"], "error: unknown option --loss"),
    ("train_knowledge_model", ["--iterations", "5"],
     "error: unknown option --iterations (did you mean --max_iterations?)"),
    # train_knowledge_model's own options (train_boosted fits its knowledge
    # model with the defaults), and the history and monitoring ones.
    ("train_boosted", ["--num_random_features", "50"],
     "error: unknown option --num_random_features"),
    ("train_boosted", ["--l2=10"], "error: unknown option --l2 (did you mean --l1?)"),
    ("train_boosted", ["--history_days", "7"], "error: unknown option --history_days"),
    ("train_boosted", ["--params", "out/"], "error: unknown option --params"),
]


@pytest.mark.parametrize("module, foreign, message", FOREIGN,
                         ids=[f"{module}{foreign[0]}" for module, foreign, _ in FOREIGN])
def test_an_option_of_another_entry_point_is_refused(module, foreign, message, inputs, model,
                                                     tmp_path, capsys):
    """Beam parses every PipelineOptions class of the process together, so
    another entry point's option used to be taken and ignored. Here all three
    entry points are imported in-process (all their classes registered): the
    option is refused before anything runs, exit 2, one line."""
    valid = {"train_knowledge_model": ["--input", inputs["good"], *COMMON],
             "train_boosted": ["--input", inputs["good"]],
             "monitor": ["--input", inputs["good"], "--params", model]}[module]
    main = {"train_knowledge_model": train_knowledge_model.main,
            "train_boosted": train_boosted.main, "monitor": monitor.main}[module]
    output = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        main([*valid, *foreign, "--output", str(output)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == message + "\n"
    assert files_under(output) == []


@pytest.mark.parametrize("module", [train_knowledge_model, train_boosted, monitor])
def test_beam_options_are_accepted_by_every_entry_point(module):
    """Beam's own runner, worker and Google Cloud options, and the operator options."""
    argv = ["--runner", "DataflowRunner", "--project", "my-project", "--region", "us-central1",
            "--temp_location", "gs://bucket/tmp", "--sdk_container_image", "image:tag",
            "--save_main_session", "--direct_num_workers=2", "--progress", "never"]
    options = checked_options(argv, module.ARGUMENTS)
    assert options.view_as(GoogleCloudOptions).project == "my-project"


def test_the_monitor_refuses_a_training_option_from_the_shell(inputs, tmp_path):
    """The same through `python -m`, where only the monitor's job is imported."""
    result = cli("monitor", "--input", inputs["good"], "--params", "p", "--seed", "3",
                 "--output", str(tmp_path / "out"))
    assert (result.returncode, result.stderr) == (2, "error: unknown option --seed\n")


# --------------------------------------------------------------------------- schema check

SCHEMA_CASES = [("train_knowledge_model", "csv"), ("train_knowledge_model", "parquet"),
                ("train_knowledge_model", "avro"), ("train_boosted", "csv"), ("monitor", "csv")]


@pytest.mark.parametrize("module, fmt", SCHEMA_CASES, ids=[f"{m}-{f}" for m, f in SCHEMA_CASES])
def test_schema_without_problem_log_fields_stops_before_the_job(module, fmt, inputs, model,
                                                                tmp_path, capsys):
    """Input whose columns are student_id, skill, timestamp, is_correct: exit 2
    before the job runs, naming every missing field and suggesting the
    --column_mapping that fixes it; nothing under --output."""
    path, _ = inputs["renamed"][fmt]
    output = tmp_path / "out"
    argv = ["--input", path, "--output", str(output)]
    if module == "monitor":
        argv += ["--params", model]
    main = {"train_knowledge_model": train_knowledge_model.main,
            "train_boosted": train_boosted.main, "monitor": monitor.main}[module]
    with pytest.raises(SystemExit) as exited:
        main(argv + (COMMON if module == "train_knowledge_model" else []))
    stderr = capsys.readouterr().err
    assert exited.value.code == 2, stderr[-3000:]
    assert SUGGESTION in stderr, stderr[-3000:]
    rest = stderr.replace(SUGGESTION, "")
    for field in REQUIRED:
        assert re.search(rf"\b{field}\b", rest), (field, stderr[-3000:])
    assert files_under(output) == []


@pytest.mark.parametrize("fmt", sorted(RENAMED))
def test_suggested_column_mapping_works(fmt, inputs, tmp_path):
    """Re-running with the suggested --column_mapping trains on every record."""
    path, records = inputs["renamed"][fmt]
    summary = train_knowledge_model.run(["--input", path, "--output", str(tmp_path / "out"),
                                         "--column_mapping", MAPPING, *COMMON])
    assert summary["records_trained_on"] == records == 72
    assert summary["dead_lettered_total"] == 0
    assert summary["exercises_fitted"] >= 1


# --------------------------------------------------------------------------- BigQuery

@contextlib.contextmanager
def network_trap():
    """Environment that sends every HTTP(S)/gRPC proxy and the GCE metadata
    server to a local socket that never answers; yields (env, attempts) where
    attempts() counts the connections made to it."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.setblocking(False)
    address = f"127.0.0.1:{server.getsockname()[1]}"
    env = dict(os.environ)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "grpc_proxy"):
        env[name] = f"http://{address}"
    for name in ("NO_PROXY", "no_proxy", "GOOGLE_APPLICATION_CREDENTIALS"):
        env.pop(name, None)
    env.update(GCE_METADATA_HOST=address, GCE_METADATA_IP=address,
               CLOUDSDK_CONFIG=os.path.join(os.path.dirname(__file__), "no-gcloud-config"))

    def attempts():
        count = 0
        while True:
            try:
                connection, _ = server.accept()
            except BlockingIOError:
                return count
            connection.close()
            count += 1
    try:
        yield env, attempts
    finally:
        server.close()


def test_bad_column_mapping_with_bigquery_input_is_refused_offline(tmp_path):
    """A column mapping that names no valid BigQuery column, with --input
    bq://...: exit 2 at once, naming --column_mapping, with no network call
    (nothing connects to the trap) and nothing written."""
    output = tmp_path / "out"
    with network_trap() as (env, attempts):
        result = cli("train_knowledge_model", "--input", "bq://my-project.logs.problem_logs",
                     "--column_mapping", "user=student_id;DROP TABLE logs",
                     "--output", str(output), timeout=60, env=env)
        connections = attempts()
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    assert "--column_mapping" in result.stderr, result.stderr[-3000:]
    assert connections == 0, f"{connections} network connection(s) attempted"
    assert files_under(output) == []
