"""The flexTemplates:launch body and the Cloud Scheduler job of the nightly
knowledge-model run (python -m pipelines.launch). Nothing here is sent."""

import base64
import datetime
import json
import re
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud import dataflow_v1beta3

from pipelines import launch, monitor
from pipelines.flex_template import ArgumentError, flex_template_argv
from pipelines.jobs.train_knowledge_model import KnowledgeModelOptions
from pipelines.options import date_window
from pipelines.train_knowledge_model import ARGUMENTS

ROOT = Path(__file__).resolve().parent.parent
# Every field of FlexTemplateRuntimeEnvironment as the REST body spells it.
ENVIRONMENT_FIELDS = frozenset(field.json_name for field in
                               dataflow_v1beta3.FlexTemplateRuntimeEnvironment.pb().DESCRIPTOR.fields)
PROJECT, REGION, BUCKET = "my-project", "us-central1", "my-project-knowledge-model"
# The nightly job of scheduler/knowledge_model_nightly.json (placeholder
# project); regenerate that file with:
#   python -m pipelines.launch <NIGHTLY> <SCHEDULER> --out scheduler/knowledge_model_nightly.json
NIGHTLY = [
    "--project", PROJECT, "--region", REGION,
    "--template", f"gs://{BUCKET}/templates/train_knowledge_model.json",
    "--job_name_prefix", "knowledge-model-nightly",
    "--parameter", f"input=bq://{PROJECT}.logs.problem_logs",
    "--parameter", "window_days=30",
    "--parameter", f"state_dir=gs://{BUCKET}/nightly/state",
    "--parameter", f"output=gs://{BUCKET}/nightly/knowledge_model",
    "--parameter", "overwrite=true",
    "--parameter", "params_sink=datastore",
    "--parameter", f"datastore_project={PROJECT}",
    "--service_account_email", f"knowledge-model-worker@{PROJECT}.iam.gserviceaccount.com",
    "--temp_location", f"gs://{BUCKET}/tmp",
    "--staging_location", f"gs://{BUCKET}/staging",
    "--max_workers", "20",
    "--machine_type", "n2-highmem-4",
]
SCHEDULER = ["--scheduler_job", "--scheduler_service_account",
             f"knowledge-model-scheduler@{PROJECT}.iam.gserviceaccount.com"]
SCHEDULER_FILE = ROOT / "scheduler" / "knowledge_model_nightly.json"
LAUNCH_PARAMETER_FIELDS = {"jobName", "containerSpecGcsPath", "parameters", "environment",
                           "launchOptions", "update", "transformNameMappings"}
ANY_DATE = re.compile(r"(19|20)[0-9]{2}-?[01][0-9]-?[0-3][0-9]")


@pytest.fixture(autouse=True)
def never_send(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to send a launch request")
    monkeypatch.setattr(launch, "send", refuse)


@pytest.fixture(scope="module")
def body():
    return launch.build(NIGHTLY)


def template_metadata(body):
    name = body["launchParameter"]["containerSpecGcsPath"].rsplit("/", 1)[1]
    with open(ROOT / "templates" / name, encoding="utf-8") as handle:
        return json.load(handle)


def test_body_structure(body):
    assert set(body) == {"launchParameter"}
    parameter = body["launchParameter"]
    assert set(parameter) <= LAUNCH_PARAMETER_FIELDS
    assert {"jobName", "containerSpecGcsPath", "parameters"} <= set(parameter)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", parameter["jobName"])
    assert re.fullmatch(r"gs://[a-z0-9][-_.a-z0-9]+[a-z0-9]/\S+\.json",
                        parameter["containerSpecGcsPath"])
    assert all(isinstance(value, str) for value in parameter["parameters"].values())
    environment = parameter["environment"]
    assert set(environment) <= ENVIRONMENT_FIELDS
    assert environment == {
        "serviceAccountEmail": f"knowledge-model-worker@{PROJECT}.iam.gserviceaccount.com",
        "tempLocation": f"gs://{BUCKET}/tmp", "stagingLocation": f"gs://{BUCKET}/staging",
        "maxWorkers": 20, "machineType": "n2-highmem-4"}


def test_every_parameter_is_a_template_parameter_with_a_valid_value(body):
    declared = {p["name"]: p for p in template_metadata(body)["parameters"]}
    parameters = body["launchParameter"]["parameters"]
    for name, value in parameters.items():
        assert name in declared, f"{name} is not a parameter of the template"
        for regex in declared[name]["regexes"]:
            assert re.search(regex, value), (name, value, regex)
    required = {name for name, p in declared.items() if not p["isOptional"]}
    assert required <= set(parameters)


def test_parameters_hold_no_absolute_date(body):
    parameters = body["launchParameter"]["parameters"]
    assert not {"start_date", "end_date", "run_date", "model_version"} & set(parameters)
    assert not ANY_DATE.search(json.dumps(body))
    assert int(parameters["window_days"]) > 0


def test_the_pipeline_reads_the_days_before_each_launch(body):
    """The launcher passes --name=value; the same body reads a different
    window every night (the run date is the launch day, in UTC)."""
    argv = [f"--{name}={value}" for name, value in body["launchParameter"]["parameters"].items()]
    with pytest.raises(SystemExit):  # why the argv must be rewritten first
        PipelineOptions(argv).view_as(KnowledgeModelOptions)
    options = PipelineOptions(flex_template_argv(argv, ARGUMENTS)).view_as(KnowledgeModelOptions)
    assert options.overwrite is True and options.window_days == 30
    assert options.run_date == "" and options.model_version == ""
    for today in (datetime.date(2026, 11, 23), datetime.date(2027, 3, 1)):
        assert date_window(options, today=today) == (today - datetime.timedelta(days=30), today)


def test_flex_template_argv():
    def rewritten(argv):
        return flex_template_argv(argv, ARGUMENTS)

    assert rewritten(["--overwrite=true", "--output=gs://b/o", "--window_days=1"]) == [
        "--overwrite", "--output=gs://b/o", "--window_days=1"]
    assert rewritten(["--overwrite=false", "--seed=1"]) == ["--seed=1"]
    assert rewritten(["--overwrite", "TRUE", "--x"]) == ["--overwrite", "--x"]
    assert rewritten(["--overwrite"]) == ["--overwrite"]
    # Beam's own flags, whatever the launcher passes for them.
    assert rewritten(["--save_main_session=true"]) == ["--save_main_session"]
    with pytest.raises(ArgumentError, match="--overwrite takes true or false"):
        rewritten(["--overwrite=yes"])
    # A flag of another entry point is not rewritten (the pipeline refuses it).
    assert flex_template_argv(["--overwrite=true"], monitor.ARGUMENTS) == ["--overwrite=true"]


def test_job_name_is_fixed_unless_asked(body):
    later = launch.build(NIGHTLY, now=datetime.datetime(2030, 1, 2, 3, 4, 5))
    assert later == body
    assert body["launchParameter"]["jobName"] == "knowledge-model-nightly"
    unique = launch.build(NIGHTLY + ["--unique_job_name"],
                          now=datetime.datetime(2030, 1, 2, 3, 4, 5))
    assert unique["launchParameter"]["jobName"] == "knowledge-model-nightly-20300102-030405"


def test_scheduler_job_file_is_current():
    generated = launch.body_bytes(launch.build(NIGHTLY + SCHEDULER)).decode("utf-8")
    command = " ".join(["python -m pipelines.launch"] + [
        f"'{arg}'" if " " in arg else arg for arg in NIGHTLY + SCHEDULER]
        + ["--out", "scheduler/knowledge_model_nightly.json"])
    assert SCHEDULER_FILE.read_text(encoding="utf-8") == generated, (
        f"{SCHEDULER_FILE} is out of date; regenerate with:\n  {command}")


def test_scheduler_job_posts_the_launch_body(body):
    job = json.loads(SCHEDULER_FILE.read_text(encoding="utf-8"))
    assert job["name"] == f"projects/{PROJECT}/locations/{REGION}/jobs/knowledge-model-nightly"
    assert len(job["schedule"].split()) == 5 and job["timeZone"] == "Etc/UTC"
    assert re.fullmatch(r"[0-9]+s", job["attemptDeadline"])
    retry = job["retryConfig"]
    assert retry["retryCount"] >= 1
    for key in ("maxRetryDuration", "minBackoffDuration", "maxBackoffDuration"):
        assert re.fullmatch(r"[0-9]+s", retry[key])
    # Retries end within the UTC day of the 03:00 schedule: same window.
    assert 3 * 3600 + int(retry["maxRetryDuration"][:-1]) < 24 * 3600
    target = job["httpTarget"]
    assert target["uri"] == (f"https://dataflow.googleapis.com/v1b3/projects/{PROJECT}"
                             f"/locations/{REGION}/flexTemplates:launch")
    assert target["httpMethod"] == "POST"
    assert target["headers"] == {"Content-Type": "application/json"}
    assert target["oauthToken"] == {
        "serviceAccountEmail": f"knowledge-model-scheduler@{PROJECT}.iam.gserviceaccount.com",
        "scope": "https://www.googleapis.com/auth/cloud-platform"}
    assert "oidcToken" not in target  # Google APIs take OAuth access tokens
    sent = base64.b64decode(target["body"], validate=True)
    assert sent == launch.body_bytes(body)
    assert json.loads(sent) == body


def test_body_is_the_dataflow_client_request(body):
    """The body parses strictly as the client's LaunchFlexTemplateRequest (an
    unknown or misspelt field would fail), and says what the command line says."""
    request = dataflow_v1beta3.LaunchFlexTemplateRequest.from_json(json.dumps(body))
    assert launch.request_body(request) == body
    parameter = request.launch_parameter
    assert parameter.job_name == "knowledge-model-nightly"
    assert parameter.environment.max_workers == 20
    assert dict(parameter.parameters)["window_days"] == "30"


def test_send_sends_the_printed_request(body, monkeypatch, capsys):
    sent = []

    def fake_send(request):
        sent.append(request)
        return dataflow_v1beta3.LaunchFlexTemplateResponse(
            job=dataflow_v1beta3.Job(id="2030-01-02_03_04_05-1", name="knowledge-model-nightly"))
    monkeypatch.setattr(launch, "send", fake_send)
    launch.main(NIGHTLY + ["--send"])
    (request,) = sent
    assert (request.project_id, request.location) == (PROJECT, REGION)
    assert launch.request_body(request) == body
    assert capsys.readouterr().out == (
        f"launched job 'knowledge-model-nightly' id 2030-01-02_03_04_05-1 in {PROJECT}/{REGION}\n")


def test_print_mode_prints_the_body(body, capsys):
    launch.main(NIGHTLY)
    assert json.loads(capsys.readouterr().out) == body


def test_out_writes_the_same_bytes(tmp_path, body):
    out = tmp_path / "body.json"
    launch.main(NIGHTLY + ["--out", str(out)])
    assert out.read_bytes() == launch.body_bytes(body)


def _replace(argv, flag, value):
    argv = list(argv)
    argv[argv.index(flag) + 1] = value
    return argv


def _without_parameter(argv, name):
    index = next(i for i, arg in enumerate(argv) if arg.startswith(f"{name}="))
    return argv[:index - 1] + argv[index + 1:]


@pytest.mark.parametrize("argv,message", [
    (NIGHTLY + ["--parameter", "runner=DirectRunner"], "runner: not a parameter"),
    (NIGHTLY + ["--parameter", "holdout_fraction=1.5"], "holdout_fraction='1.5' does not match"),
    (NIGHTLY + ["--parameter", "overwrite=yes"], "given twice"),
    (_replace(NIGHTLY, "--parameter", "input=/local/logs/*.avro"), "does not match"),
    (_without_parameter(NIGHTLY, "output"), "requires --parameter output=..."),
    (NIGHTLY + SCHEDULER + ["--parameter", "run_date=2026-11-23"], "relative to the run date"),
    (NIGHTLY + SCHEDULER + ["--unique_job_name"], "static"),
    (NIGHTLY + ["--scheduler_job"], "--scheduler_service_account"),
    (_replace(NIGHTLY, "--project", "My_Project"), "not a project id"),
    (_replace(NIGHTLY, "--template", "/local/template.json"), "gs://"),
    (_replace(NIGHTLY, "--job_name_prefix", "Nightly_Job"), "lowercase"),
    (_replace(NIGHTLY, "--template", f"gs://{BUCKET}/templates/unknown.json"),
     "no template metadata"),
])
def test_bad_command_lines(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        launch.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_one_off_launch_may_use_dates():
    body = launch.build(NIGHTLY + ["--parameter", "run_date=2026-11-01", "--unique_job_name"])
    assert body["launchParameter"]["parameters"]["run_date"] == "2026-11-01"
