"""CONTRACT §5: the checks every backend's link_to makes before signing anything, on every
backend."""

from keg_storage.testing import LinkCases, LinkSigningCases

from .binding import FiveBackends


class TestLinks(FiveBackends, LinkCases, LinkSigningCases):
    pass
