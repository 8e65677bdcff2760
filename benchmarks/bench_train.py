"""Benchmark: the training pipeline on the DirectRunner against a plain vectorized
single-process implementation of the same work, written here (numpy, pyarrow,
polars, scipy; nothing from models/ or transforms/). One self-contained script
(~580 lines) on purpose: the baseline must not share code with the pipeline.

    python benchmarks/bench_train.py                      # full: 2 M logs, ~10 min on 2 cores
    python benchmarks/bench_train.py --quick              # smoke run: 100,000 logs, small curve
    python benchmarks/bench_train.py --logs 100000 --skip_memory_curve
    python benchmarks/bench_train.py --memory_sizes 500000,1000000,2000000   # curve without 4 M
    python benchmarks/bench_train.py \\
        --beam_args "--direct_running_mode=multi_processing --direct_num_workers=2"

What one run measures (every variant in its own child process, timed end to end
by wall clock, interpreter start-up and imports included):

1. `python -m pipelines.train_knowledge_model` against the baseline on the same
   `--logs` logs (60 exercises, seed `--seed`), once from Parquet and once from
   Avro (both generated from the same seed, so the same logs): logs/s, the ratio
   pipeline/baseline, peak memory, and each side's holdout log likelihood and its
   gain over the base rate as a sanity check (the gains should agree within
   ~0.01 at 2 M logs; they are not equal: other random vectors, sample and
   holdout students; below ~100k logs the random vectors alone move them by a
   few 0.01).
2. The same number of logs over 12 and over 5,000 exercises (Parquet), every
   row fitted (no sample cap, which would fit fewer rows of 12 exercises): time
   and peak memory of both variants and the 5000/12 ratios (target: the
   pipeline within 1.5x). The simulator's logs count differs a few percent between the
   two, so the time ratio is also given per log.
3. The pipeline's peak memory at `--memory_sizes` logs (default 1/4, 1/2, 1 and 2
   times `--logs`: 0.5, 1, 2, 4 M), as a table.

The baseline (baseline_child) does the pipeline's work the fastest plain way:
read only the needed columns (pyarrow for Parquet, dictionary-encoded; polars
for Avro), check the required columns have no nulls, lexsort by (user,
time_done), derive null problem_numbers, compute every row's base features with
lagged arrays over the last WINDOW answers, r as a within-student cumulative sum
of the problem_number == 1 components (kept once per update, float32), a
bottom-k hash sample per exercise, a 10% student holdout, and one L2 logistic
regression per exercise (L-BFGS in whitened coordinates; BLAS limited to one
thread, as the pipeline's fit does). Its stage times are printed too. The former
"plain" variant (the pipeline's own models/ code run per record without Beam) is
gone: slower than the pipeline itself, it no longer bounded what Beam costs.

Peak memory: the child's ru_maxrss plus RUSAGE_CHILDREN (largest single
descendant), and the sampled (0.5 s) peak of the RSS summed over the process
tree; "peak MiB" is the larger of the two. A report, not a test: no assertions.
"""

import argparse
import glob
import hashlib
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

# The model settings, passed to the pipeline explicitly so both variants agree.
SEED, DIM, MAX_SAMPLES, MIN_SAMPLES, HOLDOUT, L2, MAX_ITERATIONS = (
    0, 100, 50_000, 30, 0.1, 30.0, 500)
# Part 2 fits every row in both variants: with the cap, 12 exercises would fit
# 12 x 50,000 sampled rows while 5,000 exercises fit all of theirs, and the
# comparison would measure the sample cap instead of the cost of exercises.
ALL_ROWS = 10**9
PIPELINE_SETTINGS = [f"--seed={SEED}", f"--num_random_features={DIM}",
                     f"--min_samples={MIN_SAMPLES}", f"--holdout_fraction={HOLDOUT}",
                     f"--l2={L2}", f"--max_iterations={MAX_ITERATIONS}"]
WINDOW, EWMA_START, EWMA_WEIGHTS, EMPTY_PERCENT_CORRECT = 20, 0.9, (0.333, 0.1), 0.8
NUM_BASE = 7  # bias + 6 base features
DEFAULT_EXERCISES, FEW_EXERCISES, MANY_EXERCISES = 60, 12, 5000
EXERCISE_TARGET = 1.5
COLUMNS = ["user", "exercise", "problem_type", "problem_number", "time_done", "correct"]
ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                     "MKL_NUM_THREADS")}


# ---------------------------------------------------------------- children

def pipeline_child(argv):
    """Exactly `python -m pipelines.train_knowledge_model ARGV`, then rusage."""
    sys.argv = ["train_knowledge_model"] + argv
    runpy.run_module("pipelines.train_knowledge_model", run_name="__main__", alter_sys=True)
    report({})


def _splitmix64(values):
    import numpy as np
    with np.errstate(over="ignore"):
        z = values.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _text_hashes(texts):
    """A stable uint64 per string (per distinct value only: tens of thousands)."""
    import numpy as np
    return np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(),
                                    "little") for t in texts], dtype=np.uint64)


def _unit_vectors(key_hashes, dim):
    """One unit vector of `dim` standard normals per key hash (Box-Muller on
    counter hashes): a pure function of the key, all keys in a few numpy passes."""
    import numpy as np
    counters = key_hashes[:, None] * np.uint64(2 * dim) + np.arange(2 * dim, dtype=np.uint64)
    uniform = ((_splitmix64(counters) >> np.uint64(11)).astype(np.float64) + 0.5) / 2.0 ** 53
    u1, u2 = uniform[:, :dim], uniform[:, dim:]
    vectors = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _read(fmt, paths):
    """The needed columns as numpy: codes + names for the strings."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    strings = ["user", "exercise", "problem_type"]
    if fmt == "parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(paths, columns=COLUMNS, read_dictionary=strings)
    else:
        import polars as pl
        frame = pl.concat([pl.read_avro(path, columns=COLUMNS) for path in paths])
        table = frame.with_columns(pl.col(strings).cast(pl.Categorical)).to_arrow()
    table = table.unify_dictionaries()
    out = {"rows": table.num_rows, "nulls": 0}
    for name in COLUMNS:
        column = table.column(name).combine_chunks()
        if name != "problem_number":
            out["nulls"] += column.null_count  # required columns
        if name in strings:
            if not pa.types.is_dictionary(column.type):
                column = column.dictionary_encode()
            out[name] = column.indices.to_numpy(zero_copy_only=False).astype(np.int64)
            out[name + "_names"] = column.dictionary.to_pylist()
        elif name == "time_done":
            out[name] = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
        elif name == "problem_number":
            out["problem_number_null"] = column.is_null().to_numpy(zero_copy_only=False)
            out[name] = pc.fill_null(column, 0).to_numpy(zero_copy_only=False)
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def _base_features(pair, correct):
    """(done_before, features) for rows sorted by (student-exercise pair, time):
    features = [ewma_3, ewma_10, streak, log_num_done, log_num_missed,
    percent_correct] from the pair's last WINDOW answers before the row."""
    import numpy as np
    n = len(pair)
    answers = correct.astype(np.float64)
    index = np.arange(n)
    first = np.r_[True, pair[1:] != pair[:-1]]
    group_start = np.maximum.accumulate(np.where(first, index, 0))
    done_before = index - group_start
    total = np.minimum(done_before, WINDOW)
    cumulative = np.r_[0.0, np.cumsum(answers)]
    total_correct = cumulative[index] - cumulative[index - total]
    # Last wrong answer strictly before the row (or the group's start - 1).
    wrong_at = np.maximum.accumulate(np.where(answers == 0, index, -1))
    previous_wrong = np.maximum(np.r_[-1, wrong_at[:-1]], group_start - 1)
    features = np.empty((n, NUM_BASE - 1))
    features[:, 2] = np.minimum(index - 1 - previous_wrong, total)
    # ewma_w = sum over lags <= total of w (1-w)^(lag-1) answer[lag] + start (1-w)^total
    ewmas = [EWMA_START * (1 - weight) ** total for weight in EWMA_WEIGHTS]
    for lag in range(1, min(WINDOW, n - 1) + 1):
        lagged = answers[:-lag] * (total[lag:] >= lag)
        for ewma, weight in zip(ewmas, EWMA_WEIGHTS):
            ewma[lag:] += weight * (1 - weight) ** (lag - 1) * lagged
    features[:, 0], features[:, 1] = ewmas
    with np.errstate(divide="ignore", invalid="ignore"):
        features[:, 3] = np.where(total > 0, np.log(np.maximum(total, 1)), 0.0)
        features[:, 4] = np.log(total - total_correct + 1)
        features[:, 5] = np.where(total > 0, total_correct / np.maximum(total, 1),
                                  EMPTY_PERCENT_CORRECT)
    return done_before, features


def _within_student_prefix(vectors, keys, student, chunk=65536):
    """Row u: the sum of vectors[keys[v]] over the updates v <= u of the same
    student (updates in (student, time) order), computed in chunks, stored float32."""
    import numpy as np
    out = np.empty((len(keys), vectors.shape[1]), dtype=np.float32)
    carry, previous = None, -1
    for start in range(0, len(keys), chunk):
        stop = min(start + chunk, len(keys))
        block = vectors[keys[start:stop]]
        who = student[start:stop]
        if who[0] == previous:
            block[0] += carry
        np.cumsum(block, axis=0, out=block)
        new = np.r_[False, who[1:] != who[:-1]]
        segment = np.maximum.accumulate(np.where(new, np.arange(len(who)), 0))
        later = segment > 0
        block[later] -= block[segment[later] - 1]
        carry, previous = block[-1].copy(), who[-1]
        out[start:stop] = block
    return out


def _fit(x, y, l2, max_iterations):
    """argmin -sum loglik + l2/2 |theta[1:]|^2 (column 0 the unpenalised bias)
    by L-BFGS in whitened coordinates: theta[1:] = L^-T u with L L^T the
    columns' covariance (+ a ridge), the centring moved into the free bias. An
    exact change of variables, so the same optimum, but ~10 iterations instead of
    hundreds on these correlated columns; x itself is never copied. Returns
    (theta, iterations)."""
    import numpy as np
    from scipy import linalg, optimize
    n, p = x.shape
    gram = x.T @ x / n  # one syrk; row/column 0 hold the means (bias column)
    means = gram[0, 1:].copy()
    covariance = gram[1:, 1:] - np.outer(means, means)
    covariance[np.diag_indices(p - 1)] += max(4 * l2 / n, 1e-9)
    # L^-1 once: a (p-1)^2 product per call is cheaper than a checked triangular solve.
    inverse = linalg.solve_triangular(np.linalg.cholesky(covariance), np.eye(p - 1), lower=True)
    full, gradient = np.empty(p), np.empty(p)

    def objective(v):
        theta = v[1:] @ inverse  # L^-T u
        full[0], full[1:] = v[0] - means @ theta, theta
        z = x @ full
        small = np.exp(-np.abs(z))
        loss = np.sum(np.maximum(z, 0.0) + np.log1p(small)) - y @ z  # -sum loglik
        residual = (np.where(z >= 0, 1.0, small) / (1.0 + small) - y) / n
        g = x.T @ residual
        gradient[0] = g[0]
        gradient[1:] = inverse @ (g[1:] - means * g[0] + (l2 / n) * theta)
        return loss / n + 0.5 * (l2 / n) * theta @ theta, gradient.copy()

    result = optimize.minimize(objective, np.zeros(p), jac=True, method="L-BFGS-B",
                               options={"maxiter": max_iterations, "gtol": 1e-7, "ftol": 1e-12})
    theta = np.empty(p)
    theta[1:] = result.x[1:] @ inverse
    theta[0] = result.x[0] - means @ theta[1:]
    return theta, int(result.nit)


def _prepare(data, lap):
    """Everything up to the fit: sorted columns, features, sample keys, holdout.
    Takes the columns out of `data` (the unsorted copies are freed)."""
    import numpy as np
    if data["nulls"]:  # the sample is clean; a real run would dead-letter these
        raise SystemExit(f"{data['nulls']} nulls in required columns")
    order = np.lexsort((data["time_done"], data["user"]))
    s = {name: data.pop(name)[order] for name in ("user", "exercise", "problem_type",
                                                  "time_done", "correct", "problem_number",
                                                  "problem_number_null")}
    del order
    lap("sort")

    # Base features per (student, exercise) pair, time order within it (stable sort).
    user, exercise, correct = s["user"], s["exercise"], s["correct"]
    n, n_exercises, n_types = len(user), len(data["exercise_names"]), len(
        data["problem_type_names"])
    pair = user * n_exercises + exercise
    pair_order = np.argsort(pair, kind="stable")
    done_before, features = _base_features(pair[pair_order], correct[pair_order])
    s["base"] = np.empty((n, NUM_BASE - 1))
    s["base"][pair_order] = features
    derived = np.empty(n, dtype=np.int64)
    derived[pair_order] = done_before + 1
    del pair, pair_order, done_before, features
    s["problem_number"] = np.where(s.pop("problem_number_null"), derived, s["problem_number"])
    del derived
    lap("base_features")

    # r: the student's earlier problem_number == 1 components. Each update row
    # stores its within-student prefix sum; a row reads the last one before it.
    is_update = s["problem_number"] == 1
    update_rows = np.flatnonzero(is_update)
    codes = (exercise[update_rows] * n_types + s["problem_type"][update_rows]) * 2 + correct[
        update_rows]
    distinct, key_of_update = np.unique(codes, return_inverse=True)
    s["component_names"] = [
        (data["exercise_names"][code // 2 // n_types],
         data["problem_type_names"][code // 2 % n_types], bool(code % 2))
        for code in distinct.tolist()]
    s["vectors"] = _unit_vectors(_text_hashes(
        [f"{SEED}\x1f{e}\x1f{t}\x1f{int(c)}" for e, t, c in s["component_names"]]), DIM)
    s["prefix"] = _within_student_prefix(s["vectors"], key_of_update.reshape(-1),
                                         user[update_rows])
    updates_before = np.cumsum(is_update) - is_update
    student_first = np.r_[True, user[1:] != user[:-1]]
    first_of_student = np.maximum.accumulate(np.where(student_first, np.arange(n), 0))
    # Index into `prefix` of the row's last earlier update of its student, -1 if none.
    s["last_update"] = np.where(updates_before > updates_before[first_of_student],
                                updates_before - 1, -1)
    del is_update, update_rows, updates_before, student_first, first_of_student
    lap("random_features")

    # Sample keys: a hash of (user, time_done); holdout: a salted hash of the user.
    user_hash = _text_hashes(data["user_names"])
    s["keys"] = _splitmix64(user_hash[user] ^ _splitmix64(s["time_done"].view(np.uint64)))
    s["by_exercise"] = np.argsort(exercise, kind="stable")
    s["bounds"] = np.searchsorted(exercise[s["by_exercise"]], np.arange(n_exercises + 1))
    salt = _splitmix64(np.array([SEED + 0x5EED], dtype=np.uint64))
    s["held_out"] = (_splitmix64(user_hash ^ salt).astype(np.float64) / 2.0 ** 64
                     < HOLDOUT)[user]
    lap("sample_keys")
    return s


def _design(s, rows):
    """x = [1, base features, r] for `rows` (indices in (user, time) order)."""
    import numpy as np
    x = np.zeros((len(rows), NUM_BASE + DIM))
    x[:, 0] = 1.0
    x[:, 1:NUM_BASE] = s["base"][rows]
    source = s["last_update"][rows]
    x[source >= 0, NUM_BASE:] = s["prefix"][source[source >= 0]]
    return x


def baseline_child(fmt, input_glob, max_samples):
    """The pipeline's work, columnar, in this process; report()s stage seconds,
    counts and the holdout log likelihood."""
    import numpy as np
    from threadpoolctl import threadpool_limits
    threadpool_limits(limits=1, user_api="blas")
    stages, clock = {}, [time.monotonic()]

    def lap(name):
        now = time.monotonic()
        stages[name] = round(now - clock[0], 3)
        clock[0] = now

    data = _read(fmt, sorted(glob.glob(input_glob)))
    lap("read")
    s = _prepare(data, lap)
    keys, correct, held_out = s["keys"], s["correct"], s["held_out"]
    fitted, skipped, iterations = 0, 0, 0
    holdout_rows, holdout_sum, rate_sum = 0, 0.0, 0.0
    for code in np.argsort(data["exercise_names"]).tolist():
        rows = s["by_exercise"][s["bounds"][code]:s["bounds"][code + 1]]
        if len(rows) > max_samples:  # the max_samples smallest keys: a uniform sample
            rows = np.sort(rows[np.argpartition(keys[rows], max_samples - 1)[:max_samples]])
        train, test = rows[~held_out[rows]], rows[held_out[rows]]
        labels = correct[train].astype(np.float64)
        if len(train) < MIN_SAMPLES or labels.sum() in (0, len(train)):
            skipped += 1
            continue
        theta, steps = _fit(_design(s, train), labels, L2, MAX_ITERATIONS)
        fitted, iterations = fitted + 1, iterations + steps
        if len(test):
            z, truth = _design(s, test) @ theta, correct[test]
            holdout_sum += float(np.sum(np.where(truth, z, 0.0) - np.logaddexp(0.0, z)))
            rate = (labels.sum() + 1.0) / (len(train) + 2.0)
            rate_sum += float(np.sum(np.where(truth, np.log(rate), np.log1p(-rate))))
            holdout_rows += len(test)
    lap("sample_and_fit")
    report({"stages": stages, "logs": len(correct), "exercises_fitted": fitted,
            "exercises_skipped": skipped, "mean_iterations": iterations / max(fitted, 1),
            "random_keys": len(s["vectors"]), "updates": len(s["prefix"]),
            "holdout_rows": holdout_rows,
            "holdout_log_likelihood": holdout_sum / holdout_rows if holdout_rows else None,
            "base_rate_log_likelihood": rate_sum / holdout_rows if holdout_rows else None})


# ------------------------------------------------------------------ parent

def generate(logs, exercises, fmt, shards, seed, directory):
    """~`logs` ProblemLogs over `exercises` exercises; returns (glob, logs, students)."""
    from models.simulation import MEAN_ATTEMPTS_PER_STUDENT  # parent side only
    students = max(1, round(logs / MEAN_ATTEMPTS_PER_STUDENT))
    done = subprocess.run([sys.executable, "-m", "pipelines.generate_sample", "--output",
                           directory, "--students", str(students), "--seed", str(seed),
                           "--format", fmt, "--shards", str(shards),
                           "--exercises", str(exercises)],
                          cwd=REPO, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"generate_sample failed:\n{done.stdout}\n{done.stderr}")
    count = int(re.search(r"^logs: (\d+)", done.stdout, re.MULTILINE).group(1))
    os.remove(os.path.join(directory, "true_probabilities.csv"))  # not read; large
    return os.path.join(directory, f"*.{fmt}"), count, students


def peak(result):
    return max(result["self_mib"] + result["children_mib"], result["tree_mib"])


class Bench:
    def __init__(self, args, workdir):
        self.args, self.workdir = args, workdir
        self.beam_args = shlex.split(args.beam_args)
        self.inputs = {}

    def data(self, logs, exercises, fmt):
        key = (logs, exercises, fmt)
        if key not in self.inputs:
            started = time.monotonic()
            directory = os.path.join(self.workdir, f"logs_{logs}_{exercises}_{fmt}")
            self.inputs[key] = generate(logs, exercises, fmt, self.args.shards, self.args.seed,
                                        directory)
            print(f"  generated {self.inputs[key][1]:,} logs ({exercises} exercises, {fmt}) in "
                  f"{time.monotonic() - started:.1f} s", flush=True)
        return self.inputs[key]

    def pipeline(self, logs, exercises, fmt, max_samples=MAX_SAMPLES):
        pattern, count, _ = self.data(logs, exercises, fmt)
        label = f"pipeline_{logs}_{exercises}_{fmt}"
        output = os.path.join(self.workdir, label)
        result = run_child(__file__, label, ["pipeline", "--input", pattern, "--output", output,
                                             "--overwrite",
                                             f"--max_samples_per_exercise={max_samples}"]
                           + PIPELINE_SETTINGS + self.beam_args, self.workdir)
        with open(os.path.join(output, "run_summary.json")) as handle:
            summary = json.load(handle)
        result.update(logs=count, exercises=exercises, fmt=fmt, variant="pipeline",
                      inner_seconds=summary["wall_time_seconds"],
                      exercises_fitted=summary["exercises_fitted"],
                      **{key: summary["evaluation"][key] for key in (
                          "holdout_rows", "holdout_log_likelihood", "base_rate_log_likelihood")})
        self.show(result)
        return result

    def baseline(self, logs, exercises, fmt, max_samples=MAX_SAMPLES):
        pattern, count, _ = self.data(logs, exercises, fmt)
        result = run_child(__file__, f"baseline_{logs}_{exercises}_{fmt}",
                           ["baseline", fmt, pattern, str(max_samples)], self.workdir,
                           env=ONE_THREAD)
        result.update(exercises=exercises, fmt=fmt, variant="baseline")
        self.show(result)
        stages = "  ".join(f"{k} {v:.1f}" for k, v in result["stages"].items())
        print(f"    baseline stages (s): {stages}; {result['updates']:,} r updates, "
              f"{result['random_keys']:,} component keys, "
              f"{result['mean_iterations']:.0f} L-BFGS iterations/exercise", flush=True)
        return result

    @staticmethod
    def show(result):
        print(f"  {result['variant']:<8} {result['fmt']:<7} {result['exercises']:>5} ex "
              f"{result['logs']:>10,} logs {result['wall']:>7.1f} s "
              f"{result['logs'] / result['wall']:>9,.0f} logs/s {peak(result):>7,.0f} MiB peak  "
              f"fitted {result['exercises_fitted']}, holdout LL "
              f"{_num(result['holdout_log_likelihood'])} (base rate "
              f"{_num(result['base_rate_log_likelihood'])}, {result['holdout_rows']:,} rows)",
              flush=True)


def _num(value, digits=4):
    return "n/a" if value is None else f"{value:.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=int, default=2_000_000)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --logs 100000 (and a curve at 1/4..2x that)")
    parser.add_argument("--skip_memory_curve", action="store_true")
    parser.add_argument("--memory_sizes", default="",
                        help="pipeline peak-memory curve sizes, e.g. 500000,1000000,2000000 "
                             "(default: 1/4, 1/2, 1 and 2 times --logs)")
    parser.add_argument("--beam_args", default="", help="extra pipeline args, one string")
    parser.add_argument("--shards", type=int, default=4, help="input files per sample")
    parser.add_argument("--seed", type=int, default=1, help="generator seed")
    parser.add_argument("--workdir", help="kept afterwards (default: a temp dir, removed)")
    args = parser.parse_args()
    if args.quick:
        args.logs = 100_000
    sizes = ([int(float(s)) for s in args.memory_sizes.split(",") if s.strip()]
             or [args.logs // 4, args.logs // 2, args.logs, args.logs * 2])
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_train_")
    os.makedirs(workdir, exist_ok=True)
    bench, started, stamps = Bench(args, workdir), time.monotonic(), source_stamps()
    print(f"beam args: {args.beam_args or '(none: DirectRunner defaults)'}", flush=True)
    try:
        print(f"\n1. pipeline vs baseline, ~{args.logs:,} logs, {DEFAULT_EXERCISES} exercises",
              flush=True)
        runs = {}
        for fmt in ("parquet", "avro"):
            runs["pipeline", fmt] = bench.pipeline(args.logs, DEFAULT_EXERCISES, fmt)
            runs["baseline", fmt] = bench.baseline(args.logs, DEFAULT_EXERCISES, fmt)
        print(f"\n2. {FEW_EXERCISES} vs {MANY_EXERCISES} exercises, ~{args.logs:,} logs, parquet, "
              f"every row fitted",
              flush=True)
        for exercises in (FEW_EXERCISES, MANY_EXERCISES):
            runs["pipeline", exercises] = bench.pipeline(args.logs, exercises, "parquet",
                                                         ALL_ROWS)
            runs["baseline", exercises] = bench.baseline(args.logs, exercises, "parquet",
                                                         ALL_ROWS)
        curve = []
        if not args.skip_memory_curve:
            print(f"\n3. pipeline peak memory at {', '.join(f'{s:,}' for s in sizes)} logs",
                  flush=True)
            for size in sizes:
                curve.append(runs["pipeline", "parquet"] if size == args.logs else
                             bench.pipeline(size, DEFAULT_EXERCISES, "parquet"))
        summarize(runs, curve)
        print(f"\n(total benchmark time {time.monotonic() - started:.0f} s)")
        warn_if_sources_changed(stamps)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def summarize(runs, curve):
    def rate(result):
        return result["logs"] / result["wall"]

    def gain(result):  # holdout LL over the base rate on the same rows
        return result["holdout_log_likelihood"] - result["base_rate_log_likelihood"]

    header = (f"{'variant':<9}{'format':<8}{'exercises':>9}{'logs':>11}{'seconds':>9}"
              f"{'logs/s':>10}{'peak MiB':>10}{'holdout LL':>12}{'(gain)':>9}")
    print("\nsummary (seconds: child wall clock incl. start-up; peak: max of self+child "
          "and sampled tree RSS;\ngain: holdout LL minus the base rate's on the same rows)\n"
          + header + "\n" + "-" * len(header))
    for result in runs.values():
        print(f"{result['variant']:<9}{result['fmt']:<8}{result['exercises']:>9}"
              f"{result['logs']:>11,}{result['wall']:>9.1f}{rate(result):>10,.0f}"
              f"{peak(result):>10,.0f}{_num(result['holdout_log_likelihood']):>12}"
              f"{gain(result):>+9.4f}")

    print("\nratios")
    for key in ("parquet", "avro", FEW_EXERCISES, MANY_EXERCISES):
        pipe, base = runs["pipeline", key], runs["baseline", key]
        label = f"{key} exercises" if isinstance(key, int) else f"{key}, {DEFAULT_EXERCISES} ex"
        print(f"  pipeline/baseline ({label}): throughput {rate(pipe) / rate(base):.3f} "
              f"(baseline {rate(base) / rate(pipe):.1f}x faster), peak memory "
              f"{peak(pipe) / peak(base):.1f}x; holdout gain differs by "
              f"{gain(pipe) - gain(base):+.4f} "
              f"({'same range' if abs(gain(pipe) - gain(base)) < 0.01 else 'CHECK'})")
    for variant in ("pipeline", "baseline"):
        few, many = runs[variant, FEW_EXERCISES], runs[variant, MANY_EXERCISES]
        per_log = (many["wall"] / many["logs"]) / (few["wall"] / few["logs"])
        verdict = ""
        if variant == "pipeline":
            verdict = (f"  target <= {EXERCISE_TARGET}: "
                       f"{'met' if per_log <= EXERCISE_TARGET else 'MISSED'}")
        print(f"  {MANY_EXERCISES}/{FEW_EXERCISES} exercises, {variant}: time "
              f"{many['wall'] / few['wall']:.2f}x ({per_log:.2f}x per log), peak memory "
              f"{peak(many) / peak(few):.2f}x{verdict}")
    inner = "  ".join(f"{r['fmt']}/{r['exercises']}ex {r['inner_seconds']:.1f}"
                      for (variant, _), r in runs.items() if variant == "pipeline")
    print(f"  pipeline run() seconds inside the child (no start-up): {inner}")
    print("  (the random vectors differ between the variants; with ~100k logs they alone "
          "move the holdout LL by a few 0.01, at 2 M logs by ~0.001)")
    if curve:
        print(f"\npipeline peak memory by input size (parquet, {DEFAULT_EXERCISES} exercises)")
        print(f"{'logs':>11}{'seconds':>9}{'logs/s':>10}{'peak MiB':>10}{'self+child':>12}"
              f"{'tree':>8}{'KiB/log':>9}{'marginal':>10}")
        previous = None
        for result in sorted(curve, key=lambda r: r["logs"]):
            marginal = ""
            if previous is not None:
                extra = max(1, result["logs"] - previous["logs"])
                marginal = f"{(peak(result) - peak(previous)) * 1024 / extra:>10.2f}"
            print(f"{result['logs']:>11,}{result['wall']:>9.1f}{rate(result):>10,.0f}"
                  f"{peak(result):>10,.0f}{result['self_mib'] + result['children_mib']:>12,.0f}"
                  f"{result['tree_mib']:>8,.0f}{peak(result) * 1024 / result['logs']:>9.2f}"
                  f"{marginal}")
            previous = result
        print("(marginal: KiB of peak per extra log since the previous size)")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "pipeline":
            pipeline_child(sys.argv[3:])
        else:
            baseline_child(sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
