"""Options and command-line helpers shared by the entry points.

Beam registers every PipelineOptions subclass in the process and parses them
together, so a flag may be defined by one class only: the flags all pipelines
share live here, each pipeline's own flags in its module.
"""

import argparse
import logging
import sys

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from models.exercise_model import FitSettings
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
                           help="File glob of ProblemLogs (e.g. 'logs/*.avro').")
        group.add_argument("--output", default="",
                           help="Output directory (local path or gs://...). Required.")
        group.add_argument("--input_format", default="auto", choices=("auto",) + FORMATS,
                           help="Format of --input files; 'auto' uses the file extension "
                                "(.avro, .json/.jsonl, .csv, .parquet).")
        group.add_argument("--column_mapping", default="",
                           help="Source column names for ProblemLog fields when they differ, "
                                "e.g. 'user=student_id,exercise=skill,time_done=timestamp'.")
        group.add_argument("--max_attempts_per_student", type=int, default=100000,
                           help="A student with more attempts is dead-lettered whole "
                                "(reason too_many_attempts), not truncated.")
        group.add_argument("--problem_number_range", default="",
                           help="LO,HI: emit training rows only for LO <= problem_number < HI "
                                "(the source system used 1,6). Default: every attempt. State "
                                "is always updated by every attempt.")
        group.add_argument("--seed", type=int, default=FitSettings.seed,
                           help="Model seed: random components, row sampling and the "
                                "holdout split are pure functions of it.")
        group.add_argument("--holdout_fraction", type=float,
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


def output_path(output: str, *parts: str) -> str:
    return FileSystems.join(output.rstrip("/"), *parts)


class _HelpFormatter(argparse.RawDescriptionHelpFormatter,
                     argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the module docstring's layout and shows every option's default."""


def print_options_help(prog: str, description: str, *options_classes) -> None:
    """--help for an entry point whose options are PipelineOptions subclasses
    (Beam's own parser does not print them)."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=_HelpFormatter,
        epilog="Beam options are accepted as well, e.g. --runner DirectRunner (default), "
               "--direct_running_mode multi_processing, --direct_num_workers N; "
               "on Dataflow: --runner DataflowRunner --project --region --temp_location.")
    for options_class in options_classes:
        options_class._add_argparse_args(parser)  # pylint: disable=protected-access
    parser.print_help()


def command_line(prog: str, description: str, options_classes, run, argv=None) -> None:
    """An entry point's main(): --help, then run(argv) with exit status 2 for
    a bad command line and 1 for a failed job, each with a one-line message."""
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print_options_help(prog, description, *options_classes)
        return
    logging.getLogger().setLevel(logging.WARNING)
    try:
        run(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except JobFailed as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
