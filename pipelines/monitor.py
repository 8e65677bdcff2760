"""Monitor a model version on ProblemLogs: daily metrics and a dashboard.

    python -m pipelines.monitor --input 'logs/*.avro' --params out/ --output monitoring/ \\
        [--start_date 2026-11-01 --end_date 2026-11-07 | --window_days 1]
    python -m pipelines.monitor --input bq://project.dataset.problem_logs \\
        --params datastore --datastore_project P [--model_version V] --window_days 1 \\
        --output gs://bucket/monitoring --metrics_table project:dataset.knowledge_metrics

replays every student's history with the version's features (the training
code, same seed and dimension), predicts each attempt inside the date window
before it happens, and aggregates per exercise per day, and over all
exercises: samples, mean log likelihood, observed vs mean predicted correct,
AUC and a calibration table. Under --output:

    metrics/daily/<date>.jsonl, .csv   one file per day; re-running a day replaces it
    dashboard.html                     every day under metrics/daily, self-contained
    monitor_summary.json               counts, days written, the latest day's regressions
    dead_letter/*.jsonl                records that could not be used

With --metrics_table the daily records also go to a day-partitioned BigQuery
table, each run replacing its days' partitions.
"""

from pipelines import arguments
from pipelines.cli import command_line
from pipelines.option_types import non_negative_int


def add_monitor_arguments(parser) -> None:
    """The monitor's own options, on top of the shared ones."""
    group = parser.add_argument_group("monitoring")
    group.add_argument("--params", default="",
                       help="The model version to evaluate: a train_knowledge_model "
                            "--output directory, or 'datastore' for --model_version "
                            "(default: the active version) in --datastore_project.")
    group.add_argument("--metrics_table", default="",
                       help="Also write the daily metrics to this day-partitioned "
                            "BigQuery table, 'project:dataset.table' (created if "
                            "needed; each day's partition is replaced).")
    group.add_argument("--trailing_days", type=non_negative_int, default=7,
                       help="The dashboard compares each exercise's latest day with "
                            "its average over this many days before it.")
    group.add_argument("--regression_min_samples", type=non_negative_int, default=30,
                       help="Days with fewer samples are not compared for regressions.")


# The option groups of this command line, in --help order: what --help lists
# and the job accepts (with the operator options and Beam's own), and the Flex
# Template's parameters (templates/generate.py).
ARGUMENTS = (arguments.add_problem_log_arguments, arguments.add_history_arguments,
             arguments.add_param_store_arguments, add_monitor_arguments)
# Shown as required by --help (and the template): the monitor refuses to run without them.
REQUIRED = (arguments.INPUT_ALTERNATIVES, "--output", "--params")


def run(argv=None) -> dict:
    """Run the monitor; returns its summary (also written to monitor_summary.json)."""
    from pipelines.jobs import monitor  # Beam: imported to run only
    return monitor.run(argv)


def main(argv=None):
    command_line("python -m pipelines.monitor", __doc__, ARGUMENTS, REQUIRED, run, argv)


if __name__ == "__main__":
    main()
