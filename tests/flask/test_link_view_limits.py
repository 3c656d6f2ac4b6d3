"""The link view cannot be used to starve the app (CONTRACT §5): a cap on concurrent link
transfers per backend (503 with Retry-After beyond it), an idle timeout on upload bodies, and
stalled clients that pin neither the pool nor memory. Clients are raw sockets against werkzeug's
threaded server; the SFTP backend is the real sshd."""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import flask
import pytest
import requests
from flask.views import MethodView

from keg_storage import InternalLinksStorageBackend, LinkViewMixin, LocalFSStorage
from keg_storage.backends.sftp import SFTPStorage

from .conftest import ServerThread, make_app
from .helpers import PeakRSS, link

STALLED_CLIENTS = 64
BIG = 16 * 1024 * 1024  # more than the socket buffers of a client that never reads
MAX_RSS_GROWTH = 64 * 1024 * 1024


def serve(backend: InternalLinksStorageBackend, **config: object) -> flask.Flask:
    """An app with a link view for ``backend`` and a page that stats a file through it."""

    class View(LinkViewMixin, MethodView):
        def get_storage_backend(self) -> InternalLinksStorageBackend:
            return backend

    app = flask.Flask(__name__)
    app.config.update(config)
    app.add_url_rule("/link", view_func=View.as_view("link"))
    app.add_url_rule("/size", view_func=lambda: str(backend.stat("big.bin").size))
    backend.linked_endpoint = "link"
    return app


def url_of(app: flask.Flask, backend: InternalLinksStorageBackend, path: str, op: str) -> str:
    with app.app_context():
        return backend.link_to(path, op, timedelta(minutes=10))


def send_head(url: str, method: str, headers: dict[str, str], *, rcvbuf: int = 0) -> socket.socket:
    """A connection that sent a request's head (and nothing of its body)."""
    parts = urlsplit(url)
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect((parts.hostname, parts.port))
    lines = [f"{method} {parts.path}?{parts.query} HTTP/1.1", f"Host: {parts.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def status_of(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and head of the response on ``sock``."""
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    return int(head.split(b" ", 2)[1]), head


def leased_sessions(backend: SFTPStorage) -> int:
    return backend.pool_stats().sessions_in_use


def wait_for(condition: object, seconds: float = 15) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def sftp_served(backend_sftp: SFTPStorage) -> Iterator[tuple[flask.Flask, ServerThread]]:
    backend_sftp.upload(io.BytesIO(os.urandom(BIG)), "big.bin")
    app = serve(backend_sftp)
    with ServerThread(app) as server:
        yield app, server


def test_stalled_link_clients_do_not_starve_the_app(
    backend_sftp: SFTPStorage, sftp_served: tuple[flask.Flask, ServerThread]
) -> None:
    app, server = sftp_served
    download = url_of(app, backend_sftp, "big.bin", "download")
    upload = url_of(app, backend_sftp, "new.bin", "upload")
    with requests.get(download, headers={"Range": "bytes=0-0"}, timeout=10) as warm_up:
        assert warm_up.status_code == 206
    with ExitStack() as clients, PeakRSS() as memory:
        for number in range(STALLED_CLIENTS):
            if number % 2:  # declares a body of 16 MiB, sends one byte of it
                sock = send_head(upload, "PUT", {"Content-Length": str(BIG)})
                sock.sendall(b"x")
            else:  # asks for 16 MiB and never reads
                sock = send_head(download, "GET", {}, rcvbuf=4096)
            clients.callback(sock.close)

        # Beyond the cap, a link holder is told to come back later.
        def refused() -> bool:
            with requests.get(download, stream=True, timeout=10) as response:
                return response.status_code == 503 and response.headers["Retry-After"] == "5"

        assert wait_for(refused)
        for _ in range(5):  # the app's other storage calls still answer, promptly
            started = time.monotonic()
            with requests.get(f"{server.url}/size", timeout=10) as response:
                assert response.status_code == 200 and response.text == str(BIG)
            assert time.monotonic() - started < 2
    assert memory.growth < MAX_RSS_GROWTH, f"RSS grew by {memory.growth / 2**20:.1f} MiB"

    # The stalled clients are gone: every session is back in the pool, links work again.
    assert wait_for(lambda: leased_sessions(backend_sftp) == 0)
    with requests.get(download, timeout=30) as response:
        assert response.status_code == 200 and len(response.content) == BIG
    assert not backend_sftp.exists("new.bin")


def files_on_disk(backend: InternalLinksStorageBackend) -> list[Path]:
    """Every file under the backend's root on the local disk (sshd serves the local disk)."""
    root = Path(backend.base_path if isinstance(backend, SFTPStorage) else backend.root)
    return [path for path in root.rglob("*") if path.is_file()]


@pytest.mark.parametrize("backend_name", ["sftp", "localfs"])
def test_an_upload_body_that_stops_arriving_is_aborted(
    request: pytest.FixtureRequest, backend_name: str
) -> None:
    backend = request.getfixturevalue(f"backend_{backend_name}")
    app = serve(backend, KEG_STORAGE_LINK_IDLE_TIMEOUT=0.5)
    with ServerThread(app):
        url = url_of(app, backend, "dir/late.bin", "upload")
        with send_head(url, "PUT", {"Content-Length": "100000"}) as sock:
            sock.sendall(b"x" * 1000)
            status, head = status_of(sock)
        assert status == 408
        assert b"Connection: close" in head
        assert not backend.exists("dir/late.bin")
        assert files_on_disk(backend) == []  # no temp file left behind
    if isinstance(backend, SFTPStorage):
        assert wait_for(lambda: leased_sessions(backend) == 0)


def test_the_cap_comes_from_the_config_and_a_closed_response_frees_its_slot(
    storage_root: Path,
) -> None:
    app = make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": "files",
                    "root": storage_root,
                    "linked_endpoint": "files_link",
                    "secret_key": "s",
                },
            )
        ],
        KEG_STORAGE_LINK_MAX_TRANSFERS=1,
    )
    (storage_root / "a.txt").write_bytes(b"a" * 1000)
    with app.app_context():
        files = app.extensions["keg_storage"].get("files")
    with app.test_client() as client:
        url = link(app, files, "a.txt", "download")
        first = client.get(url, buffered=False)
        assert first.status_code == 200
        second = client.get(url)
        assert second.status_code == 503
        assert second.headers["Retry-After"] == "5"
        assert client.put(link(app, files, "b.txt", "upload"), data=b"b").status_code == 503
        assert first.get_data() == b"a" * 1000
        first.close()
        with client.get(url) as third:
            assert third.status_code == 200 and third.get_data() == b"a" * 1000
        assert client.put(link(app, files, "b.txt", "upload"), data=b"b").status_code == 200
