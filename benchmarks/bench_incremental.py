"""Benchmark: the nightly run from saved student state against a full replay.

    python benchmarks/bench_incremental.py                 # 40,000 students, 90 + 1 days
    python benchmarks/bench_incremental.py --quick         # smoke run: 1,000 students
    python benchmarks/bench_incremental.py --students 50000 --days 180 --workdir /tmp/inc

Generates `--days` + 1 days of ProblemLogs (pipelines.generate_sample, Parquet),
writes them as one Parquet file per day (rows in time order), then runs
`python -m pipelines.train_knowledge_model` as a subprocess, timed end to end,
each training on the last `--window_days` (30) days as the nightly job does:

(a) the full replay of night N (the day after the last day): every day file,
    `--run_date N --window_days 30 --history_days <the rest>`;
(b) the set-up of the nightly chain, night N-1: every day file, `--state_dir
    S --run_date N-1` (no snapshot yet: it replays the whole history and
    writes S/N-1 and its rows partition; reported, not the nightly cost);
(c) the nightly run of night N: only the last day's file, `--state_dir S
    --run_date N`: it continues S/N-1 and fits on its own rows plus the
    stored rows of the window;
(d) for reference, the last day's file alone without saved state: the floor
    of start-up and fixed pipeline cost, so (c) - (d) is what reading and
    writing the snapshot and the stored rows costs.

For each: wall time end to end (interpreter start-up and imports included) and
the run summary's wall_time_seconds (run() only), CPU time (user + sys: less
sensitive than wall time to other jobs on the machine), bytes read (the input
files the run opens, plus for (c) the snapshot and the rows partitions),
records read, students, and the subprocess's peak RSS (os.wait4's ru_maxrss:
the trainer, or its largest worker with a multi-process runner). Then the
ratios (c)/(a) against the target (the day's run under 10% of the full
replay) and cross-checks: S/N holds as many students as (a) replayed, and
(c)'s parameters equal (a)'s. A report, not a test: no assertions.
"""

import argparse
import datetime
import glob
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.child_process import source_stamps, warn_if_sources_changed  # noqa: E402

DAY_MICROS = 86_400 * 1_000_000
TARGET = 0.10  # the nightly run's share of the full replay
# The same model settings for every run (a snapshot is refused under others);
# --min_samples low enough that one day's logs fit some exercises.
SETTINGS = ["--seed", "0", "--num_random_features", "100", "--min_samples", "5",
            "--overwrite"]


def generate(students, days, seed, workdir):
    """`days` days of logs as workdir/days/logs-YYYY-MM-DD.parquet, sorted by
    time_done; returns (paths in day order, their dates, logs). Logs of a
    student whose attempts run past the last day are left out (and counted)."""
    import numpy as np
    import pyarrow.parquet as pq

    generated = os.path.join(workdir, "generated")
    done = subprocess.run([sys.executable, "-m", "pipelines.generate_sample", "--output",
                           generated, "--students", str(students), "--seed", str(seed),
                           "--format", "parquet", "--days", str(days)],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"generate_sample failed:\n{done.stdout}\n{done.stderr}")
    table = pq.read_table(glob.glob(os.path.join(generated, "*.parquet")))
    shutil.rmtree(generated)  # true_probabilities.csv is large and not read
    table = table.sort_by("time_done")
    micros = table.column("time_done").cast("int64").to_numpy()
    first_day = int(micros[0] // DAY_MICROS)
    bounds = np.searchsorted(micros // DAY_MICROS - first_day, np.arange(days + 1))
    if bounds[-1] < len(micros):
        print(f"  left out {len(micros) - bounds[-1]:,} logs after day {days} "
              f"(students running past the end)")
    dates = [datetime.date(1970, 1, 1) + datetime.timedelta(days=first_day + number)
             for number in range(days)]
    paths = [os.path.join(workdir, "days", f"logs-{date.isoformat()}.parquet")
             for date in dates]
    os.makedirs(os.path.dirname(paths[0]), exist_ok=True)
    for number, path in enumerate(paths):
        pq.write_table(table.slice(bounds[number], bounds[number + 1] - bounds[number]), path)
    return paths, dates, int(bounds[-1])


def snapshot(directory):
    """(the snapshot's files, SNAPSHOT.json first; its header)."""
    with open(os.path.join(directory, "SNAPSHOT.json")) as handle:
        header = json.load(handle)
    return [os.path.join(directory, name) for name in ["SNAPSHOT.json"] + header["files"]], header


def saved_state_read(summary):
    """The files a run with --state_dir read besides its logs: the snapshot
    it continued and the rows partitions of its window."""
    paths = snapshot(summary["state_input"]["path"])[0] if "state_input" in summary else []
    for folder in summary.get("rows_store_inputs", []):
        paths += glob.glob(os.path.join(folder, "*"))
    return paths


def params(output):
    with open(os.path.join(output, "params", "params.jsonl")) as handle:
        return {record["exercise"]: record["theta"] for record in map(json.loads, handle)}


def train(label, name, input_pattern, workdir, beam_args, extra=()):
    """One trainer subprocess (output and log under workdir/LABEL): its
    measurements and run summary."""
    output = os.path.join(workdir, label)
    argv = ["--input", input_pattern, "--output", output, *SETTINGS, *extra, *beam_args]
    with open(os.path.join(workdir, label + ".log"), "w") as log:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "pipelines.train_knowledge_model",
                                  *argv], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage
        wall = time.monotonic() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        with open(log.name) as text:
            sys.exit(f"run {name} failed (exit {child.returncode}):\n{text.read()[-3000:]}")
    with open(os.path.join(output, "run_summary.json")) as handle:
        summary = json.load(handle)
    read = glob.glob(input_pattern) + saved_state_read(summary)
    print(f"  {name}: {wall:.1f} s", flush=True)
    return {"name": name, "wall": wall, "inner": summary["wall_time_seconds"],
            "cpu": usage.ru_utime + usage.ru_stime, "bytes": total_bytes(read),
            "peak_mib": usage.ru_maxrss / 1024, "summary": summary,
            "params": params(output)}


def column_bytes(paths):
    """Compressed bytes per top-level column over a snapshot's Parquet shards."""
    import pyarrow.parquet as pq
    sizes = {}
    for path in paths:
        if path.endswith(".parquet"):
            metadata = pq.ParquetFile(path).metadata
            for group in range(metadata.num_row_groups):
                for column in range(metadata.num_columns):
                    chunk = metadata.row_group(group).column(column)
                    name = chunk.path_in_schema.split(".")[0]
                    sizes[name] = sizes.get(name, 0) + chunk.total_compressed_size
    return sizes


def total_bytes(paths):
    return sum(map(os.path.getsize, paths))


def mib(size):
    return size / 2 ** 20


def report(runs, history_days, day_paths, state_before, state_after):
    full, setup, nightly, floor = runs
    last = history_days + 1
    print(f"\n{full['summary']['records_read']:,} logs of {full['summary']['students']:,} "
          f"students in {len(day_paths)} day files, "
          f"{mib(total_bytes(day_paths)):.1f} MiB; day {last}: "
          f"{nightly['summary']['records_read']:,} logs, "
          f"{os.path.getsize(day_paths[-1]) / 1024:.0f} KiB")
    header = (f"{'run':<36}{'wall s':>8}{'run() s':>9}{'start-up':>9}{'CPU s':>7}{'MiB read':>10}"
              f"{'records':>11}{'students':>10}{'peak MiB':>10}")
    print("(wall: the subprocess end to end; run(): run_summary.json's wall_time_seconds; "
          "start-up: the difference,\n interpreter and imports; CPU: user + sys of the "
          "subprocess; MiB read: the input files opened,\n for (c) plus the snapshot)")
    print(header + "\n" + "-" * len(header))
    for result in runs:
        summary = result["summary"]
        print(f"{result['name']:<36}{result['wall']:>8.1f}{result['inner']:>9.1f}"
              f"{result['wall'] - result['inner']:>9.1f}{result['cpu']:>7.1f}"
              f"{mib(result['bytes']):>10.2f}"
              f"{summary['records_read']:>11,}{summary['students']:>10,}"
              f"{result['peak_mib']:>10,.0f}")

    print(f"\n(c)/(a), target < {TARGET:.0%} of the full replay at {history_days} days "
          "of history:")
    for what, share in (("wall time end to end", nightly["wall"] / full["wall"]),
                        ("run() time", nightly["inner"] / full["inner"]),
                        ("CPU time", nightly["cpu"] / full["cpu"]),
                        ("bytes read", nightly["bytes"] / full["bytes"])):
        print(f"  {what:<22}{share:>7.1%}  {'met' if share < TARGET else 'MISSED'}")
    print(f"  {'peak RSS':<22}{nightly['peak_mib'] / full['peak_mib']:>7.1%}")

    paths, header = snapshot(state_before)
    size, columns = total_bytes(paths), column_bytes(paths)
    largest = max(columns, key=columns.get)
    print(f"\nsnapshot after {history_days} days: {header['students']:,} students, "
          f"{header['rows']:,} rows, "
          f"{mib(size):.2f} MiB = {size / header['students']:.0f} B/student, "
          f"{size / total_bytes(day_paths[:-1]):.0%} of the {history_days} "
          f"days of logs it stands for; largest column {largest} "
          f"({columns[largest] / sum(columns.values()):.0%} of the shards)")
    grows = [result["cpu"] - floor["cpu"] for result in (nightly, full)]
    print(f"(c): start-up {nightly['wall'] - nightly['inner']:.1f} s + run() "
          f"{nightly['inner']:.1f} s; (d), the same day without state: "
          f"{floor['wall']:.1f} s end to end, run() {floor['inner']:.1f} s, CPU "
          f"{floor['cpu']:.1f} s.\nWhat grows with the data, beyond (d): (c) takes "
          f"{grows[0]:.1f} CPU s more and (a) {grows[1]:.1f} CPU s more: "
          f"{grows[0] / grows[1]:.1%}")
    print(f"(b) read day {last}'s file too and left its "
          f"{setup['summary']['records_outside_window']:,} records out (--run_date)")

    written = snapshot(state_after)[1]["students"]
    same = written == full["summary"]["students"]
    print(f"\ncross-check: the last snapshot's students {written:,} "
          f"{'==' if same else '!='} the full replay's students "
          f"{full['summary']['students']:,}: {'OK' if same else 'DIFFER'}")
    common = sorted(set(full["params"]) & set(nightly["params"]))
    largest = max((max(abs(a - b) for a, b in zip(full["params"][name], nightly["params"][name]))
                   for name in common), default=float("nan"))
    print(f"cross-check: (c) fitted {len(nightly['params'])} exercises, (a) "
          f"{len(full['params'])}; largest theta difference on the {len(common)} both "
          f"fitted: {largest:.2e}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=40_000,
                        help="about 40 logs each (default: %(default)s)")
    parser.add_argument("--days", type=int, default=90,
                        help="days of history before the nightly day (default: %(default)s)")
    parser.add_argument("--window_days", type=int, default=30,
                        help="days of training rows every run fits on (default: %(default)s)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --students 1000 (about a minute)")
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument("--beam_args", default="", help="extra pipeline args, one string")
    parser.add_argument("--workdir", help="kept afterwards (default: a temp dir, removed)")
    args = parser.parse_args()
    if args.days < 1 or args.students < 1 or not 1 <= args.window_days <= args.days:
        parser.error("--days and --students must be at least 1, --window_days 1 to --days")
    if args.quick:
        args.students = 1000
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_incremental_")
    os.makedirs(workdir, exist_ok=True)
    beam_args = shlex.split(args.beam_args)
    started, stamps = time.monotonic(), source_stamps()
    try:
        day_paths, dates, logs = generate(args.students, args.days + 1, args.seed, workdir)
        print(f"generated {logs:,} logs in {len(day_paths)} day files "
              f"({dates[0]} to {dates[-1]}) in {time.monotonic() - started:.1f} s", flush=True)
        every_day = os.path.join(workdir, "days", "logs-*.parquet")
        history, last = args.days, args.days + 1
        night = dates[-1] + datetime.timedelta(days=1)
        state_dir = os.path.join(workdir, "state")
        state_before, state_after = (os.path.join(state_dir, date.isoformat())
                                     for date in (dates[-1], night))
        window = ["--window_days", str(args.window_days)]
        runs = [train("a_full", f"(a) full replay, {last} days", every_day, workdir,
                      beam_args, ["--run_date", night.isoformat(), *window, "--history_days",
                                  str(last - args.window_days)]),
                train("b_setup", f"(b) set-up: days 1-{history}, first night", every_day,
                      workdir, beam_args, ["--state_dir", state_dir, "--run_date",
                                           dates[-1].isoformat(), *window]),
                train("c_nightly", f"(c) nightly: day {last} + state", day_paths[-1],
                      workdir, beam_args, ["--state_dir", state_dir, "--run_date",
                                           night.isoformat(), *window]),
                train("d_day_alone", f"(d) day {last} alone, no state", day_paths[-1],
                      workdir, beam_args)]
        report(runs, history, day_paths, state_before, state_after)
        print(f"\n(total benchmark time {time.monotonic() - started:.0f} s)")
        warn_if_sources_changed(stamps)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
