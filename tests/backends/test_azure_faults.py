"""AzureStorage on the wire: Azurite behind the fault-injecting proxy.

Transient failures are retried by the SDK's retry policy (never by a second layer), timeouts are
honoured, what cannot be retried surfaces as StorageConnectionError, and seeking downloads none of
the bytes it skips.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient, LinearRetry

from keg_storage.backends.azure import AzureStorage
from keg_storage.errors import StorageConnectionError
from tests.faults.proxy import CUT_CAUSE, FaultProxy
from tests.servers.azurite import Azurite

BLOCK = 64 * 1024
DATA = bytes(range(256)) * (16 * BLOCK // 256)  # 1 MiB: 16 blocks


def quick_retry(total: int) -> LinearRetry:
    """The SDK's linear retry policy with 0.1 s waits instead of 15 s."""
    return LinearRetry(backoff=0.1, random_jitter_range=0.05, retry_total=total)


@pytest.fixture
def proxy(azurite: Azurite) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", azurite.port) as proxy:
        yield proxy


def through_proxy(
    proxy: FaultProxy, azurite: Azurite, container: ContainerClient, **options: object
) -> AzureStorage:
    settings: dict[str, object] = {"chunk_size": BLOCK, **options}
    return AzureStorage(
        azurite.account,
        azurite.key,
        container.container_name,
        account_url=f"http://127.0.0.1:{proxy.port}/{azurite.account}",
        **settings,  # type: ignore[arg-type]
    )


def test_download_survives_a_reset_connection(
    proxy: FaultProxy, azurite: Azurite, azure_container: ContainerClient
) -> None:
    azure_container.upload_blob("data.bin", DATA)
    with through_proxy(proxy, azurite, azure_container, retry=quick_retry(3)) as storage:
        proxy.cut_after(5 * BLOCK + 100, "downstream")
        out = io.BytesIO()
        storage.download("data.bin", out)
    assert out.getvalue() == DATA
    assert proxy.stats.resets == 1


@pytest.mark.parametrize("chunk_size", [BLOCK, 4 * len(DATA)], ids=["blocks", "one GET"])
def test_a_direct_first_get_cut_midway_is_read_again_through_the_sdk(
    proxy: FaultProxy,
    azurite: Azurite,
    azure_container: ContainerClient,
    chunk_size: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The first GET (directly, :mod:`.azure_direct`) loses its connection in its body: the
    SDK reads that range again, and the download is whole, never a mix or a short file; the
    retry log says so."""
    azure_container.upload_blob("data.bin", DATA)
    caplog.set_level(logging.WARNING, "keg_storage.retry")
    with through_proxy(proxy, azurite, azure_container, chunk_size=chunk_size) as storage:
        assert storage.exists("data.bin")  # the direct connection is open and kept
        proxy.cut_after(min(chunk_size, len(DATA)) // 2, "downstream")
        out = io.BytesIO()
        storage.download("data.bin", out)
        assert out.getvalue() == DATA
        assert proxy.stats.resets == 1
        [line] = [r.getMessage() for r in caplog.records]
        assert re.fullmatch(
            rf"azure 'azure': GET data\.bin failed \({CUT_CAUSE}\) at "
            rf"http://127\.0\.0\.1:{proxy.port}/{azurite.account}; "
            "sending it again through the SDK",
            line,
        ), line
        proxy.cut_after(100, "downstream")
        with storage.open("data.bin") as file:
            assert file.read() == DATA
    assert proxy.stats.resets == 2


@pytest.mark.parametrize("source", ["memory", "local file"])
def test_upload_survives_a_reset_connection(
    proxy: FaultProxy,
    azurite: Azurite,
    azure_container: ContainerClient,
    tmp_path: Path,
    source: str,
) -> None:
    """A block cut off mid-body is sent again whole: from memory, or re-read from the local
    file (the streamed body is rewound by the SDK's retry policy)."""
    local = tmp_path / "data.bin"
    local.write_bytes(DATA)
    with (
        through_proxy(proxy, azurite, azure_container, retry=quick_retry(3)) as storage,
        local.open("rb") as file,
    ):
        proxy.cut_after(7 * BLOCK + 100, "upstream")
        storage.upload(io.BytesIO(DATA) if source == "memory" else file, "data.bin")
    assert proxy.stats.resets == 1
    assert azure_container.get_blob_client("data.bin").download_blob().readall() == DATA


def test_a_stalled_response_times_out(
    proxy: FaultProxy, azurite: Azurite, azure_container: ContainerClient
) -> None:
    azure_container.upload_blob("data.bin", DATA)
    with through_proxy(
        proxy, azurite, azure_container, retry=0, timeout=(2, 0.5), direct_requests=False
    ) as storage:
        proxy.stall_after(1, 3.0, "downstream")
        start = time.monotonic()
        with pytest.raises(StorageConnectionError, match=r"data\.bin"):
            storage.open("data.bin")
    assert time.monotonic() - start < 2.5


def test_a_stalled_direct_request_is_sent_again_through_the_sdk(
    proxy: FaultProxy, azurite: Azurite, azure_container: ContainerClient
) -> None:
    """The properties request of ``open`` goes directly, stalls, is given up after the read
    timeout and sent through the SDK (one try more than ``retry``, as documented)."""
    azure_container.upload_blob("data.bin", DATA)
    with through_proxy(proxy, azurite, azure_container, retry=0, timeout=(2, 0.5)) as storage:
        proxy.stall_after(1, 3.0, "downstream")
        start = time.monotonic()
        with storage.open("data.bin") as file:
            assert file.read() == DATA
        assert 0.5 <= time.monotonic() - start < 2.5
        assert not proxy.armed
        proxy.refuse_new = True
        storage.close()
        with pytest.raises(StorageConnectionError, match=r"data\.bin"):
            storage.exists("data.bin")


def test_retries_are_the_sdk_policy_s_and_no_more(
    proxy: FaultProxy, azurite: Azurite, azure_container: ContainerClient
) -> None:
    with through_proxy(proxy, azurite, azure_container, retry=quick_retry(2)) as storage:
        proxy.refuse_new = True
        with pytest.raises(StorageConnectionError) as raised:
            storage.exists("data.bin")
    assert raised.value.__cause__ is not None
    # The direct try (azure_direct), then the SDK's first attempt and two retries.
    assert proxy.stats.refused == 4


def test_retries_of_a_count_are_logged_and_quick(
    proxy: FaultProxy,
    azurite: Azurite,
    azure_container: ContainerClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 14, point 3: ``retry=1`` retries once after 1-3 s (not the SDK's 15-21 s), and
    says why on ``keg_storage.retry``, naming the account URL."""
    azure_container.upload_blob("data.bin", DATA)
    caplog.set_level(logging.WARNING, "keg_storage.retry")
    with through_proxy(proxy, azurite, azure_container, retry=1, timeout=(2, 0.5)) as storage:
        proxy.stall_after(1, 1.0, "downstream")
        start = time.monotonic()
        assert storage.stat("data.bin").size == len(DATA)
        assert time.monotonic() - start < 0.5 + 3 + 1
    assert not proxy.armed
    assert [r.getMessage() for r in caplog.records if r.name == "keg_storage.retry"] == [
        "azure 'azure': HEAD data.bin failed (no answer within 0.5 s) at "
        f"http://127.0.0.1:{proxy.port}/{azurite.account}; retrying (attempt 2 of 2)"
    ]


def test_seeking_downloads_only_the_chunk_read(
    proxy: FaultProxy, azurite: Azurite, azure_container: ContainerClient
) -> None:
    azure_container.upload_blob("data.bin", DATA)
    with (
        through_proxy(proxy, azurite, azure_container) as storage,
        storage.open("data.bin") as file,
    ):
        file.seek(-BLOCK // 2, io.SEEK_END)
        assert file.read(10) == DATA[-BLOCK // 2 : -BLOCK // 2 + 10]
        file.seek(3 * BLOCK + 5)
        assert file.read(10) == DATA[3 * BLOCK + 5 : 3 * BLOCK + 15]
    assert proxy.stats.downstream_bytes < 2 * BLOCK + 16 * 1024  # two chunks and headers
