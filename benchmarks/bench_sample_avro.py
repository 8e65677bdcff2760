"""Benchmark: pipelines.generate_sample's Avro writer against fastavro.writer.

    python benchmarks/bench_sample_avro.py                  # --students 25000: ~1 M rows
    python benchmarks/bench_sample_avro.py --students 2000 --repeats 1

Simulates one sample (the rows `python -m pipelines.generate_sample --students N
--seed 1` writes), then writes it as one Avro file (deflate level 1) with each
writer, --repeats times alternately, and prints the best wall-clock time of
each and their ratio. The fastavro variant is the simplest fair use: columns to
Python lists, one dict per row, fastavro.writer with validation off and a
fixed sync marker. Both files are read back with fastavro and must hold the
same records. A report, not a test.
"""

import argparse
import hashlib
import os
import sys
import tempfile
import time

import fastavro

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from models import simulation  # noqa: E402
from models.problem_log import FIELDS, PROBLEM_LOG_AVRO_SCHEMA  # noqa: E402
from pipelines import generate_sample  # noqa: E402


def write_with_fastavro(path, columns, rows):
    values = [columns[name][rows].tolist() for name in FIELDS]
    records = (dict(zip(FIELDS, row)) for row in zip(*values))
    with open(path, "wb") as out:
        fastavro.writer(out, PROBLEM_LOG_AVRO_SCHEMA, records, codec="deflate",
                        codec_compression_level=1, validator=False,
                        sync_marker=hashlib.md5(os.path.basename(path).encode()).digest())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=25000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)

    started = time.perf_counter()
    logs = simulation.simulate(args.students, args.seed)
    print(f"{len(logs)} rows from {args.students} students "
          f"(simulated in {time.perf_counter() - started:.2f} s)")
    rows = slice(0, len(logs))
    writers = {"generate_sample": generate_sample._write_avro,
               "fastavro.writer": write_with_fastavro}
    best = {name: float("inf") for name in writers}
    with tempfile.TemporaryDirectory() as directory:
        for _ in range(args.repeats):
            for name, write in writers.items():
                path = os.path.join(directory, f"{name}.avro")
                started = time.perf_counter()
                write(path, logs.columns, rows)
                best[name] = min(best[name], time.perf_counter() - started)
        records = {}
        for name in writers:
            path = os.path.join(directory, f"{name}.avro")
            with open(path, "rb") as handle:
                records[name] = list(fastavro.reader(handle))
            print(f"{name:16s} {best[name]:6.2f} s  {os.path.getsize(path) / 1e6:5.1f} MB")
    assert records["generate_sample"] == records["fastavro.writer"], "the files differ"
    print(f"fastavro.writer / generate_sample: "
          f"{best['fastavro.writer'] / best['generate_sample']:.1f}x")


if __name__ == "__main__":
    main()
