"""CONTRACT §2: paths are keys relative to the root, validated before any I/O, on every
backend."""

from keg_storage.testing import PathCases

from .binding import FiveBackends


class TestPaths(FiveBackends, PathCases):
    pass
