"""CONTRACT §4: whole-file operations, on every backend."""

from keg_storage.testing import OperationCases

from .binding import FiveBackends


class TestOperations(FiveBackends, OperationCases):
    pass
