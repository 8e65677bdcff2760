"""tests/local_server.py: errors quote the server's output, and stop() leaves
no process of the group behind (as gcloud's Java child would be)."""

import os
import sys
import time

import pytest

from tests.local_server import LocalServer, ServerExited, free_port

# A parent that starts a child in its group and waits: killing only the
# parent would leave the child running.
PARENT_AND_CHILD = ("import subprocess, sys, time; "
                    "child = subprocess.Popen("
                    "[sys.executable, '-c', 'import time; time.sleep(60)']); "
                    "print('child', child.pid, flush=True); time.sleep(60)")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is not running, it only waits for whoever adopted it to reap it
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_free_port_is_bindable():
    assert 0 < free_port() < 65536


def test_exit_before_ready_quotes_the_output():
    server = LocalServer("quitter",
                         [sys.executable, "-c", "print('port taken'); raise SystemExit(3)"])
    with pytest.raises(ServerExited, match="quitter exited with status 3(.|\n)*port taken"):
        server.wait_until_ready(lambda: False, timeout=30)
    assert not server.running


def test_timeout_quotes_the_output_and_stops_the_group():
    server = LocalServer("sleeper", [sys.executable, "-c", PARENT_AND_CHILD])
    with pytest.raises(TimeoutError, match="sleeper not ready after 1 s(.|\n)*child"):
        server.wait_until_ready(lambda: False, timeout=1)
    assert not server.running


def test_stop_ends_every_process_of_the_group():
    server = LocalServer("parent", [sys.executable, "-c", PARENT_AND_CHILD])
    seconds = server.wait_until_ready(lambda: "child" in server.output(), timeout=30,
                                      interval=0.02)
    assert seconds < 30
    child = int(server.output().split()[1])
    assert server.running and _alive(child)
    started = time.monotonic()
    server.stop(grace=2)
    server.stop()  # idempotent
    assert time.monotonic() - started < 15
    assert not server.running and not _alive(child)
