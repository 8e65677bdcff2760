"""Group ProblemLogs by student and put each student's attempts in order."""

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics

from models.knowledge_state import sessionize_with_conflicts
from models.problem_log import ProblemLog
from transforms import progress
from transforms.dead_letter import dead_letter_record, problem_log_as_dict
from transforms.read import DEAD_LETTER, METRICS_NAMESPACE


class _SortStudent(beam.DoFn):
    """(user, logs) -> (user, chronological deduplicated logs), conflicting
    duplicates dead-lettered (models.knowledge_state.sessionize_with_conflicts);
    a student over
    the attempt cap goes to the dead letter whole rather than being truncated,
    because a truncated history would silently change every later feature."""

    def __init__(self, max_attempts_per_student: int):
        self.max_attempts = max_attempts_per_student
        self.students = progress.counter(METRICS_NAMESPACE, "students")
        self.students_skipped = Metrics.counter(METRICS_NAMESPACE, "students_skipped")
        self.duplicates = Metrics.counter(METRICS_NAMESPACE, "duplicates_dropped")
        self.too_many = Metrics.counter(METRICS_NAMESPACE, "dead_letter_too_many_attempts")
        self.conflicting = Metrics.counter(METRICS_NAMESPACE,
                                           "dead_letter_conflicting_duplicate")

    def process(self, element):
        user, parts = element
        logs, duplicates, conflicts = sessionize_with_conflicts(
            ProblemLog._make(fields) for part in parts for fields in part)
        self.duplicates.inc(duplicates)
        if conflicts:
            self.conflicting.inc(len(conflicts))
            for log in conflicts:
                yield pvalue.TaggedOutput(DEAD_LETTER, dead_letter_record(
                    "sessionize", "conflicting_duplicate",
                    "another attempt with the same user, exercise, time_done and "
                    "problem_number has a different `correct`", problem_log_as_dict(log)))
        if len(logs) > self.max_attempts:
            self.students_skipped.inc()
            self.too_many.inc(len(logs))
            detail = (f"student has {len(logs)} attempts > "
                      f"--max_attempts_per_student {self.max_attempts}")
            for log in logs:
                yield pvalue.TaggedOutput(DEAD_LETTER, dead_letter_record(
                    "sessionize", "too_many_attempts", detail, problem_log_as_dict(log)))
            return
        self.students.inc()
        yield user, logs


class SessionizeByStudent(beam.PTransform):
    """(user, [tuple(ProblemLog)]) chunks -> `students`: (user, [ProblemLog] in time
    order), one per student, plus `dead_letter`."""

    def __init__(self, max_attempts_per_student: int):
        super().__init__()
        self.max_attempts_per_student = max_attempts_per_student

    def expand(self, chunks):
        return (chunks
                | "GroupByUser" >> beam.GroupByKey()
                | "SortStudent" >> beam.ParDo(_SortStudent(self.max_attempts_per_student))
                .with_outputs(DEAD_LETTER, main="students"))
