"""Pytest plugin: a real Google Cloud Datastore emulator for integration tests.

The emulator is the Java one shipped with the Google Cloud CLI. Starting it
costs a few seconds, so one emulator serves the whole session and `reset()`
wipes it between tests; tests that kill the emulator get their own.

Gotcha handled by tests/local_server.py: `gcloud` is a Python wrapper that
forks a shell script that forks Java. Killing the wrapper leaves Java running,
so the wrapper runs in its own process group and the whole group is stopped.
"""

import atexit
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

from tests.local_server import LocalServer, ServerExited, free_port

DEFAULT_PROJECT = "test-project"
_ENV_KEYS = (
    "DATASTORE_EMULATOR_HOST",
    "DATASTORE_PROJECT_ID",
    "DATASTORE_DATASET",
    "DATASTORE_HOST",
)


class DatastoreEmulator:
    """One running Datastore emulator process group on a free local port."""

    def __init__(self, project=DEFAULT_PROJECT, start_timeout=60.0, attempts=3, data_dir=None):
        """`data_dir`: keep the data on disk there, so that a later emulator
        on the same directory sees it (by default data lives in memory only)."""
        if shutil.which("gcloud") is None:
            raise FileNotFoundError("gcloud is not on PATH")
        self.project = project
        self.host = None
        self._server = None
        # Own data dir: the default one in ~/.config is shared by every run.
        self._keep_data = data_dir is not None
        self._data_dir = data_dir or tempfile.mkdtemp(prefix="datastore-emulator-")
        atexit.register(self.stop)  # Safety net for interrupted runs (the data dir).
        for attempt in range(1, attempts + 1):
            self.host = f"127.0.0.1:{free_port()}"
            self._server = LocalServer("Datastore emulator", [
                "gcloud", "beta", "emulators", "datastore", "start",
                "--store-on-disk" if self._keep_data else "--no-store-on-disk",
                f"--host-port={self.host}",
                f"--project={self.project}", "--consistency=1.0",
                f"--data-dir={self._data_dir}",
            ])
            try:
                self._server.wait_until_ready(
                    lambda: self._request("GET", "/", timeout=1) == b"Ok", start_timeout)
                return
            except ServerExited as error:  # the port was taken, most likely
                if attempt == attempts:
                    self.stop()
                    raise RuntimeError(f"Datastore emulator exited {attempts} times before "
                                       f"it was ready (port taken?). {error}") from None
            except BaseException:  # not ready in time, or interrupted
                self.stop()
                raise

    def _request(self, method, path, timeout=5):
        req = urllib.request.Request(
            f"http://{self.host}{path}", method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().strip()

    def output(self):
        """Everything the emulator printed so far (for error messages)."""
        return self._server.output() if self._server is not None else ""

    @property
    def running(self):
        """True while any emulator process lives (Java can outlive gcloud)."""
        return self._server is not None and self._server.running

    def environment(self):
        """Variables that point Datastore clients (and Beam) at the emulator."""
        return {
            "DATASTORE_EMULATOR_HOST": self.host,
            "DATASTORE_PROJECT_ID": self.project,
            "DATASTORE_DATASET": self.project,
            "DATASTORE_HOST": f"http://{self.host}",
        }

    def reset(self):
        """Delete all entities (much cheaper than a new emulator)."""
        self._request("POST", "/reset")

    def stop(self):
        """Stop the emulator and every child; idempotent, never raises."""
        if self._server is not None and self._server.running:
            try:
                self._request("POST", "/shutdown", timeout=2)  # lets Java exit cleanly
            except (OSError, urllib.error.URLError):
                pass
            self._server.wait(timeout=5)
        if self._server is not None:
            self._server.stop(grace=3.0)
        if not self._keep_data:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        atexit.unregister(self.stop)


@contextmanager
def _patched_environ(values):
    """Set variables for a block, then restore exactly what was there."""
    saved = {key: os.environ.get(key) for key in _ENV_KEYS}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextmanager
def _emulator():
    if shutil.which("gcloud") is None:
        pytest.skip("gcloud (Google Cloud CLI with the Datastore emulator) is not on PATH")
    emulator = DatastoreEmulator()
    try:
        with _patched_environ(emulator.environment()):
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def datastore_emulator():
    """One emulator for the session; environment variables set while active."""
    with _emulator() as emulator:
        yield emulator


@pytest.fixture
def datastore(datastore_emulator):
    """The session emulator, emptied before the test."""
    datastore_emulator.reset()
    yield datastore_emulator


@pytest.fixture
def fresh_datastore_emulator():
    """A private emulator for a test that may stop it (failure tests)."""
    with _emulator() as emulator:
        yield emulator
