"""delete_many, upload_many and download_many on every backend."""

from keg_storage.backends.base import StorageBackend
from keg_storage.testing import BulkCases

from .binding import FiveBackends

BATCH_CROSSING = {"S3Storage": 1200, "AzureStorage": 600}
"""Files deleted where the service has a batch size (S3 1,000 keys, Azure 256): more."""


class TestBulk(FiveBackends, BulkCases):
    def bulk_count(self, storage: StorageBackend) -> int:
        return BATCH_CROSSING.get(type(storage).__name__, 150)
