"""A local BigQuery (bqemulator) for tests, and the patches that point Beam at it.

bqemulator serves the BigQuery REST API and the Storage Read gRPC API from
DuckDB. It runs in a subprocess (its own asyncio loop, gRPC server and DuckDB
must not share the test process) started through a tiny launcher that turns
``DuckDBEngine._load_spatial`` into a no-op: the real one downloads a DuckDB
extension and fails offline.

Never run a real ``ReadFromBigQuery`` outside ``beam_pointed_at_emulator()``:
without credentials google-auth falls back to an interactive login and hangs.
Only in-process runners see the patches (the default DirectRunner falls back
to the in-process FnApiRunner; ``direct_running_mode=multi_processing`` does
not see them).
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from unittest import mock

import pytest
import requests

from tests.local_server import LocalServer, free_port

DEFAULT_PROJECT = "test-proj"
HTTP_TIMEOUT_S = 30
TEST_TIMEOUT_S = 180

# Runs in the emulator subprocess: patch, then hand over to the real CLI.
_LAUNCHER = """
import ctypes, os, signal, sys
try:  # Linux: SIGTERM us if the test process dies without stopping us (e.g. SIGKILL)
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != int(sys.argv.pop(1)):
    sys.exit("test process already gone")
from bqemulator.storage.engine import DuckDBEngine
DuckDBEngine._load_spatial = lambda self: None  # offline: no spatial extension
from bqemulator.cli import main
main(sys.argv[1:], prog_name="bqemulator")
"""


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _to_json_value(value: object) -> object:
    """Timestamps go in as ISO strings: bqemulator reads numbers as micros, not seconds."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        return value.astimezone(datetime.timezone.utc).isoformat()
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


class BigQueryEmulator:
    """One bqemulator subprocess on free ports, with REST helpers to seed it."""

    def __init__(self, project: str = DEFAULT_PROJECT, start_timeout: float = 60.0) -> None:
        self.project = project
        self.start_timeout = start_timeout
        self.rest_port = self.grpc_port = 0
        self.start_seconds = 0.0
        self._server: LocalServer | None = None

    @property
    def base_url(self) -> str:
        """What Beam's BigqueryV2.BASE_URL must be."""
        return f"http://127.0.0.1:{self.rest_port}/bigquery/v2/"

    @property
    def grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def table_spec(self, dataset: str, table: str) -> str:
        """``project:dataset.table``, the form ReadFromBigQuery(table=...) takes."""
        return f"{self.project}:{dataset}.{table}"

    # -- lifecycle --------------------------------------------------------

    def start(self) -> BigQueryEmulator:
        """Start the subprocess and wait until REST answers /readyz and gRPC accepts."""
        if self._server is not None:
            return self
        self.rest_port, self.grpc_port = free_port(), free_port()
        env = dict(os.environ, BQEMU_ENABLE_FORMAT_EXTENSIONS="false")  # no avro download
        self._server = LocalServer("bqemulator", [
            sys.executable, "-c", _LAUNCHER, str(os.getpid()), "start", "--ephemeral",
            "--rest-port", str(self.rest_port), "--grpc-port", str(self.grpc_port),
            "--project", self.project], env=env)
        try:
            self.start_seconds = self._server.wait_until_ready(self._ready, self.start_timeout,
                                                               interval=0.05)
        except BaseException:
            self.stop()  # the error quotes the emulator's output
            raise
        return self

    def _ready(self) -> bool:
        ok = requests.get(f"http://127.0.0.1:{self.rest_port}/readyz", timeout=1).ok
        return ok and _port_open(self.grpc_port)  # gRPC binds after REST

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL after 10 s; safe twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace=10.0)

    def log(self) -> str:
        """The emulator's captured stdout+stderr (until stop())."""
        return self._server.output() if self._server is not None else ""

    def __enter__(self) -> BigQueryEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST helpers -----------------------------------------------------

    def _call(self, method: str, path: str, body: object = None, project: str = "") -> dict:
        url = f"{self.base_url}projects/{project or self.project}/{path}"
        resp = requests.request(method, url, json=body, timeout=HTTP_TIMEOUT_S)
        if not resp.ok:
            raise RuntimeError(f"{method} {url} -> {resp.status_code}: {resp.text}")
        return resp.json() if resp.content else {}

    def create_dataset(self, dataset: str) -> None:
        """datasets.insert; an existing dataset is fine."""
        try:
            self._call("POST", "datasets", {
                "datasetReference": {"projectId": self.project, "datasetId": dataset}})
        except RuntimeError as e:
            if "-> 409" not in str(e):
                raise

    def create_table(self, dataset: str, table: str,
                     schema_fields: Sequence[Mapping[str, str] | tuple[str, str]]) -> str:
        """tables.insert (creating the dataset if needed); returns the table spec.

        ``schema_fields``: BigQuery field dicts ({"name", "type", "mode"}) or
        ``(name, type)`` pairs.
        """
        fields = [dict(f) if isinstance(f, Mapping) else {"name": f[0], "type": f[1]}
                  for f in schema_fields]
        self.create_dataset(dataset)
        self._call("POST", f"datasets/{dataset}/tables", {
            "tableReference": {"projectId": self.project, "datasetId": dataset, "tableId": table},
            "schema": {"fields": fields}})
        return self.table_spec(dataset, table)

    def insert_rows(self, dataset: str, table: str, rows: Iterable[Mapping[str, object]]) -> None:
        """tabledata.insertAll; datetimes are sent as ISO strings. Raises on row errors."""
        body = {"rows": [{"json": {k: _to_json_value(v) for k, v in row.items()}}
                         for row in rows]}
        errors = self._call("POST", f"datasets/{dataset}/tables/{table}/insertAll", body)
        if errors.get("insertErrors"):
            raise RuntimeError(f"insertAll errors: {errors['insertErrors']}")

    def query(self, sql: str) -> list[dict]:
        """jobs.query (standard SQL) -> rows as {name: value-as-returned-string}.

        TIMESTAMP values come back as integer-microsecond strings here, not the
        float seconds real BigQuery returns by default.
        """
        resp = self._call("POST", "queries", {"query": sql, "useLegacySql": False,
                                              "timeoutMs": HTTP_TIMEOUT_S * 1000})
        if not resp.get("jobComplete", False):
            raise RuntimeError(f"query did not complete: {resp}")
        names = [f["name"] for f in resp["schema"]["fields"]]
        return [dict(zip(names, (c["v"] for c in r["f"]))) for r in resp.get("rows", [])]

    # -- Beam -------------------------------------------------------------

    @contextlib.contextmanager
    def beam_pointed_at_emulator(self) -> Iterator[BigQueryEmulator]:
        """Point Beam's BigQuery REST and Storage Read clients at this emulator.

        Patches (all undone on exit): google.auth.default -> anonymous
        credentials (no login prompt), Beam's cached credentials reset,
        BigqueryV2.BASE_URL -> the emulator, the ``bq_storage`` module seen
        by apache_beam.io.gcp.bigquery -> a proxy whose BigQueryReadClient uses
        an insecure gRPC channel to the emulator, and Beam's post-read cleanup
        of labelled temp datasets: bqemulator ignores datasets.list's label
        filter, so with ``--project`` set Beam would delete every dataset.
        """
        import grpc
        from apache_beam.internal.gcp import auth as beam_auth
        from apache_beam.io.gcp import bigquery as beam_bq
        from apache_beam.io.gcp import bigquery_tools
        from apache_beam.io.gcp.internal.clients import bigquery as bq_rest
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
            BigQueryReadGrpcTransport,
        )

        channel = grpc.insecure_channel(self.grpc_endpoint)
        real_storage = beam_bq.bq_storage

        class _StorageProxy:
            def __getattr__(self, name: str) -> object:
                return getattr(real_storage, name)

            @staticmethod
            def BigQueryReadClient(**_: object) -> object:  # named as in the module
                return real_storage.BigQueryReadClient(
                    transport=BigQueryReadGrpcTransport(channel=channel))

        wrapper_cls = bigquery_tools.BigQueryWrapper
        real_cleanup = wrapper_cls._clean_up_beam_labelled_temporary_datasets

        def _cleanup(wrapper, project_id, dataset_id=None, table_id=None, labels=None):
            if labels is None or wrapper.is_user_configured_dataset():
                return real_cleanup(wrapper, project_id, dataset_id, table_id, labels)
            for ds in self._call("GET", "datasets", project=project_id).get("datasets", []):
                if labels.items() <= (ds.get("labels") or {}).items():  # the filter, client-side
                    wrapper._delete_dataset(project_id, ds["datasetReference"]["datasetId"], True)
            return None

        project = self.project
        with contextlib.ExitStack() as stack:
            stack.callback(channel.close)
            for patcher in (
                mock.patch("google.auth.default",
                           lambda *a, **k: (AnonymousCredentials(), project)),
                mock.patch.object(beam_auth._Credentials, "_credentials_init", False),
                mock.patch.object(beam_auth._Credentials, "_credentials", None),
                mock.patch.object(bq_rest.BigqueryV2, "BASE_URL", self.base_url),
                mock.patch.object(beam_bq, "bq_storage", _StorageProxy()),
                mock.patch.object(wrapper_cls, "_clean_up_beam_labelled_temporary_datasets",
                                  _cleanup),
            ):
                stack.enter_context(patcher)
            yield self


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (no-op off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(*_: object) -> None:
        raise TimeoutError(f"BigQuery emulator test exceeded {seconds}s")

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def bigquery_emulator() -> Iterator[BigQueryEmulator]:
    """A started emulator shared by the session (~2 s to start); stopped at the end."""
    for module in ("bqemulator", "google.cloud.bigquery_storage_v1"):
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package is missing
            found = False
        if not found:
            pytest.skip(f"{module} is not installed; the BigQuery emulator is unavailable")
    with BigQueryEmulator() as emulator:
        yield emulator


@pytest.fixture
def bigquery(bigquery_emulator: BigQueryEmulator) -> Iterator[BigQueryEmulator]:
    """The session emulator with Beam pointed at it for this test, under a time limit."""
    with _time_limit(TEST_TIMEOUT_S), bigquery_emulator.beam_pointed_at_emulator():
        yield bigquery_emulator
