"""CONTRACT §10: every backend rebuilt from its URL, and confined by a path added to it."""

from typing import Any

import pytest

from keg_storage.backends.base import StorageBackend
from keg_storage.testing import UrlCases

from .binding import FiveBackends

LINK_SECRET = {"secret_key": "conformance-secret"}


class TestUrls(FiveBackends, UrlCases):
    @pytest.fixture
    def rebuild_options(self, storage: StorageBackend, request: pytest.FixtureRequest) -> Any:
        """What the fixtures' backends were given that a URL never holds."""
        kind = type(storage).__name__
        if kind == "S3Storage":
            server = request.getfixturevalue("seaweedfs")
            return {
                "aws_access_key_id": server.access_key,
                "aws_secret_access_key": server.secret_key,
            }
        if kind == "AzureStorage":
            return {"key": request.getfixturevalue("azurite").key}
        return LINK_SECRET
