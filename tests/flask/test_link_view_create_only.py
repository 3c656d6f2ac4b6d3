"""Create-only upload links (CONTRACT §9, issue 16): ``link_to(path, 'upload', expire,
overwrite=False)`` signs a claim that makes the link view upload with ``overwrite=False``, so a
browser upload never replaces a file; through werkzeug's real server, on Memory."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import jwt
import pytest
import requests

from keg_storage import MemoryStorage, UnsupportedOperationError
from keg_storage.testing import read

from .conftest import ServerThread
from .test_link_view_security import SECRET, LinkApp, make_app

EXISTS = "A file with this name already exists."


@pytest.fixture
def served() -> Iterator[tuple[LinkApp, ServerThread]]:
    app = make_app()
    with ServerThread(app) as server:
        yield app, server


def upload_link(app: LinkApp, path: str, overwrite: bool = True) -> str:
    with app.app_context():
        return app.backend.link_to(path, "upload", timedelta(minutes=5), overwrite=overwrite)


def put(url: str, data: bytes) -> requests.Response:
    with requests.put(url, data=data, timeout=30) as response:
        return response


def test_a_create_only_link_stores_once_then_answers_409(
    served: tuple[LinkApp, ServerThread],
) -> None:
    app, _ = served
    url = upload_link(app, "inbox/report.pdf", overwrite=False)
    first = put(url, b"first upload")
    assert (first.status_code, first.text) == (200, "OK")
    again = put(url, b"second upload")
    assert again.status_code == 409
    assert again.text == EXISTS
    assert again.headers["Content-Type"].startswith("text/plain")
    with app.app_context():
        assert read(app.backend, "inbox/report.pdf") == b"first upload"
        assert [entry.name for entry in app.backend.list()] == ["inbox/report.pdf"]


def test_a_create_only_link_never_replaces_a_file_stored_otherwise(
    served: tuple[LinkApp, ServerThread],
) -> None:
    app, _ = served
    url = upload_link(app, "taken.txt", overwrite=False)
    with app.app_context():
        app.backend.upload(io.BytesIO(b"stored by the app"), "taken.txt")
    response = put(url, b"from the browser")
    assert (response.status_code, response.text) == (409, EXISTS)
    with app.app_context():
        assert read(app.backend, "taken.txt") == b"stored by the app"


def test_plain_and_old_upload_links_still_replace(served: tuple[LinkApp, ServerThread]) -> None:
    app, server = served
    with app.app_context():
        app.backend.upload(io.BytesIO(b"v1"), "doc.txt")
    assert put(upload_link(app, "doc.txt"), b"v2").status_code == 200
    # A token signed before the claim existed: key and op only.
    key = hashlib.sha512(b"memsigner" + SECRET.encode()).digest()
    old = jwt.encode({"key": "doc.txt", "op": "u", "exp": int(time.time()) + 60}, key, "HS512")
    assert put(f"{server.url}/link?token={old}", b"v3").status_code == 200
    with app.app_context():
        assert read(app.backend, "doc.txt") == b"v3"


def test_racing_browsers_on_one_create_only_link(served: tuple[LinkApp, ServerThread]) -> None:
    app, _ = served
    url = upload_link(app, "raced.bin", overwrite=False)
    start = threading.Barrier(8)
    answers: dict[int, requests.Response] = {}

    def upload(racer: int) -> None:
        start.wait()
        answers[racer] = put(url, f"upload {racer}".encode() * 10_000)

    threads = [threading.Thread(target=upload, args=(racer,)) for racer in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [racer for racer, answer in answers.items() if answer.status_code == 200]
    assert len(winners) == 1, {racer: answer.status_code for racer, answer in answers.items()}
    assert all(
        (answer.status_code, answer.text) == (409, EXISTS)
        for racer, answer in answers.items()
        if racer not in winners
    )
    with app.app_context():
        assert read(app.backend, "raced.bin") == f"upload {winners[0]}".encode() * 10_000


def test_create_link_token_signs_the_claim_too() -> None:
    backend = MemoryStorage(name="mem", secret_key=SECRET)
    token = backend.create_link_token(
        path="a.txt", operation="upload", expire=timedelta(minutes=1), overwrite=False
    )
    assert jwt.decode(token, options={"verify_signature": False})["overwrite"] is False
    assert backend.deserialize_link_token(token).overwrite is False
    plain = backend.create_link_token(path="a.txt", operation="du", expire=timedelta(minutes=1))
    assert "overwrite" not in jwt.decode(plain, options={"verify_signature": False})
    assert backend.deserialize_link_token(plain).overwrite is True


class OverwritingMemory(MemoryStorage):
    """A backend with internal links that cannot write create-only."""

    capabilities = dataclasses.replace(MemoryStorage.capabilities, conditional_create=False)


def test_create_only_links_are_refused_where_the_backend_cannot_write_so() -> None:
    app = make_app()
    app.backend = OverwritingMemory(name="mem", linked_endpoint="link", secret_key=SECRET)
    with app.test_request_context(), pytest.raises(UnsupportedOperationError) as excinfo:
        app.backend.link_to("a.txt", "upload", timedelta(minutes=1), overwrite=False)
    assert str(excinfo.value) == (
        "create-only upload links (overwrite=False) are not supported "
        "(backend OverwritingMemory 'mem', path 'a.txt')"
    )
    with pytest.raises(UnsupportedOperationError):
        app.backend.create_link_token(
            path="a.txt", operation="u", expire=timedelta(minutes=1), overwrite=False
        )


@pytest.mark.parametrize(
    ("operation", "overwrite", "error", "message"),
    [
        ("download", False, ValueError, "overwrite=False applies to links that allow 'upload'"),
        ("remove", False, ValueError, "overwrite=False applies to links that allow 'upload'"),
        ("upload", "no", TypeError, "overwrite must be a bool, not str"),
        ("upload", 0, TypeError, "overwrite must be a bool, not int"),
    ],
)
def test_bad_overwrite_arguments_are_refused_at_signing(
    operation: str, overwrite: object, error: type[Exception], message: str
) -> None:
    app = make_app()
    with app.test_request_context(), pytest.raises(error) as excinfo:
        app.backend.link_to("a.txt", operation, timedelta(minutes=1), overwrite=overwrite)
    assert str(excinfo.value) == message
