"""Issue 14, point 3: S3, Azure and SFTP against a dead server.

Three kinds of dead: a refused port (bound, then closed), a listener that accepts and never
answers, and one that reads the request and closes the connection. Each backend must fail within
what its settings allow, with an error that names the backend, the path, the endpoint and the
cause in words, log each retry on ``keg_storage.retry``, and print nothing: not the SDKs, not
their threads. pytest's own log capture hides what Python's last-resort handler would print in
an application without logging configuration, so that is checked in a subprocess.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from keg_storage import StorageBackend, StorageConnectionError
from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.s3 import S3Storage
from keg_storage.backends.sftp import SFTPStorage
from tests.faults.proxy import FaultProxy

TIMEOUT = 2
S3_SECRET = "s3-secret-key-never-shown"
AZURE_KEY = "YXp1cmUta2V5LW5ldmVyLXNob3du"  # base64, as account keys are
SAS_SIGNATURE = "sas-signature-never-shown"


def refused_port() -> int:
    """A port nothing listens on: bound, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class DeadServer:
    """A listener on a free loopback port that accepts every connection and then either never
    answers (``silent``) or reads what the client sends first and closes (``closing``)."""

    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.listener.settimeout(0.1)  # accept() wakes up to see that the server stopped
        self.stopped = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self.serve, daemon=True, name="dead-server")
        self.thread.start()

    def serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            if self.behaviour == "silent":
                self.held.append(conn)
                continue
            conn.settimeout(5)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            conn.close()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.listener.close()
        for conn in self.held:
            conn.close()


@pytest.fixture(params=["refused", "silent", "closing"])
def dead_port(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    if request.param == "refused":
        yield "refused", refused_port()
        return
    server = DeadServer(request.param)
    yield request.param, server.port
    server.close()


@dataclass
class Case:
    """How one backend is built against a port, and what it must say about it."""

    make: Callable[[int], StorageBackend]
    service: str
    endpoint: Callable[[int], str]
    label: str
    action: str
    causes: dict[str, str]
    slowest: dict[str, float]
    """Seconds the whole call may take: its tries, its backoff, and slack for a busy machine."""
    sent_directly_first: bool = False
    """Whether the request goes first without the SDK's pipeline (S3's and Azure's HEAD of
    ``exists``): a try more, and a line that says it goes again through the SDK."""


def make_s3(port: int) -> StorageBackend:
    return S3Storage(
        "bucket",
        "us-east-1",
        "AKIDEXAMPLE",
        S3_SECRET,
        name="archive",
        endpoint_url=f"http://127.0.0.1:{port}",
        connect_timeout=TIMEOUT,
        read_timeout=TIMEOUT,
        max_attempts=2,
    )


def make_azure(port: int) -> StorageBackend:
    return AzureStorage(
        "devstoreaccount1",
        AZURE_KEY,
        "files",
        name="blobs",
        account_url=f"http://127.0.0.1:{port}/devstoreaccount1",
        timeout=TIMEOUT,
        retry=1,
    )


def make_sftp(port: int) -> StorageBackend:
    return SFTPStorage(
        "127.0.0.1", "user", port=port, name="files", password="pw", timeout=TIMEOUT, retry=1
    )


CASES = {
    # Two tries of at most 2 s each; botocore's standard backoff waits at most 1 s before the
    # second; Azure's retry=1 waits 1-3 s; SFTP waits 0.2 s. S3 and Azure first send the HEAD
    # directly: a try more, of at most 2 s.
    "s3": Case(
        make_s3,
        "S3",
        lambda port: f"http://127.0.0.1:{port}",
        "s3 'archive'",
        "HEAD a.txt",
        {"refused": "Connection refused", "silent": "no answer within 2 s"},
        {"refused": 3, "silent": 3 * TIMEOUT + 1 + 2, "closing": 3},
        sent_directly_first=True,
    ),
    "azure": Case(
        make_azure,
        "Azure Blob Storage",
        lambda port: f"http://127.0.0.1:{port}/devstoreaccount1",
        "azure 'blobs'",
        "HEAD a.txt",
        {"refused": "Connection refused", "silent": "no answer within 2 s"},
        {"refused": 3 + 2, "silent": 3 * TIMEOUT + 3 + 2, "closing": 3 + 2},
        sent_directly_first=True,
    ),
    "sftp": Case(
        make_sftp,
        "SFTP",
        lambda port: f"127.0.0.1:{port}",
        "sftp 'files'",
        "connect",
        {"refused": "Connection refused", "silent": "no answer within 2 s"},
        {"refused": 2, "silent": 2 * TIMEOUT + 2, "closing": 2},
    ),
}
CLOSED = "the server closed the connection"


@pytest.mark.parametrize("backend", sorted(CASES))
def test_dead_server(
    backend: str,
    dead_port: tuple[str, int],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    case = CASES[backend]
    mode, port = dead_port
    caplog.set_level(logging.WARNING, "keg_storage.retry")
    storage = case.make(port)
    started = time.monotonic()
    with storage, pytest.raises(StorageConnectionError) as excinfo:
        storage.exists("a.txt")
    elapsed = time.monotonic() - started

    cause = case.causes.get(mode, CLOSED)
    error = excinfo.value
    assert str(error) == (
        f"connection to {case.service} at {case.endpoint(port)} failed: {cause} "
        f"(backend {type(storage).__name__} {storage.name!r}, path 'a.txt')"
    )
    assert error.cause == cause
    assert elapsed < case.slowest[mode]
    retries = [r for r in caplog.records if r.name == "keg_storage.retry"]
    failed = f"{case.label}: {case.action} failed ({cause}) at {case.endpoint(port)}"
    expected = [f"{failed}; retrying (attempt 2 of 2)"]
    if case.sent_directly_first:
        expected.insert(0, f"{failed}; sending it again through the SDK")
    assert [(r.levelno, r.getMessage()) for r in retries] == [
        (logging.WARNING, line) for line in expected
    ]
    assert capfd.readouterr() == ("", "")


def test_error_and_retry_log_hold_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    """A container SAS URL's signature and an S3 secret key show nowhere: the error names the
    account URL without its query."""
    port = refused_port()
    caplog.set_level(logging.DEBUG)
    sas_url = f"http://127.0.0.1:{port}/devstoreaccount1/files?sv=2020-08-04&sig={SAS_SIGNATURE}"
    with (
        AzureStorage(sas_container_url=sas_url, timeout=TIMEOUT, retry=1) as azure,
        pytest.raises(StorageConnectionError) as azure_error,
    ):
        azure.exists("a.txt")
    assert str(azure_error.value) == (
        f"connection to Azure Blob Storage at http://127.0.0.1:{port}/devstoreaccount1 failed: "
        "Connection refused (backend AzureStorage 'azure', path 'a.txt')"
    )
    with make_s3(port) as s3, pytest.raises(StorageConnectionError) as s3_error:
        s3.exists("a.txt")
    shown = [str(azure_error.value), str(s3_error.value), caplog.text]
    shown += [repr(e) for e in (azure_error.value, s3_error.value)]
    for text in shown:
        assert SAS_SIGNATURE not in text
        assert S3_SECRET not in text
    assert "retrying (attempt 2 of 2)" in caplog.text


@pytest.mark.parametrize("backend", sorted(CASES))
def test_unknown_host(backend: str) -> None:
    """A host name that does not resolve: the resolver's words, no retry worth waiting for."""
    host = "no-such-host.invalid"
    storage: StorageBackend
    if backend == "s3":
        storage = S3Storage(
            "b",
            "us-east-1",
            "AKIDEXAMPLE",
            S3_SECRET,
            endpoint_url=f"http://{host}:9",
            max_attempts=1,
        )
        endpoint = f"http://{host}:9"
    elif backend == "azure":
        storage = AzureStorage("acct", AZURE_KEY, "c", account_url=f"http://{host}:9", retry=0)
        endpoint = f"http://{host}:9"
    else:
        storage = SFTPStorage(host, "user", port=9, retry=0)
        endpoint = f"{host}:9"
    with storage, pytest.raises(StorageConnectionError) as excinfo:
        storage.exists("a.txt")
    service = CASES[backend].service
    assert str(excinfo.value) == (
        f"connection to {service} at {endpoint} failed: Name or service not known "
        f"(backend {type(storage).__name__} {storage.name!r}, path 'a.txt')"
    )


def test_s3_names_the_regional_endpoint_of_aws() -> None:
    with S3Storage("bucket", "eu-west-1", "AKIDEXAMPLE", S3_SECRET) as storage:
        assert storage.endpoint == "https://s3.eu-west-1.amazonaws.com"


def test_s3_endpoint_shows_no_user_info() -> None:
    with S3Storage(
        "bucket", "us-east-1", endpoint_url="http://user:pass@127.0.0.1:9/base/?x=1"
    ) as storage:
        assert storage.endpoint == "http://127.0.0.1:9/base"


# -- what an application without logging configuration sees ---------------------------------

SCRIPT = """
import json, socket, sys, threading
from tests.test_dead_servers import CASES, DeadServer, refused_port

results = []
for mode in ("refused", "silent", "closing"):
    server = None if mode == "refused" else DeadServer(mode)
    port = refused_port() if server is None else server.port
    storage = CASES[sys.argv[1]].make(port)
    try:
        storage.exists("a.txt")
    except Exception as exc:
        results.append(f"{type(exc).__name__}: {exc}")
    storage.close()
    if server is not None:
        server.close()
print(json.dumps(results))
"""


@pytest.mark.parametrize("backend", sorted(CASES))
def test_nothing_printed_without_logging_configuration(backend: str) -> None:
    """No SDK, SDK thread or C extension writes to stdout or stderr. Only keg_storage's own
    retry warnings reach stderr there, through Python's last-resort handler (one line each, as
    for any library's warnings); the CLI gives that logger a handler of its own."""
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, backend],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert completed.returncode == 0, completed.stderr
    case = CASES[backend]
    retry_line = re.compile(
        rf"{re.escape(case.label)}: {case.action} failed \([^)]+\) at \S+; "
        r"(retrying \(attempt 2 of 2\)|sending it again through the SDK)"
    )
    lines = completed.stderr.splitlines()
    assert len(lines) == (6 if case.sent_directly_first else 3), completed.stderr
    assert all(retry_line.fullmatch(line) for line in lines), completed.stderr
    results = json.loads(completed.stdout)
    assert len(results) == 3
    assert all(r.startswith("StorageConnectionError: connection to ") for r in results)


def test_paramiko_thread_failures_reach_configured_logging(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """paramiko's transport thread reports on our child logger: dropped without logging
    configuration (see above), kept for an application that configured some."""
    server = DeadServer("closing")
    caplog.set_level(logging.DEBUG, "keg_storage.backends.sftp.ssh")
    try:
        with make_sftp(server.port) as storage, pytest.raises(StorageConnectionError):
            storage.exists("a.txt")
    finally:
        server.close()
    assert any(
        r.name == "keg_storage.backends.sftp.ssh" and "Exception (client)" in r.getMessage()
        for r in caplog.records
    )
    assert not [r for r in caplog.records if r.name.startswith("paramiko")]


# -- a connection cut in the middle of a download ----------------------------------------------

CUT_SCRIPT = """
import hashlib, importlib, io, json, sys
spec = json.loads(sys.argv[1])
backend = getattr(importlib.import_module(spec["module"]), spec["class"])
with backend(*spec["args"], **spec["kwargs"]) as storage:
    out = io.BytesIO()
    storage.download("data.bin", out)
print(hashlib.sha256(out.getvalue()).hexdigest())
"""


def _through(backend: str, request: pytest.FixtureRequest, port: int) -> dict[str, Any]:
    """How the subprocess builds ``backend`` to reach its test server through ``port``."""
    if backend == "s3":
        server = request.getfixturevalue("seaweedfs")
        args = [request.getfixturevalue("s3_bucket"), server.region]
        args += [server.access_key, server.secret_key]
        kwargs: dict[str, Any] = {"endpoint_url": f"http://127.0.0.1:{port}"}
        return {
            "module": "keg_storage.backends.s3",
            "class": "S3Storage",
            "args": args,
            "kwargs": kwargs,
        }
    if backend == "azure":
        server = request.getfixturevalue("azurite")
        container = request.getfixturevalue("azure_container").container_name
        kwargs = {"account_url": f"http://127.0.0.1:{port}/{server.account}", "retry": 1}
        return {
            "module": "keg_storage.backends.azure",
            "class": "AzureStorage",
            "args": [server.account, server.key, container],
            "kwargs": kwargs,
        }
    server = request.getfixturevalue("sftp_server")
    kwargs = {
        "port": port,
        "known_host_keys": server.host_key_line(port),
        "base_path": request.getfixturevalue("sftp_base_path"),
    }
    return {
        "module": "keg_storage.backends.sftp",
        "class": "SFTPStorage",
        "args": ["127.0.0.1", "root", str(server.client_key), None],
        "kwargs": kwargs,
    }


@pytest.mark.parametrize("backend", sorted(CASES))
def test_nothing_printed_when_a_download_is_cut(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """A download whose connection is reset half-way is retried and completes, and no SDK says
    a word about it on stderr (azure-core's transport would print "Unable to stream
    download."); only the retry line (for a request sent without the SDK's pipeline, the line
    that says it goes again through the SDK)."""
    storage: StorageBackend = request.getfixturevalue(f"backend_{backend}")
    data = os.urandom(12 * 1024 * 1024)
    storage.upload(io.BytesIO(data), "data.bin")
    target = {"s3": "seaweedfs", "azure": "azurite", "sftp": "sftp_server"}[backend]
    server = request.getfixturevalue(target)
    server_port = server.ports["s3.port"] if backend == "s3" else server.port
    with FaultProxy("127.0.0.1", server_port) as proxy:
        proxy.cut_after(3 * 1024 * 1024, "downstream")
        completed = subprocess.run(
            [sys.executable, "-c", CUT_SCRIPT, json.dumps(_through(backend, request, proxy.port))],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=Path(__file__).parent.parent,
        )
        assert not proxy.armed  # the cut fired
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == hashlib.sha256(data).hexdigest()
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert re.fullmatch(
        rf"{backend} '{backend}': \w+ data\.bin( at byte \d+)? failed \([^)]+\) at "
        rf"\S+:{proxy.port}\S*; (retrying \(attempt 2 of \d\)|sending it again through the SDK)",
        lines[0],
    ), lines
