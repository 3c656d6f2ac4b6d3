"""The link view on every backend with internal links that has a test fixture (LocalFS, Memory,
and SFTP once its fixture exists), each on its real server."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta

import flask
import pytest
from flask.views import MethodView

from keg_storage import InternalLinksStorageBackend, LinkViewMixin
from tests.conftest import BACKENDS

INTERNAL_LINK_BACKENDS = [name for name in BACKENDS if name in {"localfs", "memory", "sftp"}]


@pytest.fixture(params=INTERNAL_LINK_BACKENDS)
def backend(request: pytest.FixtureRequest) -> InternalLinksStorageBackend:
    backend = request.getfixturevalue(f"backend_{request.param}")
    assert isinstance(backend, InternalLinksStorageBackend)
    return backend


def test_round_trip_through_the_link_view(backend: InternalLinksStorageBackend) -> None:
    class View(LinkViewMixin, MethodView):
        def get_storage_backend(self) -> InternalLinksStorageBackend:
            return backend

    app = flask.Flask(__name__)
    app.add_url_rule("/link", view_func=View.as_view("link"))
    backend.linked_endpoint = "link"
    data = os.urandom(3 * 1024 * 1024 + 11)

    def url(path: str, operation: str, **options: str) -> str:
        with app.test_request_context():
            return backend.link_to(path, operation, timedelta(minutes=5), **options)

    with app.test_client() as client:
        assert client.put(url("dir/ü file.bin", "upload"), data=data).status_code == 200
        assert backend.stat("dir/ü file.bin").size == len(data)

        download = url("dir/ü file.bin", "download", output_path="ü file.bin")
        response = client.get(download)
        assert response.status_code == 200
        assert hashlib.sha256(response.data).digest() == hashlib.sha256(data).digest()
        assert response.headers["Content-Length"] == str(len(data))
        assert "filename*=UTF-8''%C3%BC%20file.bin" in response.headers["Content-Disposition"]

        etag = response.headers["ETag"]
        assert client.get(download, headers={"If-None-Match": etag}).status_code == 304
        middle = client.get(download, headers={"Range": "bytes=1048576-2097151"})
        assert middle.status_code == 206
        assert middle.data == data[1048576:2097152]

        assert client.delete(url("dir/ü file.bin", "remove")).status_code == 200
        assert not backend.exists("dir/ü file.bin")
        assert client.get(download).status_code == 404
