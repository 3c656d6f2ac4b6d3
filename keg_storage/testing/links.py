"""CONTRACT §5: argument checks every backend's link_to makes before signing anything, the path
checked exactly as open and put check it.

:class:`LinkCases` needs nothing but the backend. :class:`LinkSigningCases` signs links as an app
does; for an :class:`~keg_storage.InternalLinksStorageBackend` that takes a Flask request (the
link view's URL is built with ``url_for``), so there those cases skip when Flask is not
installed (``pip install "keg-storage[flask]"``).
"""

from __future__ import annotations

import io
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import arrow
import pytest

from keg_storage import (
    InternalLinksStorageBackend,
    InvalidPathError,
    ShareLinkOperation,
    StorageBackend,
)

from .helpers import BackendCases

FLASK_NEEDED = "internal links are signed in a Flask request: pip install 'keg-storage[flask]'"


def refused_paths(storage: StorageBackend) -> list[str]:
    """Paths the backend refuses for files: the rules of every backend (CONTRACT §2) and this
    backend's own characters and length limits."""
    paths = ["..", "a/../b.txt", "./a.txt", "a\x00b", "line\nbreak.txt", "a\x7f", "dir/", "", "/"]
    paths += [f"back{char}slash.txt" for char in storage.unsupported_path_characters]
    if storage.max_segment_bytes is not None:
        paths.append("n" * (storage.max_segment_bytes + 1))
        paths.append("é" * (storage.max_segment_bytes // 2 + 1))  # 2 bytes each in UTF-8
    if storage.max_key_bytes is not None:
        segment = min(storage.max_segment_bytes or 200, 200)
        count = storage.max_key_bytes // (segment + 1) + 1
        paths.append("/".join(["k" * segment] * count))
    return paths


def sign(storage: StorageBackend, path: str, operation: str, **options: Any) -> str:
    """``link_to`` (with ``options``) as an app calls it: internal links inside a request of
    an app with a link endpoint, ``http://localhost/link?token=...``."""
    if not isinstance(storage, InternalLinksStorageBackend):
        return storage.link_to(path, operation, timedelta(minutes=5), **options)
    flask = pytest.importorskip("flask", reason=FLASK_NEEDED)
    app = flask.Flask(__name__)
    app.add_url_rule("/link", "link", lambda: "")
    storage.linked_endpoint = "link"
    with app.test_request_context():
        return storage.link_to(path, operation, timedelta(minutes=5), **options)


class LinkCases(BackendCases):
    """CONTRACT §5: what every backend's ``link_to`` checks before signing anything."""

    @pytest.mark.parametrize(
        "expire",
        [
            arrow.utcnow().shift(minutes=-1),
            datetime.now(timezone.utc) - timedelta(seconds=5),
            datetime.utcnow() - timedelta(seconds=5),  # naive = UTC
            timedelta(seconds=-1),
            timedelta(0),
        ],
    )
    def test_expiry_in_the_past_is_refused(self, storage: StorageBackend, expire: object) -> None:
        with pytest.raises(ValueError, match="past"):
            storage.link_to("file.txt", ShareLinkOperation.download, expire)  # type: ignore[arg-type]

    @pytest.mark.parametrize("operation", [ShareLinkOperation(0), "", "x", "downloads"])
    def test_empty_or_unknown_operation_is_refused(
        self, storage: StorageBackend, operation: object
    ) -> None:
        with pytest.raises(ValueError):
            storage.link_to("file.txt", operation, timedelta(minutes=5))  # type: ignore[arg-type]

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("d", ShareLinkOperation.download),
            ("u", ShareLinkOperation.upload),
            ("r", ShareLinkOperation.remove),
            (
                "dur",
                ShareLinkOperation.download | ShareLinkOperation.upload | ShareLinkOperation.remove,
            ),
            (
                "rud",
                ShareLinkOperation.download | ShareLinkOperation.upload | ShareLinkOperation.remove,
            ),
            ("download", ShareLinkOperation.download),
            ("upload", ShareLinkOperation.upload),
            ("remove", ShareLinkOperation.remove),
            ("delete", ShareLinkOperation.remove),
            ("download,upload", ShareLinkOperation.download | ShareLinkOperation.upload),
            ("Download|Delete", ShareLinkOperation.download | ShareLinkOperation.remove),
        ],
    )
    def test_operation_parsing(self, text: str, expected: ShareLinkOperation) -> None:
        assert ShareLinkOperation.as_operation(text) == expected

    @pytest.mark.parametrize("bad", ["", "x", "uploads", "read", "d u x", 3, None])
    def test_operation_parsing_refuses_anything_else(self, bad: object) -> None:
        with pytest.raises(ValueError):
            ShareLinkOperation.as_operation(bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("field", ["output_path", "content_type"])
    @pytest.mark.parametrize("value", ["text/plain\r\nX: y", "a\nb", "a\x00b", "a\x7f"])
    def test_control_characters_in_headers_are_refused_at_signing(
        self, storage: StorageBackend, field: str, value: str
    ) -> None:
        # Both end up as HTTP header values of every download: such a link could only fail.
        with pytest.raises(ValueError, match=field):
            storage.link_to("file.txt", "download", timedelta(minutes=5), **{field: value})


class LinkSigningCases(BackendCases):
    """CONTRACT §2 and §5: a link is signed only for a path the backend would store; needs
    Flask for internal links (see the module docstring)."""

    @pytest.mark.parametrize("operation", ["download", "upload", "remove"])
    def test_link_to_refuses_exactly_what_open_and_put_refuse(
        self, storage: StorageBackend, operation: str, tmp_path: Path
    ) -> None:
        # A link for a name the store refuses could only fail later, in the link holder's hands.
        local = tmp_path / "local.txt"
        local.write_bytes(b"local")
        for path in refused_paths(storage):
            with pytest.raises(InvalidPathError) as by_open:
                storage.open(path, "w")
            with pytest.raises(InvalidPathError) as by_put:
                storage.put(local, path)
            with pytest.raises(InvalidPathError) as by_link:
                sign(storage, path, operation)
            assert str(by_link.value) == str(by_open.value) == str(by_put.value), path
            assert by_link.value.path is not None
            assert by_link.value.backend is not None
        assert storage.list() == []

    def test_the_longest_name_a_backend_keeps_is_signed_and_stored(
        self, storage: StorageBackend
    ) -> None:
        limit = storage.max_segment_bytes or storage.max_key_bytes
        if limit is None:
            pytest.skip(f"{storage!r} limits no name length")
        longest = "é" * (limit // 2) + "n" * (limit % 2)
        assert sign(storage, longest, "upload")
        storage.upload(io.BytesIO(b"long"), longest)
        assert [entry.name for entry in storage.list()] == [longest]
