"""A local server process for tests: free port, own process group, ready or
explained, stopped whole.

Used by the Datastore emulator (tests/datastore_emulator.py), the BigQuery
emulator (tests/bigquery_emulator.py) and the Cloud Storage emulator
(tests/test_dataflow_dry_run.py).

* free_port(): a port the OS just reported free. Another process can still
  take it before the server binds it; a server that then exits at start-up
  raises ServerExited, and callers may retry on a new port.
* LocalServer(name, command) starts the command in its own session, so in its
  own process group, with stdout and stderr in a temporary file (a pipe that
  nobody reads fills up and blocks the server).
* wait_until_ready(ready, timeout) polls ready() (an OSError counts as "not
  yet") until it is true. If the process exits first (ServerExited) or the
  deadline passes (TimeoutError), the group is stopped and the error quotes
  the server's output.
* stop() sends SIGTERM to the whole group, SIGKILL after `grace` seconds, and
  returns only once no process of the group is left: `gcloud` is a Python
  wrapper that forks a shell script that forks Java, and killing the wrapper
  alone leaves Java running. Idempotent; also run at interpreter exit.
"""

import atexit
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Callable, Mapping, Optional, Sequence

OUTPUT_IN_ERRORS = 5000  # characters of the server's output an error quotes


def free_port() -> int:
    """A port on 127.0.0.1 that the OS just reported free."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerExited(RuntimeError):
    """The server process ended before it was ready (e.g. its port was taken)."""


class LocalServer:
    """One server process and its children, in their own process group."""

    def __init__(self, name: str, command: Sequence[str],
                 env: Optional[Mapping[str, str]] = None):
        self.name = name
        self._lock = threading.Lock()
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [str(part) for part in command], stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, env=None if env is None else dict(env),
            start_new_session=True)  # its own group: killpg reaches every child
        self._stopped = False
        atexit.register(self.stop)  # a safety net for interrupted runs

    @property
    def pid(self) -> int:
        """The process id, also the process group id."""
        return self._proc.pid

    def wait_until_ready(self, ready: Callable[[], bool], timeout: float,
                         interval: float = 0.1) -> float:
        """Seconds until ready() returned true; see the module docstring."""
        started = time.monotonic()
        while True:
            status = self._proc.poll()
            if status is not None:
                output = self.output()
                self.stop()
                raise ServerExited(f"{self.name} exited with status {status} before it was "
                                   f"ready. Output:\n{output[-OUTPUT_IN_ERRORS:]}")
            try:
                if ready():
                    return time.monotonic() - started
            except OSError:
                pass
            if time.monotonic() - started > timeout:
                output = self.output()
                self.stop()
                raise TimeoutError(f"{self.name} not ready after {timeout} s. "
                                   f"Output:\n{output[-OUTPUT_IN_ERRORS:]}")
            time.sleep(interval)

    def output(self) -> str:
        """Everything the server printed so far ('' once stopped)."""
        with self._lock:
            if self._log.closed:
                return ""
            self._log.flush()
            self._log.seek(0)
            return self._log.read().decode(errors="replace")

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the main process to exit."""
        try:
            self._proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    @property
    def running(self) -> bool:
        """True while any process of the group lives (children can outlive
        the main process)."""
        return not self._group_gone()

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the group, SIGKILL it after `grace` s; returns once the
        whole group is gone. Idempotent, never raises."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while not self._group_gone() and time.monotonic() < deadline:
                    time.sleep(0.05)
                if self._group_gone():
                    break
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._log.close()
        atexit.unregister(self.stop)

    def _group_gone(self) -> bool:
        self._proc.poll()  # reap the main process: a zombie still counts in its group
        try:
            os.killpg(self.pid, 0)
        except ProcessLookupError:
            return True
        return False
