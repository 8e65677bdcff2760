"""Benchmark: the training pipeline on the DirectRunner against the same work
(sort, replay, fit) done in one plain Python process without Beam.

    python benchmarks/bench_train.py                  # 1,000,000 logs in 4 Avro files
    python benchmarks/bench_train.py --logs 50000     # quick check
    python benchmarks/bench_train.py \\
        --beam_args "--direct_running_mode=multi_processing --direct_num_workers=2"
    python benchmarks/bench_train.py --memory_sizes 250000,1000000

Generates the logs with `python -m pipelines.generate_sample`, runs each variant
in its own child process (timed end to end by wall clock, start-up and imports
included) and prints ProblemLogs/s for both, their ratio against the target
(pipeline >= 0.5x the plain process) and peak memory. Peak RSS is the child's
getrusage: its own ru_maxrss plus RUSAGE_CHILDREN (the largest single
descendant, e.g. one Beam worker) and, on Linux, the sampled peak of the sum over
the whole process tree (what counts when several workers run at once). It also
checks that both variants fitted the same exercises with the same theta.
With --memory_sizes the pipeline is also run at each size, to show whether peak
memory grows with the number of students. A report, not a test: no assertions.
"""

import argparse
import glob
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks.child_process import (report, run_child, source_stamps,  # noqa: E402
                                      warn_if_sources_changed)
from models.exercise_model import FitSettings  # noqa: E402  (needs REPO on sys.path)

# The pipeline's defaults, passed to it explicitly so both variants match.
_DEFAULTS = FitSettings()
SEED, DIM, MAX_SAMPLES, MIN_SAMPLES, HOLDOUT, L2, MAX_ITERATIONS = (
    _DEFAULTS.seed, _DEFAULTS.num_random_features, _DEFAULTS.max_samples,
    _DEFAULTS.min_samples, _DEFAULTS.holdout_fraction, _DEFAULTS.l2, _DEFAULTS.max_iterations)
MAX_ATTEMPTS, REPLAY_BATCH = 100000, 20000
PIPELINE_SETTINGS = [f"--seed={SEED}", f"--num_random_features={DIM}",
                     f"--max_samples_per_exercise={MAX_SAMPLES}", f"--min_samples={MIN_SAMPLES}",
                     f"--holdout_fraction={HOLDOUT}", f"--l2={L2}",
                     f"--max_iterations={MAX_ITERATIONS}",
                     f"--max_attempts_per_student={MAX_ATTEMPTS}"]
TOLERANCE = 1e-6
TARGET_RATIO = 0.5


# ---------------------------------------------------------------- children

def beam_child(argv):
    """Exactly `python -m pipelines.train_knowledge_model ARGV`, then rusage."""
    sys.argv = ["train_knowledge_model"] + argv
    runpy.run_module("pipelines.train_knowledge_model", run_name="__main__", alter_sys=True)
    report({})


def plain_child(input_glob, output):
    """The pipeline's work in one process, no Beam: read + parse, group by user,
    sessionize, replay in batches, sample per exercise, fit. Writes the fitted
    {"exercise", "theta"} records to `output` as JSON lines."""
    import fastavro
    from threadpoolctl import threadpool_limits
    from models.exercise_model import FitSettings, bottom_k, fit_exercise, sample_keys
    from models.knowledge_state import ComponentCache, TrainingRows, replay_students, sessionize
    from models.problem_log import InvalidProblemLog, ProblemLogParser

    parse, by_user, invalid = ProblemLogParser(), {}, 0
    for path in sorted(glob.glob(input_glob)):
        with open(path, "rb") as handle:
            for raw in fastavro.reader(handle):
                try:
                    log = parse(raw)
                except InvalidProblemLog:
                    invalid += 1
                    continue
                by_user.setdefault(log.user, []).append(log)

    components = ComponentCache(SEED, DIM)
    blocks, batch, attempts = {}, [], 0

    def flush():
        rows = replay_students(batch, components, (1, None))
        for exercise, block in rows.split_by_exercise():
            blocks.setdefault(exercise, []).append(block)

    for user in list(by_user):
        logs, _ = sessionize(by_user.pop(user))
        if len(logs) > MAX_ATTEMPTS:
            continue  # the pipeline dead-letters such a student
        batch.append(logs)
        attempts += len(logs)
        if attempts >= REPLAY_BATCH:
            flush()
            batch, attempts = [], 0
    if batch:
        flush()

    settings = FitSettings(max_samples=MAX_SAMPLES, min_samples=MIN_SAMPLES,
                           holdout_fraction=HOLDOUT, l2=L2, max_iterations=MAX_ITERATIONS,
                           seed=SEED)
    threadpool_limits(limits=1, user_api="blas")  # as the pipeline's fit DoFn does
    with open(output, "w", encoding="utf-8") as out:
        for exercise in sorted(blocks):
            rows = TrainingRows.concatenate(blocks.pop(exercise))
            sample, _ = bottom_k(rows, sample_keys(rows, SEED), MAX_SAMPLES)
            outcome, record = fit_exercise(exercise, sample, len(rows), settings)
            if outcome == "fitted":
                out.write(json.dumps({"exercise": exercise, "theta": record["theta"]}) + "\n")
    report({})


# ------------------------------------------------------------------ parent

def generate(logs, shards, seed, directory):
    """Writes ~`logs` ProblemLogs as Avro; returns (glob, logs, students, files)."""
    from models.simulation import MEAN_ATTEMPTS_PER_STUDENT
    import fastavro

    students = max(1, round(logs / MEAN_ATTEMPTS_PER_STUDENT))
    done = subprocess.run([sys.executable, "-m", "pipelines.generate_sample", "--output",
                           directory, "--students", str(students), "--seed", str(seed),
                           "--format", "avro", "--shards", str(shards)],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"generate_sample failed:\n{done.stdout}\n{done.stderr}")
    files = sorted(glob.glob(os.path.join(directory, "*.avro")))
    count = 0
    for path in files:
        with open(path, "rb") as handle:
            count += sum(block.num_records for block in fastavro.block_reader(handle))
    found = re.search(r"^students: (\d+)", done.stdout, re.MULTILINE)
    return (os.path.join(directory, "*.avro"), count,
            int(found.group(1)) if found else students, len(files))


def run_beam(input_glob, output, beam_args, workdir, label="beam"):
    result = run_child(__file__, label, ["beam", "--input", input_glob, "--output", output,
                               "--overwrite"] + PIPELINE_SETTINGS + beam_args, workdir)
    with open(os.path.join(output, "run_summary.json")) as handle:
        result["inner_seconds"] = json.load(handle)["wall_time_seconds"]
    return result


def read_thetas(path):
    with open(path) as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    return {record["exercise"]: record["theta"] for record in records}


def compare(beam_params, plain_params):
    beam, plain = read_thetas(beam_params), read_thetas(plain_params)
    if set(beam) != set(plain):
        return (f"FAIL: fitted exercises differ (only beam: {sorted(set(beam) - set(plain))}, "
                f"only plain: {sorted(set(plain) - set(beam))})")
    diffs = {e: max((abs(a - b) for a, b in zip(beam[e], plain[e])), default=0.0)
             for e in beam}
    worst = max(diffs, key=diffs.get, default=None)
    diff = diffs[worst] if worst else 0.0
    ok = diff <= TOLERANCE and all(len(beam[e]) == len(plain[e]) for e in beam)
    return (f"{'OK' if ok else 'FAIL'}: {len(beam)} exercises fitted by both, "
            f"max |theta beam - theta plain| = {diff:.3g} (tolerance {TOLERANCE:g})"
            + ("" if ok else f", worst exercise {worst!r}"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument("--workdir", help="kept afterwards (default: a temp dir, removed)")
    parser.add_argument("--beam_args", default="", help="extra pipeline args, one string")
    parser.add_argument("--memory_sizes", default="", help="e.g. 250000,1000000")
    args = parser.parse_args()
    beam_args = shlex.split(args.beam_args)
    sizes = [int(size) for size in args.memory_sizes.split(",") if size.strip()]
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_train_")
    os.makedirs(workdir, exist_ok=True)
    try:
        started = time.monotonic()
        pattern, logs, students, files = generate(args.logs, args.shards, args.seed,
                                                  os.path.join(workdir, f"logs_{args.logs}"))
        print(f"generated {logs:,} ProblemLogs in {time.monotonic() - started:.1f} s", flush=True)
        stamps = source_stamps()
        beam = run_beam(pattern, os.path.join(workdir, "beam_out"), beam_args, workdir)
        print(f"beam done in {beam['wall']:.1f} s", flush=True)
        plain_params = os.path.join(workdir, "plain_params.jsonl")
        plain = run_child(__file__, "plain", ["plain", pattern, plain_params], workdir)
        print(f"plain done in {plain['wall']:.1f} s\n", flush=True)
        agreement = compare(os.path.join(workdir, "beam_out", "params", "params.jsonl"),
                            plain_params)

        print(f"ProblemLogs: {logs:,}   students: {students:,}   files: {files} (Avro)")
        print(f"beam args: {' '.join(beam_args) or '(none: DirectRunner defaults)'}")
        header = (f"{'variant':<8}{'seconds':>9}{'ProblemLogs/s':>15}{'peak RSS MiB':>14}"
                  f"{'(self':>8}{'+ child)':>10}{'tree peak':>11}")
        print(header + "\n" + "-" * len(header))
        for name, result in (("beam", beam), ("plain", plain)):
            print(f"{name:<8}{result['wall']:>9.1f}{logs / result['wall']:>15,.0f}"
                  f"{result['self_mib'] + result['children_mib']:>14,.0f}"
                  f"{result['self_mib']:>8,.0f}{result['children_mib']:>10,.0f}"
                  f"{result['tree_mib']:>11,.0f}")
        ratio = plain["wall"] / beam["wall"]
        print(f"(beam run() wall_time_seconds inside the child: {beam['inner_seconds']:.1f} s; "
              "seconds above are child wall clock incl. start-up)")
        print(f"throughput ratio beam/plain: {ratio:.2f}   target >= {TARGET_RATIO}: "
              f"{'PASS' if ratio >= TARGET_RATIO else 'FAIL'}")
        print(f"agreement: {agreement}")
        warn_if_sources_changed(stamps)

        if sizes:
            print("\npipeline peak memory by input size:")
            print(f"{'logs':>11}{'students':>10}{'seconds':>9}{'peak RSS MiB':>14}"
                  f"{'tree peak':>11}{'MiB/1k students':>17}")
            for size in sizes:
                if size == args.logs:
                    result, count, people = beam, logs, students
                else:
                    glob_, count, people, _ = generate(size, args.shards, args.seed,
                                                       os.path.join(workdir, f"logs_{size}"))
                    result = run_beam(glob_, os.path.join(workdir, f"beam_out_{size}"),
                                      beam_args, workdir, label=f"beam_{size}")
                peak = result["self_mib"] + result["children_mib"]
                print(f"{count:>11,}{people:>10,}{result['wall']:>9.1f}{peak:>14,.0f}"
                      f"{result['tree_mib']:>11,.0f}{peak / people * 1000:>17.2f}", flush=True)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "beam":
            beam_child(sys.argv[3:])
        else:
            plain_child(sys.argv[3], sys.argv[4])
    else:
        main()
