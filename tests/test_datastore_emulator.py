"""The Datastore emulator fixtures really serve, wipe and stop an emulator."""

import os
import subprocess

import pytest
from google.api_core import exceptions
from google.cloud import datastore as gds


def _entity(client, name, **props):
    entity = gds.Entity(client.key("Probe", name))
    entity.update(props)
    return entity


def _emulator_processes(port):
    """Command lines of live processes serving the emulator on `port`."""
    lines = subprocess.run(
        ["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [line for line in lines if "datastore" in line.lower() and f"--port={port}" in line]


def test_put_then_get_round_trips(datastore):
    assert os.environ["DATASTORE_EMULATOR_HOST"] == datastore.host
    client = gds.Client(project=datastore.project)
    client.put(_entity(client, "a", skill=3, p=0.25))
    got = client.get(client.key("Probe", "a"))
    assert dict(got) == {"skill": 3, "p": 0.25}


def test_reset_wipes_all_entities(datastore):
    client = gds.Client(project=datastore.project)
    client.put(_entity(client, "b", x=1))
    datastore.reset()
    assert client.get(client.key("Probe", "b")) is None


def test_stopped_emulator_fails_fast_and_leaves_no_process(fresh_datastore_emulator):
    emulator = fresh_datastore_emulator
    port = emulator.host.rsplit(":", 1)[1]
    client = gds.Client(project=emulator.project)
    client.put(_entity(client, "c", x=1))
    assert _emulator_processes(port)

    emulator.stop()
    emulator.stop()  # Idempotent.

    assert not emulator.running
    assert _emulator_processes(port) == []
    # Commit is not retried by the client: it fails at once.
    with pytest.raises(exceptions.ServiceUnavailable):
        client.put(_entity(client, "d", x=2))
