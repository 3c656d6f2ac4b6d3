"""The soak test runs on every backend, through the conformance suite's ``storage`` fixture."""

from tests.conformance.conftest import storage

__all__ = ["storage"]
