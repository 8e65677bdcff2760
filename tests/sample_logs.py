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
