"""Shared test configuration.

Every ``tests/fixtures/backend_<name>.py`` module is loaded as a pytest plugin and must define a
function-scoped fixture ``backend_<name>`` that yields a fresh, empty :class:`StorageBackend`
(starting its real server once per session if it needs one). The conformance suite runs against
every backend found this way, so a new backend joins by adding its fixture module and nothing else.
"""

from __future__ import annotations

from pathlib import Path

FIXTURE_DIR = Path(__file__).parent / "fixtures"
BACKENDS = sorted(p.stem.removeprefix("backend_") for p in FIXTURE_DIR.glob("backend_*.py"))

pytest_plugins = [f"tests.fixtures.backend_{name}" for name in BACKENDS]
