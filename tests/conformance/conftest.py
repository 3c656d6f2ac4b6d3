"""The ``storage`` fixture: one fresh backend of every kind the test suite knows, for the cases
of :mod:`keg_storage.testing` that the test modules here bind to them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from keg_storage.backends.base import StorageBackend
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Iterator[StorageBackend]:
    yield request.getfixturevalue(f"backend_{request.param}")


SEAWEEDFS_MULTIPART_RACE = (
    "SeaweedFS 4.48 checks IfNoneMatch on CompleteMultipartUpload apart from completing: of 16 "
    "concurrent completes two may succeed (raw boto3 too: 2 winners in 2 of 6 rounds, while 16 "
    "concurrent conditional PutObjects always had one); AWS S3 decides it atomically"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the one case that the S3 test server, not keg_storage, can fail (non-strict: it
    passes whenever SeaweedFS happens to serialise the completes)."""
    for item in items:
        if item.nodeid.endswith("test_racing_creators_exactly_one_wins[s3-multipart]"):
            item.add_marker(pytest.mark.xfail(reason=SEAWEEDFS_MULTIPART_RACE, strict=False))
