"""Train per-exercise knowledge-model parameters from ProblemLogs.

    python -m pipelines.train_knowledge_model --input 'logs/*.avro' --output out/

reads ProblemLogs, replays every student's KnowledgeState in time order, fits
one logistic regression per exercise and writes, under --output:

    params/params.jsonl            one record per fitted exercise
    components/components.jsonl    the random components the features used
    skipped_exercises/...jsonl     exercises not fitted, with the reason
    dead_letter/*.jsonl            every record that could not be used, with the reason
    run_summary.json               counts by stage and reason, model settings, wall time

Runs on the DirectRunner by default; any Beam runner option is accepted
(e.g. --direct_running_mode=multi_processing --direct_num_workers=2).
"""

from models.evaluation import DEPLOY_POLICIES
from models.settings import DEFAULT_NUM_RANDOM_FEATURES, FitSettings
from pipelines import arguments
from pipelines.cli import command_line
from pipelines.option_types import IntBetween, non_negative_float, positive_int

PARAMS_SINKS = ("files", "datastore")


def add_knowledge_model_arguments(parser) -> None:
    """The knowledge model's own options, on top of the shared ones."""
    group = parser.add_argument_group("knowledge model")
    group.add_argument("--num_random_features", type=positive_int,
                       default=DEFAULT_NUM_RANDOM_FEATURES,
                       help="Dimension D of the random-component vector r.")
    group.add_argument("--max_samples_per_exercise", type=positive_int,
                       default=FitSettings.max_samples,
                       help="Rows per exercise are capped by a uniform random sample "
                            "of this size.")
    group.add_argument("--min_samples", type=positive_int, default=FitSettings.min_samples,
                       help="Exercises with fewer training rows are skipped "
                            "(reason too_few_samples).")
    group.add_argument("--l2", type=non_negative_float, default=FitSettings.l2,
                       help="L2 penalty on theta (bias excluded): the precision of a "
                            "Gaussian prior, added to the negative log likelihood as "
                            "l2/2 * |theta|^2, so it fades as an exercise's rows grow "
                            "(scikit-learn's C = 1/l2).")
    group.add_argument("--l2_candidates", default="",
                       help="Comma-separated L2 penalties, e.g. 10,30,100,300, fitted in "
                            "the same pass instead of --l2; every exercise keeps the one "
                            "with the best holdout log likelihood over all exercises "
                            "(needs --holdout_fraction > 0; the choice is in the run "
                            "summary, and the holdout figures are then the chosen "
                            "candidate's, slightly optimistic).")
    group.add_argument("--shrink_to_global", action="store_true",
                       help="Shrink every exercise's theta toward one global fit instead "
                            "of toward zero: the penalty becomes l2/2 * |theta - "
                            "theta_global|^2 (bias excluded), so an exercise with few rows "
                            "borrows from all the others. The global fit pools the first "
                            f"{FitSettings.global_rows_per_exercise} training-side rows of "
                            "every exercise's sample (never a holdout student's; at most "
                            f"{FitSettings.global_max_rows:,} rows) and is fitted with "
                            "--l2 (also with --l2_candidates, which then choose the "
                            "exercises' penalty). Written to global_fit/ and the run "
                            "summary; the served parameters stay per exercise. "
                            "--min_samples still applies.")
    group.add_argument("--student_features", action="store_true",
                       help="Add student-level features to every row, computed before the "
                            "attempt over ALL of the student's exercises: log(1 + attempts), "
                            "log(1 + correct answers) and the correct rate smoothed as "
                            "(correct + 1) / (attempts + 2). They sit after the six "
                            "knowledge features in theta; the run summary (and a "
                            "Datastore version) records it, so serving and the monitor "
                            "compute the same vector. With saved state the counts "
                            "continue from the snapshot's.")
    group.add_argument("--max_iterations", type=positive_int,
                       default=FitSettings.max_iterations,
                       help="L-BFGS iteration limit per exercise.")
    group.add_argument("--training_rows_output", default="",
                       help="If set, also write every emitted training row (user, "
                            "exercise, time_done, problem_number, correct, x) as JSON "
                            "lines under this directory.")
    group = parser.add_argument_group("parameter store")
    group.add_argument("--params_sink", choices=PARAMS_SINKS, default="files",
                       help="'files': parameters only under --output. 'datastore': "
                            "also write them to Datastore as --model_version and make "
                            "that the active version once every entity is written.")
    group.add_argument("--deploy_policy", choices=DEPLOY_POLICIES, default="always",
                       help="With --params_sink datastore: 'always' activates the new "
                            "version once written; 'if_better' only if its holdout log "
                            "likelihood is at least the active version's on the same "
                            "rows (otherwise it is written but not activated, and the "
                            "summary says why).")
    group.add_argument("--datastore_batch_size", type=IntBetween(1, 500), default=500,
                       help="Entities per Datastore commit (Datastore allows 500; "
                            "commits are also kept under 9 MB).")
    group.add_argument("--datastore_write_attempts", type=positive_int, default=8,
                       help="Attempts per commit on transient errors, with exponential "
                            "backoff from 1 s (up to 60 s) between them.")
    group = parser.add_argument_group(
        "saved student state",
        "Nightly training that continues every student from the previous run's saved "
        "state, reads only the new logs and still fits on the whole window.")
    group.add_argument("--state_input", default="",
                       help="A snapshot directory an earlier run wrote with --state_output: "
                            "every student starts from its saved state (students not in it "
                            "start empty), and only logs after the snapshot's date window "
                            "are read (--history_days is not used). Refused when unfinished "
                            "or made with another --seed or --num_random_features.")
    group.add_argument("--state_output", default="",
                       help="Directory for a snapshot of every student's state after this "
                            "run (Parquet shards, then SNAPSHOT.json once all are written), "
                            "for the next run's --state_input. An existing snapshot there "
                            "needs --overwrite.")
    group.add_argument("--state_dir", default="",
                       help="For nightly runs, instead of --state_input/--state_output: "
                            "snapshots live in dated folders DIR/YYYY-MM-DD. The run writes "
                            "DIR/<--run_date> (default: today in UTC) and starts from the "
                            "latest finished snapshot dated before it (with none, it "
                            "replays the whole history: the first run); it also keeps its "
                            "training rows under DIR/rows/ and fits on those of the window.")
    group.add_argument("--state_keep", type=positive_int, default=7,
                       help="With --state_dir: dated snapshots before the run date kept "
                            "(the newest ones); older ones are deleted when a run starts.")


# The option groups of this command line, in --help order: what --help lists
# and the job accepts (with the operator options and Beam's own), and the Flex
# Template's parameters (templates/generate.py).
ARGUMENTS = (arguments.add_problem_log_arguments, arguments.add_training_arguments,
             arguments.add_history_arguments, arguments.add_param_store_arguments,
             add_knowledge_model_arguments)
# Shown as required by --help (and the template): the pipeline refuses to run without them.
REQUIRED = (arguments.INPUT_ALTERNATIVES, "--output")


def run(argv=None) -> dict:
    """Run the job; returns the run summary (also written to run_summary.json)."""
    from pipelines.jobs import train_knowledge_model  # Beam: imported to run only
    return train_knowledge_model.run(argv)


def main(argv=None):
    command_line("python -m pipelines.train_knowledge_model", __doc__, ARGUMENTS, REQUIRED, run,
                 argv)


if __name__ == "__main__":
    main()
