"""The Beam side of the entry points' options: PipelineOptions classes for
the option groups they share (each adds its group from pipelines.arguments),
the check that an entry point's command line holds only options it accepts,
and helpers shared by the pipelines.

Beam registers every PipelineOptions subclass in the process and parses them
together, so a flag may be defined by one class only: the groups all pipelines
share have their class here, each pipeline's own group has one in its job
module (pipelines.jobs).
"""

import datetime
import math
import re
import sys
from typing import Optional, Tuple

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

from pipelines import arguments
from pipelines.cli import UsageError, leftover_problems


class ProblemLogOptions(PipelineOptions):
    """Where the ProblemLogs are, how to read them, and where outputs go."""

    @classmethod
    def _add_argparse_args(cls, parser):
        arguments.add_problem_log_arguments(parser)


class OperatorOptions(PipelineOptions):
    """What a run prints while it works (every entry point; not template
    parameters: they do not change what a job computes)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        arguments.add_operator_arguments(parser)


class TrainingOptions(PipelineOptions):
    """What the training pipelines share and the monitor (which trains
    nothing, and takes seed and dimension from the model) does not use."""

    @classmethod
    def _add_argparse_args(cls, parser):
        arguments.add_training_arguments(parser)


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
        arguments.add_param_store_arguments(parser)


class HistoryOptions(PipelineOptions):
    """For pipelines that replay students over a date window: how much
    history before it is replayed too."""

    @classmethod
    def _add_argparse_args(cls, parser):
        arguments.add_history_arguments(parser)


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


def run_date(options, today: datetime.date = None) -> datetime.date:
    """--run_date, or today in UTC."""
    if options.run_date:
        return _date(options.run_date, "--run_date")
    return today or datetime.datetime.now(datetime.timezone.utc).date()


def date_window(options, today: datetime.date = None) -> Tuple[Optional[datetime.date],
                                                               Optional[datetime.date]]:
    """(first day, day after the last) from the window options; None = open."""
    if options.window_days:
        if options.start_date or options.end_date:
            raise ValueError("--window_days counts back from --run_date; do not combine it "
                             "with --start_date/--end_date")
        day = run_date(options, today)
        return day - datetime.timedelta(days=options.window_days), day
    if options.run_date and not getattr(options, "state_dir", ""):
        raise ValueError("--run_date only sets where --window_days counts back from (and "
                         "which --state_dir snapshot a run writes)")
    start = _date(options.start_date, "--start_date") if options.start_date else None
    end = _date(options.end_date, "--end_date") if options.end_date else None
    if start and end and end < start:
        raise ValueError(f"--end_date {options.end_date} is before --start_date "
                         f"{options.start_date}")
    return start, end + datetime.timedelta(days=1) if end else None


def _refuse(message: str):
    """argparse's error() for Beam's parser: a UsageError naming the option
    ("--min_samples: must be at least 1, got 0") instead of the whole usage of
    every Beam option and SystemExit."""
    raise UsageError(re.sub(r"^argument (-[^:]+): ", r"\1: ", message))


def accepted_options_parser(option_groups):
    """Beam's parser of exactly the options an entry point accepts: its option
    groups (`option_groups`, the add_<group>_arguments functions of its
    ARGUMENTS), the operator options, and Beam's own (runner, Google Cloud,
    worker...: every registered PipelineOptions class defined by Beam). Not
    the options of another entry point, although Beam registers those too
    once their module is imported. A value its option's type refuses raises
    UsageError when the parser parses it (pipelines.option_types)."""
    captured = []

    def add_accepted(parser):
        parser.error = _refuse
        for add_arguments in tuple(option_groups) + (arguments.add_operator_arguments,):
            add_arguments(parser)
        for cls in PipelineOptions.__subclasses__():
            if cls.__module__.startswith("apache_beam."):
                cls._add_argparse_args(parser)
        captured.append(parser)

    # get_all_options(add_extra_args_fn=...) is Beam's public way to a parser
    # of its own kind; current_only: none of the registered classes but
    # PipelineOptions itself, which adds no option.
    PipelineOptions([]).get_all_options(current_only=True, add_extra_args_fn=add_accepted)
    return captured[0]


def unknown_arguments(argv, option_groups) -> list:
    """The arguments in `argv` that the entry point of `option_groups` does
    not accept (see accepted_options_parser), as error lines with the closest
    valid option. Beam itself parses every registered option and drops the
    rest with a warning, so a typo (--num_random_feature) would run the job on
    defaults, and another entry point's option (the monitor given --seed)
    would be taken and ignored."""
    parser = accepted_options_parser(option_groups)
    _, leftovers = parser.parse_known_args(list(argv))
    known_options = ["--" + name for name in vars(parser.parse_known_args([])[0])]
    return leftover_problems(leftovers, known_options)


def checked_options(argv, option_groups) -> PipelineOptions:
    """PipelineOptions of an entry point's argv (`option_groups`: its
    ARGUMENTS); UsageError for any argument it does not accept and any value
    its option's type refuses, before any work (so later view_as() calls
    parse it without error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    problems = unknown_arguments(argv, option_groups)
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
