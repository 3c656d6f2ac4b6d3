"""Links and tokens for the Flask tests."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import flask

from keg_storage import StorageBackend


def link(
    app: flask.Flask,
    backend: StorageBackend,
    path: str,
    operation: str,
    expire: timedelta = timedelta(minutes=5),
    **options: Any,
) -> str:
    """A link of ``backend`` as a path + query the test client can request."""
    with app.test_request_context():
        url = backend.link_to(path, operation, expire, **options)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"
