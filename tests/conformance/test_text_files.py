"""CONTRACT §3 and issue 14 point 5: text mode, binary defaults and mode messages, on every
backend."""

from keg_storage.testing import TextFileCases

from .binding import FiveBackends


class TestTextFiles(FiveBackends, TextFileCases):
    pass
