"""CONTRACT §9: conditional writes and truthful capabilities, on every backend."""

from keg_storage.testing import CapabilityCases, ConditionalWriteCases

from .binding import FiveBackends


class TestConditionalWrites(FiveBackends, ConditionalWriteCases):
    pass


class TestCapabilities(FiveBackends, CapabilityCases):
    pass
