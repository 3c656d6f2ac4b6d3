"""CONTRACT §10: a scoped view is a backend like any other: every case of the conformance kit
(but the scope cases themselves, which make views of the backend they are given) passes
through a view of Memory and LocalFS (on a real disk). The scope cases run on all five
backends in test_scopes.py."""

from __future__ import annotations

import pytest

from keg_storage.backends.base import StorageBackend
from keg_storage.testing import (
    CapabilityCases,
    ConditionalWriteCases,
    FileCases,
    LinkCases,
    LinkSigningCases,
    OperationCases,
    PathCases,
    TextFileCases,
)

from .binding import FiveBackends


class TestKitThroughAView(
    FiveBackends,
    FileCases,
    TextFileCases,
    OperationCases,
    PathCases,
    LinkCases,
    LinkSigningCases,
    ConditionalWriteCases,
    CapabilityCases,
):
    @pytest.fixture(params=["memory", "localfs"])
    def storage(self, request: pytest.FixtureRequest) -> StorageBackend:
        backend: StorageBackend = request.getfixturevalue(f"backend_{request.param}")
        return backend.scoped("tenants/acme")
