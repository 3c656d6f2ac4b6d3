"""Internal link tokens (CONTRACT §5): what verifies, and every kind of token that must not."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from datetime import timedelta

import arrow
import flask
import jwt
import pytest

from keg_storage import (
    ExpiredLinkTokenError,
    InternalLinkTokenData,
    LinkTokenError,
    MalformedLinkTokenError,
    MemoryStorage,
    ShareLinkOperation,
)

SECRET = "s3cr3t-key"


def backend(name: str = "files", secret: object = SECRET) -> MemoryStorage:
    return MemoryStorage(name, linked_endpoint="link", secret_key=secret)  # type: ignore[arg-type]


def derived_key(name: str, secret: str) -> bytes:
    return hashlib.sha512(f"{name}signer{secret}".encode()).digest()


def test_round_trip_carries_signed_output_path_and_content_type() -> None:
    storage = backend()
    token = storage.create_link_token(
        path="/dir//report.pdf",
        operation="download,upload",
        expire=timedelta(minutes=5),
        output_path="Report 2026.pdf",
        content_type="application/pdf",
    )
    data = storage.deserialize_link_token(token)
    assert data == InternalLinkTokenData(
        "dir/report.pdf",
        ShareLinkOperation.download | ShareLinkOperation.upload,
        "Report 2026.pdf",
        "application/pdf",
    )
    assert data.allow_download and data.allow_upload and not data.allow_remove
    assert storage.deserialize_link_token(token.encode()) == data


def test_header_is_hs512_and_exp_is_set() -> None:
    token = backend().create_link_token(path="a", operation="d", expire=timedelta(minutes=1))
    assert jwt.get_unverified_header(token)["alg"] == "HS512"
    claims = jwt.decode(token, options={"verify_signature": False})
    assert 50 <= claims["exp"] - time.time() <= 61
    assert claims["op"] == "d"


def test_tampered_claims_are_refused() -> None:
    storage = backend()
    token = storage.create_link_token(path="a.txt", operation="d", expire=timedelta(minutes=5))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["key"] = "secret/other.txt"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(LinkTokenError):
        storage.deserialize_link_token(f"{header}.{forged}.{signature}")
    with pytest.raises(LinkTokenError):
        storage.deserialize_link_token(f"{header}.{payload}.{signature[:-4]}AAAA")


def test_hs256_with_the_right_key_is_refused() -> None:
    claims = {"key": "a.txt", "op": "dur", "exp": int(time.time()) + 300}
    token = jwt.encode(claims, derived_key("files", SECRET), algorithm="HS256")
    with pytest.raises(LinkTokenError):
        backend().deserialize_link_token(token)


def test_alg_none_is_refused() -> None:
    claims = {"key": "a.txt", "op": "dur", "exp": int(time.time()) + 300}
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(LinkTokenError):
        backend().deserialize_link_token(f"{header}.{payload}.")


def test_expired_token_is_refused() -> None:
    claims = {"key": "a.txt", "op": "d", "exp": int(time.time()) - 1}
    token = jwt.encode(claims, derived_key("files", SECRET), algorithm="HS512")
    with pytest.raises(ExpiredLinkTokenError):
        backend().deserialize_link_token(token)


def test_token_without_exp_is_refused() -> None:
    token = jwt.encode({"key": "a.txt", "op": "d"}, derived_key("files", SECRET), algorithm="HS512")
    with pytest.raises(LinkTokenError) as excinfo:
        backend().deserialize_link_token(token)
    assert not isinstance(excinfo.value, ExpiredLinkTokenError)


@pytest.mark.parametrize(
    "claims",
    [
        {"op": "d"},
        {"key": "a.txt"},
        {"key": "../etc/passwd", "op": "d"},
        {"key": "a.txt", "op": "x"},
        {"key": 5, "op": "d"},
    ],
)
def test_token_with_bad_claims_is_refused(claims: dict[str, object]) -> None:
    token = jwt.encode(
        {**claims, "exp": int(time.time()) + 60}, derived_key("files", SECRET), algorithm="HS512"
    )
    with pytest.raises(LinkTokenError):
        backend().deserialize_link_token(token)


@pytest.mark.parametrize("operation", [ShareLinkOperation(0), ""])
def test_token_for_no_operation_is_never_made(operation: ShareLinkOperation | str) -> None:
    with pytest.raises(ValueError, match="operation"):
        backend().create_link_token(path="a", operation=operation, expire=timedelta(minutes=1))


def test_token_of_another_backend_is_refused() -> None:
    token = backend("other").create_link_token(path="a", operation="d", expire=timedelta(minutes=1))
    with pytest.raises(LinkTokenError):
        backend("files").deserialize_link_token(token)


@pytest.mark.parametrize("garbage", ["", "not-a-token", "a.b.c", "....", "eyJhbGciOi"])
def test_garbage_is_malformed(garbage: str) -> None:
    with pytest.raises(MalformedLinkTokenError):
        backend().deserialize_link_token(garbage)


def test_key_rotation() -> None:
    old = backend(secret="old-key")
    token = old.create_link_token(path="a", operation="d", expire=timedelta(minutes=1))
    rotated = backend(secret=["new-key", b"old-key"])
    assert rotated.deserialize_link_token(token).path == "a"
    new_token = rotated.create_link_token(path="a", operation="d", expire=timedelta(minutes=1))
    with pytest.raises(LinkTokenError):
        old.deserialize_link_token(new_token)
    assert backend(secret="new-key").deserialize_link_token(new_token).path == "a"


def test_without_secret_key_links_are_refused() -> None:
    storage = MemoryStorage()
    with pytest.raises(ValueError, match="secret_key"):
        storage.create_link_token(path="a", operation="d", expire=timedelta(minutes=1))


def test_secret_never_shows_in_repr() -> None:
    storage = backend(secret="top-secret-value")
    assert "top-secret-value" not in repr(storage)
    assert "top-secret-value" not in str(vars(storage))


def test_link_to_builds_an_external_url_for_the_endpoint() -> None:
    app = flask.Flask(__name__)
    app.add_url_rule("/storage", "link", lambda: "")
    storage = backend()
    with app.test_request_context(base_url="https://files.example.com/"):
        url = storage.link_to("a b.txt", "d", arrow.utcnow().shift(minutes=5), output_path="x.txt")
    assert url.startswith("https://files.example.com/storage?token=")
    token = url.split("token=", 1)[1]
    assert storage.deserialize_link_token(token).output_path == "x.txt"
