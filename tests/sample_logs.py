"""The ProblemLogs of a generated sample, as the pipeline parses them."""

import collections
import glob
import os

import fastavro

from models.problem_log import ProblemLogParser


def histories(directory):
    """{user: [ProblemLog]} of every Avro file in `directory`, in file order."""
    parse = ProblemLogParser()
    by_user = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(directory, "*.avro"))):
        with open(path, "rb") as handle:
            for raw in fastavro.reader(handle):
                log = parse(raw)
                by_user[log.user].append(log)
    return by_user


def as_buckets(students, per_bucket=2):
    """(user, sessionized logs) students as SessionizeByStudent emits them:
    (bucket, (LogBatch, student_starts)), `per_bucket` students a bucket."""
    import numpy as np
    from models.log_batch import LogBatch
    elements = []
    for bucket, first in enumerate(range(0, len(students), per_bucket)):
        group = [logs for _, logs in students[first:first + per_bucket]]
        starts = np.cumsum([0] + [len(logs) for logs in group])
        elements.append((bucket, (LogBatch.from_logs([log for logs in group for log in logs]),
                                  starts)))
    return elements
