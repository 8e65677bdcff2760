"""The Beam job of `python -m pipelines.train_knowledge_model` (that module
holds the command line, its options and the documentation): read
ProblemLogs, replay every student, fit one logistic regression per exercise
and write the parameters."""

import datetime
import json
import re
import time
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from models.evaluation import evaluate, l2_selection
from models.knowledge_state import feature_names
from models.param_store import Registry
from models.settings import FitSettings
from pipelines.cli import JobFailed, UsageError
from pipelines.input_source import check_input_options, day_start_micros, problem_log_source
from pipelines.options import (HistoryOptions, ParamStoreOptions, ProblemLogOptions,
                               TrainingOptions, checked_options, output_path,
                               parse_penalties, parse_problem_number_range, read_window,
                               submits_only)
from pipelines.progress import run_pipeline
from pipelines.saved_state import SavedState
from pipelines.train_knowledge_model import ARGUMENTS, add_knowledge_model_arguments
from transforms.datastore_sink import RetrySettings, WriteModelVersion
from transforms.fit import FITTED, GLOBAL_FIT, SKIPPED, FitPerExercise
from transforms.read import DEAD_LETTER
from transforms.replay import COMPONENT_KEYS, ROWS, STATES, ReplayKnowledgeState
from transforms.run_summary import counter_values, human_summary, summarize
from transforms.sessionize import SessionizeByStudent
from transforms.write import (ComponentRecords, TrainingRowRecords, WriteJsonLines,
                              WriteSortedJsonLines, component_sort_key, read_json_lines)

OUTPUT_FOLDERS = ("params", "components", "skipped_exercises", "dead_letter", "datastore",
                  "global_fit")
MODEL_VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
RUN_SUMMARY = "run_summary.json"
# What the progress lines count (pipelines.progress).
PROGRESS = (("records_read", "record", "read"), ("students", "student", "replayed"),
            ("exercises_fitted", "exercise", "fitted"))


class KnowledgeModelOptions(ProblemLogOptions, TrainingOptions, HistoryOptions, ParamStoreOptions,
                            PipelineOptions):
    """The knowledge model's own options, on top of the shared ones."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_knowledge_model_arguments(parser)


def validate(options) -> dict:
    """Check options before building anything; returns derived settings.
    Raises ValueError naming the option. (Single values were checked by
    their types, pipelines.option_types, when the command line was parsed.)"""
    if not options.output:
        raise ValueError("--output is required")
    read, start = read_window(options)
    settings = {
        "train_from": day_start_micros(start),
        "problem_number_range": parse_problem_number_range(options.problem_number_range),
        "l2_candidates": (parse_penalties(options.l2_candidates, "--l2_candidates")
                          if options.l2_candidates else ()),
    }
    if settings["l2_candidates"] and not options.holdout_fraction:
        raise ValueError("--l2_candidates chooses on the holdout: it needs "
                         "--holdout_fraction > 0")
    check_input_options(options)
    settings["saved_state"] = SavedState(options, start, read)
    read = settings["saved_state"].read_window
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    settings["model_version"] = options.model_version or now.strftime("%Y%m%dT%H%M%SZ")
    if not MODEL_VERSION_PATTERN.fullmatch(settings["model_version"]):
        raise ValueError(f"--model_version {options.model_version!r} must be 1-100 letters, "
                         f"digits, '.', '_' or '-', starting with a letter or digit")
    settings["trained_at"] = now.isoformat().replace("+00:00", "Z")
    settings["run_id"] = uuid.uuid4().hex
    if options.params_sink == "datastore" and not options.datastore_project:
        raise ValueError("--datastore_project is required with --params_sink datastore")
    # Last: it reads file headers or the BigQuery schema.
    settings["source"] = problem_log_source(options, window=read)
    return settings


def active_baseline(options, settings):
    """The active version as a baseline: ({exercise: theta} or None, the
    keyword arguments of models.evaluation.evaluate). Refuses to rewrite the
    active version, which would change it under serving's feet."""
    registry = Registry(options.datastore_project, options.datastore_namespace)
    active = registry.active_version()
    if active is None:
        return None, {}
    if active == settings["model_version"]:
        raise UsageError(f"--model_version {active!r} is the active version in Datastore; "
                         f"train under a new version (or activate another one first)")
    header, params, _ = registry.load(active)
    baseline = {"baseline_version": active, "baseline_exercises": len(params)}
    if (header["seed"], header["num_random_features"]) != (options.seed,
                                                           options.num_random_features):
        return None, {**baseline, "baseline_note": (
            f"its seed and dimension ({header['seed']}, {header['num_random_features']}) "
            f"differ from this run's, so its features differ")}
    if bool(header.get("student_features")) != options.student_features:
        return None, {**baseline, "baseline_note": (
            f"it was trained {'with' if header.get('student_features') else 'without'} "
            f"--student_features and this run {'is' if options.student_features else 'is not'}"
            f", so its features differ")}
    return {record["exercise"]: record["theta"] for record in params}, baseline


def previous_outputs(options) -> list:
    """Files an earlier run left where this one writes: stale shards would
    otherwise mix with the new ones."""
    patterns = [output_path(options.output, folder, "*") for folder in OUTPUT_FOLDERS]
    patterns.append(output_path(options.output, RUN_SUMMARY))
    if options.training_rows_output:
        patterns.append(output_path(options.training_rows_output, "training_rows-*"))
    return [metadata.path for match in FileSystems.match(patterns)
            for metadata in match.metadata_list]


def build(pipeline, options, settings: dict) -> None:
    """Assemble the training graph on `pipeline`."""
    output = options.output
    fit_settings = FitSettings(
        max_samples=options.max_samples_per_exercise, min_samples=options.min_samples,
        holdout_fraction=options.holdout_fraction, l2=options.l2,
        l2_candidates=settings["l2_candidates"],
        max_iterations=options.max_iterations, seed=options.seed,
        num_random_features=options.num_random_features,
        shrink_to_global=options.shrink_to_global,
        model_version=settings["model_version"], trained_at=settings["trained_at"])

    logs = pipeline | "ReadProblemLogs" >> settings["source"].read
    saved_state = settings["saved_state"]
    chunks = saved_state.add_states(pipeline, logs.valid, settings["source"].num_buckets)
    students = chunks | "SessionizeByStudent" >> SessionizeByStudent(
        options.max_attempts_per_student, saved_states=saved_state.continues)
    replayed = students.students | "ReplayKnowledgeState" >> ReplayKnowledgeState(
        options.seed, options.num_random_features, settings["problem_number_range"],
        emit_from=settings["train_from"], student_features=options.student_features)
    rows = saved_state.save(replayed[STATES], replayed[ROWS], settings, fit_settings)
    fits = rows | "FitPerExercise" >> FitPerExercise(
        fit_settings, settings.get("baseline_thetas"))

    _ = fits[FITTED] | "WriteParams" >> WriteSortedJsonLines(
        output_path(output, "params", "params"), lambda record: record["exercise"])
    if GLOBAL_FIT in fits:
        _ = fits[GLOBAL_FIT] | "WriteGlobalFit" >> WriteSortedJsonLines(
            output_path(output, "global_fit", "global_fit"), lambda record: 0)
    _ = fits[SKIPPED] | "WriteSkipped" >> WriteSortedJsonLines(
        output_path(output, "skipped_exercises", "skipped_exercises"),
        lambda record: record["exercise"])
    components = replayed[COMPONENT_KEYS] | "ComponentRecords" >> ComponentRecords(
        options.seed, options.num_random_features)
    _ = components | "WriteComponents" >> WriteSortedJsonLines(
        output_path(output, "components", "components"), component_sort_key)
    if options.params_sink == "datastore":
        _ = ({"params": fits[FITTED], "components": components}
             | "WriteModelVersion" >> WriteModelVersion(
                 options.datastore_project, options.datastore_namespace,
                 settings["model_version"], version_header(options, settings),
                 options.deploy_policy, settings.get("baseline"),
                 retry=RetrySettings(attempts=options.datastore_write_attempts),
                 max_batch_size=options.datastore_batch_size)
             | "WriteDatastoreVersion" >> WriteJsonLines(
                 output_path(output, "datastore", "model_version")))
    _ = ((logs[DEAD_LETTER], students[DEAD_LETTER])
         | "AllDeadLetters" >> beam.Flatten()
         | "WriteDeadLetter" >> WriteJsonLines(output_path(output, "dead_letter", "dead_letter")))
    if options.training_rows_output:
        _ = (replayed[ROWS]
             | "TrainingRowRecords" >> beam.ParDo(
                 TrainingRowRecords(options.seed, options.num_random_features))
             | "WriteTrainingRows" >> WriteJsonLines(
                 output_path(options.training_rows_output, "training_rows")))


def datastore_failure_message(options, settings, error) -> str:
    """Why the run failed, and that serving was not touched (checked, not assumed)."""
    cause = str(error).strip().splitlines()
    cause = next((line for line in reversed(cause) if "DatastoreWriteError" in line),
                 cause[-1] if cause else type(error).__name__)
    try:
        active = repr(Registry(options.datastore_project,
                               options.datastore_namespace).active_version(deadline=10))
    except Exception:  # noqa: BLE001 (Datastore may be what failed)
        active = "unchanged (Datastore could not be read to confirm)"
    return (f"the run failed, so model version {settings['model_version']!r} was not "
            f"activated; the active version is {active}. Cause: {cause}")


def version_header(options, settings) -> dict:
    """What the Datastore version entity records besides its counts."""
    return {"run_id": settings["run_id"], "trained_at": settings["trained_at"],
            "seed": options.seed, "num_random_features": options.num_random_features,
            "problem_number_range": options.problem_number_range,
            "feature_names": feature_names(options.num_random_features,
                                           options.student_features),
            **({"student_features": True} if options.student_features else {}),
            "input": settings["source"].description}


def global_fit_line(record: dict) -> str:
    """What --shrink_to_global shrank toward, in one line."""
    if record["theta"] is None:
        return f"Global fit: none ({record['note']})."
    return (f"Exercises shrunk toward a global fit over {record['num_rows']:,} rows of "
            f"{record['num_exercises']:,} exercises (l2 {record['l2']:g}).")


class NothingTrained(JobFailed):
    """The job ran but produced no parameters: a scheduler must see a failure."""


def run(argv=None) -> dict:
    """Run the job; returns the run summary (also written to run_summary.json)."""
    started = time.monotonic()
    pipeline_options = checked_options(argv, ARGUMENTS)
    options = pipeline_options.view_as(KnowledgeModelOptions)
    try:
        settings = validate(options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    if options.params_sink == "datastore":
        settings["baseline_thetas"], settings["baseline"] = active_baseline(options, settings)
    existing = previous_outputs(options)
    if existing and not options.overwrite:
        raise UsageError(f"--output {options.output!r} already holds outputs of a run "
                         f"(e.g. {existing[0]}); pass --overwrite to replace them")
    replaced = settings["saved_state"].files_to_replace(options.overwrite)
    if existing or replaced:
        FileSystems.delete(replaced + existing)

    pipeline = beam.Pipeline(options=pipeline_options)
    build(pipeline, options, settings)
    try:
        if submits_only(pipeline_options):
            pipeline.run()
            print(f"Job submitted; it writes the parameters under {options.output}"
                  f"{' and to Datastore' if options.params_sink == 'datastore' else ''} "
                  f"(no run_summary.json for a templated launch).")
            return {}
        result = run_pipeline(pipeline, pipeline_options, PROGRESS, started=started)
    except Exception as error:
        if options.params_sink != "datastore":
            raise
        raise JobFailed(datastore_failure_message(options, settings, error)) from error

    summary = summarize(counter_values(result))
    summary["wall_time_seconds"] = round(time.monotonic() - started, 3)
    summary["model"] = {
        "model_version": settings["model_version"],
        "trained_at": settings["trained_at"],
        "seed": options.seed,
        "num_random_features": options.num_random_features,
        "problem_number_range": list(settings["problem_number_range"]),
        "feature_names": feature_names(options.num_random_features, options.student_features),
        **({"shrink_to_global": True} if options.shrink_to_global else {}),
        **({"student_features": True} if options.student_features else {}),
    }
    summary["input"] = settings["source"].description
    summary["outputs"] = {
        "params": output_path(options.output, "params", "params.jsonl"),
        "components": output_path(options.output, "components", "components.jsonl"),
        "skipped_exercises": output_path(options.output, "skipped_exercises",
                                         "skipped_exercises.jsonl"),
        "dead_letter": output_path(options.output, "dead_letter", "dead_letter-*.jsonl"),
        "run_summary": output_path(options.output, RUN_SUMMARY),
    }
    params = read_json_lines(summary["outputs"]["params"])
    summary["evaluation"] = evaluate(params, **settings.get("baseline", {}))
    if settings["l2_candidates"]:
        summary["l2_selection"] = l2_selection(params, settings["l2_candidates"])
    if options.shrink_to_global:
        summary["outputs"]["global_fit"] = output_path(options.output, "global_fit",
                                                       "global_fit.jsonl")
        (summary["global_fit"],) = read_json_lines(summary["outputs"]["global_fit"])
    if options.params_sink == "datastore":
        (written,) = read_json_lines(output_path(options.output, "datastore", "*.jsonl"))
        summary["datastore"] = {
            "project": options.datastore_project, "namespace": options.datastore_namespace,
            "model_version": settings["model_version"], "run_id": settings["run_id"],
            **{key: written[key] for key in ("activated", "deploy_decision", "active_version")}}
    summary["outputs"].update(settings["saved_state"].outputs())
    summary.update(settings["saved_state"].summary())
    if options.training_rows_output:
        summary["outputs"]["training_rows"] = output_path(
            options.training_rows_output, "training_rows-*.jsonl")
    with FileSystems.create(summary["outputs"]["run_summary"]) as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=True).encode("utf-8"))
    print(human_summary(summary, options.output))
    if options.shrink_to_global:
        print(global_fit_line(summary["global_fit"]))
    if summary["exercises_fitted"] == 0:
        raise NothingTrained(
            f"no exercise was fitted ({summary['dead_lettered_total']} records dead-lettered, "
            f"{summary['exercises_skipped_total']} exercises skipped); see "
            f"{summary['outputs']['dead_letter']} and {summary['outputs']['skipped_exercises']}")
    return summary
