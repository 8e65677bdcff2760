"""Running a pipeline with progress lines, and saying where a Dataflow job is.

``run_pipeline(pipeline, pipeline_options, items)`` runs the pipeline and
waits for it:

* **Local runners** (DirectRunner): Beam's counters reach the caller only when
  the job is over (``pipeline.run()`` returns after the last stage), so the
  stages also publish a few live counts (transforms.progress) and a thread
  prints them every PROGRESS_SECONDS:
  ``progress 0:15  412,331 records read · 3,100 students replayed · 0 exercises fitted``.
* **Dataflow**: the job id and its console URL right after submission, then,
  with progress on, the job's own counters every DATAFLOW_PROGRESS_SECONDS.

``--progress auto`` (the default) shows progress lines only when stdout is a
terminal, so tests, pipes and schedulers get none; ``always`` and ``never``
force it.
"""

import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Optional, Sequence, Tuple

from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions

from pipelines.options import OperatorOptions
from transforms import progress as live
from transforms.run_summary import counted, counter_values

PROGRESS_SECONDS = 5.0
DATAFLOW_PROGRESS_SECONDS = 30.0
TERMINAL_STATES = ("DONE", "FAILED", "CANCELLED", "DRAINED", "UPDATED")

# (counter name, noun, participle), e.g. ("records_read", "record", "read");
# a fourth element, when present, is the total to count up to.
Item = Tuple


def shows_progress(mode: str, stream=None) -> bool:
    """Whether to print progress lines: `mode` is auto, always or never."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def elapsed_text(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_line(counts: dict, items: Sequence[Item], elapsed: float) -> str:
    parts = []
    for item in items:
        name, noun, participle = item[:3]
        value = int(counts.get(name, 0))
        if len(item) > 3 and item[3]:
            parts.append(f"{value:,} of {counted(item[3], noun)} {participle}")
        else:
            parts.append(f"{counted(value, noun)} {participle}")
    return f"progress {elapsed_text(elapsed)}  " + " \u00b7 ".join(parts)


def is_local(pipeline_options) -> bool:
    runner = pipeline_options.view_as(StandardOptions).runner
    name = runner if isinstance(runner, str) else type(runner).__name__ if runner else ""
    return name in ("", "DirectRunner", "direct", "SwitchingDirectRunner",
                    "BundleBasedDirectRunner", "FnApiRunner", "TestDirectRunner")


def dataflow_job_url(pipeline_options, job_id: str) -> str:
    cloud = pipeline_options.view_as(GoogleCloudOptions)
    return (f"https://console.cloud.google.com/dataflow/jobs/{cloud.region}/{job_id}"
            f"?project={cloud.project}")


class _LocalReporter:
    """Prints the live counts of transforms.progress every `interval` seconds."""

    def __init__(self, items, out, interval: float, started: float):
        self.items, self.out, self.interval, self.started = items, out, interval, started
        self.directory = tempfile.mkdtemp(prefix="km-progress-")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="progress-reporter",
                                       daemon=True)
        self.saved = os.environ.get(live.ENV)

    def __enter__(self):
        os.environ[live.ENV] = self.directory
        self.thread.start()
        return self

    def _loop(self):
        while not self.stop.wait(self.interval):
            live.flush()
            print(progress_line(live.totals(self.directory), self.items,
                                time.monotonic() - self.started), file=self.out, flush=True)

    def __exit__(self, *exc_info):
        self.stop.set()
        self.thread.join()
        if self.saved is None:
            os.environ.pop(live.ENV, None)
        else:
            os.environ[live.ENV] = self.saved
        shutil.rmtree(self.directory, ignore_errors=True)


def _job_id(result) -> Optional[str]:
    """The submitted job's id; None for a local run, a dry run or a template."""
    if not callable(getattr(result, "job_id", None)) or not getattr(result, "has_job", True):
        return None
    try:
        return result.job_id() or None
    except Exception:  # noqa: BLE001 (no job behind the result)
        return None


def _state_name(state) -> str:
    return str(getattr(state, "name", state) or "").rsplit(".", 1)[-1].upper()


def _wait_remote(result, items, out, show: bool, started: float, interval: float):
    """Waits for a remote job, printing its counters every `interval` seconds."""
    if not show:
        return result.wait_until_finish()
    while True:
        state = result.wait_until_finish(duration=int(interval * 1000))
        if _state_name(state) in TERMINAL_STATES:
            return state
        try:
            counts = counter_values(result)
        except Exception:  # noqa: BLE001 (metrics are best effort)
            counts = {}
        print(progress_line(counts, items, time.monotonic() - started), file=out, flush=True)


def run_pipeline(pipeline, pipeline_options, items: Sequence[Item], *, wait: bool = True,
                 mode: Optional[str] = None, out=None, started: Optional[float] = None,
                 interval: Optional[float] = None):
    """Runs `pipeline` (and, with `wait`, waits for it), with progress lines
    about `items` when `mode` (default: the --progress option) asks for them.
    Returns the PipelineResult."""
    out = sys.stdout if out is None else out
    if mode is None:
        mode = pipeline_options.view_as(OperatorOptions).progress
    show = wait and shows_progress(mode, out)
    started = time.monotonic() if started is None else started
    if is_local(pipeline_options):
        if not show:
            result = pipeline.run()
            if wait:
                result.wait_until_finish()
            return result
        with _LocalReporter(items, out, interval or PROGRESS_SECONDS, started):
            result = pipeline.run()
            result.wait_until_finish()
        return result
    result = pipeline.run()
    job_id = _job_id(result)
    if job_id:
        runner = pipeline_options.view_as(StandardOptions).runner or ""
        if "Dataflow" in str(runner):
            print(f"Dataflow job {job_id}: {dataflow_job_url(pipeline_options, job_id)}",
                  file=out, flush=True)
        else:
            print(f"Job {job_id} submitted to {runner}.", file=out, flush=True)
    if wait:
        _wait_remote(result, items, out, show, started, interval or DATAFLOW_PROGRESS_SECONDS)
    return result
