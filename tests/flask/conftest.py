"""Flask apps for the integration tests: a LocalFS and a Memory profile served by a LinkView."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient
from flask.views import MethodView
from werkzeug.serving import BaseWSGIServer, make_server

from keg_storage import LinkViewMixin, LocalFSStorage, MemoryStorage, Storage

SECRET = "link-secret"


class LinkView(LinkViewMixin, MethodView):
    """The app's link endpoint; the profile is found through its ``linked_endpoint``."""


def make_app(profiles: list[Any], **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(SECRET_KEY="app-secret", KEG_STORAGE_PROFILES=profiles, **config)
    app.add_url_rule("/files/link", view_func=LinkView.as_view("files_link"))
    app.add_url_rule("/memory/link", view_func=LinkView.as_view("memory_link"))
    Storage(app)
    return app


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    root = tmp_path / "files"
    root.mkdir()
    return root


@pytest.fixture
def app(storage_root: Path) -> flask.Flask:
    return make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": "files",
                    "root": storage_root,
                    "linked_endpoint": "files_link",
                    "secret_key": SECRET,
                },
            ),
            (
                "keg_storage.backends.memory.MemoryStorage",
                {"name": "memory", "linked_endpoint": "memory_link", "secret_key": SECRET},
            ),
        ]
    )


@pytest.fixture
def client(app: flask.Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def files(app: flask.Flask) -> LocalFSStorage:
    with app.app_context():
        backend = app.extensions["keg_storage"].get("files")
    assert isinstance(backend, LocalFSStorage)
    return backend


@pytest.fixture
def memory(app: flask.Flask) -> MemoryStorage:
    with app.app_context():
        backend = app.extensions["keg_storage"].get("memory")
    assert isinstance(backend, MemoryStorage)
    return backend


class ServerThread:
    """A Flask app served by werkzeug's threaded server on a free port, in a thread."""

    def __init__(self, app: flask.Flask) -> None:
        self.server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        app.config["SERVER_NAME"] = f"127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
