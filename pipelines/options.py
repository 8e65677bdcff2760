"""Options and command-line helpers shared by the entry points.

Beam registers every PipelineOptions subclass in the process and parses them
together, so a flag may be defined by one class only: the flags all pipelines
share live here, each pipeline's own flags in its module.
"""

import argparse
import contextlib
import datetime
import logging
import math
import re
import sys
from typing import Optional, Tuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from models.exercise_model import FitSettings
from pipelines.cli import leftover_problems
from pipelines.option_types import fraction_in_0_1, non_negative_int, positive_int
from transforms.read import FORMATS


class UsageError(ValueError):
    """A problem with the command line, reported without a traceback."""


class JobFailed(RuntimeError):
    """The job ran but its result must not count as a success (e.g. nothing
    was trained): reported without a traceback, exit status 1."""


class ProblemLogOptions(PipelineOptions):
    """Where the ProblemLogs are, how to read them, and where outputs go."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("input and output")
        group.add_argument("--input", default="",
                           help="ProblemLogs: a file glob (e.g. 'logs/*.avro', "
                                "'gs://bucket/export/*.avro') or a BigQuery table "
                                "'bq://project.dataset.table'. time_done in JSON and CSV: "
                                "ISO-8601 text, or a number of epoch SECONDS (epoch "
                                "milliseconds land after year 9999 and are dead-lettered as "
                                "bad_timestamp, or as future_timestamp when they fall after "
                                "the run's start plus one hour).")
        group.add_argument("--output", default="",
                           help="Output directory (local path or gs://...). Required.")
        group.add_argument("--input_format", default="auto", choices=("auto",) + FORMATS,
                           help="Format of --input files; 'auto' uses the file extension "
                                "(.avro, .json/.jsonl, .csv, .parquet).")
        group.add_argument("--column_mapping", default="",
                           help="Source column names for ProblemLog fields when they differ, "
                                "e.g. 'user=student_id,exercise=skill,time_done=timestamp'.")
        group.add_argument("--student_buckets", type=non_negative_int, default=0,
                           help="Students are grouped into this many buckets (by a hash of "
                                "the user), and each bucket is sorted and replayed in one "
                                "vectorized pass: the unit of parallelism and of worker "
                                "memory. 0: about 250,000 logs per bucket, estimated from "
                                "the input files' size (4,096 for BigQuery).")
        group.add_argument("--max_attempts_per_student", type=positive_int, default=100000,
                           help="A student with more attempts is dead-lettered whole "
                                "(reason too_many_attempts), not truncated.")
        group.add_argument("--problem_number_range", default="",
                           help="LO,HI: emit training rows only for LO <= problem_number < HI "
                                "(the source system used 1,6). Default: every attempt. State "
                                "is always updated by every attempt.")
        group = parser.add_argument_group(
            "BigQuery input",
            "A table is read with the Storage Read API: only the needed columns, and the "
            "date window as a row restriction. Instead of --input bq://... the table may "
            "be given as --bq_project/--bq_dataset/--bq_table.")
        group.add_argument("--bq_project", default="", help="Project of the ProblemLog table.")
        group.add_argument("--bq_dataset", default="", help="Dataset of the ProblemLog table.")
        group.add_argument("--bq_table", default="", help="ProblemLog table name.")
        group.add_argument("--input_query", default="",
                           help="Standard SQL returning ProblemLog columns (names after "
                                "--column_mapping), for custom schemas; read by exporting "
                                "its result. Its time column must be a TIMESTAMP for a "
                                "date window.")
        group.add_argument("--bq_temp_dataset", default="",
                           help="'project.dataset' for --input_query's temporary result "
                                "table (the job's service account needs to create tables "
                                "there). Required with --input_query.")
        group = parser.add_argument_group(
            "date window",
            "Which days of ProblemLogs to read, by time_done in UTC. For files the window "
            "filters records (counted as records_outside_window); for BigQuery it is "
            "pushed into the read.")
        group.add_argument("--start_date", default="",
                           help="First day read, YYYY-MM-DD (default: no lower bound).")
        group.add_argument("--end_date", default="",
                           help="Last day read, inclusive, YYYY-MM-DD (default: no upper "
                                "bound).")
        group.add_argument("--window_days", type=non_negative_int, default=0,
                           help="Read the K whole days before --run_date; instead of "
                                "--start_date/--end_date, so a nightly job with fixed "
                                "parameters reads the right days.")
        group.add_argument("--run_date", default="",
                           help="YYYY-MM-DD that --window_days counts back from (default: "
                                "today in UTC); set it to re-run or backfill a given night.")


PROGRESS_MODES = ("auto", "always", "never")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The project's own loggers; everything else (Beam, Google clients) is "theirs".
OWN_LOGGERS = ("pipelines", "transforms", "models", "dashboard", "container", "__main__")


class OperatorOptions(PipelineOptions):
    """What a run prints while it works (every entry point; not template
    parameters: they do not change what a job computes)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("progress and logging")
        group.add_argument("--progress", default="auto", choices=PROGRESS_MODES,
                           help="Progress lines while the job runs (every few seconds on the "
                                "DirectRunner: records read, students replayed, exercises "
                                "fitted, elapsed time). 'auto': only when stdout is a "
                                "terminal. On Dataflow the job id and console URL are "
                                "always printed.")
        group.add_argument("--log_level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                           help="Level of the project's own log messages.")
        group.add_argument("--beam_log_level", default="ERROR", type=str.upper,
                           choices=LOG_LEVELS,
                           help="Level of Beam's own log messages, including those the "
                                "DirectRunner's worker processes forward "
                                "(--direct_running_mode=multi_processing).")


def operator_settings(argv) -> argparse.Namespace:
    """--progress, --log_level and --beam_log_level from `argv` (UsageError
    for a bad value), before Beam parses anything."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    OperatorOptions._add_argparse_args(parser)
    try:
        settings, _ = parser.parse_known_args(list(argv))
    except argparse.ArgumentError as error:
        raise UsageError(str(error)) from None
    return settings


def configure_logging(level: str = "INFO", beam_level: str = "ERROR") -> None:
    """Our loggers at `level`, Beam's at `beam_level`, everything else at
    WARNING, all to stderr as 'LEVEL logger: message'."""
    root = logging.getLogger()
    if not any(isinstance(handler, logging.StreamHandler) for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(level)
    logging.getLogger("apache_beam").setLevel(beam_level)


class TrainingOptions(PipelineOptions):
    """What the training pipelines share and the monitor (which trains
    nothing, and takes seed and dimension from the model) does not use."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("training")
        group.add_argument("--seed", type=non_negative_int, default=FitSettings.seed,
                           help="Model seed: random components, row sampling and the "
                                "holdout split are pure functions of it.")
        group.add_argument("--holdout_fraction", type=fraction_in_0_1,
                           default=FitSettings.holdout_fraction,
                           help="Fraction of students whose rows are held out for "
                                "evaluation (a student's rows are all on one side).")
        group.add_argument("--overwrite", action="store_true",
                           help="Replace the outputs of an earlier run in --output; "
                                "without it such outputs are an error.")


def parse_problem_number_range(text: str):
    """'LO,HI' -> (LO, HI) for LO <= problem_number < HI; '' -> all attempts."""
    if not text:
        return 1, None
    try:
        low, high = (int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"--problem_number_range {text!r} is not LO,HI (e.g. 1,6)") from None
    if low < 1 or high <= low:
        raise ValueError(f"--problem_number_range {text!r} needs 1 <= LO < HI")
    return low, high


def parse_penalties(text: str, option: str) -> Tuple[float, ...]:
    """'0.1,1,10' -> (0.1, 1.0, 10.0): one or more finite values >= 0."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a comma-separated list of numbers") from None
    if not values or not all(0 <= value < math.inf for value in values):
        raise UsageError(f"{option} {text!r} needs one or more finite values >= 0")
    return values


class ParamStoreOptions(PipelineOptions):
    """Where model versions live in Datastore (training writes one, the
    monitor reads one)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("model versions")
        group.add_argument("--model_version", default="",
                           help="Model version. Training: the label its parameters are "
                                "stored under (default: the UTC start time, e.g. "
                                "20261123T002000Z). Monitor: the version to evaluate (default: "
                                "the active one).")
        group.add_argument("--datastore_project", default="",
                           help="Google Cloud project of the Datastore (Firestore in "
                                "Datastore mode) database holding model versions.")
        group.add_argument("--datastore_namespace", default="",
                           help="Datastore namespace of the model versions (default: the "
                                "default namespace).")


class HistoryOptions(PipelineOptions):
    """For pipelines that replay students over a date window: how much
    history before it is replayed too."""

    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("history")
        group.add_argument("--history_days", type=non_negative_int, default=28,
                           help="With a start date: also read this many days before it, so "
                                "students' states include their recent history. Those "
                                "attempts update the state but are not trained on or "
                                "scored (0: the state starts at the window).")


def read_window(options) -> Tuple[Tuple, Optional[datetime.date]]:
    """((first day read, day after the last), first day used) for a pipeline
    with HistoryOptions: the date window widened by --history_days."""
    start, end = date_window(options)
    read_start = start - datetime.timedelta(days=options.history_days) if start else None
    return (read_start, end), start


def _date(text: str, option: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{option} {text!r} is not a date YYYY-MM-DD") from None


def date_window(options, today: datetime.date = None) -> Tuple[Optional[datetime.date],
                                                               Optional[datetime.date]]:
    """(first day, day after the last) from the window options; None = open."""
    if options.window_days:
        if options.start_date or options.end_date:
            raise ValueError("--window_days counts back from --run_date; do not combine it "
                             "with --start_date/--end_date")
        run_date = (_date(options.run_date, "--run_date") if options.run_date else
                    today or datetime.datetime.now(datetime.timezone.utc).date())
        return run_date - datetime.timedelta(days=options.window_days), run_date
    if options.run_date:
        raise ValueError("--run_date only sets where --window_days counts back from")
    start = _date(options.start_date, "--start_date") if options.start_date else None
    end = _date(options.end_date, "--end_date") if options.end_date else None
    if start and end and end < start:
        raise ValueError(f"--end_date {options.end_date} is before --start_date "
                         f"{options.start_date}")
    return start, end + datetime.timedelta(days=1) if end else None


@contextlib.contextmanager
def _quiet(logger_name: str):
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _refuse(message: str):
    """argparse's error() for Beam's parser: a UsageError naming the option
    ("--min_samples: must be at least 1, got 0") instead of the whole usage of
    every Beam option and SystemExit."""
    raise UsageError(re.sub(r"^argument (-[^:]+): ", r"\1: ", message))


def unknown_arguments(argv) -> list:
    """The arguments in `argv` that no option accepts, as error lines with the
    closest valid option. Beam keeps only what its parser knows and drops the
    rest with a warning, so a typo (--num_random_feature) would run the job on
    defaults. Known: every option of every PipelineOptions class loaded (ours,
    Beam's and the runners'), from the parser Beam itself builds. A value its
    option's type refuses (pipelines.option_types) raises UsageError."""
    captured = []

    def capture(parser):
        parser.error = _refuse
        captured.append(parser)

    with _quiet("apache_beam.options.pipeline_options"):
        PipelineOptions(list(argv)).get_all_options(add_extra_args_fn=capture)
    (parser,) = captured
    _, leftovers = parser.parse_known_args(list(argv))
    known_options = ["--" + name for name in vars(parser.parse_known_args([])[0])]
    return leftover_problems(leftovers, known_options)


def checked_options(argv) -> PipelineOptions:
    """PipelineOptions of an entry point's argv; UsageError for any argument
    no option accepts and any value its option's type refuses, before any
    work (so later view_as() calls parse it without error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    problems = unknown_arguments(argv)
    if problems:
        raise UsageError("; ".join(problems))
    return PipelineOptions(argv)


def submits_only(pipeline_options) -> bool:
    """True when running only writes a Dataflow job spec (a Flex Template
    launch or a classic template): nothing can be waited for or read back, so
    entry points return right after pipeline.run()."""
    return bool(pipeline_options.view_as(GoogleCloudOptions).template_location)


def output_path(output: str, *parts: str) -> str:
    return FileSystems.join(output.rstrip("/"), *parts)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the module docstring's layout and shows every option's default,
    except empty ones ("(default: )" says nothing)."""

    def _get_help_string(self, action):
        if action.default in ("", None, False) or action.required:
            return action.help
        return super()._get_help_string(action)


class _HelpParser(argparse.ArgumentParser):
    """The --help parser: options named in `required` are shown as required
    (Beam's parser cannot make them so: every entry point's classes share it)."""

    def __init__(self, *args, required=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.required = set(required)

    def add_argument_group(self, *args, **kwargs):
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument

        def add_argument(*names, **options):
            if set(names) & self.required:
                options["required"] = True
            return add(*names, **options)

        group.add_argument = add_argument
        return group


def print_options_help(prog: str, description: str, *options_classes) -> None:
    """--help for an entry point whose options are PipelineOptions subclasses
    (Beam's own parser does not print them)."""
    parser = _HelpParser(
        prog=prog, description=description, formatter_class=_HelpFormatter,
        required=("--output",),
        epilog="Beam options are accepted as well, e.g. --runner DirectRunner (default), "
               "--direct_running_mode multi_processing, --direct_num_workers N; "
               "on Dataflow: --runner DataflowRunner --project --region --temp_location.")
    for options_class in tuple(options_classes) + (OperatorOptions,):
        options_class._add_argparse_args(parser)
    parser.print_help()


def command_line(prog: str, description: str, options_classes, run, argv=None) -> None:
    """An entry point's main(): --help, then run(argv) with exit status 2 for
    a bad command line and 1 for a failed job, each with a one-line message."""
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print_options_help(prog, description, *options_classes)
        return
    try:
        settings = operator_settings(argv)
        configure_logging(settings.log_level, settings.beam_log_level)
        run(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except JobFailed as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
