"""LinkViewMixin through Flask's test client: every status code and header it promises."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from pathlib import Path

import arrow
import flask
import jwt
import pytest
from flask.testing import FlaskClient
from flask.views import MethodView
from flask_wtf.csrf import CSRFProtect

from keg_storage import InternalLinkTokenData, LinkViewMixin, LocalFSStorage, MemoryStorage

from .conftest import SECRET, make_app
from .helpers import link


@pytest.fixture
def stored(files: LocalFSStorage) -> bytes:
    data = bytes(range(256)) * 40
    files.upload(io.BytesIO(data), "docs/report.bin")
    return data


def test_download_streams_the_file_with_its_headers(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    response = client.get(link(app, files, "docs/report.bin", "download"))
    assert response.status_code == 200
    assert response.data == stored
    assert response.headers["Content-Length"] == str(len(stored))
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Content-Disposition" not in response.headers
    info = files.stat("docs/report.bin")
    assert response.headers["ETag"] == info.etag
    assert response.last_modified == info.last_modified.floor("second").datetime


def test_head_sends_the_headers_without_a_body(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    response = client.head(link(app, files, "docs/report.bin", "download"))
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(stored))
    assert response.data == b""


def test_signed_content_type_and_ascii_filename(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    url = link(
        app,
        files,
        "docs/report.bin",
        "download",
        output_path='exports/Q1 "final".pdf',
        content_type="application/pdf",
    )
    response = client.get(url)
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == ('attachment; filename="Q1 \\"final\\".pdf"')


def test_non_ascii_filename_is_sent_as_filename_star(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    url = link(app, files, "docs/report.bin", "download", output_path="Bericht für Jürgen €.txt")
    response = client.get(url)
    assert response.headers["Content-Disposition"] == (
        'attachment; filename="Bericht fur Jurgen _.txt"; '
        "filename*=UTF-8''Bericht%20f%C3%BCr%20J%C3%BCrgen%20%E2%82%AC.txt"
    )
    url = link(app, files, "docs/report.bin", "download", output_path="報告.txt")
    response = client.get(url)
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"__.txt\"; filename*=UTF-8''%E5%A0%B1%E5%91%8A.txt"
    )


def test_conditional_requests_answer_304(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    url = link(app, files, "docs/report.bin", "download")
    first = client.get(url)
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    by_etag = client.get(url, headers={"If-None-Match": etag})
    assert by_etag.status_code == 304
    assert by_etag.data == b""
    assert by_etag.headers["ETag"] == etag
    by_date = client.get(url, headers={"If-Modified-Since": last_modified})
    assert by_date.status_code == 304
    other = client.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200
    assert other.data == stored


def test_range_requests(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    url = link(app, files, "docs/report.bin", "download")
    partial = client.get(url, headers={"Range": "bytes=100-199"})
    assert partial.status_code == 206
    assert partial.data == stored[100:200]
    assert partial.headers["Content-Range"] == f"bytes 100-199/{len(stored)}"
    assert partial.headers["Content-Length"] == "100"

    tail = client.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206
    assert tail.data == stored[-10:]

    resumed = client.get(url, headers={"Range": f"bytes={len(stored) - 5}-"})
    assert resumed.data == stored[-5:]

    etag = partial.headers["ETag"]
    matching = client.get(url, headers={"Range": "bytes=0-0", "If-Range": etag})
    assert matching.status_code == 206
    assert matching.data == stored[:1]
    changed = client.get(url, headers={"Range": "bytes=0-0", "If-Range": '"old"'})
    assert changed.status_code == 200
    assert changed.data == stored

    unsatisfiable = client.get(url, headers={"Range": f"bytes={len(stored)}-"})
    assert unsatisfiable.status_code == 416
    assert unsatisfiable.headers["Content-Range"] == f"bytes */{len(stored)}"


def test_upload_with_put_and_post(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, storage_root: Path
) -> None:
    url = link(app, files, "in/put.txt", "upload")
    response = client.put(url, data=b"put body", content_type="text/plain")
    assert response.status_code == 200
    assert response.data == b"OK"
    assert (storage_root / "in" / "put.txt").read_bytes() == b"put body"

    url = link(app, files, "in/post.txt", "upload")
    response = client.post(url, data=b"post body")
    assert response.status_code == 200
    assert (storage_root / "in" / "post.txt").read_bytes() == b"post body"


def test_upload_stores_the_signed_content_type(
    app: flask.Flask, client: FlaskClient, memory: MemoryStorage
) -> None:
    url = link(app, memory, "a.csv", "upload", content_type="text/csv")
    assert client.put(url, data=b"a,b\n", content_type="text/plain").status_code == 200
    assert memory.stat("a.csv").content_type == "text/csv"
    url = link(app, memory, "b.json", "upload")
    assert client.put(url, data=b"{}", content_type="application/json").status_code == 200
    assert memory.stat("b.json").content_type == "application/json"


def test_upload_over_max_content_length_is_refused_and_stores_nothing(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, storage_root: Path
) -> None:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    url = link(app, files, "big.bin", "upload")
    response = client.put(url, data=b"x" * 1001)
    assert response.status_code == 413
    assert not files.exists("big.bin")

    response = client.put(  # a chunked body: no Content-Length, the server ends the stream
        url,
        input_stream=io.BytesIO(b"y" * 2000),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    assert not files.exists("big.bin")
    assert list(storage_root.iterdir()) == []

    response = client.put(url, data=b"z" * 1000)
    assert response.status_code == 200
    assert files.stat("big.bin").size == 1000


def test_delete_removes_the_file(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    response = client.delete(link(app, files, "docs/report.bin", "remove"))
    assert response.status_code == 200
    assert response.data == b"OK"
    assert not files.exists("docs/report.bin")


def test_one_link_may_allow_several_operations(
    app: flask.Flask, client: FlaskClient, memory: MemoryStorage
) -> None:
    url = link(app, memory, "multi.txt", "dur")
    assert client.put(url, data=b"1").status_code == 200
    assert client.get(url).data == b"1"
    assert client.delete(url).status_code == 200
    assert client.get(url).status_code == 404


def test_status_codes_for_bad_requests(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    assert client.get("/files/link").status_code == 404
    assert client.get("/files/link?token=").status_code == 404
    assert client.get("/files/link?token=not-a-jwt").status_code == 400
    assert client.get("/files/link?token=a.b.c").status_code == 400

    url = link(app, files, "docs/report.bin", "download")
    assert (
        client.get(url[:-4] + ("AAAA" if not url.endswith("AAAA") else "BBBB")).status_code == 403
    )

    other = LocalFSStorage(files.root, linked_endpoint="files_link", secret_key="another secret")
    forged = link(app, other, "docs/report.bin", "download")
    assert client.get(forged).status_code == 403

    renamed = LocalFSStorage(files.root, linked_endpoint="files_link", secret_key=SECRET)
    assert renamed.name != files.name
    assert client.get(link(app, renamed, "docs/report.bin", "download")).status_code == 403

    none_alg = jwt.encode(
        {"key": "docs/report.bin", "op": "d", "exp": int(time.time()) + 60}, None, "none"
    )
    assert client.get(f"/files/link?token={none_alg}").status_code == 403

    assert client.get(link(app, files, "missing.txt", "download")).status_code == 404
    assert client.head(link(app, files, "missing.txt", "download")).status_code == 404
    assert client.patch(link(app, files, "docs/report.bin", "download")).status_code == 405


def test_expired_link_is_forbidden(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    url = link(app, files, "docs/report.bin", "download", expire=timedelta(seconds=1))
    assert client.get(url).status_code == 200
    time.sleep(2.1)
    assert client.get(url).status_code == 403


def test_wrong_operation_is_forbidden(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    download = link(app, files, "docs/report.bin", "download")
    upload = link(app, files, "docs/report.bin", "upload")
    remove = link(app, files, "docs/report.bin", "remove")
    assert client.put(download, data=b"x").status_code == 403
    assert client.post(download, data=b"x").status_code == 403
    assert client.delete(download).status_code == 403
    assert client.get(upload).status_code == 403
    assert client.delete(upload).status_code == 403
    assert client.get(remove).status_code == 403
    assert client.put(remove, data=b"x").status_code == 403
    assert files.stat("docs/report.bin").size == len(stored)


def test_key_rotation(app: flask.Flask, storage_root: Path) -> None:
    old = LocalFSStorage(storage_root, linked_endpoint="files_link", secret_key="old", name="f")
    old.upload(io.BytesIO(b"rotated"), "r.txt")
    old_link = link(app, old, "r.txt", "download")

    rotated_app = make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": "f",
                    "root": storage_root,
                    "linked_endpoint": "files_link",
                    "secret_key": ["new", "old"],
                },
            )
        ]
    )
    with rotated_app.test_client() as client:
        assert client.get(old_link).data == b"rotated"
        with rotated_app.app_context():
            rotated = rotated_app.extensions["keg_storage"].get("f")
        new_link = link(rotated_app, rotated, "r.txt", "download")
        assert client.get(new_link).data == b"rotated"
        with rotated_app.test_request_context():
            token = new_link.split("token=")[1]
            LocalFSStorage(storage_root, secret_key="new", name="f").deserialize_link_token(token)

    retired_app = make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": "f",
                    "root": storage_root,
                    "linked_endpoint": "files_link",
                    "secret_key": "new",
                },
            )
        ]
    )
    with retired_app.test_client() as client:
        assert client.get(old_link).status_code == 403
        assert client.get(new_link).data == b"rotated"


class RootedView(LinkViewMixin, MethodView):
    """Overrides every hook of keg-storage 0.5."""

    uploads: list[InternalLinkTokenData] = []
    deletes: list[InternalLinkTokenData] = []
    backend = MemoryStorage(name="hooked", linked_endpoint="hooked", secret_key="hook-secret")

    def get_storage_backend(self) -> MemoryStorage:
        return self.backend

    def get_request_token(self) -> str | None:
        return flask.request.headers.get("X-Link-Token")

    def on_upload_success(self, token_data: InternalLinkTokenData) -> tuple[str, int]:
        self.uploads.append(token_data)
        return f"stored {token_data.path}", 201

    def on_delete_success(self, token_data: InternalLinkTokenData) -> tuple[str, int]:
        self.deletes.append(token_data)
        return "", 204


def test_hooks_can_be_overridden() -> None:
    app = flask.Flask(__name__)
    app.add_url_rule("/hooked", view_func=RootedView.as_view("hooked"))
    backend = RootedView.backend
    token = backend.create_link_token(path="h.txt", operation="dur", expire=timedelta(minutes=1))
    with app.test_client() as client:
        assert client.put("/hooked", data=b"hook").status_code == 404
        response = client.put("/hooked", data=b"hook", headers={"X-Link-Token": token})
        assert (response.status_code, response.data) == (201, b"stored h.txt")
        assert client.get("/hooked", headers={"X-Link-Token": token}).data == b"hook"
        assert client.delete("/hooked", headers={"X-Link-Token": token}).status_code == 204
    assert [d.path for d in RootedView.uploads] == ["h.txt"]
    assert [d.path for d in RootedView.deletes] == ["h.txt"]
    assert not backend.exists("h.txt")


def test_a_view_with_no_backend_says_what_to_do() -> None:
    class Bare(LinkViewMixin, MethodView):
        pass

    app = flask.Flask(__name__)
    app.add_url_rule("/bare", view_func=Bare.as_view("bare"))
    with (
        app.test_request_context("/bare?token=x"),
        pytest.raises(NotImplementedError, match="get_storage_backend"),
    ):
        Bare().get_storage_backend()


@pytest.mark.parametrize("csrf_first", [True, False])
def test_link_views_are_exempt_from_csrf(storage_root: Path, csrf_first: bool) -> None:
    app = flask.Flask(__name__)
    app.config.update(
        SECRET_KEY="csrf-app",
        KEG_STORAGE_PROFILES=[
            (
                LocalFSStorage,
                {
                    "name": "f",
                    "root": storage_root,
                    "linked_endpoint": "bp.link",
                    "secret_key": "s",
                },
            )
        ],
    )
    csrf = CSRFProtect()
    if csrf_first:
        csrf.init_app(app)
    from keg_storage import Storage

    Storage(app)
    if not csrf_first:
        csrf.init_app(app)

    class BlueprintLinkView(LinkViewMixin, MethodView):
        decorators = ()  # replacing the mixin's decorators keeps the exemption

    blueprint = flask.Blueprint("bp", __name__)
    blueprint.add_url_rule("/link", view_func=BlueprintLinkView.as_view("link"))
    blueprint.add_url_rule("/form", view_func=lambda: "posted", methods=["POST"])
    app.register_blueprint(blueprint)

    with app.test_client() as client:
        assert client.post("/form", data={"a": "b"}).status_code == 400
        with app.app_context():
            backend = app.extensions["keg_storage"].get("f")
        url = link(app, backend, "c.txt", "upload")
        assert client.put(url, data=b"no csrf token").status_code == 200
        assert client.post(url, data=b"no csrf token").status_code == 200
        assert client.delete(link(app, backend, "c.txt", "remove")).status_code == 200


def test_csrf_exemption_for_a_view_created_in_an_app_context() -> None:
    app = flask.Flask(__name__)
    app.config["SECRET_KEY"] = "csrf-app"
    CSRFProtect(app)
    backend = MemoryStorage(name="m", linked_endpoint="plain", secret_key="s")

    class PlainView(LinkViewMixin, MethodView):
        def get_storage_backend(self) -> MemoryStorage:
            return backend

    with app.app_context():
        app.add_url_rule("/plain", view_func=PlainView.as_view("plain"))
    with app.test_client() as client:
        url = link(app, backend, "p.txt", "upload")
        assert client.put(url, data=b"ok").status_code == 200
    assert backend.exists("p.txt")


def test_memory_backend_is_served_too(
    app: flask.Flask, client: FlaskClient, memory: MemoryStorage
) -> None:
    url = link(app, memory, "m/one.txt", "upload")
    assert url.startswith("/memory/link?")
    assert client.put(url, data=b"in memory").status_code == 200
    response = client.get(link(app, memory, "m/one.txt", "download", output_path="one.txt"))
    assert response.data == b"in memory"
    assert response.headers["ETag"] == memory.stat("m/one.txt").etag
    assert response.headers["Content-Disposition"] == 'attachment; filename="one.txt"'
    assert (
        response.last_modified
        == arrow.get(memory.stat("m/one.txt").last_modified).floor("second").datetime
    )


def test_upload_onto_a_directory_is_a_conflict(
    app: flask.Flask, client: FlaskClient, files: LocalFSStorage, stored: bytes
) -> None:
    response = client.put(link(app, files, "docs", "upload"), data=b"x")
    assert response.status_code == 409
    assert client.get(link(app, files, "docs", "download")).status_code == 404


def test_one_view_serves_several_profiles(tmp_path: Path) -> None:
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        root.mkdir()
    app = make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": root.name,
                    "root": root,
                    "linked_endpoint": "files_link",
                    "secret_key": "k",
                },
            )
            for root in roots
        ]
        + [(MemoryStorage, {"name": "m", "linked_endpoint": "files_link", "secret_key": "k"})]
    )
    (roots[1] / "f.txt").write_bytes(b"from b")
    with app.app_context():
        state = app.extensions["keg_storage"]
        second, memory = state.get("b"), state.get("m")
    memory.upload(io.BytesIO(b"from memory"), "f.txt")
    with app.test_client() as client:
        assert client.get(link(app, second, "f.txt", "download")).data == b"from b"
        assert client.get(link(app, memory, "f.txt", "download")).data == b"from memory"
        assert client.get("/files/link?token=garbage").status_code == 400
