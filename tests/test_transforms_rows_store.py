"""transforms/rows_store.py: a partition written by one run and read back by
a later one gives each exercise's sample rows (x exactly as written) and the
rows seen, for the days inside the later run's window only. Expectations are
computed from the hand-built rows directly."""

import datetime

import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from models.knowledge_state import NUM_BASE_FEATURES, ComponentCache, TrainingRows
from tests.test_transforms_fit import DIM, SEED, T, make_rows
from transforms.rows_store import (ReadRowsPartitions, SampleRowsByDay, WriteRowsPartition,
                                   partition_files, read_done)

DAY = 86_400 * 10**6


def test_a_partition_reads_back_the_rows_and_counts_of_the_window(tmp_path):
    rng = np.random.default_rng(0)
    blocks = []
    for exercise, n in (("a|b", 30), ("c\x1fd", 12)):
        rows, x, _ = make_rows(exercise, n, rng)
        rows.time_done = T + (np.arange(n) % 3) * DAY  # days 0, 1, 2 of the window
        blocks.append((exercise, rows))
    # Rows of long histories carry r as D floats: a block of them, same exercise.
    dense = TrainingRows(rows.users, rows.user_code, rows.user_hash, rows.exercises,
                         rows.exercise_code, rows.time_done + 1,
                         rows.problem_number, rows.correct, rows.base,
                         np.zeros(len(rows) + 1, dtype=np.int64), np.zeros(0, dtype=np.int32),
                         (), np.arange(len(rows)), x[:, NUM_BASE_FEATURES:] * 2)
    blocks.append((exercise, dense))
    x_of = {}
    for exercise, rows in blocks:
        x_of.setdefault(exercise, []).append((rows, rows.features(ComponentCache(SEED, DIM))))
    directory = str(tmp_path / "partition")
    with TestPipeline() as pipeline:
        rows = pipeline | beam.Create(blocks)
        samples = rows | SampleRowsByDay(max_samples=1000, seed=SEED)
        _ = ({"samples": samples, "after": samples}
             | WriteRowsPartition(directory, {"seed": SEED}))
    done = read_done(directory)
    assert done["rows_seen"] == 54 and done["seed"] == SEED

    second_day = (datetime.datetime.fromtimestamp(T // 10**6, datetime.timezone.utc).date()
                  + datetime.timedelta(days=1))
    expected = {}
    for exercise, parts in x_of.items():
        inside = [(rows.time_done >= T + DAY, x) for rows, x in parts]
        expected[exercise] = (sum(int(mask.sum()) for mask, _ in inside),
                              sorted(row for mask, x in inside for row in map(tuple, x[mask])))

    def check(pieces):
        got = {}
        for exercise, x, seen in pieces:
            total, xs = got.get(exercise, (0, []))
            got[exercise] = (total + seen, sorted(xs + x))
        # The same rows, exactly the x written, and the rows seen of days 1 and 2.
        assert got == expected

    with TestPipeline() as pipeline:
        pieces = (pipeline
                  | ReadRowsPartitions(partition_files(directory, done), second_day)
                  | beam.Map(lambda piece: (piece[0], list(map(tuple, piece[1][0].features(
                      ComponentCache(SEED, DIM)))), piece[1][1][piece[0]])))
        assert_that(pieces, check)
