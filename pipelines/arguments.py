"""The options of the Beam entry points (train_knowledge_model, train_boosted,
monitor) as argparse arguments, without Beam: one function per option group,
add_<group>_arguments(parser).

Each entry point lists its groups in ARGUMENTS; its --help parser
(pipelines.cli), the PipelineOptions classes Beam parses them with (each one's
_add_argparse_args calls one of these functions, pipelines.options), the
check that refuses any option of another entry point, and the Flex Template
metadata (templates/generate.py) all take them from there. Nothing here
imports Beam, numpy or scipy, so --help starts in a fraction of a second.
"""

from models.problem_log import FORMATS
from models.settings import FitSettings
from pipelines.option_types import fraction_in_0_1, non_negative_int, positive_int

PROGRESS_MODES = ("auto", "always", "never")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The ProblemLogs to read: one of these alternatives, each a set of options
# that go together (pipelines.input_source.check_input_options refuses a run
# without one; argparse cannot say so, so --help's usage line does).
INPUT_ALTERNATIVES = (("--input",), ("--input_query", "--bq_temp_dataset"),
                      ("--bq_project", "--bq_dataset", "--bq_table"))


def add_problem_log_arguments(parser) -> None:
    """Where the ProblemLogs are, how to read them, and where outputs go."""
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
                            "today in UTC), and that dates the knowledge model's "
                            "--state_dir snapshot; set it to re-run or backfill a given "
                            "night.")


def add_training_arguments(parser) -> None:
    """What the training pipelines share and the monitor (which trains
    nothing, and takes seed and dimension from the model) does not use."""
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


def add_history_arguments(parser) -> None:
    """For pipelines that replay students over a date window: how much
    history before it is replayed too."""
    group = parser.add_argument_group("history")
    group.add_argument("--history_days", type=non_negative_int, default=28,
                       help="With a start date: also read this many days before it, so "
                            "students' states include their recent history. Those "
                            "attempts update the state but are not trained on or "
                            "scored (0: the state starts at the window).")


def add_param_store_arguments(parser) -> None:
    """Where model versions live in Datastore (training writes one, the
    monitor reads one)."""
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


def add_operator_arguments(parser) -> None:
    """What a run prints while it works (every entry point; not template
    parameters: they do not change what a job computes)."""
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
