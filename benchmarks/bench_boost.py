"""Benchmark: one parallel-boosting iteration (models/boosting.py) through Beam on
the DirectRunner (transforms/boosting.py TrainBoosted) against the bare numpy
kernel, in active features processed per second per core. (One self-contained
script of ~470 lines, with its own baseline.)

    python benchmarks/bench_boost.py                      # 1,000,000 examples, 1 iteration
    python benchmarks/bench_boost.py --examples 100000    # quick check
    python benchmarks/bench_boost.py --models 3           # a model set (3 L1 strengths)
    python benchmarks/bench_boost.py --beam_args "" \\
        --beam_args "--direct_running_mode=multi_processing --direct_num_workers=2"
    python benchmarks/bench_boost.py --source both        # also beam.Create(blocks) (slow!)
    python benchmarks/bench_boost.py --profile            # + cProfile of a Beam run

Generates a synthetic sparse binary problem in numpy: every example has feature
0 (a bias) plus about `--active - 1` further features drawn Zipf-like (rank r has
probability ~ 1/r) from `--features` ids, duplicates removed; labels come from a
sparse true logistic model. Examples travel in ExampleBlocks of `--block` rows
(CSR from models.boosting.design_matrix). Each variant runs in its own child
process (so peak RSS is its own):

* numpy kernel: `statistics` over every block plus one `advance`, per iteration,
  in a plain loop, single-threaded;
* Beam: `blocks | TrainBoosted(..., iterations=N)` and again with N + 2
  iterations, for every `--beam_args` given (default: the in-process
  DirectRunner). "raw" is the N-iteration pipeline timed end to end (graph
  construction plus run() until finished; not interpreter start-up, imports or
  data loading); "marginal" is (T(N + 2) - T(N)) / 2, one more iteration with
  the fixed start-up cost removed. `--source files` (the default) writes one
  .npz per block beforehand and the pipeline reads them (Create(paths) |
  Map(read)), timed as part of the run, standing in for the real Parquet read.
  `--source create` is `beam.Create(blocks)`, as in the tests: Create embeds
  the encoded blocks in the pipeline graph, which the runner pickles and
  bz2-compresses (twice), several minutes for a million examples, a fixed cost
  that swamps the raw figure and that a pipeline reading files never pays.

Active features processed = nnz x models x iterations (the pipeline's
`boosting_active_features` counter is printed beside it). Per core: the
in-process runner (direct_running_mode in_memory, the default) counts as 1 core;
multi_threading / multi_processing count as `direct_num_workers` cores (0 means
os.cpu_count()), whether or not the machine really gave them that many. The
"M/CPU-s" column divides by the CPU seconds (user + system) the child and its
reaped descendants spent on the timed section instead, which does not depend on
that counting. Peak RSS is the child's ru_maxrss plus RUSAGE_CHILDREN (largest
single descendant) and, on Linux, the sampled peak summed over the process tree.
The Beam results are checked against models.boosting.train_in_memory (weights
allclose). A report, not a test: no assertions.
"""

import argparse
import cProfile
import glob
import io
import json
import os
import pstats
import resource
import shlex
import shutil
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from benchmarks.child_process import (report, run_child, source_stamps,  # noqa: E402
                                      warn_if_sources_changed)

TARGET_PER_CORE = 10e6        # features/s per core through Beam (issue 4)
SIBYL_PER_CORE = (2.2e6, 3.3e6)
LOSS = "logistic"
RTOL, ATOL = 1e-9, 1e-12      # as tests/test_boosting.py


# ------------------------------------------------------------------ data

def generate(examples, features, active, models, seed, path):
    """Writes the problem to `path` (.npz); returns a summary dict."""
    rng = np.random.default_rng(seed)
    extra = np.maximum(rng.poisson(max(active - 1, 0), examples), 1)
    rows = np.repeat(np.arange(examples, dtype=np.int64), extra)
    ranks = np.arange(1, features, dtype=np.float64)
    cdf = np.cumsum(1.0 / ranks)
    cdf /= cdf[-1]
    ids = 1 + np.minimum(np.searchsorted(cdf, rng.random(len(rows)), side="right"),
                         features - 2)
    keys = rows * features + ids
    del rows, ids
    keys.sort()                                         # rows stay in order
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]]     # binary: drop repeats
    rows, ids = np.divmod(keys, features)
    del keys
    counts = np.bincount(rows, minlength=examples)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    indices = np.insert(ids.astype(np.int32), starts, 0)  # the bias, first in every row
    indptr = np.r_[0, np.cumsum(counts + 1)].astype(np.int64)
    del rows, ids

    true = rng.normal(scale=0.5, size=features) * (rng.random(features) < 0.05)
    true[0] = -0.5
    margins = np.add.reduceat(true[indices], indptr[:-1])
    labels = rng.random(examples) < 1.0 / (1.0 + np.exp(-margins))
    l1_values = np.array([10.0 ** k for k in range(models)])
    np.savez(path, indptr=indptr, indices=indices, labels=labels, features=features,
             l1_values=l1_values)
    return {"examples": examples, "features": features, "nnz": int(len(indices)),
            "used_features": int(np.count_nonzero(np.bincount(indices, minlength=features))),
            "positive_rate": float(labels.mean()), "max_active": int((counts + 1).max()),
            "l1_values": l1_values.tolist()}


def load(path, block):
    """(x, labels, l1 penalties, l1 values, max_active, [ExampleBlock])"""
    from models.boosting import design_matrix, penalties
    from transforms.boosting import ExampleBlock

    data = np.load(path)
    features = int(data["features"])
    x = design_matrix(data["indptr"], data["indices"], features)
    labels = data["labels"]
    l1_values = data["l1_values"].tolist()
    l1 = penalties(l1_values, features, [0])
    max_active = int(np.diff(data["indptr"]).max())
    blocks = [ExampleBlock(x[start:start + block], labels[start:start + block])
              for start in range(0, x.shape[0], block)]
    return x, labels, l1, l1_values, max_active, blocks


# ---------------------------------------------------------------- children

def cpu_seconds():
    own, children = (resource.getrusage(who) for who in
                     (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def kernel_child(data, block, iterations, reference_iterations, reference_out):
    """The bare numpy kernel over the same blocks, then the in-memory reference."""
    from models.boosting import advance, initial_state, statistics, train_in_memory

    x, labels, l1, l1_values, max_active, blocks = load(data, block)
    state = initial_state(len(l1_values), x.shape[1])
    stats_s = advance_s = 0.0
    cpu = cpu_seconds()
    for _ in range(iterations):
        started = time.perf_counter()
        total = None
        for piece in blocks:
            stats = statistics(state.proposal, piece.x, piece.labels, LOSS)
            total = stats if total is None else total + stats
        summed = time.perf_counter()
        state = advance(state, total, l1, LOSS, max_active)
        stats_s += summed - started
        advance_s += time.perf_counter() - summed
    cpu = cpu_seconds() - cpu
    references = {}
    for count in reference_iterations:
        reference = train_in_memory(x, labels, l1_values, LOSS, count, unpenalised=[0])
        references[f"weights_{count}"] = reference.weights
        references[f"objective_{count}"] = reference.objective
    np.savez(reference_out, **references)
    report({"seconds": stats_s + advance_s, "statistics_seconds": stats_s,
            "advance_seconds": advance_s, "cpu_seconds": cpu})


def _save_state(state, path):
    np.savez(path, weights=state.weights, objective=state.objective, step=state.step)


def write_block_files(data, block, directory):
    """One .npz per ExampleBlock (indptr, indices, labels), for --source files."""
    os.makedirs(directory, exist_ok=True)
    problem = np.load(data)
    indptr, indices, labels = problem["indptr"], problem["indices"], problem["labels"]
    for number, start in enumerate(range(0, len(labels), block)):
        stop = min(start + block, len(labels))
        path = os.path.join(directory, f"block_{number:05d}.npz")
        np.savez(path, indptr=indptr[start:stop + 1] - indptr[start],
                 indices=indices[indptr[start]:indptr[stop]], labels=labels[start:stop],
                 features=problem["features"])


def _read_block(path):
    from models.boosting import design_matrix
    from transforms.boosting import ExampleBlock

    stored = np.load(path)
    return ExampleBlock(design_matrix(stored["indptr"], stored["indices"],
                                      int(stored["features"])), stored["labels"])


class ThreadProfiles:
    """cProfile in the calling thread and in every thread started while active
    (the DirectRunner runs bundles on its own threads)."""

    def __init__(self):
        self.profiles = [cProfile.Profile()]

    def _start_in_thread(self, *_):
        sys.setprofile(None)
        profile = cProfile.Profile()
        self.profiles.append(profile)
        profile.enable()

    def __enter__(self):
        threading.setprofile(self._start_in_thread)
        self.profiles[0].enable()
        return self

    def __exit__(self, *_):
        self.profiles[0].disable()
        threading.setprofile(None)

    def write(self, path, threads_started):
        text = io.StringIO()
        stats = pstats.Stats(self.profiles[0], stream=text)
        for profile in self.profiles[1:]:
            profile.disable()   # only stops it if it is this thread's; harmless otherwise
            try:
                stats.add(profile)
            except (TypeError, ValueError):
                pass            # a thread that never ran any Python
        stats.strip_dirs()
        text.write(f"(main thread + {len(self.profiles) - 1} threads started during the run; "
                   f"times summed over threads, so they can exceed wall clock; "
                   f"{threads_started})\n--- by cumulative time ---\n")
        stats.sort_stats("cumulative").print_stats(40)
        text.write("--- by own time ---\n")
        stats.sort_stats("tottime").print_stats(30)
        with open(path, "w") as handle:
            handle.write(text.getvalue())


def beam_child(data, block, iterations, beam_args, state_out, source, block_dir,
               profile_out=None):
    import contextlib

    import apache_beam as beam
    from apache_beam.metrics.metric import MetricsFilter
    from apache_beam.options.pipeline_options import PipelineOptions

    from transforms.boosting import TrainBoosted

    features = int(np.load(data)["features"])
    l1_values = np.load(data)["l1_values"].tolist()
    if source == "create":
        blocks = load(data, block)[-1]
    else:
        blocks = sorted(glob.glob(os.path.join(block_dir, "block_*.npz")))
    profiler = ThreadProfiles() if profile_out else contextlib.nullcontext()
    cpu = cpu_seconds()
    started = time.perf_counter()
    with profiler:
        pipeline = beam.Pipeline(options=PipelineOptions(beam_args))
        num_features = pipeline | "NumFeatures" >> beam.Create([features])
        if source == "create":
            examples = pipeline | "Blocks" >> beam.Create(blocks)
        else:
            examples = (pipeline | "BlockFiles" >> beam.Create(blocks)
                        | "ReadBlocks" >> beam.Map(_read_block))
        states = examples | TrainBoosted(num_features, l1_values, LOSS, iterations,
                                         unpenalised=(0,))
        _ = states[-1] | "Save" >> beam.Map(_save_state, state_out)
        built = time.perf_counter()
        result = pipeline.run()
        result.wait_until_finish()
    finished = time.perf_counter()
    cpu = cpu_seconds() - cpu
    counters = result.metrics().query(
        MetricsFilter().with_name("boosting_active_features"))["counters"]
    counted = sum(counter.committed or 0 for counter in counters)
    if profile_out:
        profiler.write(profile_out, f"source {source}, {len(blocks)} blocks")
    report({"seconds": finished - started, "build_seconds": built - started,
            "run_seconds": finished - built, "cpu_seconds": cpu, "counted": counted})


# ------------------------------------------------------------------ parent

def run_variant(label, spec, workdir):
    """This file in child mode with `spec` (a JSON-able dict), one BLAS/OpenMP
    thread per process so that "per core" means one core."""
    return run_child(__file__, label, [json.dumps(spec)], workdir, sample_seconds=0.25,
                     env={"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                          "MKL_NUM_THREADS": "1"})


def cores_of(beam_args):
    """How many cores a DirectRunner configuration counts as (see the docstring)."""
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions

    direct = PipelineOptions(beam_args).view_as(DirectOptions)
    mode = direct.direct_running_mode or "in_memory"
    workers = direct.direct_num_workers
    workers = os.cpu_count() if workers == 0 else (workers or 1)
    return (1 if mode == "in_memory" else workers), mode, workers


def agreement(state_path, reference_path, iterations):
    beam, reference = np.load(state_path), np.load(reference_path)
    expected = reference[f"weights_{iterations}"]
    diff = float(np.max(np.abs(beam["weights"] - expected)))
    close = np.allclose(beam["weights"], expected, rtol=RTOL, atol=ATOL)
    objective = float(np.max(np.abs(beam["objective"] / reference[f"objective_{iterations}"]
                                    - 1)))
    return (f"{'OK' if close else 'FAIL'}: max |w beam - w in-memory| = {diff:.3g}, "
            f"max relative objective difference {objective:.3g} "
            f"(allclose rtol={RTOL:g} atol={ATOL:g})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=200_000)
    parser.add_argument("--active", type=int, default=20,
                        help="mean active features per example, the bias included")
    parser.add_argument("--models", type=int, default=1, help="L1 strengths 1, 10, 100, ...")
    parser.add_argument("--block", type=int, default=50_000, help="examples per ExampleBlock")
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--beam_args", action="append",
                        help="DirectRunner args, one string per Beam variant; repeat to "
                             "compare several (default: one in-process variant)")
    parser.add_argument("--source", choices=("files", "create", "both"), default="files",
                        help="how blocks enter the pipeline: Create(paths) | Map(read one "
                             ".npz per block), standing in for a real read (default), or "
                             "beam.Create(blocks), encoded into the graph (slow)")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile (all threads) one in-process Beam run of "
                             "--iterations + 2, with the first --source")
    parser.add_argument("--workdir", help="kept afterwards (default: a temp dir, removed)")
    args = parser.parse_args()
    variants = [shlex.split(value) for value in (args.beam_args or [""])]
    sources = ("create", "files") if args.source == "both" else (args.source,)
    workdir = args.workdir or tempfile.mkdtemp(prefix="bench_boost_")
    os.makedirs(workdir, exist_ok=True)
    n, longer = args.iterations, args.iterations + 2
    try:
        started = time.monotonic()
        data = os.path.join(workdir, "problem.npz")
        problem = generate(args.examples, args.features, args.active, args.models, args.seed,
                           data)
        print(f"generated {problem['examples']:,} examples, nnz {problem['nnz']:,} in "
              f"{time.monotonic() - started:.1f} s", flush=True)
        stamps = source_stamps()
        common = {"data": data, "block": args.block}
        block_dir = None
        if "files" in sources:
            block_dir = os.path.join(workdir, "blocks")
            write_block_files(data, args.block, block_dir)
        reference = os.path.join(workdir, "reference.npz")
        kernel = run_variant("kernel", dict(common, mode="kernel", iterations=n,
                                          reference_iterations=[n, longer],
                                          reference_out=reference), workdir)
        print(f"numpy kernel done in {kernel['wall']:.1f} s", flush=True)
        runs = []
        for source in sources:
            for index, beam_args in enumerate(variants):
                pair = {}
                for count in (n, longer):
                    out = os.path.join(workdir, f"state_{source}_{index}_{count}.npz")
                    pair[count] = run_variant(f"beam_{source}_{index}_{count}", dict(
                        common, mode="beam", iterations=count, beam_args=beam_args,
                        state_out=out, source=source, block_dir=block_dir), workdir)
                    pair[count]["agreement"] = agreement(out, reference, count)
                    print(f"beam {source} [{' '.join(beam_args) or 'in-process'}] x{count} "
                          f"done in {pair[count]['wall']:.1f} s", flush=True)
                runs.append((source, beam_args, pair))
        profile_text = None
        if args.profile:
            profile_out = os.path.join(workdir, "profile.txt")
            run_variant("profile", dict(common, mode="beam", iterations=longer, beam_args=[],
                                      state_out=os.path.join(workdir, "state_profile.npz"),
                                      source=sources[0], block_dir=block_dir,
                                      profile_out=profile_out), workdir)
            with open(profile_out) as handle:
                profile_text = handle.read()

        per_iteration = problem["nnz"] * args.models
        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        print(f"\nexamples: {problem['examples']:,}   features: {problem['features']:,} "
              f"({problem['used_features']:,} ever active)   nnz: {problem['nnz']:,} "
              f"({problem['nnz'] / problem['examples']:.2f} per example, max "
              f"{problem['max_active']})   positive rate: {problem['positive_rate']:.3f}")
        print(f"models: {args.models} (l1 {', '.join(f'{v:g}' for v in problem['l1_values'])}; "
              f"bias unpenalised)   block: {args.block:,} examples "
              f"({-(-problem['examples'] // args.block)} blocks)   loss: {LOSS}")
        print(f"active features per iteration = nnz x models = {per_iteration:,}")
        print(f"machine: os.cpu_count() = {os.cpu_count()}"
              + (f", load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared with "
                 "other jobs: timings are noisy)" if load else ""))
        header = (f"{'variant':<36}{'iters':>6}{'seconds':>9}{'M feat/s':>10}{'cores':>6}"
                  f"{'M/s/core':>10}{'CPU s':>8}{'M/CPU-s':>9}{'peak RSS MiB':>13}"
                  f"{'tree peak':>10}")
        print("\n" + header + "\n" + "-" * len(header))

        def row(name, iterations, seconds, cores, cpu, result):
            features = per_iteration * iterations
            cpu_text = (f"{cpu:>8.1f}{features / cpu / 1e6:>9.1f}" if cpu and cpu > 0
                        else f"{'-':>8}{'-':>9}")
            memory = (f"{result['self_mib'] + result['children_mib']:>13,.0f}"
                      f"{result['tree_mib']:>10,.0f}" if result else "")
            print(f"{name:<36}{iterations:>6}{seconds:>9.2f}{features / seconds / 1e6:>10.1f}"
                  f"{cores:>6}{features / seconds / cores / 1e6:>10.1f}"
                  f"{cpu_text}{memory}")
            return features / seconds / cores

        row("numpy kernel (statistics+advance)", n, kernel["seconds"], 1,
            kernel["cpu_seconds"], kernel)
        row("  of which statistics()", n, kernel["statistics_seconds"], 1, None, None)
        verdicts, notes = [], []
        for source, beam_args, pair in runs:
            cores, mode, workers = cores_of(beam_args)
            short = {"in_memory": "in-process", "multi_processing": "multiproc",
                     "multi_threading": "threads"}.get(mode, mode)
            label = f"beam {source} {short}" + (f" x{workers}" if mode != "in_memory" else "")
            raw = row(f"{label} raw", n, pair[n]["seconds"], cores, pair[n]["cpu_seconds"],
                      pair[n])
            row(f"{label} raw", longer, pair[longer]["seconds"], cores,
                pair[longer]["cpu_seconds"], pair[longer])
            extra = (pair[longer]["seconds"] - pair[n]["seconds"]) / 2
            extra_cpu = (pair[longer]["cpu_seconds"] - pair[n]["cpu_seconds"]) / 2
            if extra > 0:
                marginal = row(f"{label} marginal", 1, extra, cores,
                               extra_cpu, None)
            else:
                marginal = None
                print(f"{label} marginal: not measurable (x{longer} was not slower than x{n})")
            verdicts.append((label, raw, marginal))
            for count in (n, longer):
                result = pair[count]
                expected = per_iteration * count
                notes.append(
                    f"{label} x{count}: build {result['build_seconds']:.2f} s + run "
                    f"{result['run_seconds']:.2f} s; child wall {result['wall']:.1f} s incl. "
                    f"start-up and data loading; counter boosting_active_features = "
                    f"{result['counted']:,} ({'=' if result['counted'] == expected else '!='} "
                    f"nnz x models x iterations)\n    agreement with train_in_memory: "
                    f"{result['agreement']}")
        print(f"\n(numpy kernel: statistics {kernel['statistics_seconds']:.2f} s + advance "
              f"{kernel['advance_seconds']:.2f} s; child wall {kernel['wall']:.1f} s)")
        for note in notes:
            print(note)
        print(f"\ntarget: >= {TARGET_PER_CORE / 1e6:g} M features/s per core through Beam "
              f"(Sibyl on MapReduce: {SIBYL_PER_CORE[0] / 1e6:g}-{SIBYL_PER_CORE[1] / 1e6:g})")
        for label, raw, marginal in verdicts:
            print(f"  {label}: raw {raw / 1e6:.1f} M/s/core "
                  f"{'PASS' if raw >= TARGET_PER_CORE else 'FAIL'}"
                  + (f", marginal {marginal / 1e6:.1f} M/s/core "
                     f"{'PASS' if marginal >= TARGET_PER_CORE else 'FAIL'}"
                     if marginal else ""))
        warn_if_sources_changed(stamps)
        if profile_text:
            print(f"\ncProfile of the in-process Beam run, source {sources[0]}, x{longer}:")
            print(profile_text)
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        spec = json.loads(sys.argv[2])
        if spec["mode"] == "kernel":
            kernel_child(spec["data"], spec["block"], spec["iterations"],
                         spec["reference_iterations"], spec["reference_out"])
        else:
            beam_child(spec["data"], spec["block"], spec["iterations"], spec["beam_args"],
                       spec["state_out"], spec["source"], spec.get("block_dir"),
                       spec.get("profile_out"))
    else:
        main()
