"""Launch a pipeline's Dataflow Flex Template: the `flexTemplates:launch`
request body, sending it, and the Cloud Scheduler job that sends it nightly.
(~400 lines: one deploy command with its checks of every parameter.)

    python -m pipelines.launch --project my-project --region us-central1 \\
        --template gs://my-project-knowledge-model/templates/train_knowledge_model.json \\
        --job_name_prefix knowledge-model-nightly \\
        --parameter input=bq://my-project.logs.problem_logs --parameter window_days=30 \\
        --parameter output=gs://my-project-knowledge-model/nightly/knowledge_model \\
        --parameter overwrite=true \\
        [--service_account_email SA] [--temp_location gs://...] [--max_workers N] \\
        [--machine_type n2-highmem-4] [--send]

prints the JSON body of `projects.locations.flexTemplates.launch`
(launchParameter: jobName, containerSpecGcsPath, parameters, environment).
Every --parameter is checked against the template's metadata
(templates/<template name>.json, or --metadata FILE): the name must be a
template parameter, the value must match its regexes, and required parameters
must be given. The request is built with the types of Google's Dataflow
client (google-cloud-dataflow-client, dataflow_v1beta3), and the JSON printed
is that message's REST body. With --send the client sends it to
https://dataflow.googleapis.com/v1b3/projects/P/locations/R/flexTemplates:launch
with Application Default Credentials (the caller needs roles/dataflow.developer
and roles/iam.serviceAccountUser on the worker service account).

    SCHEDULER_SA=knowledge-model-scheduler@my-project.iam.gserviceaccount.com
    python -m pipelines.launch ... --scheduler_job --scheduler_service_account "$SCHEDULER_SA" \\
        [--schedule '0 3 * * *'] [--time_zone Etc/UTC] \\
        [--out scheduler/knowledge_model_nightly.json]

prints instead a Cloud Scheduler job (REST resource `projects.locations.jobs`)
whose httpTarget POSTs that same body (base64, as the API wants bytes) to the
launch endpoint with an OAuth token of --scheduler_service_account. Create it
with `POST https://cloudscheduler.googleapis.com/v1/projects/P/locations/R/jobs`
and the file as body, or with gcloud, the body written to a file first
(`python -m pipelines.launch <same flags, without --scheduler_job> > body.json`):

    API=https://dataflow.googleapis.com/v1b3/projects/my-project/locations/us-central1
    gcloud scheduler jobs create http knowledge-model-nightly \\
        --project=my-project --location=us-central1 \\
        --schedule='0 3 * * *' --time-zone=Etc/UTC \\
        --uri="$API/flexTemplates:launch" \\
        --http-method=POST --headers=Content-Type=application/json \\
        --message-body-from-file=body.json \\
        --oauth-service-account-email="$SCHEDULER_SA" \\
        --oauth-token-scope=https://www.googleapis.com/auth/cloud-platform \\
        --attempt-deadline=180s --max-retry-attempts=3 --max-retry-duration=4h \\
        --min-backoff=10m --max-backoff=1h --max-doublings=2

The scheduler's service account needs roles/dataflow.developer on the project
and roles/iam.serviceAccountUser on the worker service account.

Decisions a nightly job depends on:

* The body is static, so every parameter is relative to the run date: the
  pipeline resolves the date when it builds the graph on the launcher VM
  (--window_days K reads the K whole UTC days before --run_date, which defaults
  to today in UTC; --model_version defaults to the UTC start time). The job is
  scheduled in Etc/UTC so "yesterday" means the same thing to both, and the
  retries stop within the same UTC day (maxRetryDuration 4 h after 03:00). A
  --scheduler_job with an absolute date (YYYY-MM-DD) in any value is refused;
  one-off launches (a backfill with run_date=...) may use dates. With
  state_dir the knowledge model continues every student from the previous
  night's saved state (dated folders, picked by the run date); without it,
  it rebuilds every state from the logs it reads, so the window must hold
  enough history.
* The output path is fixed, so the nightly run replaces the previous night's
  files (overwrite=true); the history of models is kept as Datastore model
  versions (params_sink=datastore), each named by its UTC start time.
* jobName is fixed (--job_name_prefix as given). Dataflow allows only one
  *active* job of a name per project and region: a finished (done, failed or
  cancelled) job's name can be used again, and every launch gets a new job id.
  A launch while last night's job still runs is refused (409 ALREADY_EXISTS),
  so two nights never write the same output at once; the scheduler retries it
  later. For a manual launch next to the nightly one, use another prefix or
  --unique_job_name (appends the UTC launch time; not allowed with
  --scheduler_job, whose body must be static).
* Boolean options (argparse store_true, e.g. --overwrite) are template
  parameters taking 'true' or 'false'. The Flex Template launcher passes every
  parameter as --name=value, which argparse rejects for a flag ("ignored
  explicit argument"), so the program the launcher runs must first rewrite the
  arguments with pipelines.flex_template.flex_template_argv (--overwrite=true
  -> --overwrite, --overwrite=false -> nothing); container/launcher.py does.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

if TYPE_CHECKING:
    # Imported where a request is built or sent: the client takes most of a
    # second to import, and --help and the checks need none of it.
    from google.cloud import dataflow_v1beta3 as dataflow

DATAFLOW_API = "https://dataflow.googleapis.com/v1b3"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
METADATA_DIR = Path(__file__).resolve().parent.parent / "templates"

# Google's documented formats: project ids, Dataflow job names, regions,
# Cloud Scheduler job ids.
PROJECT_ID = re.compile(r"(?:[a-z][a-z0-9.-]*[a-z0-9]:)?[a-z][a-z0-9-]{4,28}[a-z0-9]")
REGION = re.compile(r"[a-z]+-[a-z]+[0-9]+")
JOB_NAME = re.compile(r"[a-z]([-a-z0-9]{0,1022}[a-z0-9])?")
SCHEDULER_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,500}")
SERVICE_ACCOUNT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.:-]+\.iam\.gserviceaccount\.com"
                             r"|[0-9]+-compute@developer\.gserviceaccount\.com")
GCS_PATH = re.compile(r"gs://[a-z0-9][-_.a-z0-9]{1,220}[a-z0-9](/\S*)?")
# An absolute date in a value makes a static nightly body read the same day
# every night (YYYY-MM-DD, or YYYYMMDD standing alone).
ABSOLUTE_DATE = re.compile(r"(?<![0-9])(19|20)[0-9]{2}-?(0[1-9]|1[0-2])-?(0[1-9]|[12][0-9]|3[01])"
                           r"(?![0-9])")

# FlexTemplateRuntimeEnvironment fields set from this command line; each flag
# is named like the field.
ENVIRONMENT_FLAGS = (
    "service_account_email", "temp_location", "staging_location", "num_workers",
    "max_workers", "machine_type", "launcher_machine_type", "disk_size_gb", "network",
    "subnetwork", "ip_configuration", "sdk_container_image", "flexrs_goal")

# Cloud Scheduler: retry a failed launch (e.g. 409 while last night's job
# still runs) a few times, all within hours of the schedule.
RETRY_CONFIG = {"retryCount": 3, "maxRetryDuration": "14400s", "minBackoffDuration": "600s",
                "maxBackoffDuration": "3600s", "maxDoublings": 2}
ATTEMPT_DEADLINE = "180s"


class LaunchError(ValueError):
    """A bad command line: one line on stderr, exit status 2."""


# --------------------------------------------------------------------------
# Template metadata

def metadata_path(template: str, metadata: Optional[str] = None) -> Path:
    if metadata:
        return Path(metadata)
    return METADATA_DIR / os.path.basename(template)


def load_metadata(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise LaunchError(f"no template metadata at {path}; pass --metadata FILE (the "
                          f"templates/<name>.json the template was built with)") from None


def check_parameters(parameters: Dict[str, str], metadata: dict) -> None:
    """Names, values and required parameters against the template metadata
    (what Dataflow checks when the launch request arrives)."""
    declared = {p["name"]: p for p in metadata.get("parameters", [])}
    for name, value in parameters.items():
        if name not in declared:
            raise LaunchError(
                f"--parameter {name}: not a parameter of template {metadata.get('name')!r} "
                f"(worker settings such as machine type or service account have their own "
                f"flags: --{', --'.join(sorted(ENVIRONMENT_FLAGS))})")
        for regex in declared[name].get("regexes", []):
            if not re.search(regex, value):
                raise LaunchError(f"--parameter {name}={value!r} does not match {regex!r}: "
                                  f"{declared[name].get('helpText', '')}")
    missing = [name for name, p in declared.items()
               if not p.get("isOptional") and name not in parameters]
    if missing:
        raise LaunchError(f"template {metadata.get('name')!r} requires --parameter "
                          f"{', '.join(f'{m}=...' for m in missing)}")


def absolute_dates(parameters: Dict[str, str]) -> List[str]:
    return [f"{name}={value}" for name, value in parameters.items()
            if ABSOLUTE_DATE.search(value)]


# --------------------------------------------------------------------------
# Request bodies

def launch_url(project: str, region: str) -> str:
    return f"{DATAFLOW_API}/projects/{project}/locations/{region}/flexTemplates:launch"


def _key_value(text: str) -> tuple:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.launch",
        description="Build (print) or send the flexTemplates:launch request of a pipeline's "
                    "Flex Template, or the Cloud Scheduler job that sends it nightly.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--project", required=True, help="Google Cloud project of the job.")
    parser.add_argument("--region", required=True, help="Dataflow region, e.g. us-central1.")
    parser.add_argument("--template", required=True,
                        help="gs:// path of the template spec (built by `gcloud dataflow "
                             "flex-template build`), e.g. gs://BUCKET/templates/"
                             "train_knowledge_model.json.")
    parser.add_argument("--metadata", default="",
                        help="Template metadata to check parameters against. Default: "
                             "templates/<basename of --template>.")
    parser.add_argument("--job_name_prefix", required=True,
                        help="Dataflow job name (lowercase letters, digits, hyphens). Fixed: a "
                             "name may be reused once the previous job of that name finished.")
    parser.add_argument("--unique_job_name", action="store_true",
                        help="Append the UTC launch time to the job name (manual launches; "
                             "not with --scheduler_job).")
    parser.add_argument("--parameter", action="append", type=_key_value, default=[],
                        metavar="NAME=VALUE",
                        help="A template parameter (the pipeline option without --); repeat.")
    environment = parser.add_argument_group("worker environment (FlexTemplateRuntimeEnvironment)")
    for flag in ENVIRONMENT_FLAGS:
        kwargs = {"type": int} if flag in ("num_workers", "max_workers", "disk_size_gb") else {}
        if flag == "ip_configuration":
            kwargs["choices"] = ("WORKER_IP_PUBLIC", "WORKER_IP_PRIVATE")
        if flag == "flexrs_goal":
            kwargs["choices"] = ("FLEXRS_SPEED_OPTIMIZED", "FLEXRS_COST_OPTIMIZED")
        environment.add_argument(f"--{flag}", default=None, **kwargs)
    environment.add_argument("--label", action="append", type=_key_value, default=[],
                             metavar="KEY=VALUE", help="Job label (additionalUserLabels).")
    environment.add_argument("--experiment", action="append", default=[],
                             help="Dataflow experiment (additionalExperiments).")
    parser.add_argument("--send", action="store_true",
                        help="POST the body to the Dataflow API with Application Default "
                             "Credentials instead of printing it.")
    scheduler = parser.add_argument_group("Cloud Scheduler job (--scheduler_job)")
    scheduler.add_argument("--scheduler_job", action="store_true",
                           help="Print a Cloud Scheduler job that POSTs the body on a schedule.")
    scheduler.add_argument("--scheduler_service_account", default="",
                           help="Service account whose OAuth token the scheduler sends "
                                "(needs roles/dataflow.developer and serviceAccountUser on "
                                "the worker account). Required with --scheduler_job.")
    scheduler.add_argument("--scheduler_job_id", default="",
                           help="Cloud Scheduler job id. Default: the job name.")
    scheduler.add_argument("--scheduler_location", default="",
                           help="Cloud Scheduler location. Default: --region.")
    scheduler.add_argument("--schedule", default="0 3 * * *", help="unix-cron schedule.")
    scheduler.add_argument("--time_zone", default="Etc/UTC",
                           help="Time zone of the schedule; keep UTC, the pipelines count "
                                "days in UTC.")
    parser.add_argument("--out", default="", help="Write the JSON here instead of stdout.")
    return parser


def _check_arguments(args) -> None:
    if not PROJECT_ID.fullmatch(args.project):
        raise LaunchError(f"--project {args.project!r} is not a project id")
    if not REGION.fullmatch(args.region):
        raise LaunchError(f"--region {args.region!r} is not a region, e.g. us-central1")
    if not GCS_PATH.fullmatch(args.template) or not args.template.endswith(".json"):
        raise LaunchError(f"--template {args.template!r} is not a gs://.../NAME.json path")
    if not JOB_NAME.fullmatch(args.job_name_prefix) or len(args.job_name_prefix) > 1000:
        raise LaunchError(f"--job_name_prefix {args.job_name_prefix!r}: lowercase letters, "
                          f"digits and hyphens, starting with a letter")
    for flag in ("temp_location", "staging_location"):
        value = getattr(args, flag)
        if value is not None and not GCS_PATH.fullmatch(value):
            raise LaunchError(f"--{flag} {value!r} is not a gs:// path")
    for flag in ("service_account_email", "scheduler_service_account"):
        value = getattr(args, flag)
        if value and not SERVICE_ACCOUNT.fullmatch(value):
            raise LaunchError(f"--{flag} {value!r} is not a service account email")
    names = [name for name, _ in args.parameter]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise LaunchError(f"--parameter {duplicates[0]} given twice")
    if args.scheduler_job:
        if args.send:
            raise LaunchError("--send and --scheduler_job do not go together")
        if args.unique_job_name:
            raise LaunchError("--unique_job_name makes the body change at every launch; a "
                              "scheduler job's body is static (a fixed name is reused once "
                              "the previous night's job finished)")
        if not args.scheduler_service_account:
            raise LaunchError("--scheduler_job needs --scheduler_service_account")
        dated = absolute_dates(dict(args.parameter))
        if dated:
            raise LaunchError(f"--parameter {dated[0]}: a nightly job's parameters must be "
                              f"relative to the run date (e.g. window_days=K, which counts "
                              f"back from the launch day)")
        job_id = args.scheduler_job_id or args.job_name_prefix
        if not SCHEDULER_JOB_ID.fullmatch(job_id):
            raise LaunchError(f"--scheduler_job_id {job_id!r}: letters, digits, '-' and '_'")
        if len(args.schedule.split()) != 5:
            raise LaunchError(f"--schedule {args.schedule!r} is not a 5-field unix-cron line")


def job_name(args, now: Optional[datetime.datetime] = None) -> str:
    if not args.unique_job_name:
        return args.job_name_prefix
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{args.job_name_prefix}-{now.strftime('%Y%m%d-%H%M%S')}"


def launch_request(args, metadata: dict, now: Optional[datetime.datetime] = None
                   ) -> dataflow.LaunchFlexTemplateRequest:
    """The `flexTemplates:launch` request, as the Dataflow client's message."""
    from google.cloud import dataflow_v1beta3 as dataflow
    parameters = dict(args.parameter)
    check_parameters(parameters, metadata)
    environment = {flag: getattr(args, flag) for flag in ENVIRONMENT_FLAGS
                   if getattr(args, flag) is not None}
    if args.label:
        environment["additional_user_labels"] = dict(args.label)
    if args.experiment:
        environment["additional_experiments"] = list(args.experiment)
    launch_parameter = dataflow.LaunchFlexTemplateParameter(
        job_name=job_name(args, now), container_spec_gcs_path=args.template,
        parameters=parameters)
    if environment:
        launch_parameter.environment = dataflow.FlexTemplateRuntimeEnvironment(**environment)
    return dataflow.LaunchFlexTemplateRequest(project_id=args.project, location=args.region,
                                              launch_parameter=launch_parameter)


def request_body(request: dataflow.LaunchFlexTemplateRequest) -> dict:
    """The REST body of a launch request: the message in its JSON form
    (enums by name, fields left at their defaults omitted), without the
    project and location, which are the URL's path."""
    from google.cloud import dataflow_v1beta3 as dataflow
    document = json.loads(dataflow.LaunchFlexTemplateRequest.to_json(
        request, use_integers_for_enums=False, always_print_fields_with_no_presence=False))
    return {key: value for key, value in document.items()
            if key not in ("projectId", "location")}


def launch_body(args, metadata: dict, now: Optional[datetime.datetime] = None) -> dict:
    """The `flexTemplates:launch` request body (LaunchFlexTemplateRequest)."""
    return request_body(launch_request(args, metadata, now))


def body_bytes(body: dict) -> bytes:
    """The exact bytes sent (printed, POSTed and base64-encoded alike)."""
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8")


def scheduler_job(args, body: dict) -> dict:
    """A Cloud Scheduler job (v1 `projects.locations.jobs` resource) that
    POSTs `body` to the launch endpoint on --schedule."""
    location = args.scheduler_location or args.region
    job_id = args.scheduler_job_id or args.job_name_prefix
    template = os.path.splitext(os.path.basename(args.template))[0]
    return {
        "name": f"projects/{args.project}/locations/{location}/jobs/{job_id}",
        "description": f"Launches the {template} Dataflow Flex Template "
                       f"(generated by python -m pipelines.launch --scheduler_job).",
        "schedule": args.schedule,
        "timeZone": args.time_zone,
        "attemptDeadline": ATTEMPT_DEADLINE,
        "retryConfig": dict(RETRY_CONFIG),
        "httpTarget": {
            "uri": launch_url(args.project, args.region),
            "httpMethod": "POST",
            "headers": {"Content-Type": "application/json"},
            "body": base64.b64encode(body_bytes(body)).decode("ascii"),
            "oauthToken": {"serviceAccountEmail": args.scheduler_service_account,
                           "scope": CLOUD_PLATFORM_SCOPE},
        },
    }


def send(request: dataflow.LaunchFlexTemplateRequest,
         timeout: float = 60.0) -> dataflow.LaunchFlexTemplateResponse:
    """Send the launch request with Application Default Credentials, over
    the client's REST transport (the HTTPS endpoint above); returns the
    response (its job.id names the new job). Raises
    google.api_core.exceptions.GoogleAPICallError on an HTTP error."""
    from google.cloud import dataflow_v1beta3 as dataflow
    client = dataflow.FlexTemplatesServiceClient(transport="rest")
    return client.launch_flex_template(request=request, timeout=timeout)


def _request(argv: Sequence[str], now: Optional[datetime.datetime] = None):
    """(arguments, launch request) of a checked command line."""
    args = build_parser().parse_args(argv)
    _check_arguments(args)
    metadata = load_metadata(metadata_path(args.template, args.metadata))
    return args, launch_request(args, metadata, now)


def build(argv: Sequence[str], now: Optional[datetime.datetime] = None) -> dict:
    """Parse and check a command line; returns the launch body, or the
    scheduler job with --scheduler_job. Raises LaunchError."""
    return _document(*_request(argv, now))


def _document(args, request: dataflow.LaunchFlexTemplateRequest) -> dict:
    body = request_body(request)
    return scheduler_job(args, body) if args.scheduler_job else body


def main(argv: Optional[Sequence[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args, request = _request(argv)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.send:
        job = send(request).job
        print(f"launched job {job.name!r} id {job.id} in {args.project}/{args.region}")
        return
    data = body_bytes(_document(args, request))
    if args.out:
        with open(args.out, "wb") as handle:
            handle.write(data)
    else:
        sys.stdout.write(data.decode("utf-8"))


if __name__ == "__main__":
    main()
