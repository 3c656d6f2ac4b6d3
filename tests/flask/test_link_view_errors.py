"""What a person sees when a link fails (issue 14, point 6), through werkzeug's real server:
every kind of StorageError becomes a status and one plain sentence, never a traceback page, and
describe_storage_error words each path rule of the real backends the same way."""

from __future__ import annotations

import io
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flask
import pytest
import requests
from flask.views import MethodView

from keg_storage import (
    FileExistsInStorageError,
    InvalidPathError,
    LinkViewMixin,
    LocalFSStorage,
    MemoryStorage,
    PreconditionFailedError,
    SFTPStorage,
    StorageBackend,
    StorageError,
)
from keg_storage.plugin import describe_storage_error

from .conftest import ServerThread

SECRET = "errors-secret"


class LinkView(LinkViewMixin, MethodView):
    """Serves every backend of the test app: the one whose name signed the token."""

    backends: dict[str, StorageBackend] = {}

    def get_storage_backend(self) -> LocalFSStorage:
        name = flask.request.args["backend"]
        return self.backends[name]  # type: ignore[return-value]


class NoExtraArgsMemory(MemoryStorage):
    """A store whose service keeps no content type (a real configuration attribute)."""

    supported_extra_args = frozenset()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "files"
    path.mkdir()
    return path


@dataclass
class Served:
    """The app on its real server, and the backends its link view serves (by name)."""

    app: flask.Flask
    server: ServerThread
    backends: dict[str, StorageBackend]

    def url(
        self,
        backend: str,
        path: str,
        operation: str,
        expire: timedelta = timedelta(minutes=5),
    ) -> str:
        with self.app.test_request_context():
            return self.backends[backend].link_to(path, operation, expire, backend=backend)


@pytest.fixture
def served(root: Path) -> Iterator[Served]:
    backends: dict[str, StorageBackend] = {
        "files": LocalFSStorage(root, linked_endpoint="link", secret_key=SECRET, name="files"),
        "plain": NoExtraArgsMemory(name="plain", linked_endpoint="link", secret_key=SECRET),
        "down": SFTPStorage(
            "127.0.0.1",
            username="nobody",
            password="unused",
            port=closed_port(),
            host_key_policy="auto_add",
            timeout=2,
            retry=0,
            linked_endpoint="link",
            secret_key=SECRET,
            name="down",
        ),
    }
    app = flask.Flask(__name__)
    app.add_url_rule("/link", view_func=LinkView.as_view("link"))
    LinkView.backends = backends
    with ServerThread(app) as server:
        yield Served(app, server, backends)
    for backend in backends.values():
        backend.close()


def assert_plain(response: requests.Response, status: int, message: str) -> None:
    assert (response.status_code, response.text) == (status, message)
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_missing_file_is_a_404_with_a_sentence(
    served: Served,
) -> None:
    response = requests.get(served.url("files", "gone.txt", "download"), timeout=10)
    assert_plain(response, 404, "This file does not exist: it may have been moved or deleted.")
    head = requests.head(served.url("files", "gone.txt", "download"), timeout=10)
    assert (head.status_code, head.text) == (404, "")


def test_a_folder_in_the_way_is_a_409(served: Served, root: Path) -> None:
    (root / "docs").mkdir()
    (root / "docs" / "a.txt").write_bytes(b"a")
    response = requests.put(served.url("files", "docs", "upload"), b"x", timeout=10)
    assert_plain(response, 409, "A folder already has this name.")
    response = requests.put(served.url("files", "docs/a.txt/b.txt", "upload"), b"x", timeout=10)
    assert_plain(response, 409, "A file already has the name of a folder in this path.")
    assert sorted(p.name for p in (root / "docs").iterdir()) == ["a.txt"]


def test_a_symlink_in_the_path_is_a_400(served: Served, root: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    (root / "escape").symlink_to(outside)
    response = requests.get(served.url("files", "escape/secret.txt", "download"), timeout=10)
    assert_plain(
        response,
        400,
        "This file name is not allowed: it leads through a symbolic link, which this storage "
        "does not follow.",
    )


def test_access_refused_by_the_file_system_is_a_403(served: Served, root: Path) -> None:
    # The tests run as root, whom file modes do not stop: an immutable file refuses even root.
    (root / "locked.txt").write_bytes(b"locked")
    subprocess.run(["chattr", "+i", str(root / "locked.txt")], check=True)
    try:
        response = requests.delete(served.url("files", "locked.txt", "remove"), timeout=10)
    finally:
        subprocess.run(["chattr", "-i", str(root / "locked.txt")], check=True)
    assert_plain(response, 403, "The storage refused access to this file.")
    assert (root / "locked.txt").read_bytes() == b"locked"


def test_an_operation_the_storage_cannot_do_is_a_400(
    served: Served,
) -> None:
    response = requests.put(
        served.url("plain", "typed.txt", "upload"),
        b"x",
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert_plain(response, 400, "This storage cannot do that with this file.")
    assert not served.backends["plain"].exists("typed.txt")


def test_an_unreachable_storage_is_a_503_not_a_traceback(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    response = requests.get(served.url("down", "a.txt", "download"), timeout=30)
    assert_plain(
        response, 503, "The storage cannot be reached right now. Please try again in a minute."
    )
    assert response.headers["Retry-After"] == "5"
    logged = [r for r in caplog.records if r.name == "keg_storage.plugin"]
    assert [r.levelname for r in logged] == ["ERROR"]
    assert logged[0].exc_info is not None  # the operator gets the traceback, the user does not


def test_bad_links_say_what_is_wrong(
    served: Served,
) -> None:
    files = served.backends["files"]
    files.upload(io.BytesIO(b"report"), "report.txt")
    base = f"{served.server.url}/link?backend=files"
    assert_plain(requests.get(base, timeout=10), 404, "This link is incomplete: it has no token.")
    assert_plain(
        requests.get(base + "&token=not-a-jwt", timeout=10),
        400,
        "This link is damaged: check that it was copied whole.",
    )
    download = served.url("files", "report.txt", "download")
    token = parse_qs(urlsplit(download).query)["token"][0]
    forged = download.replace(token, token[:-4] + ("AAAA" if token[-4:] != "AAAA" else "BBBB"))
    assert_plain(requests.get(forged, timeout=10), 403, "This link is not valid.")
    assert_plain(
        requests.put(download, b"x", timeout=10), 403, "This link does not allow uploading."
    )
    assert_plain(requests.delete(download, timeout=10), 403, "This link does not allow deleting.")
    upload = served.url("files", "report.txt", "upload")
    assert_plain(requests.get(upload, timeout=10), 403, "This link does not allow downloading.")

    expiring = served.url("files", "report.txt", "download", expire=timedelta(seconds=1))
    time.sleep(2.1)
    assert_plain(
        requests.get(expiring, timeout=10), 403, "This link has expired: ask for a new one."
    )
    assert files.exists("report.txt")


def path_error(backend: StorageBackend, path: str) -> InvalidPathError:
    with pytest.raises(InvalidPathError) as caught:
        backend.open(path, "w")
    return caught.value


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("..", 'This file name is not allowed: "." and ".." cannot be used as names.'),
        ("a/../b.txt", 'This file name is not allowed: "." and ".." cannot be used as names.'),
        (
            "line\nbreak.txt",
            "This file name is not allowed: it contains a control character (such as a line "
            "break or a tab).",
        ),
        (
            "a" * 400 + ".txt",
            "This file name is not allowed: it is too long (a name can have at most 255 bytes).",
        ),
        ("folder/", 'This file name is not allowed: it ends with "/", which names a folder.'),
        ("", "This file name is not allowed: it is empty."),
    ],
)
def test_every_path_rule_in_plain_words(tmp_path: Path, path: str, message: str) -> None:
    with LocalFSStorage(tmp_path, name="files") as backend:
        assert describe_storage_error(path_error(backend, path)) == (400, message)


def test_long_keys_and_refused_characters_in_plain_words() -> None:
    backend = MemoryStorage()
    backend.max_key_bytes = 1024  # S3's and Azure's limit
    backend.unsupported_path_characters = "\\"  # what Azure refuses
    deep = "/".join(["d" * 200] * 6)
    assert describe_storage_error(path_error(backend, deep)) == (
        400,
        "This file name is not allowed: it is too long (1205 bytes; this storage keeps at most "
        "1024).",
    )
    assert describe_storage_error(path_error(backend, "back\\slash.txt")) == (
        400,
        'This file name is not allowed: this storage cannot keep the character "\\" in a name.',
    )


def test_other_storage_failures_are_plain_server_errors() -> None:
    assert describe_storage_error(StorageError("disk full", backend="x", path="a")) == (
        500,
        "The storage failed to complete this request. Please try again later.",
    )


def test_a_body_over_the_limit_is_a_413_with_the_limit(served: Served) -> None:
    served.app.config["MAX_CONTENT_LENGTH"] = 1_500_000
    response = requests.put(served.url("files", "big.bin", "upload"), b"x" * 1_500_001, timeout=10)
    assert_plain(response, 413, "This file is larger than the server accepts (at most 1.5 MB).")
    assert not served.backends["files"].exists("big.bin")


def test_conditional_write_failures_in_plain_words() -> None:
    storage = MemoryStorage()
    storage.upload(io.BytesIO(b"v1"), "a.txt")
    with pytest.raises(FileExistsInStorageError) as exists:
        storage.upload(io.BytesIO(b"v2"), "a.txt", overwrite=False)
    assert describe_storage_error(exists.value) == (409, "A file with this name already exists.")
    with pytest.raises(PreconditionFailedError) as changed:
        storage.upload(io.BytesIO(b"v2"), "a.txt", if_match='"stale"')
    assert describe_storage_error(changed.value) == (
        412,
        "The file was changed by someone else: reload it and try again.",
    )
