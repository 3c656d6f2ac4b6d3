"""The link view under fuzzed Range, If-* and Content-Length headers: a correct status, and never
a byte that is not the file's, at the place the response says it is."""

from __future__ import annotations

import os
from datetime import timedelta

import flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.http import parse_content_range_header

from keg_storage import LocalFSStorage

EXAMPLES = int(os.environ.get("KEG_STORAGE_FUZZ_EXAMPLES", "300"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
CONTENT = bytes(range(256)) * 40 + b"tail"
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=30)

numbers = st.one_of(st.integers(min_value=0, max_value=len(CONTENT) * 2), st.just(len(CONTENT)))
range_spec = st.one_of(
    st.builds(lambda a, b: f"{a}-{b}", numbers, numbers),
    st.builds(lambda a: f"{a}-", numbers),
    st.builds(lambda b: f"-{b}", numbers),
    st.text(alphabet="0123456789-, =abc", max_size=20),
)
range_header = st.one_of(
    st.lists(range_spec, min_size=1, max_size=3).map(lambda specs: "bytes=" + ",".join(specs)),
    header_text,
)
etag_header = st.one_of(st.just("*"), st.text(alphabet='"W/abcdef0123456789-,* ', max_size=40))
date_header = st.one_of(
    st.just("Mon, 01 Jan 2001 00:00:00 GMT"),
    st.just("Fri, 01 Jan 2100 00:00:00 GMT"),
    header_text,
)


def _link(app: flask.Flask, files: LocalFSStorage, operation: str) -> str:
    with app.test_request_context():
        url = files.link_to("doc.bin", operation, timedelta(minutes=10))
    return url.split("localhost", 1)[1]


@fuzz
@given(
    range_value=st.one_of(st.none(), range_header),
    if_range=st.one_of(st.none(), etag_header, date_header),
    if_none_match=st.one_of(st.none(), etag_header),
    if_modified_since=st.one_of(st.none(), date_header),
    method=st.sampled_from(["GET", "HEAD"]),
)
def test_download_headers(
    app: flask.Flask,
    client: FlaskClient,
    files: LocalFSStorage,
    range_value: str | None,
    if_range: str | None,
    if_none_match: str | None,
    if_modified_since: str | None,
    method: str,
) -> None:
    with files.open("doc.bin", "wb") as file:
        file.write(CONTENT)
    headers = {
        name: value
        for name, value in {
            "Range": range_value,
            "If-Range": if_range,
            "If-None-Match": if_none_match,
            "If-Modified-Since": if_modified_since,
        }.items()
        if value is not None
    }
    response = client.open(_link(app, files, "d"), method=method, headers=headers)
    body = response.get_data()
    response.close()
    assert response.status_code in (200, 206, 304, 416), response.status
    if response.status_code == 416:
        # werkzeug answers an unsatisfiable or unparsable Range with its error page.
        assert response.headers["Content-Range"] == f"bytes */{len(CONTENT)}"
        assert CONTENT[:64] not in body
        return
    if method == "HEAD" or response.status_code == 304:
        assert body == b""
        return
    if response.status_code == 200:
        assert body == CONTENT
        assert response.content_length == len(CONTENT)
        return
    content_range = parse_content_range_header(response.headers["Content-Range"])
    assert content_range is not None and content_range.length == len(CONTENT)
    assert content_range.start is not None and content_range.stop is not None
    assert 0 <= content_range.start < content_range.stop <= len(CONTENT)
    assert body == CONTENT[content_range.start : content_range.stop]
    assert response.content_length == len(body)


@fuzz
@given(
    declared=st.one_of(st.none(), st.integers(min_value=0, max_value=5000), header_text),
    body=st.binary(max_size=3000),
)
def test_upload_content_length(
    app: flask.Flask,
    client: FlaskClient,
    files: LocalFSStorage,
    declared: int | str | None,
    body: bytes,
) -> None:
    with files.open("doc.bin", "wb") as file:
        file.write(b"previous")
    app.config["MAX_CONTENT_LENGTH"] = 2000
    headers = {} if declared is None else {"Content-Length": str(declared)}
    response = client.put(_link(app, files, "u"), data=body, headers=headers)
    response.close()
    with files.open("doc.bin") as file:
        stored = file.read()
    if response.status_code == 200:
        assert stored in (body, body[: int(declared)] if isinstance(declared, int) else body)
        assert len(stored) <= 2000
    else:
        assert response.status_code in (400, 411, 413), response.status
        assert stored == b"previous"
