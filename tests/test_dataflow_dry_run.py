"""The pipelines translate for the real DataflowRunner, without Google.

A local GCS server (the PyPI package gcp-storage-emulator, STORAGE_EMULATOR_HOST)
stands in for Cloud Storage and google.auth.default returns anonymous
credentials, so nothing here can reach Google or prompt for a login.

* Dry run (--dry_run=True): the runner applies its overrides, builds the sdist
  of setup.py (--setup_file) and the portable pipeline proto, then stops before
  staging anything. The graph of train_knowledge_model and of train_boosted's
  store build is asserted on, and the sdist it would stage is opened.
* Submission: the same run without --dry_run, against the GCS emulator and a
  local stand-in for the Dataflow API (--dataflow_endpoint): the runner stages
  the sdist and pipeline.pb in the emulator and POSTs projects.locations.jobs
  .create. The staged files and the request are what Google would receive; the
  only part not exercised is Google's service itself.
* Flex Template launch: train_knowledge_model.main() with the arguments the
  Flex Template launcher passes (--template_location=<staging>/template_launches/
  .../job_object, parameters as --name=value, rewritten by
  pipelines.flex_template.flex_template_argv): it writes the job object the Dataflow
  service would start, and returns at once (exit status 0).
"""

import contextlib
import io
import json
import logging
import os
import signal
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from unittest import mock

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.runner import PipelineState

from pipelines import generate_sample, train_knowledge_model
from pipelines.flex_template import flex_template_argv
from pipelines.jobs import train_boosted as boosted_job
from pipelines.jobs import train_knowledge_model as knowledge_model_job
from tests.local_server import LocalServer, free_port

ROOT = Path(__file__).resolve().parent.parent
PROJECT, REGION, BUCKET = "test-project-123", "us-central1", "km-test-bucket"
TEST_TIMEOUT_S = 120
START_TIMEOUT_S = 30
FAKE_JOB_ID = "2026-11-23_03_00_00-1234567890123456789"
SDK_IMAGE = f"beam_python{sys.version_info.major}.{sys.version_info.minor}_sdk:{beam.__version__}"
KNOWLEDGE_MODEL_STEPS = {"ReadProblemLogs", "SessionizeByStudent", "ReplayKnowledgeState",
                         "FitPerExercise", "WriteParams", "WriteSkipped", "ComponentRecords",
                         "WriteComponents", "AllDeadLetters", "WriteDeadLetter"}
STORE_STEPS = {"ReadProblemLogs", "SessionizeByStudent", "ReplaySparse", "Vocabularies",
               "WriteStore", "ReplayKnowledge", "FitKnowledgeModel", "WriteKnowledgeParams",
               "DeadLetters", "WriteDeadLetter"}


# --------------------------------------------------------------------------
# Time limits: nothing here may hang (Beam retries with backoff for minutes).

@contextlib.contextmanager
def deadline(seconds: int, what: str):
    """SIGALRM after `seconds`; an enclosing deadline is restored after."""
    def expire(signum, frame):
        raise TimeoutError(f"{what} took more than {seconds} s")
    previous = signal.signal(signal.SIGALRM, expire)
    started, outer = time.monotonic(), signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.alarm(max(1, round(outer - (time.monotonic() - started))))


@pytest.fixture(autouse=True)
def time_limit(request):
    with deadline(TEST_TIMEOUT_S, request.node.name):
        yield


# --------------------------------------------------------------------------
# Google, offline

def _reset_beam_credentials():
    from apache_beam.internal.gcp import auth
    auth._Credentials._credentials_init = False
    auth._Credentials._credentials = None


@pytest.fixture(scope="module", autouse=True)
def offline_google():
    """Anonymous credentials everywhere; Beam's credential cache is reset
    before and after so no other test inherits them."""
    from google.auth.credentials import AnonymousCredentials
    _reset_beam_credentials()
    with mock.patch("google.auth.default", return_value=(AnonymousCredentials(), PROJECT)):
        yield
    _reset_beam_credentials()


@pytest.fixture(scope="module", autouse=True)
def own_temp_dir(tmp_path_factory):
    """The runner builds the sdist in tempfile.mkdtemp() and never removes it:
    keep those under pytest's temporary directory."""
    with mock.patch.object(tempfile, "tempdir", str(tmp_path_factory.mktemp("beam-tmp"))):
        yield


class GcsEmulator:
    """gcp-storage-emulator in its own process group, data in memory."""

    def __init__(self, bucket: str):
        self.bucket = bucket
        executable = Path(sys.executable).with_name("gcp-storage-emulator")
        if not executable.exists():
            pytest.skip("gcp-storage-emulator is not installed in this environment")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = LocalServer("gcp-storage-emulator", [
            executable, "start", "--host", "127.0.0.1", "--port", str(self.port),
            "--default-bucket", bucket, "--in-memory", "--quiet"])
        self._server.wait_until_ready(self._bucket_answers, START_TIMEOUT_S)

    def _bucket_answers(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.bucket}", timeout=2):
            return True

    def stop(self) -> None:
        self._server.stop(grace=3.0)

    def list(self, prefix: str = "") -> dict:
        """object name -> size, under `prefix`."""
        query = urllib.parse.urlencode({"prefix": prefix, "maxResults": 1000})
        with urllib.request.urlopen(f"{self.url}/storage/v1/b/{self.bucket}/o?{query}",
                                    timeout=10) as response:
            items = json.load(response).get("items", [])
        return {item["name"]: int(item["size"]) for item in items}

    def read(self, path: str) -> bytes:
        """Bytes of gs://BUCKET/name (or of 'storage.googleapis.com/BUCKET/name')."""
        name = path.split(f"{self.bucket}/", 1)[1]
        quoted = urllib.parse.quote(name, safe="")
        with urllib.request.urlopen(
                f"{self.url}/download/storage/v1/b/{self.bucket}/o/{quoted}?alt=media",
                timeout=10) as response:
            return response.read()


@pytest.fixture(scope="module")
def gcs():
    emulator = GcsEmulator(BUCKET)
    try:
        with mock.patch.dict(os.environ, {"STORAGE_EMULATOR_HOST": emulator.url}):
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def logs(gcs, tmp_path_factory):
    """A small ProblemLog sample in the emulator: gs://BUCKET/logs/*.avro."""
    local = tmp_path_factory.mktemp("sample")
    with contextlib.redirect_stdout(io.StringIO()):
        generate_sample.main(["--output", str(local), "--students", "30", "--seed", "3"])
    for path in local.glob("*.avro"):
        with FileSystems.create(f"gs://{BUCKET}/logs/{path.name}") as handle:
            handle.write(path.read_bytes())
    assert any(name.endswith(".avro") for name in gcs.list("logs/"))
    return f"gs://{BUCKET}/logs/*.avro"


class FakeDataflowApi:
    """Answers jobs.create (echoing the job, with an id) and jobs.get (done);
    records every request. Stands in for the Dataflow service, nothing else."""

    def __init__(self):
        self.requests = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, document):
                data = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                job = json.loads(body or b"{}")
                api.requests.append(("POST", self.path, job))
                self._answer({"id": FAKE_JOB_ID, "projectId": PROJECT, "name": job.get("name"),
                              "clientRequestId": job.get("clientRequestId"),
                              "currentState": "JOB_STATE_QUEUED"})

            def do_GET(self):
                api.requests.append(("GET", self.path, None))
                self._answer({"id": FAKE_JOB_ID, "projectId": PROJECT,
                              "currentState": "JOB_STATE_DONE"})

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # 'localhost' in the endpoint makes Beam use the REST transport.
        self.endpoint = f"http://localhost:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def dataflow_api():
    api = FakeDataflowApi()
    yield api
    api.stop()


# --------------------------------------------------------------------------
# Helpers

def dataflow_argv(staging: str, dry_run: bool = True, setup_file: bool = True) -> list:
    argv = ["--runner", "DataflowRunner", "--project", PROJECT, "--region", REGION,
            "--temp_location", f"gs://{BUCKET}/tmp",
            "--staging_location", f"gs://{BUCKET}/staging/{staging}"]
    if dry_run:
        argv.append("--dry_run=True")
    if setup_file:
        argv += ["--setup_file", str(ROOT / "setup.py")]
    return argv


def step_names(proto: beam_runner_api_pb2.Pipeline) -> set:
    """Top-level transform names of a pipeline proto."""
    return {transform.unique_name.split("/")[0]
            for transform in proto.components.transforms.values() if transform.unique_name}


def urns_under(proto, prefix: str) -> set:
    return {t.spec.urn for t in proto.components.transforms.values()
            if t.unique_name.startswith(prefix + "/")}


def staged_artifacts(proto) -> dict:
    """staged name -> local file the runner would upload (dry run)."""
    artifacts = {}
    for environment in proto.components.environments.values():
        for dependency in environment.dependencies:
            if dependency.role_urn != common_urns.artifact_roles.STAGING_TO.urn:
                continue
            name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                dependency.role_payload).staged_name
            if dependency.type_urn == common_urns.artifact_types.FILE.urn:
                artifacts[name] = beam_runner_api_pb2.ArtifactFilePayload.FromString(
                    dependency.type_payload).path
    return artifacts


def container_images(proto) -> set:
    return {beam_runner_api_pb2.DockerPayload.FromString(environment.payload).container_image
            for environment in proto.components.environments.values()
            if environment.urn == common_urns.environments.DOCKER.urn}


def assert_package_holds_the_project(sdist: bytes) -> None:
    """The staged sdist holds setup.py and every module of models/,
    transforms/ and pipelines/ as they are in this tree."""
    with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        assert "setup.py" in names and "PKG-INFO" in names
        for package in ("models", "transforms", "pipelines"):
            modules = {path.relative_to(ROOT).as_posix()
                       for path in (ROOT / package).rglob("*.py")}
            assert f"{package}/__init__.py" in modules
            missing = modules - names
            assert not missing, f"the staged package lacks {sorted(missing)}"
        member = next(m for m in tar.getmembers()
                      if m.name.endswith("pipelines/train_knowledge_model.py"))
        staged = tar.extractfile(member).read()
    assert staged == (ROOT / "pipelines" / "train_knowledge_model.py").read_bytes()


# --------------------------------------------------------------------------
# Dry runs

def test_knowledge_model_dry_run_graph(gcs, logs):
    output = f"gs://{BUCKET}/out/dry"
    pipeline_options = PipelineOptions(
        dataflow_argv("dry-km") + ["--input", logs, "--output", output])
    options = pipeline_options.view_as(knowledge_model_job.KnowledgeModelOptions)
    settings = knowledge_model_job.validate(options)
    pipeline = beam.Pipeline(options=pipeline_options)
    knowledge_model_job.build(pipeline, options, settings)
    result = pipeline.run()

    assert result.state == PipelineState.DONE
    job = result.job  # the Job the runner would have created
    assert job.proto.name and job.proto.type.name == "JOB_TYPE_BATCH"
    proto = job.proto_pipeline
    assert proto is pipeline.runner.proto_pipeline
    assert KNOWLEDGE_MODEL_STEPS <= step_names(proto), sorted(step_names(proto))
    # GroupByKey(student) and CombinePerKey(exercise) survive translation.
    assert common_urns.primitives.GROUP_BY_KEY.urn in urns_under(proto, "SessionizeByStudent")
    assert common_urns.primitives.GROUP_BY_KEY.urn in urns_under(proto, "FitPerExercise")
    # Workers: Dataflow's Python SDK container of this Beam version.
    assert any(image.endswith(SDK_IMAGE) for image in container_images(proto))
    # The sdist of setup.py the runner would stage as workflow.tar.gz.
    artifacts = staged_artifacts(proto)
    assert "workflow.tar.gz" in artifacts, sorted(artifacts)
    assert_package_holds_the_project(Path(artifacts["workflow.tar.gz"]).read_bytes())
    # A dry run stops before staging: nothing was uploaded.
    assert not gcs.list("staging/dry-km")


def test_boosted_store_build_dry_run_graph(gcs, logs, monkeypatch):
    """train_boosted's first pipeline (the columnar store), through its own
    build_store(); its counters do not exist in a dry run, so they read 0."""
    results = []
    monkeypatch.setattr(boosted_job, "counter_values",
                        lambda result: results.append(result) or {})
    store = f"gs://{BUCKET}/out/boosted/store"
    argv = dataflow_argv("dry-boosted") + ["--input", logs, "--output", f"gs://{BUCKET}/out/b"]
    options = PipelineOptions(argv).view_as(boosted_job.BoostedOptions)
    counts = boosted_job.build_store(argv, options, store)

    assert counts["records_read"] == 0 and results
    proto = results[0].job.proto_pipeline
    assert STORE_STEPS <= step_names(proto), sorted(step_names(proto))
    assert common_urns.primitives.GROUP_BY_KEY.urn in urns_under(proto, "SessionizeByStudent")
    assert "workflow.tar.gz" in staged_artifacts(proto)
    # build_store went on to record the store's settings, in (emulated) GCS.
    store_json = json.loads(gcs.read(f"{store}/store.json"))
    assert store_json["settings"]["seed"] == options.seed


# --------------------------------------------------------------------------
# Staging and job creation, against the emulator and a stand-in Dataflow API

def test_knowledge_model_stages_and_submits(gcs, logs, dataflow_api):
    job_name = "km-offline-submission"
    output = f"gs://{BUCKET}/out/submitted"
    argv = (dataflow_argv("submit", dry_run=False)
            + ["--dataflow_endpoint", dataflow_api.endpoint, "--job_name", job_name,
               "--input", logs, "--output", output])
    pipeline_options = PipelineOptions(argv)
    options = pipeline_options.view_as(knowledge_model_job.KnowledgeModelOptions)
    pipeline = beam.Pipeline(options=pipeline_options)
    knowledge_model_job.build(pipeline, options, knowledge_model_job.validate(options))
    result = pipeline.run()  # not waited on: the fake job is never run
    assert result.job_id() == FAKE_JOB_ID

    creates = [r for r in dataflow_api.requests if r[0] == "POST"]
    assert len(creates) == 1
    _, path, job = creates[0]
    assert urllib.parse.urlsplit(path).path == (
        f"/v1b3/projects/{PROJECT}/locations/{REGION}/jobs")
    assert job["name"] == job_name
    environment = job["environment"]
    pipeline_options_sent = environment["sdkPipelineOptions"]["options"]
    assert pipeline_options_sent["output"] == output and pipeline_options_sent["input"] == logs
    assert pipeline_options_sent["project"] == PROJECT

    # Everything the job refers to was staged, in the emulator.
    staged = gcs.list("staging/submit/")
    packages = {p["name"]: p["location"] for pool in environment["workerPools"]
                for p in pool.get("packages", [])}
    assert "workflow.tar.gz" in packages, packages
    for name, location in packages.items():
        assert location.startswith(f"storage.googleapis.com/{BUCKET}/staging/submit/"), location
        assert location.split(f"{BUCKET}/", 1)[1] in staged, (name, sorted(staged))
    assert_package_holds_the_project(gcs.read(packages["workflow.tar.gz"]))
    pipeline_url = pipeline_options_sent["pipelineUrl"]
    assert pipeline_url.startswith(f"gs://{BUCKET}/staging/submit/")
    staged_proto = beam_runner_api_pb2.Pipeline.FromString(gcs.read(pipeline_url))
    assert KNOWLEDGE_MODEL_STEPS <= step_names(staged_proto)


# --------------------------------------------------------------------------
# What the Flex Template launcher does

class Outcome:
    def __init__(self):
        self.error: Optional[BaseException] = None
        self.job_object = ""
        self.image = ""


@pytest.fixture(scope="module")
def flex_launch(gcs, logs):
    """train_knowledge_model.main() run the way Dataflow's Flex Template
    launcher runs the image's program: Beam options it adds, the template
    parameters as --name=value (booleans as true/false), and
    --template_location, so the runner writes the job object for the service
    to start instead of creating the job. The image holds the project, so
    workers get it as sdk_container_image (no --setup_file)."""
    outcome = Outcome()
    outcome.job_object = f"gs://{BUCKET}/staging/flex/template_launches/L1/job_object"
    image = f"images.example.invalid/{PROJECT}/knowledge-model:test"
    argv = ["--runner=DataflowRunner", f"--project={PROJECT}", f"--region={REGION}",
            f"--staging_location=gs://{BUCKET}/staging/flex",
            f"--temp_location=gs://{BUCKET}/tmp", f"--template_location={outcome.job_object}",
            "--job_name=knowledge-model-nightly", f"--sdk_container_image={image}",
            f"--input={logs}", f"--output=gs://{BUCKET}/out/flex", "--overwrite=true",
            "--window_days=30"]
    level = logging.getLogger().level  # main() sets it to WARNING
    with deadline(TEST_TIMEOUT_S, "the Flex Template launch"), \
            contextlib.redirect_stdout(io.StringIO()):
        try:
            train_knowledge_model.main(flex_template_argv(argv, train_knowledge_model.ARGUMENTS))
        except (Exception, SystemExit) as error:  # noqa: BLE001 (the outcome is asserted)
            outcome.error = error
        finally:
            logging.getLogger().setLevel(level)
    outcome.image = image
    return outcome


def test_flex_launch_writes_the_job_object(gcs, flex_launch):
    job = json.loads(gcs.read(flex_launch.job_object))
    assert job["name"] == "knowledge-model-nightly"
    options = job["environment"]["sdkPipelineOptions"]["options"]
    assert options["overwrite"] is True and options["window_days"] == 30
    assert options["sdk_container_image"] == flex_launch.image
    proto = beam_runner_api_pb2.Pipeline.FromString(gcs.read(options["pipelineUrl"]))
    assert KNOWLEDGE_MODEL_STEPS <= step_names(proto)
    assert flex_launch.image in container_images(proto)


def test_flex_launch_returns_after_submitting(gcs, flex_launch):
    """The launcher must see the program exit 0 once the job object is
    written: run() may not wait for the job nor read its counters."""
    assert flex_launch.error is None, repr(flex_launch.error)
    assert not gcs.list("out/flex/")  # nothing ran, so nothing was written
