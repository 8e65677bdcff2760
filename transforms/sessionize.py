"""Group ProblemLogs by student bucket and put every student's attempts in order."""

import collections
import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from models.log_batch import LogBatch, sessionize_batch
from transforms import progress
from transforms.dead_letter import dead_letter_record, problem_log_as_dict
from transforms.read import DEAD_LETTER, METRICS_NAMESPACE

_CONFLICT_DETAIL = ("another attempt with the same user, exercise, time_done and "
                    "problem_number has a different `correct`")


class _SortBucket(beam.DoFn):
    """(bucket, LogBatch chunks) -> (bucket, (LogBatch, student_starts)): every
    student of the bucket in time order, exact duplicates dropped, problem
    numbers derived (models.log_batch.sessionize_batch). Conflicting duplicates
    are dead-lettered; a student over the attempt cap goes to the dead letter
    whole rather than being truncated, because a truncated history would
    silently change every later feature."""

    def __init__(self, max_attempts_per_student: int):
        self.max_attempts = max_attempts_per_student
        self.students = progress.counter(METRICS_NAMESPACE, "students")
        self.students_skipped = Metrics.counter(METRICS_NAMESPACE, "students_skipped")
        self.duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_dropped")
        self.too_many = Metrics.counter(METRICS_NAMESPACE, "dead_letter_too_many_attempts")
        self.conflicting = Metrics.counter(METRICS_NAMESPACE,
                                           "dead_letter_conflicting_duplicate")

    def process(self, element):
        bucket, chunks = element
        result = sessionize_batch(LogBatch.concatenate(list(chunks)), self.max_attempts)
        if result.duplicates:
            self.duplicates.inc(result.duplicates)
        if result.conflicting:
            self.conflicting.inc(len(result.conflicting))
        for log in result.conflicting:
            yield pvalue.TaggedOutput(DEAD_LETTER, dead_letter_record(
                "sessionize", "conflicting_duplicate", _CONFLICT_DETAIL,
                problem_log_as_dict(log)))
        if result.too_many:
            self.students_skipped.inc(result.students_over)
            self.too_many.inc(len(result.too_many))
            attempts = collections.Counter(log.user for log in result.too_many)
            for log in result.too_many:
                detail = (f"student has {attempts[log.user]} attempts > "
                          f"--max_attempts_per_student {self.max_attempts}")
                yield pvalue.TaggedOutput(DEAD_LETTER, dead_letter_record(
                    "sessionize", "too_many_attempts", detail, problem_log_as_dict(log)))
        self.students.inc(len(result.student_starts) - 1)
        if len(result.logs):
            yield bucket, (result.logs, result.student_starts)


class SessionizeByStudent(beam.PTransform):
    """(bucket, LogBatch) chunks -> `students`: (bucket, (LogBatch, student_starts)),
    one element per bucket holding its students contiguous and in time order
    (student i is rows student_starts[i]:student_starts[i+1]), plus `dead_letter`."""

    def __init__(self, max_attempts_per_student: int):
        super().__init__()
        self.max_attempts_per_student = max_attempts_per_student

    def expand(self, chunks):
        return (chunks
                | "GroupByBucket" >> beam.GroupByKey()
                | "SortBucket" >> beam.ParDo(_SortBucket(self.max_attempts_per_student))
                .with_outputs(DEAD_LETTER, main="students"))
