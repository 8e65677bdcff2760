"""The Beam jobs of `python -m pipelines.train_boosted` (that module holds
the command line, its options and the documentation): build the columnar
store, then train the boosted models from it."""

import json
import time

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from models.settings import FitSettings
from models.sparse_features import ALL_TEMPLATES, parse_templates
from pipelines.cli import JobFailed, UsageError
from pipelines.input_source import problem_log_source
from pipelines.options import (ProblemLogOptions, TrainingOptions, checked_options, output_path,
                               parse_penalties, parse_problem_number_range, submits_only)
from pipelines.progress import run_pipeline
from pipelines.train_boosted import ARGUMENTS, add_boosted_arguments
from transforms.boosted_training import (TrainAndEvaluate, feature_names, l1_selection,
                                         weight_records)
from transforms.columnar_store import (HOLDOUT, LABEL, ReplaySparseExamples, Vocabularies,
                                       WriteColumnarStore, read_vocabulary)
from transforms.fit import FITTED, FitPerExercise
from transforms.read import DEAD_LETTER
from transforms.replay import ROWS, ReplayKnowledgeState
from transforms.run_summary import counted, counter_values, summarize
from transforms.sessionize import SessionizeByStudent
from transforms.write import WriteJsonLines, WriteSortedJsonLines


# What a store build writes (and replaces on --rebuild_store); nothing else in
# the directory is touched.
STORE_FILES = (("examples-*.parquet",), ("vocabulary", "*.tsv"),
               ("knowledge_model", "params", "*.jsonl"), ("dead_letter", "*.jsonl"),
               ("store.json",))
# Options baked into a store: reusing it with other values would silently
# train on the old split or features.
STORE_SETTINGS = ("seed", "holdout_fraction", "min_feature_count", "problem_number_range",
                  "max_attempts_per_student", "column_mapping", "start_date", "end_date",
                  "window_days", "run_date")


class BoostedOptions(ProblemLogOptions, TrainingOptions, PipelineOptions):
    """The boosted model's own options, on top of the shared ones."""

    @classmethod
    def _add_argparse_args(cls, parser):
        add_boosted_arguments(parser)


def store_settings(options) -> dict:
    return {name: getattr(options, name) for name in STORE_SETTINGS}


def check_store_settings(store: str, options) -> None:
    with FileSystems.open(output_path(store, "store.json")) as handle:
        built_with = json.loads(handle.read().decode("utf-8"))["settings"]
    different = {name: value for name, value in store_settings(options).items()
                 if built_with.get(name) != value}
    if different:
        name = sorted(different)[0]
        raise UsageError(f"--store {store!r} was built with --{name} {built_with.get(name)!r}, "
                         f"not {different[name]!r}; pass the same value or --rebuild_store")


def check_store_templates(store: str, templates) -> None:
    """A store built before a template existed has no column for it."""
    missing = [template for template in templates if not FileSystems.exists(
        output_path(store, "vocabulary", f"{template}.tsv"))]
    if missing:
        raise UsageError(f"--store {store!r} has no column for --templates "
                         f"{', '.join(missing)} (built before they existed); pass --rebuild_store")


def store_exists(store: str) -> bool:
    return bool(FileSystems.match([output_path(store, "examples-*.parquet")])[0].metadata_list)


def build_store(argv, options: BoostedOptions, store: str) -> dict:
    """Pipeline 1: logs -> vocabularies, Parquet examples, knowledge-model
    params. Returns the run's counts (records read, dead-lettered by reason...)."""
    if not (options.input or options.input_query or options.bq_table):
        raise UsageError(f"--store {store!r} holds no columnar store; pass --input to build it")
    try:
        number_range = parse_problem_number_range(options.problem_number_range)
        source = problem_log_source(options)
    except ValueError as error:
        raise UsageError(str(error)) from None
    stale = [metadata.path for match in FileSystems.match(
        [output_path(store, *parts) for parts in STORE_FILES])
        for metadata in match.metadata_list]
    if stale:
        FileSystems.delete(stale)

    pipeline = beam.Pipeline(options=PipelineOptions(argv))
    logs = pipeline | "ReadProblemLogs" >> source.read
    students = logs.valid | "SessionizeByStudent" >> SessionizeByStudent(
        options.max_attempts_per_student)
    examples = students.students | "ReplaySparse" >> ReplaySparseExamples(
        ALL_TEMPLATES, options.seed, options.holdout_fraction, number_range)
    vocabularies = examples | "Vocabularies" >> Vocabularies(
        output_path(store, "vocabulary"), options.min_feature_count)
    _ = examples | "WriteStore" >> WriteColumnarStore(store, ALL_TEMPLATES, vocabularies)

    settings = FitSettings(seed=options.seed, holdout_fraction=options.holdout_fraction)
    rows = students.students | "ReplayKnowledge" >> ReplayKnowledgeState(
        options.seed, settings.num_random_features, number_range)
    fits = rows[ROWS] | "FitKnowledgeModel" >> FitPerExercise(settings)
    _ = fits[FITTED] | "WriteKnowledgeParams" >> WriteSortedJsonLines(
        output_path(store, "knowledge_model", "params", "params"), lambda r: r["exercise"])
    _ = ((logs[DEAD_LETTER], students[DEAD_LETTER]) | "DeadLetters" >> beam.Flatten()
         | "WriteDeadLetter" >> WriteJsonLines(output_path(store, "dead_letter", "dead_letter")))
    result = run_pipeline(pipeline, PipelineOptions(argv), (
        ("records_read", "record", "read"), ("students", "student", "replayed"),
        ("sparse_examples", "example", "stored"), ("exercises_fitted", "exercise", "fitted")))
    counts = summarize(counter_values(result))
    counts["sparse_examples"] = counter_values(result).get("sparse_examples", 0)
    with FileSystems.create(output_path(store, "store.json")) as handle:
        handle.write(json.dumps({"input": source.description, "settings": store_settings(options),
                                 "counts": counts}, indent=2).encode("utf-8"))
    return counts


def knowledge_model_holdout(store: str) -> dict:
    """Row-weighted holdout log likelihood of the knowledge model built with the store."""
    path = output_path(store, "knowledge_model", "params", "params.jsonl")
    total, rows = 0.0, 0
    with FileSystems.open(path) as handle:
        for line in handle:
            record = json.loads(line)
            if record["holdout_log_likelihood"] is not None:
                total += record["holdout_log_likelihood"] * record["num_holdout"]
                rows += record["num_holdout"]
    return {"holdout_log_likelihood": total / rows if rows else None, "holdout_rows": rows,
            "note": "per-exercise model, same holdout students; rows are the sampled "
                    "rows of each exercise (all of them below --max_samples_per_exercise)"}


def train(argv, options: BoostedOptions, store: str, templates, l1_values,
          wait: bool = True) -> dict:
    """Pipeline 2: store -> boosted models, loss curve, evaluation."""
    vocabularies = {template: read_vocabulary(output_path(store, "vocabulary"), template)
                    for template in templates}
    sizes = {template: len(values) for template, values in vocabularies.items()}
    names = feature_names(templates, vocabularies)
    output = options.output

    pipeline = beam.Pipeline(options=PipelineOptions(argv))
    tables = pipeline | "ReadStore" >> beam.io.ReadFromParquetBatched(
        output_path(store, "examples-*.parquet"), columns=list(templates) + [LABEL, HOLDOUT])
    results = tables | "TrainAndEvaluate" >> TrainAndEvaluate(
        templates, sizes, l1_values, options.loss, options.iterations, options.feature_shards,
        options.initial_step)
    _ = (results["final_state"]
         | "Weights" >> beam.FlatMap(weight_records, l1_values, names)
         | "WriteWeights" >> WriteSortedJsonLines(
             output_path(output, "weights", "weights"),
             lambda r: (r["l1"], -abs(r["weight"]), r["feature"])))
    _ = (results["curve"] | "CurveRows" >> beam.FlatMap(lambda records: records)
         | "WriteCurve" >> WriteSortedJsonLines(
             output_path(output, "loss_curve"), lambda r: (r["l1"], r["iteration"])))
    _ = (results["evaluation"]
         | "EvaluationJson" >> beam.Map(lambda records: json.dumps(records))
         | "WriteEvaluation" >> beam.io.WriteToText(
             output_path(output, "evaluation"), file_name_suffix=".json", num_shards=1,
             shard_name_template=""))
    if not wait:
        pipeline.run()
        return {}
    run_pipeline(pipeline, PipelineOptions(argv),
                 (("boosting_iterations", "iteration", "done", options.iterations),))
    with FileSystems.open(output_path(output, "evaluation.json")) as handle:
        return json.loads(handle.read().decode("utf-8"))


def _number(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def run(argv=None) -> dict:
    started = time.monotonic()
    options = checked_options(argv, ARGUMENTS).view_as(BoostedOptions)
    try:
        templates = parse_templates(options.templates)
    except ValueError as error:
        raise UsageError(f"--templates: {error}") from None
    l1_values = list(parse_penalties(options.l1, "--l1"))
    if not options.output:
        raise UsageError("--output is required")
    store = options.store or output_path(options.output, "store")
    summary_path = output_path(options.output, "summary.json")
    if FileSystems.exists(summary_path) and not options.overwrite:
        raise UsageError(f"--output {options.output!r} already holds a trained model; "
                         "pass --overwrite to replace it")
    built = options.rebuild_store or not store_exists(store)
    if not built:
        check_store_settings(store, options)
        check_store_templates(store, templates)
    if submits_only(PipelineOptions(argv)):
        # A template launch creates one job, and the training job reads the
        # store that the store-build job writes: only training can be templated.
        if built:
            raise UsageError(f"--store {store!r} holds no columnar store; a templated launch "
                             f"runs one job, so build the store first (run once without a "
                             f"template) and launch training against it")
        train(argv, options, store, templates, l1_values, wait=False)
        print(f"Job submitted; it trains from {store} and writes under {options.output}.")
        return {}
    store_build = build_store(argv, options, store) if built else None
    if built and not store_build["sparse_examples"]:
        raise JobFailed(
            f"no usable ProblemLog among the {store_build['records_read']} records read "
            f"({store_build['dead_lettered_total']} dead-lettered, "
            f"{store_build['records_outside_window']} outside the date window, "
            f"{store_build['records_unreadable']} unreadable), so there is nothing to train; "
            f"see {output_path(store, 'dead_letter', 'dead_letter-*.jsonl')}")
    models = train(argv, options, store, templates, l1_values)
    selection = l1_selection(models)
    summary = {
        "models": models, "l1_selection": selection,
        # Where serving finds the chosen model: the weights file's rows with this l1.
        "chosen_model": {"l1": selection["chosen"],
                         "weights": output_path(options.output, "weights", "weights.jsonl")},
        "templates": list(templates), "loss": options.loss,
        "iterations": options.iterations, "store": store, "store_built": built,
        "store_build": store_build,
        "knowledge_model": knowledge_model_holdout(store),
        "wall_time_seconds": round(time.monotonic() - started, 3),
    }
    with FileSystems.create(summary_path) as handle:
        handle.write(json.dumps(summary, indent=2).encode("utf-8"))
    if store_build:
        print(f"Store built from {counted(store_build['records_read'], 'ProblemLog')}: "
              f"{counted(store_build['sparse_examples'], 'example')}, "
              f"{counted(store_build['dead_lettered_total'], 'record')} dead-lettered.")
    knowledge = summary["knowledge_model"]["holdout_log_likelihood"]
    for model in models:
        print(f"l1={model['l1']:g}: {model['nonzero_weights']:,} of "
              f"{counted(model['features'], 'weight')} non-zero, holdout log likelihood "
              f"{_number(model['holdout_log_likelihood'])}, AUC {_number(model['holdout_auc'])}")
    if selection["chosen_on_holdout"]:
        print(f"--l1 {selection['chosen']:g} chosen on the holdout (best holdout log "
              f"likelihood); its weights are the rows with l1 {selection['chosen']:g} "
              f"of weights/weights.jsonl")
    else:
        print(f"--l1 {selection['chosen']:g} kept (the first value): no holdout examples "
              f"to choose on")
    print(f"Knowledge model on the same holdout students: log likelihood {_number(knowledge)}")
    print(f"Outputs under {options.output} (store: {store}); "
          f"wall time {summary['wall_time_seconds']:.1f} s")
    return summary
