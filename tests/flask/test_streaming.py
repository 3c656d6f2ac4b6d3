"""The link view on a real HTTP server: 200 MiB through ``requests`` in bounded memory, a resumed
download with ``Range``, and a 200 MiB streamed upload."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import flask
import pytest
import requests

from keg_storage import LocalFSStorage

from .conftest import ServerThread, make_app
from .helpers import PeakRSS

SIZE = 200 * 1024 * 1024
CHUNK = 1024 * 1024
MAX_RSS_GROWTH = 32 * 1024 * 1024

pytestmark = pytest.mark.slow


def pattern_chunks() -> Iterator[bytes]:
    """200 MiB that differ chunk by chunk, so a misplaced range shows in the hash."""
    block = os.urandom(CHUNK)
    for index in range(SIZE // CHUNK):
        yield index.to_bytes(8, "big") + block[8:]


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("streaming")
    path = root / "big.bin"
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for chunk in pattern_chunks():
            out.write(chunk)
            digest.update(chunk)
    return root, digest.hexdigest()


@pytest.fixture
def served(big_file: tuple[Path, str]) -> Iterator[tuple[flask.Flask, ServerThread]]:
    root, _ = big_file
    app = make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": "files",
                    "root": root,
                    "linked_endpoint": "files_link",
                    "secret_key": "s",
                },
            )
        ],
        MAX_CONTENT_LENGTH=SIZE + 1,
    )
    with ServerThread(app) as server:
        yield app, server


def make_link(app: flask.Flask, path: str, operation: str) -> str:
    with app.app_context():
        backend = app.extensions["keg_storage"].get("files")
        return str(backend.link_to(path, operation, timedelta(minutes=10)))


def test_200_mib_download_in_bounded_memory_and_resume_with_range(
    served: tuple[flask.Flask, ServerThread], big_file: tuple[Path, str]
) -> None:
    app, server = served
    _, expected = big_file
    url = make_link(app, "big.bin", "download")
    assert url.startswith(server.url)
    with requests.Session() as session:
        session.get(url, headers={"Range": "bytes=0-0"}).close()  # warm up the server thread

        digest = hashlib.sha256()
        with PeakRSS() as memory, session.get(url, stream=True, timeout=60) as response:
            assert response.status_code == 200
            assert response.headers["Content-Length"] == str(SIZE)
            assert response.headers["Accept-Ranges"] == "bytes"
            received = 0
            for chunk in response.iter_content(CHUNK):
                digest.update(chunk)
                received += len(chunk)
        assert received == SIZE
        assert digest.hexdigest() == expected
        assert memory.growth < MAX_RSS_GROWTH, f"RSS grew by {memory.growth / 2**20:.1f} MiB"

        # An interrupted download: stop after ~80 MiB, then resume with Range.
        digest = hashlib.sha256()
        received = 0
        with session.get(url, stream=True, timeout=60) as response:
            etag = response.headers["ETag"]
            for chunk in response.iter_content(CHUNK):
                digest.update(chunk)
                received += len(chunk)
                if received >= 80 * CHUNK:
                    break
        headers = {"Range": f"bytes={received}-", "If-Range": etag}
        with session.get(url, headers=headers, stream=True, timeout=60) as response:
            assert response.status_code == 206
            assert response.headers["Content-Range"] == f"bytes {received}-{SIZE - 1}/{SIZE}"
            assert response.headers["Content-Length"] == str(SIZE - received)
            for chunk in response.iter_content(CHUNK):
                digest.update(chunk)
        assert digest.hexdigest() == expected


def test_200_mib_upload_is_streamed_to_storage(
    served: tuple[flask.Flask, ServerThread], big_file: tuple[Path, str]
) -> None:
    app, _ = served
    root, expected = big_file
    url = make_link(app, "uploaded.bin", "upload")
    try:
        with PeakRSS() as memory, open(root / "big.bin", "rb") as body:
            response = requests.put(url, data=body, timeout=120)
            response.close()
        assert response.status_code == 200
        assert memory.growth < MAX_RSS_GROWTH, f"RSS grew by {memory.growth / 2**20:.1f} MiB"
        digest = hashlib.sha256()
        with open(root / "uploaded.bin", "rb") as stored:
            while chunk := stored.read(CHUNK):
                digest.update(chunk)
        assert digest.hexdigest() == expected

        # A chunked body (no Content-Length) over MAX_CONTENT_LENGTH is refused, nothing stored.
        def too_much() -> Iterator[bytes]:
            yield from pattern_chunks()
            yield b"one byte too many"

        over = make_link(app, "over.bin", "upload")
        try:
            response = requests.put(over, data=too_much(), timeout=120)
            status = response.status_code
            response.close()
        except requests.ConnectionError:
            status = None  # the server may close the connection before the client finishes
        assert status in (413, None)
        assert not (root / "over.bin").exists()
    finally:
        (root / "uploaded.bin").unlink(missing_ok=True)
