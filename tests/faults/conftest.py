"""``fault_target``: each network backend twice on the same bucket/container/directory, once
through the fault proxy (the one under test) and once direct (to check what really got stored),
with a way to see what a failed write left behind. ``impatient`` is a third, through the proxy
too, with :data:`IMPATIENT_TIMEOUT` timeouts and no retries (for stalled servers)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient, LinearRetry

from keg_storage import StorageBackend
from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.s3 import S3Storage
from tests.fixtures.backend_sftp import make_storage as make_sftp_storage
from tests.servers.azurite import Azurite
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SSHServer

from .proxy import FaultProxy

MiB = 1024 * 1024
IMPATIENT_TIMEOUT = 1.0


@dataclass
class FaultTarget:
    storage: StorageBackend
    direct: StorageBackend
    proxy: FaultProxy
    leftovers: Callable[[], list[str]]
    make_impatient: Callable[[], StorageBackend]
    _impatient: StorageBackend | None = None

    @property
    def impatient(self) -> StorageBackend:
        """The faulted backend with 1 s timeouts and no retries, built on first use."""
        if self._impatient is None:
            self._impatient = self.make_impatient()
        return self._impatient

    def close(self) -> None:
        """Close every backend of this target, the impatient one only if it was built."""
        for storage in (self.storage, self.direct, self._impatient):
            if storage is not None:
                storage.close()


def _s3(request: pytest.FixtureRequest, proxy_for: Callable[[int], FaultProxy]) -> FaultTarget:
    server: SeaweedFS = request.getfixturevalue("seaweedfs")
    bucket: str = request.getfixturevalue("s3_bucket")
    client: Any = request.getfixturevalue("s3_client")
    proxy = proxy_for(server.ports["s3.port"])

    def s3(endpoint: str, **options: Any) -> S3Storage:
        return S3Storage(
            bucket,
            server.region,
            server.access_key,
            server.secret_key,
            endpoint_url=endpoint,
            chunk_size=5 * MiB,
            **options,
        )

    def leftovers() -> list[str]:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [f"multipart upload of {upload['Key']}" for upload in uploads]

    proxied = f"http://127.0.0.1:{proxy.port}"
    return FaultTarget(
        s3(proxied, max_attempts=3, connect_timeout=2, read_timeout=5),
        s3(server.endpoint_url),
        proxy,
        leftovers,
        lambda: s3(
            proxied,
            max_attempts=1,
            connect_timeout=IMPATIENT_TIMEOUT,
            read_timeout=IMPATIENT_TIMEOUT,
        ),
    )


def _azure(request: pytest.FixtureRequest, proxy_for: Callable[[int], FaultProxy]) -> FaultTarget:
    azurite: Azurite = request.getfixturevalue("azurite")
    container: ContainerClient = request.getfixturevalue("azure_container")
    proxy = proxy_for(azurite.port)

    def azure(account_url: str, **options: Any) -> AzureStorage:
        return AzureStorage(
            azurite.account,
            azurite.key,
            container.container_name,
            chunk_size=1 * MiB,
            account_url=account_url,
            **options,
        )

    def leftovers() -> list[str]:
        found = []
        for blob in container.list_blobs():
            _, uncommitted = container.get_blob_client(blob.name).get_block_list("uncommitted")
            found += [f"uncommitted block of {blob.name}" for _ in uncommitted]
        return found

    proxied = f"http://127.0.0.1:{proxy.port}/{azurite.account}"
    return FaultTarget(
        azure(
            proxied,
            retry=LinearRetry(backoff=0.1, random_jitter_range=0.05, retry_total=3),
            timeout=5,
        ),
        azure(azurite.account_url),
        proxy,
        leftovers,
        lambda: azure(proxied, retry=0, timeout=IMPATIENT_TIMEOUT),
    )


def _sftp(request: pytest.FixtureRequest, proxy_for: Callable[[int], FaultProxy]) -> FaultTarget:
    server: SSHServer = request.getfixturevalue("sftp_server")
    base: str = request.getfixturevalue("sftp_base_path")
    proxy = proxy_for(server.port)

    def leftovers() -> list[str]:
        return [
            str(Path(directory, name))
            for directory, _, names in os.walk(base)
            for name in names
            if name.startswith(".keg-storage-")
        ]

    return FaultTarget(
        make_sftp_storage(server, base, port=proxy.port, timeout=5),
        make_sftp_storage(server, base),
        proxy,
        leftovers,
        lambda: make_sftp_storage(
            server, base, port=proxy.port, timeout=IMPATIENT_TIMEOUT, retry=0
        ),
    )


TARGETS = {"s3": _s3, "azure": _azure, "sftp": _sftp}


@pytest.fixture(params=sorted(TARGETS))
def fault_target(request: pytest.FixtureRequest) -> Iterator[FaultTarget]:
    proxies: list[FaultProxy] = []

    def proxy_for(port: int) -> FaultProxy:
        proxies.append(FaultProxy("127.0.0.1", port))
        return proxies[-1]

    target = TARGETS[request.param](request, proxy_for)
    try:
        yield target
    finally:
        target.close()
        for proxy in proxies:
            proxy.stop()
