"""CONTRACT §10 in Flask: per-request scoped views handed out by the extension, and the link
view serving their links (download and upload) through a real HTTP server, refusing them
outside their scope."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flask
import jwt
import pytest
import requests
from flask.views import MethodView

from keg_storage import LinkViewMixin, LocalFSStorage, Storage, StorageBackend

from .conftest import SECRET, ServerThread

TIMEOUT = 30


class TenantLinkView(LinkViewMixin, MethodView):
    """Serves the links of the tenant named in the route, and only those."""

    def get_storage_scope(self) -> str | None:
        assert flask.request.view_args is not None
        return f"tenants/{flask.request.view_args['tenant']}"


class WholeStoreLinkView(LinkViewMixin, MethodView):
    """Serves the profile's links unscoped: a scoped link resolves inside its own scope."""

    storage_profile = "files"


def tenant_storage(tenant: str) -> StorageBackend:
    """What the app's own views use per request: the profile's backend confined to the tenant."""
    return flask.current_app.extensions["keg_storage"].get("files").scoped(f"tenants/{tenant}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    app = flask.Flask(__name__)
    profile = {"name": "files", "root": tmp_path, "linked_endpoint": "tenant_link"}
    app.config.update(
        KEG_STORAGE_PROFILES=[(LocalFSStorage, {**profile, "secret_key": SECRET})],
        KEG_STORAGE_LINK_MAX_TRANSFERS=1,
    )
    Storage(app)
    app.add_url_rule("/t/<tenant>/link", view_func=TenantLinkView.as_view("tenant_link"))
    app.add_url_rule("/link", view_func=WholeStoreLinkView.as_view("whole_link"))

    @app.get("/t/<tenant>/links/<operation>/<path:name>")
    def sign(tenant: str, operation: str, name: str) -> str:
        return tenant_storage(tenant).link_to(name, operation, timedelta(minutes=5), tenant=tenant)

    @app.get("/t/<tenant>/files")
    def listing(tenant: str) -> list[str]:
        return [entry.name for entry in tenant_storage(tenant).list()]

    with ServerThread(app) as running:
        yield running


def signed(server: ServerThread, tenant: str, operation: str, name: str) -> str:
    response = requests.get(f"{server.url}/t/{tenant}/links/{operation}/{name}", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return response.text


def token_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["token"][0]


def test_a_tenants_links_upload_and_download_inside_its_scope(
    server: ServerThread, tmp_path: Path
) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)
    upload = signed(server, "acme", "upload", "reports/q1.bin")
    assert urlsplit(upload).path == "/t/acme/link"
    assert requests.put(upload, data=data, timeout=TIMEOUT).text == "OK"
    assert (tmp_path / "tenants" / "acme" / "reports" / "q1.bin").read_bytes() == data
    listing = requests.get(f"{server.url}/t/acme/files", timeout=TIMEOUT)
    assert listing.json() == ["reports/q1.bin"]
    assert requests.get(f"{server.url}/t/globex/files", timeout=TIMEOUT).json() == []

    download = requests.get(signed(server, "acme", "download", "reports/q1.bin"), timeout=TIMEOUT)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(data).digest()
    ranged = requests.get(
        signed(server, "acme", "download", "reports/q1.bin"),
        headers={"Range": "bytes=10-19"},
        timeout=TIMEOUT,
    )
    assert (ranged.status_code, ranged.content) == (206, data[10:20])


def test_a_link_is_refused_where_another_tenant_is_served(
    server: ServerThread, tmp_path: Path
) -> None:
    (tmp_path / "tenants" / "acme").mkdir(parents=True)
    (tmp_path / "tenants" / "acme" / "secret.txt").write_bytes(b"acme's")
    link = signed(server, "acme", "download", "secret.txt")
    elsewhere = link.replace("/t/acme/", "/t/globex/")
    for url in (elsewhere, link.replace("/t/acme/", "/t/acme-corp/")):
        refused = requests.get(url, timeout=TIMEOUT)
        assert (refused.status_code, refused.text) == (403, "This link is not valid.")
    upload = signed(server, "acme", "upload", "new.txt").replace("/t/acme/", "/t/globex/")
    refused = requests.put(upload, data=b"planted", timeout=TIMEOUT)
    assert (refused.status_code, refused.text) == (403, "This link is not valid.")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.txt")) == [
        "tenants/acme/secret.txt"
    ]


def test_a_tampered_scoped_link_is_refused(server: ServerThread, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_bytes(b"the whole store's")
    link = signed(server, "acme", "download", "a.txt")
    token = token_of(link)
    header, _, signature = token.split(".")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["key"], claims["scope"]) == ("a.txt", "tenants/acme/")
    for changed in ({"key": "../../outside.txt"}, {"scope": ""}, {"scope": "tenants/globex/"}):
        body = jwt.utils.base64url_encode(
            jwt.api_jws.json.dumps({**claims, **changed}).encode()
        ).decode()
        forged = link.replace(token, f"{header}.{body}.{signature}")
        for url in (forged, f"{server.url}/link?token={header}.{body}.{signature}"):
            refused = requests.get(url, timeout=TIMEOUT)
            assert (refused.status_code, refused.text) == (403, "This link is not valid.")


def test_the_whole_store_view_serves_a_scoped_link_inside_its_scope(
    server: ServerThread, tmp_path: Path
) -> None:
    (tmp_path / "tenants" / "acme").mkdir(parents=True)
    (tmp_path / "tenants" / "acme" / "a.txt").write_bytes(b"acme's a")
    (tmp_path / "a.txt").write_bytes(b"the root's a")
    token = token_of(signed(server, "acme", "download", "a.txt"))
    response = requests.get(f"{server.url}/link?token={token}", timeout=TIMEOUT)
    assert (response.status_code, response.content) == (200, b"acme's a")
    upload = token_of(signed(server, "globex", "upload", "b.txt"))
    stored = requests.put(f"{server.url}/link?token={upload}", data=b"globex's b", timeout=TIMEOUT)
    assert stored.text == "OK"
    assert (tmp_path / "tenants" / "globex" / "b.txt").read_bytes() == b"globex's b"
    assert not (tmp_path / "b.txt").exists()


def test_views_made_per_request_share_the_transfer_cap(
    server: ServerThread, tmp_path: Path
) -> None:
    for tenant in ("acme", "globex"):
        (tmp_path / "tenants" / tenant).mkdir(parents=True)
        (tmp_path / "tenants" / tenant / "big.bin").write_bytes(b"x" * (32 * 1024 * 1024))
    first = requests.get(signed(server, "acme", "download", "big.bin"), stream=True, timeout=30)
    try:
        assert first.status_code == 200
        second = requests.get(signed(server, "globex", "download", "big.bin"), timeout=TIMEOUT)
        assert (second.status_code, second.text) == (
            503,
            "Too many transfers at once; retry later.",
        )
    finally:
        first.close()
