"""Train Sibyl-style parallel-boosted models of P(correct) from ProblemLogs.

    python -m pipelines.train_boosted --input 'logs/*.avro' --output out/ \\
        [--templates exercise,exercise_x_streak] [--l1 0.1,1,10] [--iterations 30]

Two Beam pipelines run one after the other:

1. Build the columnar store (skipped when --store already holds one, unless
   --rebuild_store): read and sessionize the logs once; replay every student to
   emit sparse binary features per attempt from named templates, count them,
   integerize each template by decreasing frequency (vocabulary/<template>.tsv)
   and write the examples as Parquet, one list<int32> column per template plus
   label and holdout flag. The same replay also fits the per-exercise knowledge
   model (knowledge_model/params/params.jsonl) for comparison on the same
   holdout students.
2. Train: read only the --templates columns, run --iterations rounds of
   parallel boosting (one map + one combine each) for every --l1 value at
   once, and write under --output:

    weights/weights.jsonl   non-zero weights with readable feature names, per l1
    loss_curve.jsonl        train objective, holdout log loss, step, sparsity per iteration
    summary.json            per model: holdout log likelihood and AUC, sparsity, and the
                            knowledge model's holdout log likelihood on the same students;
                            l1_selection (the --l1 value with the best holdout log
                            likelihood) and chosen_model (its l1 and the weights file)
"""

from models.settings import LOSSES
from models.sparse_features import ALL_TEMPLATES, STUDENT_TEMPLATES, TEMPLATES
from pipelines import arguments
from pipelines.cli import command_line
from pipelines.option_types import non_negative_int, positive_float, positive_int


def add_boosted_arguments(parser) -> None:
    """The boosted model's own options, on top of the shared ones."""
    group = parser.add_argument_group("boosted model")
    group.add_argument("--store", default="",
                       help="Columnar store directory. Default: OUTPUT/store. --input "
                            "is needed only to build it.")
    group.add_argument("--rebuild_store", action="store_true",
                       help="Rebuild the store from --input even if it exists.")
    group.add_argument("--min_feature_count", type=non_negative_int, default=2,
                       help="Feature values seen fewer times are dropped when the "
                            "store is built.")
    group.add_argument("--templates", default=",".join(TEMPLATES),
                       help=f"Feature templates to train on: any of {', '.join(ALL_TEMPLATES)}. "
                            f"The default leaves out the student-level (cross-exercise) "
                            f"{', '.join(STUDENT_TEMPLATES)}; add them to the default list "
                            f"to use them (docs/boosting.md). Every store holds them all.")
    group.add_argument("--l1", default="1",
                       help="Comma-separated L1 strengths; one model each, trained in the "
                            "same passes (a model set). The bias is unpenalised. The run "
                            "chooses the one with the best holdout log likelihood (ties: the "
                            "earlier value; no holdout examples: the first) and names it in "
                            "summary.json (l1_selection, chosen_model).")
    group.add_argument("--loss", default="logistic", choices=LOSSES,
                       help="logistic, or exponential (AdaBoost).")
    group.add_argument("--iterations", type=positive_int, default=30,
                       help="Boosting iterations, unrolled in the graph.")
    group.add_argument("--feature_shards", type=positive_int, default=1,
                       help="Sum each iteration's per-feature statistics in this many "
                            "feature-range shards, in parallel (for large vocabularies).")
    group.add_argument("--initial_step", type=positive_float, default=1.0,
                       help="Step multiplier on the bound's update; halved for a model "
                            "whenever its objective would rise.")


# The option groups of this command line, in --help order: what --help lists
# and the job accepts (with the operator options and Beam's own), and the Flex
# Template's parameters (templates/generate.py).
ARGUMENTS = (arguments.add_problem_log_arguments, arguments.add_training_arguments,
             add_boosted_arguments)
# Shown as required by --help (and the template): the pipeline refuses to run without
# them. The input only builds the store, so it is not among them.
REQUIRED = ("--output",)


def run(argv=None) -> dict:
    """Run the job; returns its summary (also written to summary.json)."""
    from pipelines.jobs import train_boosted  # Beam: imported to run only
    return train_boosted.run(argv)


def main(argv=None):
    command_line("python -m pipelines.train_boosted", __doc__, ARGUMENTS, REQUIRED, run, argv)


if __name__ == "__main__":
    main()
