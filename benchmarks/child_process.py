"""Running a benchmark variant in its own child process and measuring it.

Each variant runs as a child so its peak memory is its own: the child calls
report() at the end, the parent's run_child() times it by wall clock and also
samples the RSS of the whole process tree (what counts when a runner starts
worker processes).
"""

import glob
import json
import os
import resource
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT_MARK = "BENCH_RESULT "


def report(result: dict) -> None:
    """Child side: print `result` plus this process's peak RSS for the parent."""
    result["self_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    result["children_kib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(RESULT_MARK + json.dumps(result), flush=True)


def tree_rss_kib(root: int) -> int:
    """Sum of RSS over `root` and its descendants, from /proc (Linux)."""
    parent_of, rss = {}, {}
    page_kib = os.sysconf("SC_PAGE_SIZE") // 1024
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parent_of[int(entry)], rss[int(entry)] = int(fields[1]), int(fields[21]) * page_kib
    total = 0
    for pid, kib in rss.items():
        ancestor = pid
        while ancestor not in (root, 0, 1) and ancestor in parent_of:
            ancestor = parent_of[ancestor]
        total += kib if ancestor == root else 0
    return total


def run_child(script: str, label: str, args, workdir: str, env=None,
              sample_seconds: float = 0.5) -> dict:
    """Runs `script --child ARGS`; returns what the child report()ed plus
    `wall` seconds and peak memory in MiB (`self_mib`, `children_mib`: largest
    descendant, `tree_mib`: sampled whole tree). Exits with the child's output
    tail if it fails."""
    log_path = os.path.join(workdir, f"{label}.log")
    env = dict(os.environ, **(env or {}), PYTHONPATH=os.pathsep.join(
        filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    with open(log_path, "w") as log:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, os.path.abspath(script), "--child", *args],
                                 cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        tree_peak, done = [0], threading.Event()

        def sample():
            while not done.wait(sample_seconds):
                try:
                    tree_peak[0] = max(tree_peak[0], tree_rss_kib(child.pid))
                except OSError:
                    pass
        if os.path.isdir("/proc"):
            threading.Thread(target=sample, daemon=True).start()
        returncode = child.wait()
        wall = time.monotonic() - started
        done.set()
    with open(log_path) as log:
        text = log.read()
    marks = [line for line in text.splitlines() if line.startswith(RESULT_MARK)]
    if returncode or not marks:
        sys.exit(f"{label} failed (exit {returncode}); last output:\n{text[-3000:]}")
    result = json.loads(marks[-1][len(RESULT_MARK):])
    result.update(wall=wall, self_mib=result["self_kib"] / 1024,
                  children_mib=result["children_kib"] / 1024, tree_mib=tree_peak[0] / 1024)
    return result


def source_stamps(folders=("models", "transforms", "pipelines")) -> dict:
    """Modification times of the project's sources: variants compared with
    each other must have run the same code."""
    paths = [path for folder in folders for path in glob.glob(os.path.join(REPO, folder, "*.py"))]
    return {path: os.stat(path).st_mtime_ns for path in paths}


def warn_if_sources_changed(stamps: dict) -> None:
    """Says so when the sources changed since source_stamps() was taken."""
    changed = sorted(os.path.relpath(path, REPO) for path, stamp in source_stamps().items()
                     if stamps.get(path) != stamp)
    if changed:
        print(f"WARNING: sources changed while the variants ran: {', '.join(changed)}; "
              "the comparison may mix two versions of the code")
