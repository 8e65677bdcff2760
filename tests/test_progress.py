"""Progress lines and logging of the entry points (pipelines.progress,
transforms.progress, pipelines.options.configure_logging): live counts from
every worker process, quiet unless asked or on a terminal, the Dataflow job's
console URL, and multi-processing runs without Beam's chatter."""

import io
import logging
import os
import re
import subprocess
import sys

import pytest
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metricbase import MetricName
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import generate_sample, progress
from pipelines.cli import configure_logging, operator_settings, UsageError
from pipelines.train_knowledge_model import run as train
from transforms import progress as live
from transforms.read import METRICS_NAMESPACE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"^progress (\d+):(\d\d)  ([\d,]+) records? read \u00b7 ([\d,]+) students? "
                  r"replayed \u00b7 ([\d,]+) exercises? fitted$")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("sample"))
    generate_sample.main(["--output", directory, "--students", "300", "--seed", "5"])
    return directory


def test_progress_lines_read_well():
    items = (("records_read", "record", "read"), ("exercises_fitted", "exercise", "fitted"),
             ("boosting_iterations", "iteration", "done", 30))
    assert progress.progress_line({"records_read": 1, "exercises_fitted": 12_345,
                                   "boosting_iterations": 3}, items, 75.4) == (
        "progress 1:15  1 record read \u00b7 12,345 exercises fitted \u00b7 "
        "3 of 30 iterations done")
    assert progress.progress_line({}, items[:1], 3725) == "progress 1:02:05  0 records read"


class _Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_auto_means_only_on_a_terminal():
    assert progress.shows_progress("auto", _Stream(True))
    assert not progress.shows_progress("auto", _Stream(False))
    assert progress.shows_progress("always", _Stream(False))
    assert not progress.shows_progress("never", _Stream(True))
    assert not progress.shows_progress("auto", object())      # no isatty at all


def test_live_counts_add_up_over_processes(tmp_path, monkeypatch):
    monkeypatch.setenv(live.ENV, str(tmp_path))
    live.add("records_read", 5)
    live.add("records_read", 0)
    live.flush()
    code = ("from transforms import progress; progress.add('records_read', 7); "
            "progress.add('students', 2); progress.flush()")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                   env={**os.environ, live.ENV: str(tmp_path)})
    assert live.totals(str(tmp_path)) == {"records_read": 12, "students": 2}
    assert live.totals(str(tmp_path / "gone")) == {}


def test_without_a_progress_directory_nothing_is_counted(tmp_path, monkeypatch):
    monkeypatch.delenv(live.ENV, raising=False)
    live.add("records_read", 5)     # a no-op: nothing asked for progress
    assert live._publisher() is None


def _lines(text):
    return [LINE.match(line) for line in text.splitlines() if line.startswith("progress")]


def test_a_local_run_prints_progress_when_asked(sample, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress, "PROGRESS_SECONDS", 0.3)
    summary = train(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path / "a"),
                     "--progress", "always"])
    lines = _lines(capsys.readouterr().out)
    assert lines and all(lines), "every progress line has the expected form"
    counts = [tuple(int(group.replace(",", "")) for group in line.groups()[2:])
              for line in lines]
    assert counts == sorted(counts)     # the counts only grow
    assert max(c[0] for c in counts) <= summary["records_read"]
    assert any(c[0] > 0 for c in counts)
    assert live.ENV not in os.environ   # the run cleaned up after itself

    # auto, with stdout captured (not a terminal): none
    train(["--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path / "b")])
    assert "progress" not in capsys.readouterr().out


def test_multi_processing_runs_show_progress_and_no_beam_chatter(sample, tmp_path):
    """Worker subprocesses count too; Beam's warnings (e.g. the workers'
    "Discarding unparseable args" listing every option) stay hidden."""
    # A line every 0.5 s instead of 5: the run may take less than 5 s.
    command = ("import runpy, sys; from pipelines import progress; "
               "progress.PROGRESS_SECONDS = 0.5; sys.argv[0] = 'train_knowledge_model'; "
               "runpy.run_module('pipelines.train_knowledge_model', run_name='__main__')")
    result = subprocess.run(
        [sys.executable, "-c", command,
         "--input", os.path.join(sample, "*.avro"), "--output", str(tmp_path / "out"),
         "--direct_running_mode=multi_processing", "--direct_num_workers=2",
         "--progress", "always"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=True)
    assert result.stderr == ""
    lines = _lines(result.stdout)
    assert lines and all(lines)
    assert any(int(line.group(3).replace(",", "")) > 0 for line in lines), result.stdout
    assert "exercises fitted, " in result.stdout      # then the summary


def test_log_levels():
    assert vars(operator_settings(["--log_level", "debug", "--input", "x"])) == {
        "progress": "auto", "log_level": "DEBUG", "beam_log_level": "ERROR"}
    with pytest.raises(UsageError, match="--log_level"):
        operator_settings(["--log_level", "loud"])
    with pytest.raises(UsageError, match="--progress"):
        operator_settings(["--progress", "sometimes"])
    saved = {name: logging.getLogger(name).level for name in ("", "pipelines", "apache_beam")}
    try:
        configure_logging("INFO", "ERROR")
        assert logging.getLogger("pipelines.monitor").isEnabledFor(logging.INFO)
        assert not logging.getLogger("apache_beam.runners").isEnabledFor(logging.WARNING)
        assert not logging.getLogger("google.auth").isEnabledFor(logging.INFO)
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def test_a_bad_log_level_is_a_usage_error(sample, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "pipelines.monitor", "--input", "x", "--params", "y",
         "--output", str(tmp_path), "--log_level", "loud"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.startswith("error: argument --log_level: invalid choice: 'LOUD'")


class _DataflowResult:
    """What DataflowPipelineResult offers run_pipeline: a job id, waiting
    with a timeout, and the job's counters."""

    def __init__(self, states):
        self.states, self.has_job = list(states), True

    def job_id(self):
        return "2026-11-30_01_02_03-123"

    def wait_until_finish(self, duration=None):
        assert duration is not None
        return self.states.pop(0)

    def metrics(self):
        counts = {"records_read": 1000 * (3 - len(self.states)), "students": 10}
        results = [MetricResult(MetricKey("step", MetricName(METRICS_NAMESPACE, name)),
                                None, value) for name, value in counts.items()]

        class _Query:
            @staticmethod
            def query(_filter):
                return {"counters": results}
        return _Query()


class _Pipeline:
    def __init__(self, result):
        self.result = result

    def run(self):
        return self.result


def test_dataflow_runs_print_the_console_url_and_the_jobs_counters():
    options = PipelineOptions(["--runner", "DataflowRunner", "--project", "my-proj",
                               "--region", "europe-west1", "--progress", "always"])
    out = io.StringIO()
    items = (("records_read", "record", "read"), ("students", "student", "replayed"))
    progress.run_pipeline(_Pipeline(_DataflowResult(["RUNNING", "RUNNING", "DONE"])), options,
                          items, out=out, interval=0.01)
    lines = out.getvalue().splitlines()
    assert lines[0] == ("Dataflow job 2026-11-30_01_02_03-123: https://console.cloud.google.com"
                        "/dataflow/jobs/europe-west1/2026-11-30_01_02_03-123?project=my-proj")
    assert [line.split("  ", 1)[1] for line in lines[1:]] == [
        "1,000 records read \u00b7 10 students replayed",
        "2,000 records read \u00b7 10 students replayed"]
    # the URL is printed whatever --progress says
    out = io.StringIO()
    quiet = PipelineOptions(["--runner", "DataflowRunner", "--project", "p", "--region", "r"])
    result = _DataflowResult(["DONE"])
    result.wait_until_finish = lambda duration=None: "DONE"
    progress.run_pipeline(_Pipeline(result), quiet, items, out=out)
    assert out.getvalue().startswith("Dataflow job 2026-11-30_01_02_03-123: https://")
