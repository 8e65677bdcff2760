"""transforms.arrow_validation: the vectorized path accepts exactly the rows,
with exactly the values, that the per-record ProblemLogParser gives, on typed
tables full of edge cases."""

import random

import numpy as np
import pyarrow as pa
import pytest

from models.problem_log import FIELDS, InvalidProblemLog, ProblemLogParser
from transforms.arrow_validation import ArrowRows, row_dicts, validate_table
from transforms.file_formats import typed_rows

NOT_AFTER = 1_800_000_000_000_000
NAMES = ["a", " a", "a\u00a0", "", "   ", None, "b|c", "x" * 1025, "\u00e9"]


def random_table(rng, n, unit):
    scale = {"s": 1, "ms": 1000, "us": 10 ** 6, "ns": 10 ** 9}[unit]
    times = [rng.choice([None, 0, 1_700_000_000, 1_900_000_000, -62_135_596_800,
                         253_402_300_800, 1_700_000_000 + rng.randrange(10 ** 6)])
             for _ in range(n)]
    return pa.table({
        "user": pa.array([rng.choice(NAMES) for _ in range(n)]),
        "exercise": pa.array([rng.choice(NAMES + ["e"] * 5) for _ in range(n)]),
        "problem_type": pa.array([rng.choice(NAMES) for _ in range(n)]),
        "problem_number": pa.array([rng.choice([None, 0, 1, 2, -3, 2 ** 40, 1.5, float("nan"),
                                                float("inf"), 3.0]) for _ in range(n)],
                                   type=pa.float64()),
        "time_done": pa.array([None if t is None or abs(t * scale) >= 2 ** 63 else t * scale
                               for t in times],
                              type=pa.timestamp(unit, tz="UTC")),
        "correct": pa.array([rng.choice([True, False, None]) for _ in range(n)]),
        "time_taken": pa.array([rng.choice([None, -1, 0, 7, 2 ** 62]) for _ in range(n)],
                               type=pa.int64()),
        "count_hints": pa.array([rng.choice([None, 0.0, 2.5, float("nan"), 4.0])
                                 for _ in range(n)], type=pa.float64()),
    })


@pytest.mark.parametrize("seed, unit", [(1, "us"), (2, "ns"), (3, "s"), (4, "ms")])
def test_fast_path_agrees_with_the_per_record_parser(seed, unit):
    rng = random.Random(seed)
    columns = dict(zip(FIELDS, FIELDS))
    rows = typed_rows(random_table(rng, 800, unit), columns)
    window = (None, 1_850_000_000_000_000)
    batch, outside, slow = validate_table(rows, columns, NOT_AFTER, window)
    parse = ProblemLogParser(not_after=NOT_AFTER)
    expected, expected_outside = [], 0
    slow_set = set(slow.tolist())
    for index, record in enumerate(row_dicts(rows, np.arange(rows.table.num_rows))):
        try:
            log = parse(record)
        except InvalidProblemLog:
            assert index in slow_set, (index, record)   # every bad row takes the slow path
            continue
        if index in slow_set:
            continue   # valid, but left to the parser: allowed (it then gives this log)
        if log.time_done >= window[1]:
            expected_outside += 1
        else:
            expected.append(log)
    assert batch.logs() == expected
    assert outside == expected_outside
    assert len(batch) > 20 and len(slow) > 20   # both paths exercised


def test_untyped_columns_take_the_per_record_path():
    table = pa.table({"user": ["a"], "exercise": ["e"], "time_done": ["2024-01-01"],
                      "correct": [True]})
    rows = ArrowRows(table, None, None)
    batch, outside, slow = validate_table(rows, dict(zip(FIELDS, FIELDS)), NOT_AFTER,
                                          (None, None))
    assert len(batch) == 0 and outside == 0 and slow.tolist() == [0]
