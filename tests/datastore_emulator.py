"""Pytest plugin: a real Google Cloud Datastore emulator for integration tests.

The emulator is the Java one shipped with the Google Cloud CLI. Starting it
costs a few seconds, so one emulator serves the whole session and `reset()`
wipes it between tests; tests that kill the emulator get their own.

Gotcha handled here: `gcloud` is a Python wrapper that forks a shell script
that forks Java. Killing the wrapper leaves Java running, so the wrapper is
started in its own process group and the whole group is killed on stop.
"""

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

DEFAULT_PROJECT = "test-project"
_ENV_KEYS = (
    "DATASTORE_EMULATOR_HOST",
    "DATASTORE_PROJECT_ID",
    "DATASTORE_DATASET",
    "DATASTORE_HOST",
)


def _free_port():
    """A port the OS just reported free (it can still be taken before use)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DatastoreEmulator:
    """One running Datastore emulator process group on a free local port."""

    def __init__(self, project=DEFAULT_PROJECT, start_timeout=60.0, attempts=3, data_dir=None):
        """`data_dir`: keep the data on disk there, so that a later emulator
        on the same directory sees it (by default data lives in memory only)."""
        if shutil.which("gcloud") is None:
            raise FileNotFoundError("gcloud is not on PATH")
        self.project = project
        self.host = None
        self._proc = None
        # Own data dir: the default one in ~/.config is shared by every run.
        self._keep_data = data_dir is not None
        self._data_dir = data_dir or tempfile.mkdtemp(prefix="datastore-emulator-")
        # A file, not a pipe: nobody reads a pipe and a full one blocks Java.
        self._log = tempfile.TemporaryFile(mode="w+b")
        atexit.register(self.stop)  # Safety net for interrupted runs.
        for _ in range(attempts):
            if self._start(_free_port(), start_timeout):
                return
        self.stop()
        raise RuntimeError(
            f"Datastore emulator exited {attempts} times before it was ready "
            f"(port taken?). Output:\n{self.output()}"
        )

    def _start(self, port, timeout):
        """Start on `port`; False if the process exited early (port taken)."""
        self.host = f"127.0.0.1:{port}"
        self._proc = subprocess.Popen(
            [
                "gcloud", "beta", "emulators", "datastore", "start",
                "--store-on-disk" if self._keep_data else "--no-store-on-disk",
                f"--host-port={self.host}",
                f"--project={self.project}", "--consistency=1.0",
                f"--data-dir={self._data_dir}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                self._kill_group()  # Java may outlive the wrapper on errors.
                return False
            try:
                if self._request("GET", "/", timeout=1) == b"Ok":
                    return True
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(
            f"Datastore emulator on {self.host} not ready after {timeout} s. "
            f"Output:\n{self.output()}"
        )

    def _request(self, method, path, timeout=5):
        req = urllib.request.Request(
            f"http://{self.host}{path}", method=method, data=b"" if method == "POST" else None
        )
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read().strip()

    def output(self):
        """Everything the emulator printed so far (for error messages)."""
        if self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    @property
    def running(self):
        """True while any emulator process lives (Java can outlive gcloud)."""
        return self._proc is not None and self._group_alive(self._proc.pid)

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
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    self._request("POST", "/shutdown", timeout=2)
                except (OSError, urllib.error.URLError):
                    pass
                try:
                    self._proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            self._kill_group()
        if not self._log.closed:
            self._log.close()
        if not self._keep_data:
            shutil.rmtree(self._data_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def _kill_group(self):
        """SIGTERM, then SIGKILL, the wrapper's whole process group."""
        pgid = self._proc.pid  # start_new_session: the group id is the pid.
        for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and self._group_alive(pgid):
                time.sleep(0.05)
            if not self._group_alive(pgid):
                break
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def _group_alive(self, pgid):
        """True while any process of the group lives (reaping our zombie)."""
        self._proc.poll()  # An unreaped wrapper would keep the group "alive".
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False


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
