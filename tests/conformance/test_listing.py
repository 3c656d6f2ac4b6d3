"""CONTRACT §11: lazy listings in order, on every backend."""

from keg_storage.testing import ListingCases

from .binding import FiveBackends


class TestListing(FiveBackends, ListingCases):
    pass
