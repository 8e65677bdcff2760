"""Group ProblemLogs by student bucket and put every student's attempts in order."""

import collections
import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from models.log_batch import LogBatch, sessionize_batch
from models.student_state import StudentStates
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

    def __init__(self, max_attempts_per_student: int, saved_states: bool = False):
        self.max_attempts = max_attempts_per_student
        self.saved_states = saved_states
        self.late = Metrics.counter(METRICS_NAMESPACE, "late_attempts")
        self.students = progress.counter(METRICS_NAMESPACE, "students")
        self.students_skipped = Metrics.counter(METRICS_NAMESPACE, "students_skipped")
        self.duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_dropped")
        self.too_many = Metrics.counter(METRICS_NAMESPACE, "dead_letter_too_many_attempts")
        self.conflicting = Metrics.counter(METRICS_NAMESPACE,
                                           "dead_letter_conflicting_duplicate")

    def process(self, element):
        bucket, chunks = element
        logs, states = [], []
        for chunk in chunks:
            (states if isinstance(chunk, StudentStates) else logs).append(chunk)
        prior = StudentStates.concatenate(states) if self.saved_states else None
        result = sessionize_batch(LogBatch.concatenate(logs), self.max_attempts, prior)
        if self.saved_states:
            self.late.inc(result.late)
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
        if self.saved_states:  # even with no new logs: the states carry over
            yield bucket, (result.logs, result.student_starts, prior, result.fingerprints)
        elif len(result.logs):
            yield bucket, (result.logs, result.student_starts)


class SessionizeByStudent(beam.PTransform):
    """(bucket, LogBatch) chunks -> `students`: (bucket, (LogBatch, student_starts)),
    one element per bucket holding its students contiguous and in time order
    (student i is rows student_starts[i]:student_starts[i+1]), plus `dead_letter`.

    With `saved_states`, the input also holds (bucket, StudentStates) chunks of
    a snapshot (transforms.student_state), and every bucket either has gives
    (bucket, (LogBatch, student_starts, StudentStates, fingerprints)): the
    students continue from their saved states (models.log_batch.sessionize_batch)."""

    def __init__(self, max_attempts_per_student: int, saved_states: bool = False):
        super().__init__()
        self.max_attempts_per_student = max_attempts_per_student
        self.saved_states = saved_states

    def expand(self, chunks):
        return (chunks
                | "GroupByBucket" >> beam.GroupByKey()
                | "SortBucket" >> beam.ParDo(_SortBucket(self.max_attempts_per_student,
                                                        self.saved_states))
                .with_outputs(DEAD_LETTER, main="students"))
