"""Student-level features (--student_features): what a student's attempts on
*every* exercise say before an attempt, for a per-exercise model that
otherwise sees other exercises only through its random components (Best-LR,
Gervet et al. 2020, gains most from these overall counts).

Two implementations of one contract, as for the knowledge features
(models.knowledge_state): StudentTotals, one attempt at a time (serving, and
the tests' reference), and student_feature_columns, a batch of students at
once (the pipeline's replay). Both are computed before the attempt, so a row
never sees its own label.

Measured on benchmarks/bench_quality.py (docs/quality.md): the two counts
gain about 0.010 nats per held-out attempt, the smoothed rate 0.003 more;
the time since the student's previous attempt added 0.0005 and was left out.
"""

import math
from typing import List

import numpy as np

STUDENT_FEATURE_NAMES = ("log_student_done", "log_student_correct", "student_percent_correct")
NUM_STUDENT_FEATURES = len(STUDENT_FEATURE_NAMES)


class StudentTotals:
    """Counts over all of one student's earlier attempts (every exercise,
    every problem number)."""

    def __init__(self):
        self.done = 0
        self.correct = 0

    def features(self) -> List[float]:
        """[log(1 + attempts so far), log(1 + correct so far), the correct
        rate smoothed by one pseudo-attempt each way: (correct + 1) / (done + 2)]."""
        return [math.log1p(self.done), math.log1p(self.correct),
                (self.correct + 1.0) / (self.done + 2.0)]

    def update(self, correct: bool) -> None:
        self.done += 1
        self.correct += 1 if correct else 0


def student_feature_columns(student_starts: np.ndarray, correct: np.ndarray,
                            saved_done=None, saved_correct=None) -> np.ndarray:
    """StudentTotals.features() before every attempt of a batch whose student
    i holds rows student_starts[i]:student_starts[i+1] in time order:
    (rows, NUM_STUDENT_FEATURES). `saved_done`, `saved_correct`: each
    student's counts before the batch (saved states), zero when None."""
    n = len(correct)
    lengths = np.diff(student_starts)
    index = np.arange(n)
    start = np.repeat(student_starts[:-1], lengths)
    cumulative = np.r_[0, np.cumsum(correct, dtype=np.int64)]
    done = index - start
    correct_before = cumulative[index] - cumulative[start]
    if saved_done is not None:
        done = done + np.repeat(saved_done, lengths)
        correct_before = correct_before + np.repeat(saved_correct, lengths)
    done, correct_before = done.astype(np.float64), correct_before.astype(np.float64)
    return np.column_stack([np.log1p(done), np.log1p(correct_before),
                            (correct_before + 1.0) / (done + 2.0)])
