"""Write a deterministic synthetic ProblemLog sample in any supported format.

Gives tests, demos and benchmarks realistic input without real student data,
together with the simulator's true probabilities so an evaluation can say how
close a trained model gets to the best achievable log likelihood.

    python -m pipelines.generate_sample --output /tmp/sample --students 1000 --seed 1
    python -m pipelines.generate_sample --output /tmp/sample --students 25000 \\
        --seed 1 --format parquet --shards 4

Writes DIR/problem_logs-SSSSS-of-KKKKK.<ext> (rows sorted by (time_done, user)
and split into K contiguous time ranges) and DIR/true_probabilities.csv (one
row per log, same order). About MEAN_ATTEMPTS_PER_STUDENT logs per student.
"""

import argparse
import glob
import hashlib
import json
import os
import time
import zlib
from typing import Dict, List, Sequence

import numpy as np

from models import simulation
from models.problem_log import FIELDS, PROBLEM_LOG_AVRO_SCHEMA
from pipelines import cli
from pipelines.option_types import non_negative_int, positive_int

FORMATS = ("avro", "json", "csv", "parquet")
TRUE_PROBABILITIES = "true_probabilities.csv"
TRUE_PROBABILITY_FIELDS = ("user", "exercise", "time_done", "problem_number",
                           "p_true")
_PREFIX = "problem_logs"
_DAY_MICROS = 86_400 * 1_000_000


def shard_name(index: int, shards: int, fmt: str) -> str:
    return f"{_PREFIX}-{index:05d}-of-{shards:05d}.{fmt}"


def iso_timestamps(micros: np.ndarray) -> List[str]:
    """models.problem_log.format_timestamp for a whole column (same text:
    whole seconds carry no fraction), built as a byte matrix because a
    datetime per row would dominate writing a million rows."""
    days, in_day = np.divmod(np.asarray(micros, dtype=np.int64), _DAY_MICROS)
    distinct, inverse = np.unique(days, return_inverse=True)
    dates = np.datetime_as_string(distinct.astype("datetime64[D]"))
    text = np.zeros((len(days), 27), dtype=np.uint8)
    text[:, :10] = dates.astype("S10").view(np.uint8).reshape(-1, 10)[
        inverse.ravel()]
    seconds, fraction = np.divmod(in_day, 1_000_000)
    for start, width, value in ((11, 2, seconds // 3600),
                                (14, 2, seconds // 60 % 60),
                                (17, 2, seconds % 60), (20, 6, fraction)):
        for digit in range(width):
            text[:, start + width - 1 - digit] = 48 + value // 10 ** digit % 10
    text[:, [10, 13, 16, 19, 26]] = np.frombuffer(b"T::.Z", dtype=np.uint8)
    whole = fraction == 0
    text[whole, 19] = ord("Z")
    text[whole, 20:] = 0  # trailing NULs vanish from an S27 string
    return text.view("S27").ravel().astype("U27").tolist()


def _varints(values: np.ndarray):
    """Avro longs (zigzag varints) as a (rows, bytes) matrix + lengths."""
    values = values.astype(np.int64)
    zigzag = ((values << 1) ^ (values >> 63)).view(np.uint64)
    widest = int(zigzag.max()) if len(zigzag) else 0
    shifts = np.arange(max(1, -(-widest.bit_length() // 7)),
                       dtype=np.uint64) * np.uint64(7)
    groups = ((zigzag[:, None] >> shifts) & np.uint64(0x7F)).astype(np.uint8)
    lengths = 1 + ((zigzag[:, None] >> shifts[1:]) != 0).sum(axis=1)
    groups[np.arange(len(shifts)) < lengths[:, None] - 1] |= 0x80
    return groups, lengths


def _avro_strings(values: np.ndarray):
    """Length-prefixed UTF-8: two (matrix, lengths) pieces."""
    try:
        raw = values.astype("S")  # ASCII, the common case: no Python loop
    except UnicodeEncodeError:
        raw = np.array([v.encode() for v in values.tolist()], dtype="S")
    lengths = np.strings.str_len(raw).astype(np.int64)
    matrix = raw.view(np.uint8).reshape(len(raw), raw.dtype.itemsize)
    return [_varints(lengths), (matrix, lengths)]


def _varint_bytes(value: int) -> bytes:
    matrix, lengths = _varints(np.array([value]))
    return matrix[0, :lengths[0]].tobytes()


# Why not fastavro.writer (a dependency, and what reads these files in the
# tests): it encodes value by value from one dict per row. Measured on the
# 2-core development machine for a 1 M-row sample (--students 25000, 991,792
# rows, one deflate-1 file; `python benchmarks/bench_sample_avro.py`, best of
# 3): this numpy encoder 2.6 s, fastavro.writer 15.7 s (6.0x). The whole
# `python -m pipelines.generate_sample --students 25000` takes 5.5 s, so
# fastavro would more than triple it. The encoder is checked against
# fastavro's record encoding and reader in tests/test_generate_sample.py.

def _avro_rows(columns, rows):
    """The Avro binary encoding of every row, concatenated, plus each row's
    end offset: numpy does per column what fastavro does per value. Values
    are never null here, so a nullable column is always union branch 1."""
    count = len(columns["user"][rows])
    pieces = []
    for field in PROBLEM_LOG_AVRO_SCHEMA["fields"]:
        kind = field["type"]
        if isinstance(kind, list):
            pieces.append((np.full((count, 1), 2, np.uint8),
                           np.ones(count, np.int64)))
            kind = kind[1]
        kind = kind["type"] if isinstance(kind, dict) else kind
        values = columns[field["name"]][rows]
        if kind == "string":
            pieces.extend(_avro_strings(values))
        elif kind == "long":
            pieces.append(_varints(values))
        elif kind == "boolean":
            pieces.append((values.astype(np.uint8)[:, None],
                           np.ones(count, np.int64)))
        else:
            raise ValueError(f"no Avro encoder for {kind!r}")
    matrix = np.concatenate([m for m, _ in pieces], axis=1)
    keep = np.concatenate(
        [np.arange(m.shape[1]) < n[:, None] for m, n in pieces], axis=1)
    ends = np.cumsum(sum(n for _, n in pieces))
    return matrix[keep].tobytes(), ends


def _write_avro(path, columns, rows, block_rows=10_000):
    """An Avro object container file, deflate-compressed blocks; the sync
    marker is derived from the file name so files are byte-reproducible."""
    data, ends = _avro_rows(columns, rows)
    marker = hashlib.md5(os.path.basename(path).encode()).digest()
    metadata = {"avro.schema": json.dumps(PROBLEM_LOG_AVRO_SCHEMA).encode(),
                "avro.codec": b"deflate"}
    with open(path, "wb") as out:
        out.write(b"Obj\x01" + _varint_bytes(len(metadata)))
        for key, value in metadata.items():
            out.write(_varint_bytes(len(key)) + key.encode())
            out.write(_varint_bytes(len(value)) + value)
        out.write(b"\x00" + marker)
        starts = np.concatenate([[0], ends])
        for first in range(0, len(ends), block_rows):
            last = min(first + block_rows, len(ends))
            squeezer = zlib.compressobj(1, zlib.DEFLATED, -15)  # raw deflate
            block = squeezer.compress(data[starts[first]:starts[last]])
            block += squeezer.flush()
            out.write(_varint_bytes(last - first) + _varint_bytes(len(block)))
            out.write(block + marker)


def _json_texts(values: np.ndarray) -> List[str]:
    """One column as JSON value texts; strings are encoded once per distinct
    value, which is what makes a million-row file take seconds, not tens."""
    if values.dtype.kind == "b":
        return np.where(values, "true", "false").tolist()
    if values.dtype.kind in "iu":
        return [str(v) for v in values.tolist()]
    distinct, inverse = np.unique(values, return_inverse=True)
    encoded = np.array([json.dumps(v) for v in distinct.tolist()], dtype=object)
    return encoded[inverse.ravel()].tolist()


def _write_json(path, columns, rows):
    texts = []
    for field in FIELDS:
        if field == "time_done":
            texts.append(['"%s"' % t
                          for t in iso_timestamps(columns[field][rows])])
        else:
            texts.append(_json_texts(columns[field][rows]))
    line = "{" + ",".join(f'"{f}":%s' for f in FIELDS) + "}\n"
    with open(path, "w", encoding="utf-8") as out:
        out.writelines(line % row for row in zip(*texts))


def _write_arrow_csv(path, table):
    """Unquoted CSV a person can `head`, quoted only if a value needs it."""
    import pyarrow as pa
    import pyarrow.csv as pcsv

    with open(path, "wb") as out:
        out.write((",".join(table.column_names) + "\n").encode())
        try:
            pcsv.write_csv(table, out, pcsv.WriteOptions(
                include_header=False, quoting_style="none"))
        except pa.ArrowInvalid:  # a comma or quote in some value
            out.seek(0)
            out.truncate()
            pcsv.write_csv(table, out, pcsv.WriteOptions(
                quoting_style="needed"))


def _write_csv(path, columns, rows):
    import pyarrow as pa

    arrays = [iso_timestamps(columns[f][rows]) if f == "time_done"
              else columns[f][rows] for f in FIELDS]
    _write_arrow_csv(path, pa.table(dict(zip(FIELDS, arrays))))


def _write_parquet(path, columns, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays = [pa.array(columns[f][rows], type=pa.timestamp("us", tz="UTC"))
              if f == "time_done" else pa.array(columns[f][rows])
              for f in FIELDS]
    pq.write_table(pa.Table.from_arrays(arrays, names=list(FIELDS)), path)


_WRITERS = {
    "avro": _write_avro,
    "json": _write_json,
    "csv": _write_csv,
    "parquet": _write_parquet,
}


def write_true_probabilities(path: str, columns: Dict[str, np.ndarray]):
    """Keyed like the logs (user, exercise, time_done text, problem_number)
    so an evaluation can join predictions to the truth."""
    import pyarrow as pa

    arrays = [iso_timestamps(columns[f]) if f == "time_done" else columns[f]
              for f in TRUE_PROBABILITY_FIELDS]
    _write_arrow_csv(path, pa.table(dict(zip(TRUE_PROBABILITY_FIELDS,
                                              arrays))))


def write_sample(columns: Dict[str, np.ndarray], output: str,
                 fmt: str = "avro", shards: int = 1) -> List[str]:
    """Write the logs and the true probabilities; returns the paths written.

    Shard files of an earlier run with another shard count or format are
    removed, so a glob over DIR/problem_logs-* never mixes two samples.
    """
    if fmt not in _WRITERS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FORMATS}")
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    os.makedirs(output, exist_ok=True)
    paths = [os.path.join(output, shard_name(i, shards, fmt))
             for i in range(shards)]
    for stale in glob.glob(os.path.join(output, f"{_PREFIX}-*-of-*.*")):
        if stale not in paths:
            os.remove(stale)
    bounds = np.linspace(0, len(columns["user"]), shards + 1).astype(int)
    for path, lo, hi in zip(paths, bounds[:-1], bounds[1:]):
        _WRITERS[fmt](path, columns, slice(lo, hi))
    truth = os.path.join(output, TRUE_PROBABILITIES)
    write_true_probabilities(truth, columns)
    return paths + [truth]


def build_parser() -> argparse.ArgumentParser:
    parser = cli.ArgumentParser(
        prog="python -m pipelines.generate_sample",
        description=(
            "Write deterministic synthetic ProblemLogs (and their true "
            "probabilities) for tests, demos and benchmarks."))
    parser.add_argument(
        "--output", required=True,
        help="directory to write problem_logs-SSSSS-of-KKKKK.<format> and "
             f"{TRUE_PROBABILITIES} into (created if missing; shard files "
             "of an earlier run there are replaced)")
    parser.add_argument(
        "--students", type=positive_int, default=1000,
        help="number of students; each makes about "
             f"{simulation.MEAN_ATTEMPTS_PER_STUDENT:g} attempts on average, "
             "so logs ~= students * that (default: %(default)s)")
    parser.add_argument(
        "--seed", type=non_negative_int, default=0,
        help="random seed; the same arguments always give the same files "
             "(default: %(default)s)")
    parser.add_argument(
        "--format", choices=FORMATS, default="avro",
        help="avro (BigQuery's export schema), json (JSON lines), csv (with "
             "header) or parquet (default: %(default)s)")
    parser.add_argument(
        "--shards", type=positive_int, default=1,
        help="number of output files; rows in time order are split into "
             "this many contiguous ranges (default: %(default)s)")
    parser.add_argument(
        "--exercises", type=positive_int, default=60,
        help="number of exercises in the curriculum (default: %(default)s)")
    parser.add_argument(
        "--days", type=positive_int, default=90,
        help="days of activity, starting "
             f"{simulation.START_TIME.date().isoformat()} UTC "
             "(default: %(default)s)")
    return parser


def main(argv: Sequence[str] = None) -> dict:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    logs = simulation.simulate(args.students, args.seed,
                               exercises=args.exercises, days=args.days)
    simulated = time.perf_counter() - started
    paths = write_sample(logs.columns, args.output, args.format, args.shards)
    summary = {
        "logs": len(logs),
        "students": int(np.unique(logs.user_index).size),
        "exercises": int(np.unique(logs.exercise_index).size),
        "oracle_mean_log_likelihood": simulation.oracle_log_likelihood(logs),
        "files": paths,
        "simulate_seconds": round(simulated, 3),
        "total_seconds": round(time.perf_counter() - started, 3),
    }
    print(f"logs: {summary['logs']}")
    print(f"students: {summary['students']}")
    print(f"exercises: {summary['exercises']} of {args.exercises}")
    print("oracle mean log likelihood: "
          f"{summary['oracle_mean_log_likelihood']:.5f}")
    print(f"output files ({len(paths)}):")
    for path in paths:
        print(f"  {path}")
    print(f"seconds: {summary['total_seconds']:.2f} "
          f"(simulation {summary['simulate_seconds']:.2f})")
    return summary


if __name__ == "__main__":
    main()
