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
