"""Live progress counts of a running job, for the progress lines on a local run.

Beam's metrics reach the caller only once a DirectRunner job has finished
(``pipeline.run()`` returns after the last stage), so the stages also publish
a few counts here as they go: ``add("records_read", n)``. It is a no-op unless
the launching process set ``ENV`` to a directory. Then every process running
the stages (the launching one, and the SDK worker subprocesses of
``--direct_running_mode=multi_processing``, which inherit the environment)
keeps its running totals and writes them, at most every FLUSH_SECONDS, to
``<dir>/<pid>.json``; ``totals(dir)`` adds up every process's file.

The counts are for display only: the run summary comes from Beam's metrics.
On Dataflow nothing sets ``ENV``, so ``add`` returns at once.
"""

import json
import os
import threading
import time
from collections import Counter
from typing import Dict, Optional

from apache_beam.metrics import Metrics

ENV = "KNOWLEDGE_MODEL_PROGRESS_DIR"
FLUSH_SECONDS = 0.5


class _Publisher:
    """This process's totals, written to its own file by a daemon thread."""

    def __init__(self, directory: str):
        self.directory = directory
        self.pid = os.getpid()
        self.counts: Counter = Counter()
        self.lock = threading.Lock()
        self.changed = threading.Event()
        threading.Thread(target=self._loop, name="progress-publisher", daemon=True).start()

    def add(self, name: str, value: int) -> None:
        with self.lock:
            self.counts[name] += value
        self.changed.set()

    def _loop(self) -> None:
        while os.path.isdir(self.directory):    # removed when the run ends
            if self.changed.wait(timeout=5):
                self.changed.clear()
                self.flush()
                time.sleep(FLUSH_SECONDS)

    def flush(self) -> None:
        with self.lock:
            text = json.dumps(dict(self.counts))
        path = os.path.join(self.directory, f"{self.pid}.json")
        try:
            with open(path + ".tmp", "w", encoding="utf-8") as handle:
                handle.write(text)
            os.replace(path + ".tmp", path)
        except OSError:
            pass    # the directory is gone: the run is over


_PUBLISHER: Optional[_Publisher] = None
_PUBLISHER_LOCK = threading.Lock()


def _publisher() -> Optional[_Publisher]:
    global _PUBLISHER
    directory = os.environ.get(ENV)
    publisher = _PUBLISHER
    if not directory:
        return None
    if publisher is None or publisher.directory != directory or publisher.pid != os.getpid():
        with _PUBLISHER_LOCK:
            publisher = _PUBLISHER
            if (publisher is None or publisher.directory != directory
                    or publisher.pid != os.getpid()):
                publisher = _PUBLISHER = _Publisher(directory)
    return publisher


def add(name: str, value: int = 1) -> None:
    """Count `value` more of `name` toward the progress lines (no-op unless a
    local run asked for progress)."""
    if value:
        publisher = _publisher()
        if publisher is not None:
            publisher.add(name, int(value))


def flush() -> None:
    """Write this process's totals now (the reporter calls it before reading)."""
    publisher = _PUBLISHER
    if publisher is not None and publisher.pid == os.getpid():
        publisher.flush()


def totals(directory: str) -> Dict[str, int]:
    """The counts of every process that published into `directory`."""
    out: Counter = Counter()
    try:
        names = os.listdir(directory)
    except OSError:
        return {}
    for name in names:
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as handle:
                out.update(json.load(handle))
        except (OSError, ValueError):
            continue    # being replaced right now: read again next time
    return dict(out)


def counter(namespace: str, name: str) -> "ProgressCounter":
    """A Beam counter whose increments also count toward the progress lines."""
    return ProgressCounter(namespace, name)


class ProgressCounter:
    """Metrics.counter(namespace, name), plus ``add(name, n)`` on every ``inc``."""

    def __init__(self, namespace: str, name: str):
        self.name = name
        self.metric = Metrics.counter(namespace, name)

    def inc(self, value: int = 1) -> None:
        self.metric.inc(value)
        add(self.name, value)
