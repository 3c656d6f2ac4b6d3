"""The conformance suite run against a keg-storage 0.5 style custom backend (conftest.py says
which cases cannot apply to one, and why)."""

from tests.conformance.test_files import *  # noqa: F403
from tests.conformance.test_links import *  # noqa: F403
from tests.conformance.test_operations import *  # noqa: F403
from tests.conformance.test_paths import *  # noqa: F403
