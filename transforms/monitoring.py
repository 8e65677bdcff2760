"""Scoring replayed attempts with a model version and aggregating daily metrics.

Scoring runs inside the replay's student batches: each batch's rows are scored
in numpy and reduced to one partial accumulator per (day, exercise) before
anything is shuffled, so what crosses the shuffle is (days x exercises) small
vectors per batch, not one element per attempt (the combiner lifting is done
by hand, where it is cheapest). The remaining CombinePerKey also fans hot keys
(the all-exercises key of each day, popular exercises) out over several
workers before the final merge.
"""

import csv
import io
import json

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from dashboard import render_dashboard
from models.knowledge_state import ComponentCache, replay_batch
from models.monitoring import accumulate, day_of, metrics_record, sum_accumulators
from transforms import progress
from transforms.read import METRICS_NAMESPACE
from transforms.write import read_json_lines


class _ScoreBuckets(beam.DoFn):
    """Sessionized buckets -> ((day, exercise), partial accumulator), for the
    attempts inside [start, end) (µs; None: open) of exercises with parameters,
    every student of a bucket replayed in one vectorized pass. Attempts
    outside still update the state, as in training."""

    def __init__(self, params, seed, num_random_features, problem_number_range, window,
                 student_features=False):
        self.params = params
        self.student_features = student_features
        self.seed, self.num_random_features = seed, num_random_features
        self.problem_number_range = problem_number_range
        self.start, self.end = window
        self.scored = progress.counter(METRICS_NAMESPACE, "rows_scored")
        self.without_params = Metrics.counter(METRICS_NAMESPACE, "rows_without_params")
        self.outside_window = Metrics.counter(METRICS_NAMESPACE, "rows_outside_window")

    def setup(self):
        self.components = ComponentCache(self.seed, self.num_random_features)
        self.exercise_index = {name: i for i, name in enumerate(self.params)}
        self.theta = np.array(list(self.params.values())).reshape(
            len(self.params), -1)

    def process(self, element):
        batch, starts = element[1]
        rows = replay_batch(batch, starts, self.components, self.problem_number_range,
                            student_features=self.student_features)
        inside = np.ones(len(rows), dtype=bool)
        if self.start is not None:
            inside &= rows.time_done >= self.start
        if self.end is not None:
            inside &= rows.time_done < self.end
        index = np.array([self.exercise_index.get(name, -1) for name in rows.exercises]
                         + [-1], dtype=np.int64)[rows.exercise_code]
        scored = inside & (index >= 0)
        self.outside_window.inc(int((~inside).sum()))
        self.without_params.inc(int((inside & (index < 0)).sum()))
        self.scored.inc(int(scored.sum()))
        if not scored.any():
            return
        rows, index = rows.take(scored), index[scored]
        logits = np.einsum("ij,ij->i", rows.features(self.components), self.theta[index])
        yield from accumulate(day_of(rows.time_done), rows.exercise, logits, rows.correct,
                              rows.user_hash).items()


class _SumAccumulators(beam.CombineFn):
    def create_accumulator(self):
        return None

    def add_input(self, accumulator, partial):
        return partial.copy() if accumulator is None else accumulator + partial

    def merge_accumulators(self, accumulators):
        return sum_accumulators(a for a in accumulators if a is not None)

    def extract_output(self, accumulator):
        return accumulator


class DailyMetrics(beam.PTransform):
    """Sessionized buckets (SessionizeByStudent) -> daily metrics records
    (models.monitoring) of `model`: a dict with params {exercise: theta},
    seed, num_random_features, model_version and optionally student_features
    (a version trained with --student_features)."""

    def __init__(self, model: dict, problem_number_range=(1, None), window=(None, None),
                 hot_key_fanout: int = 4):
        super().__init__()
        self.model = model
        self.problem_number_range, self.window = problem_number_range, window
        self.hot_key_fanout = hot_key_fanout

    def expand(self, students):
        model = self.model
        version = model["model_version"]
        return (students
                | "Score" >> beam.ParDo(_ScoreBuckets(
                    model["params"], model["seed"], model["num_random_features"],
                    self.problem_number_range, self.window,
                    model.get("student_features", False)))
                | "SumPerDayAndExercise" >> beam.CombinePerKey(
                    _SumAccumulators()).with_hot_key_fanout(self.hot_key_fanout)
                | "Records" >> beam.MapTuple(
                    lambda key, accumulator: metrics_record(key[0], key[1], version,
                                                            accumulator)))


CSV_COLUMNS = ("date", "exercise", "model_version", "samples", "students",
               "mean_log_likelihood", "observed_correct", "mean_predicted_correct", "auc")


def _csv_text(records) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows([["" if record[name] is None else record[name] for name in CSV_COLUMNS]
                      for record in records])
    return buffer.getvalue()


def write_day(directory: str, date: str, records) -> list:
    """One day's records as `<date>.jsonl` and `<date>.csv`, replacing any
    earlier run's files of that day (monitoring a day twice never doubles it)."""
    records = sorted(records, key=lambda record: record["exercise"])
    paths = []
    for suffix, text in (
            ("jsonl", "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)),
            ("csv", _csv_text(records))):
        path = FileSystems.join(directory, f"{date}.{suffix}")
        with FileSystems.create(path) as handle:
            handle.write(text.encode("utf-8"))
        paths.append(path)
    return paths


class WriteDailyFiles(beam.PTransform):
    """Metrics records -> one JSON lines and one CSV file per day under `directory`."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, records):
        directory = self.directory
        return (records
                | "ByDay" >> beam.Map(lambda record: (record["date"], record))
                | "GroupDays" >> beam.GroupByKey()
                | "WriteDay" >> beam.FlatMapTuple(
                    lambda date, day_records: write_day(directory, date, day_records)))


class _RenderDashboard(beam.DoFn):
    def __init__(self, directory, path, render_options):
        self.directory, self.path, self.render_options = directory, path, render_options

    def process(self, _, written_paths):
        html = render_dashboard(read_json_lines(FileSystems.join(self.directory, "*.jsonl")),
                                **self.render_options)
        with FileSystems.create(self.path) as handle:
            handle.write(html.encode("utf-8"))
        yield self.path


class WriteDashboard(beam.PTransform):
    """Paths of day files just written -> the dashboard of every day under
    `directory` at `path`, rendered once they are all written (inside the job,
    so a job launched from a template renders it too)."""

    def __init__(self, directory: str, path: str, **render_options):
        super().__init__()
        self.directory, self.path, self.render_options = directory, path, render_options

    def expand(self, written_paths):
        return (written_paths.pipeline
                | "Once" >> beam.Create([None])
                | "Render" >> beam.ParDo(
                    _RenderDashboard(self.directory, self.path, self.render_options),
                    beam.pvalue.AsList(written_paths)))


METRICS_BIGQUERY_SCHEMA = {"fields": [
    {"name": "date", "type": "DATE", "mode": "REQUIRED"},
    {"name": "exercise", "type": "STRING", "mode": "REQUIRED"},
    {"name": "model_version", "type": "STRING", "mode": "REQUIRED"},
    {"name": "samples", "type": "INT64", "mode": "REQUIRED"},
    {"name": "students", "type": "INT64", "mode": "NULLABLE"},
    {"name": "mean_log_likelihood", "type": "FLOAT64", "mode": "NULLABLE"},
    {"name": "log_likelihood_std", "type": "FLOAT64", "mode": "NULLABLE"},
    {"name": "observed_correct", "type": "FLOAT64", "mode": "NULLABLE"},
    {"name": "mean_predicted_correct", "type": "FLOAT64", "mode": "NULLABLE"},
    {"name": "auc", "type": "FLOAT64", "mode": "NULLABLE"},
    {"name": "calibration", "type": "RECORD", "mode": "REPEATED", "fields": [
        {"name": "bin", "type": "INT64", "mode": "REQUIRED"},
        {"name": "low", "type": "FLOAT64", "mode": "REQUIRED"},
        {"name": "high", "type": "FLOAT64", "mode": "REQUIRED"},
        {"name": "samples", "type": "INT64", "mode": "REQUIRED"},
        {"name": "observed_correct", "type": "FLOAT64", "mode": "NULLABLE"},
        {"name": "mean_predicted", "type": "FLOAT64", "mode": "NULLABLE"}]},
]}


def partition_table(table_spec: str):
    """record -> 'project:dataset.table$YYYYMMDD': each day is its own
    partition, and WRITE_TRUNCATE replaces just that partition."""
    def destination(record) -> str:
        return f"{table_spec}${record['date'].replace('-', '')}"
    return destination


class WriteDailyMetricsToBigQuery(beam.PTransform):
    """Metrics records -> a day-partitioned BigQuery table (by `date`), each
    day's partition replaced by a load job, so re-running a day replaces it."""

    def __init__(self, table_spec: str):
        super().__init__()
        self.table_spec = table_spec

    def write_transform(self):
        return beam.io.WriteToBigQuery(
            table=partition_table(self.table_spec),
            schema=METRICS_BIGQUERY_SCHEMA,
            method=beam.io.WriteToBigQuery.Method.FILE_LOADS,
            create_disposition=beam.io.BigQueryDisposition.CREATE_IF_NEEDED,
            write_disposition=beam.io.BigQueryDisposition.WRITE_TRUNCATE,
            additional_bq_parameters={"timePartitioning": {"type": "DAY", "field": "date"}})

    def expand(self, records):
        return records | "WriteToBigQuery" >> self.write_transform()
