"""The Beam job of `python -m pipelines.monitor` (that module holds the
command line, its options and the documentation): score a model version's
predictions per exercise and day, and write the daily metrics and the
dashboard."""

import datetime
import json
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from models import regressions, serving
from models.param_store import ModelNotFound, Registry
from pipelines.cli import JobFailed, UsageError
from pipelines.input_source import check_input_options, day_start_micros, problem_log_source
from pipelines.monitor import ARGUMENTS, add_monitor_arguments
from pipelines.options import (HistoryOptions, ParamStoreOptions, ProblemLogOptions,
                               checked_options, output_path, parse_problem_number_range,
                               read_window, submits_only)
from pipelines.progress import run_pipeline
from transforms.monitoring import (DailyMetrics, WriteDailyFiles, WriteDailyMetricsToBigQuery,
                                   WriteDashboard)
from transforms.read import DEAD_LETTER
from transforms.read_bigquery import parse_table
from transforms.run_summary import counted, counter_values, summarize
from transforms.sessionize import SessionizeByStudent
from transforms.write import WriteJsonLines, read_json_lines

DAILY = ("metrics", "daily")
DASHBOARD = "dashboard.html"
# What the progress lines count (pipelines.progress).
PROGRESS = (("records_read", "record", "read"), ("students", "student", "replayed"),
            ("rows_scored", "attempt", "scored"))


class MonitorOptions(ProblemLogOptions, HistoryOptions, ParamStoreOptions, PipelineOptions):
    """The monitor's own options, on top of the shared ones."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_monitor_arguments(parser)


def _read_text(path: str) -> str:
    with FileSystems.open(path) as handle:
        return handle.read().decode("utf-8")


def load_model(options) -> serving.KnowledgeModel:
    if options.params == "datastore":
        if not options.datastore_project:
            raise ValueError("--params datastore needs --datastore_project")
        registry = Registry(options.datastore_project, options.datastore_namespace)
        try:
            return serving.load_version(registry, options.model_version or None)
        except ModelNotFound as error:
            raise ValueError(f"--params datastore: {error}") from None
    try:
        return serving.load_local(options.params, _read_text)
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"--params {options.params!r} is not a training output directory "
                         f"(params/params.jsonl, components/components.jsonl, "
                         f"run_summary.json): {error}") from None


def validate(options) -> dict:
    """Raises ValueError naming the option."""
    for name in ("output", "params"):
        if not getattr(options, name):
            raise ValueError(f"--{name} is required")
    if options.metrics_table:
        parse_table(options.metrics_table, "--metrics_table")
    read, start = read_window(options)
    number_range = parse_problem_number_range(options.problem_number_range)
    check_input_options(options)
    # Then what reads files, Datastore or BigQuery.
    return {
        "model": load_model(options),
        "source": problem_log_source(options, window=read),
        "window": (start, read[1]),
        "problem_number_range": number_range,
    }


def build(pipeline, options, settings) -> None:
    model = settings["model"]
    logs = pipeline | "ReadProblemLogs" >> settings["source"].read
    students = logs.valid | "SessionizeByStudent" >> SessionizeByStudent(
        options.max_attempts_per_student)
    metrics = students.students | "DailyMetrics" >> DailyMetrics(
        {"params": {name: theta.tolist() for name, theta in model.params.items()},
         "seed": model.components.seed, "num_random_features": model.components.dim,
         "model_version": model.model_version, "student_features": model.student_features},
        settings["problem_number_range"], tuple(map(day_start_micros, settings["window"])))
    daily = output_path(options.output, *DAILY)
    _ = (metrics
         | "WriteDailyFiles" >> WriteDailyFiles(daily)
         | "WriteDashboard" >> WriteDashboard(
             daily, output_path(options.output, DASHBOARD), trailing_days=options.trailing_days,
             min_samples=options.regression_min_samples))
    if options.metrics_table:
        table = parse_table(options.metrics_table, "--metrics_table")
        _ = metrics | "WriteMetricsTable" >> WriteDailyMetricsToBigQuery(table.spec())
    _ = ((logs[DEAD_LETTER], students[DEAD_LETTER])
         | "AllDeadLetters" >> beam.Flatten()
         | "WriteDeadLetter" >> WriteJsonLines(output_path(options.output, "dead_letter",
                                                          "dead_letter")))


def _stale_dead_letters(options) -> list:
    return [metadata.path for metadata in FileSystems.match(
        [output_path(options.output, "dead_letter", "*")])[0].metadata_list]


def _day_span(days) -> dict:
    return {"count": len(days), "first": days[0] if days else None,
            "last": days[-1] if days else None}


def verdict(tested: dict, overall) -> str:
    """The latest day's regressions in one sentence."""
    worse = sum(1 for r in tested["tests"] if r["significant"])
    if not tested["tests"]:
        text = (f"No exercise had enough samples and history to compare on "
                f"{tested['date'] or 'the latest day'}")
    else:
        text = (f"On {tested['date']}, {worse:,} of the "
                f"{counted(len(tested['tests']), 'exercise')} compared got significantly "
                f"worse than their trailing average")
    if overall and overall["got_worse"]:
        return text + "; the model as a whole got worse."
    return text + "."


def run(argv=None) -> dict:
    """Run the monitor; returns its summary (also written to monitor_summary.json)."""
    started = time.monotonic()
    pipeline_options = checked_options(argv, ARGUMENTS)
    options = pipeline_options.view_as(MonitorOptions)
    try:
        settings = validate(options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    stale = _stale_dead_letters(options)
    if stale:
        FileSystems.delete(stale)

    pipeline = beam.Pipeline(options=pipeline_options)
    build(pipeline, options, settings)
    if submits_only(pipeline_options):
        pipeline.run()
        print(f"Job submitted; it writes the daily metrics and the dashboard under "
              f"{options.output} (no monitor_summary.json for a templated launch).")
        return {}
    result = run_pipeline(pipeline, pipeline_options, PROGRESS, started=started)

    counters = counter_values(result)
    records = read_json_lines(output_path(options.output, *DAILY, "*.jsonl"))
    dashboard = output_path(options.output, DASHBOARD)
    start, end = settings["window"]
    tested = regressions.day_tests(records, options.trailing_days,
                                   options.regression_min_samples)
    summary = {
        **{name: value for name, value in summarize(counters).items()
           if name.startswith(("records", "dead_letter", "duplicates", "students"))
           and name != "records_trained_on"},  # the monitor trains nothing
        **{name: counters.get(name, 0)
           for name in ("rows_scored", "rows_without_params", "rows_outside_window")},
        "model_version": settings["model"].model_version,
        "input": settings["source"].description,
        "window": {"start_date": start.isoformat() if start else None,
                   "end_date": (end - datetime.timedelta(days=1)).isoformat() if end else None},
        "days_in_output": _day_span(sorted({record["date"] for record in records})),
        "overall_change": regressions.overall_change(
            records, options.trailing_days, options.regression_min_samples),
        "regressions": [r for r in tested["tests"] if r["significant"]][:10],
        "regression_test": {
            "date": tested["date"], "exercises_compared": len(tested["tests"]),
            "false_discovery_rate": tested["fdr"], "noise_factor": tested["noise_factor"],
            "noise_factor_calibrated": tested["calibrated"],
            "trailing_days": options.trailing_days,
            "min_samples": options.regression_min_samples},
        "wall_time_seconds": round(time.monotonic() - started, 3),
        "outputs": {"daily_metrics": output_path(options.output, *DAILY, "<date>.jsonl"),
                    "dashboard": dashboard,
                    "summary": output_path(options.output, "monitor_summary.json")},
    }
    with FileSystems.create(summary["outputs"]["summary"]) as handle:
        handle.write(json.dumps(summary, indent=2, sort_keys=True).encode("utf-8"))
    print(f"Scored {counted(summary['rows_scored'], 'attempt')} of model version "
          f"{summary['model_version']!r} ({summary['rows_without_params']:,} on exercises "
          f"without parameters). {verdict(tested, summary['overall_change'])}\n"
          f"Dashboard: {dashboard}")
    if summary["rows_scored"] == 0:
        raise JobFailed("no attempt inside the window could be scored; check --input, the "
                        "date window and --params")
    return summary
