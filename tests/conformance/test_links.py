"""CONTRACT §5: argument checks every backend's link_to makes before signing anything."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import arrow
import pytest

from keg_storage import ShareLinkOperation, StorageBackend


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
def test_expiry_in_the_past_is_refused(storage: StorageBackend, expire: object) -> None:
    with pytest.raises(ValueError, match="past"):
        storage.link_to("file.txt", ShareLinkOperation.download, expire)  # type: ignore[arg-type]


@pytest.mark.parametrize("operation", [ShareLinkOperation(0), "", "x", "downloads"])
def test_empty_or_unknown_operation_is_refused(storage: StorageBackend, operation: object) -> None:
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
def test_operation_parsing(text: str, expected: ShareLinkOperation) -> None:
    assert ShareLinkOperation.as_operation(text) == expected


@pytest.mark.parametrize("bad", ["", "x", "uploads", "read", "d u x", 3, None])
def test_operation_parsing_refuses_anything_else(bad: object) -> None:
    with pytest.raises(ValueError):
        ShareLinkOperation.as_operation(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", ["output_path", "content_type"])
@pytest.mark.parametrize("value", ["text/plain\r\nX: y", "a\nb", "a\x00b", "a\x7f"])
def test_control_characters_in_headers_are_refused_at_signing(
    storage: StorageBackend, field: str, value: str
) -> None:
    # Both end up as HTTP header values of every download: such a link could only fail.
    with pytest.raises(ValueError, match=field):
        storage.link_to("file.txt", "download", timedelta(minutes=5), **{field: value})
