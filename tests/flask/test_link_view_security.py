"""What a link view promises a hostile link holder (CONTRACT §5), on werkzeug's real server:
security headers on every response, active content only as an attachment, a CSRF exemption
for exactly the link view, and signed claims that can only be well-formed."""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import flask
import jwt
import pytest
import requests
from flask.views import MethodView
from flask_wtf.csrf import CSRFProtect

from keg_storage import LinkViewMixin, LocalFSStorage, MemoryStorage, Storage

from .conftest import ServerThread

SECRET = "security-secret"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "sandbox",
}


class LinkApp(flask.Flask):
    """An app whose link view serves its ``backend`` (no ``Storage``)."""

    backend: MemoryStorage


class View(LinkViewMixin, MethodView):
    def get_storage_backend(self) -> MemoryStorage:
        return cast(LinkApp, flask.current_app).backend


def make_app() -> LinkApp:
    app = LinkApp(__name__)
    app.config["SECRET_KEY"] = "app-secret"
    app.backend = MemoryStorage(name="mem", linked_endpoint="link", secret_key=SECRET)
    app.add_url_rule("/link", view_func=View.as_view("link"))
    return app


def signed_url(app: LinkApp, path: str, operation: str, **options: str) -> str:
    with app.app_context():
        return app.backend.link_to(path, operation, timedelta(minutes=5), **options)


def forged_url(server: ServerThread, claims: dict[str, object]) -> str:
    """A link whose token is validly signed with claims the library would never write."""
    key = hashlib.sha512(b"memsigner" + SECRET.encode()).digest()
    token = jwt.encode({**claims, "exp": int(time.time()) + 60}, key, algorithm="HS512")
    return f"{server.url}/link?token={token}"


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LinkApp, ServerThread]]:
    app = make_app()
    with ServerThread(app) as server:
        yield app, server


def get(url: str) -> requests.Response:
    with requests.get(url, timeout=10) as response:
        response.content  # noqa: B018 - read it all before closing
        return response


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "TEXT/HTML; charset=utf-8",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/rss+xml",
        "application/javascript",
        "text/javascript",
        "text/xsl",
    ],
)
def test_active_content_is_only_ever_an_attachment(
    served: tuple[LinkApp, ServerThread], content_type: str
) -> None:
    app, _ = served
    page = b"<html><script>alert(document.cookie)</script></html>"
    with app.app_context():
        app.backend.upload(io.BytesIO(page), "pages/evil.html")
    response = get(signed_url(app, "pages/evil.html", "download", content_type=content_type))
    assert response.status_code == 200
    assert response.content == page
    assert response.headers["Content-Disposition"] == 'attachment; filename="evil.html"'
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value

    named = get(
        signed_url(
            app, "pages/evil.html", "download", content_type=content_type, output_path="a.htm"
        )
    )
    assert named.headers["Content-Disposition"] == 'attachment; filename="a.htm"'


@pytest.mark.parametrize("content_type", ["text/plain", "image/png", "application/pdf", None])
def test_passive_content_stays_inline_with_the_security_headers(
    served: tuple[LinkApp, ServerThread], content_type: str | None
) -> None:
    app, _ = served
    with app.app_context():
        app.backend.upload(io.BytesIO(b"plain"), "a.txt")
    options = {"content_type": content_type} if content_type else {}
    response = get(signed_url(app, "a.txt", "download", **options))
    assert response.status_code == 200
    assert "Content-Disposition" not in response.headers
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value


def test_error_responses_carry_the_security_headers_too(
    served: tuple[LinkApp, ServerThread],
) -> None:
    app, server = served
    for url, status in [
        (f"{server.url}/link", 404),
        (f"{server.url}/link?token=garbage", 400),
        (signed_url(app, "a.txt", "upload"), 403),
        (signed_url(app, "missing.txt", "download"), 404),
    ]:
        response = get(url)
        assert response.status_code == status
        for name, value in SECURITY_HEADERS.items():
            assert response.headers[name] == value


@pytest.mark.parametrize(
    "claims",
    [
        {"key": 5, "op": "d"},
        {"key": ["a.txt"], "op": "d"},
        {"key": "a.txt", "op": [1]},
        {"key": "a.txt", "op": 1},
        {"key": "a.txt", "op": "d", "output_path": {}},
        {"key": "a.txt", "op": "d", "output_path": "a\r\nSet-Cookie: x=y"},
        {"key": "a.txt", "op": "d", "content_type": 7},
        {"key": "a.txt", "op": "d", "content_type": "text/plain\r\nX: y"},
        {"key": "a.txt", "op": "u", "content_type": ["text/plain"]},
        {"key": "a.txt", "op": "u", "overwrite": "false"},
        {"key": "a.txt", "op": "u", "overwrite": 0},
        {"key": "a.txt", "op": "u", "overwrite": None},
    ],
)
def test_claims_of_the_wrong_type_are_a_bad_request(
    served: tuple[LinkApp, ServerThread], claims: dict[str, object]
) -> None:
    app, server = served
    with app.app_context():
        app.backend.upload(io.BytesIO(b"a"), "a.txt")
    url = forged_url(server, claims)
    assert get(url).status_code == 400
    with requests.put(url, data=b"b", timeout=10) as response:
        assert response.status_code == 400


@pytest.mark.parametrize("field", ["output_path", "content_type"])
@pytest.mark.parametrize("value", ["text/plain\r\nX: y", "a\nb", "a\x00b", "a\x7fb", "a\x85b"])
def test_control_characters_are_refused_at_signing(field: str, value: str) -> None:
    app = make_app()
    with app.test_request_context(), pytest.raises(ValueError, match=field):
        app.backend.link_to("a.txt", "download", timedelta(minutes=1), **{field: value})
    header: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        app.backend.create_link_token(
            path="a.txt", operation="download", expire=timedelta(minutes=1), **header
        )


# -- CSRF -----------------------------------------------------------------------------------


def link() -> str:
    """A form view with the link view's module and function name (``tests...security.link``)."""
    return "posted"


@pytest.mark.parametrize("with_storage", [True, False])
def test_csrf_exempts_exactly_the_link_view(tmp_path: Path, with_storage: bool) -> None:
    app = LinkApp(__name__)
    app.config["SECRET_KEY"] = "csrf-app"
    CSRFProtect(app)
    if with_storage:
        app.config["KEG_STORAGE_PROFILES"] = [
            (
                LocalFSStorage,
                {"name": "f", "root": tmp_path, "linked_endpoint": "link", "secret_key": SECRET},
            )
        ]
        Storage(app)

        class Served(LinkViewMixin, MethodView):
            pass

        app.add_url_rule("/link", view_func=Served.as_view("link"))
        with app.app_context():
            backend = app.extensions["keg_storage"].get("f")
    else:
        backend = MemoryStorage(name="mem", linked_endpoint="link", secret_key=SECRET)
        app.backend = backend
        app.add_url_rule("/link", view_func=View.as_view("link"))
    blueprint = flask.Blueprint("forms", __name__)
    blueprint.add_url_rule("/form", view_func=link, methods=["POST"])
    app.register_blueprint(blueprint)
    assert app.view_functions["link"].__module__ == link.__module__ == __name__
    assert app.view_functions["link"].__name__ == link.__name__

    with app.test_client() as client:
        with app.test_request_context():
            upload = backend.link_to("c.txt", "upload", timedelta(minutes=5))
        for method in (client.put, client.post):
            with method(upload, data=b"no csrf token") as response:
                assert response.status_code == 200
        with client.post("/form", data={"a": "b"}) as response:
            assert response.status_code == 400  # still protected
    assert backend.exists("c.txt")
