"""CONTRACT §3: reading and writing through open(), on every backend."""

from keg_storage.testing import FileCases

from .binding import FiveBackends


class TestFiles(FiveBackends, FileCases):
    pass
