"""Azure ``upload_many`` of small files and ``sync`` into Azure, sent as one batch of Put Blob
requests without the SDK's pipeline (AzureStorage._put_batch, keg_storage.backends.azure_direct),
against Azurite and through the fault proxy: each file is stored as the SDK stores it, or gets
the SDK's error; the files' times are kept as a single upload keeps them."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

from keg_storage import LocalFSStorage, StoragePermissionError, sync
from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.bulk import BatchItem, TransferResult
from tests.backends.test_azure_faults import through_proxy
from tests.faults.proxy import FaultProxy
from tests.servers.azurite import Azurite

NAMES = ["plain.txt", "dir/with space/ü-ñ 漢字.txt", "odd %2F+~!$&'()*,;=@[].txt", "a#b?c.bin"]
"""Blob names whose quoting a hand-made request could get wrong."""


class ThroughTheSDK:
    """Records the files of a batch that went through the SDK (``_put_alone``)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.keys: list[str] = []
        put_alone = AzureStorage._put_alone

        def recording(storage: AzureStorage, item: BatchItem) -> int:
            self.keys.append(item.key)
            return put_alone(storage, item)

        monkeypatch.setattr(AzureStorage, "_put_alone", recording)


@pytest.fixture
def through_sdk(monkeypatch: pytest.MonkeyPatch) -> ThroughTheSDK:
    return ThroughTheSDK(monkeypatch)


def local_files(directory: Path, names: list[str]) -> list[tuple[Path, str, bytes]]:
    files = []
    for number, name in enumerate(names):
        local = directory / f"{number:03}.bin"
        local.write_bytes(os.urandom(1000 + number))
        files.append((local, name, local.read_bytes()))
    return files


def pairs(files: list[tuple[Path, str, bytes]]) -> list[tuple[Path, str]]:
    return [(local, name) for local, name, _ in files]


def blob(container: ContainerClient, name: str) -> bytes:
    return container.download_blob(name).readall()


def test_small_files_go_as_one_batch_without_the_sdk(
    backend_azure: AzureStorage,
    azure_container: ContainerClient,
    through_sdk: ThroughTheSDK,
    tmp_path: Path,
) -> None:
    """Stored whole under their exact names, as the SDK stores them (its content type); the
    progress reaches the total."""
    files = local_files(tmp_path, NAMES + [f"many/{n}.bin" for n in range(60)])
    progress: list[int] = []
    results = backend_azure.upload_many(pairs(files), max_concurrency=8, progress=progress.append)
    assert results == [TransferResult(str(local), name, len(data)) for local, name, data in files]
    assert through_sdk.keys == []
    assert progress == sorted(progress) and progress[-1] == sum(len(d) for _, _, d in files)
    for _, name, data in files:
        assert blob(azure_container, name) == data
    azure_container.upload_blob("sdk.txt", b"by the sdk")
    by_sdk = azure_container.get_blob_client("sdk.txt").get_blob_properties()
    direct = azure_container.get_blob_client(NAMES[0]).get_blob_properties()
    assert direct.content_settings.content_type == by_sdk.content_settings.content_type
    assert direct.blob_type == by_sdk.blob_type and direct.metadata == by_sdk.metadata == {}


def test_a_sync_into_azure_keeps_times_as_a_single_upload_does(
    backend_azure: AzureStorage, azure_container: ContainerClient, tmp_path: Path
) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for number in range(30):
        local = source / f"{number:02}.txt"
        local.write_bytes(b"x" * number)
        moment = 1_700_000_000 + number + 0.25
        os.utime(local, (moment, moment))
    result = sync(LocalFSStorage(source), backend_azure, jobs=4)
    assert result.ok and result.copied == 30
    backend_azure.upload_keeping_mtime(io.BytesIO(b"x"), "single.txt", 1_700_000_000.25)
    single = azure_container.get_blob_client("single.txt").get_blob_properties().metadata
    assert single == {"mtime": "2023-11-14T22:13:20.250000Z"}
    for number in range(30):
        properties = azure_container.get_blob_client(f"{number:02}.txt").get_blob_properties()
        moment = datetime.fromtimestamp(1_700_000_000 + number + 0.25, timezone.utc)
        assert properties.metadata == {"mtime": moment.isoformat().replace("+00:00", "Z")}
        assert blob(azure_container, f"{number:02}.txt") == b"x" * number
    assert sync(LocalFSStorage(source), backend_azure).copied == 0


@pytest.fixture
def sas_storage(
    azurite: Azurite, azure_container: ContainerClient, request: pytest.FixtureRequest
) -> Iterator[AzureStorage]:
    """A storage on a container SAS URL with the permissions the test's parameter names."""
    sas = generate_container_sas(
        azurite.account,
        azure_container.container_name,
        account_key=azurite.key,
        permission=ContainerSasPermissions(**dict.fromkeys(request.param, True)),
        expiry=datetime.now(timezone.utc) + timedelta(minutes=5),
    )
    with AzureStorage(sas_container_url=f"{azure_container.url}?{sas}", retry=0) as storage:
        yield storage


@pytest.mark.parametrize("sas_storage", [("read", "write", "create")], indirect=True)
def test_a_container_sas_url_sends_its_own_sas(
    sas_storage: AzureStorage,
    azure_container: ContainerClient,
    through_sdk: ThroughTheSDK,
    tmp_path: Path,
) -> None:
    files = local_files(tmp_path, NAMES)
    results = sas_storage.upload_many(pairs(files), max_concurrency=4)
    assert [result.error for result in results] == [None] * len(files)
    assert through_sdk.keys == []
    for _, name, data in files:
        assert blob(azure_container, name) == data


@pytest.mark.parametrize("sas_storage", [("read", "list")], indirect=True)
def test_a_sas_that_may_not_write_gives_each_file_the_sdks_error(
    sas_storage: AzureStorage,
    azure_container: ContainerClient,
    through_sdk: ThroughTheSDK,
    tmp_path: Path,
) -> None:
    files = local_files(tmp_path, NAMES)
    results = sas_storage.upload_many(pairs(files), max_concurrency=4)
    for result, (_, name, _) in zip(results, files, strict=True):
        assert isinstance(result.error, StoragePermissionError) and result.error.path == name
        assert "sig=" not in str(result.error)
    assert sorted(through_sdk.keys) == sorted(NAMES)
    assert list(azure_container.list_blobs()) == []


@pytest.mark.parametrize(("direction", "cut"), [("upstream", 3_000), ("downstream", 20)])
def test_a_connection_cut_in_a_batch_loses_no_file(
    azurite: Azurite,
    azure_container: ContainerClient,
    through_sdk: ThroughTheSDK,
    tmp_path: Path,
    direction: str,
    cut: int,
) -> None:
    files = local_files(tmp_path, [f"cut/{n}.bin" for n in range(40)])
    with (
        FaultProxy("127.0.0.1", azurite.port) as proxy,
        through_proxy(proxy, azurite, azure_container) as storage,
    ):
        proxy.cut_after(cut, direction)  # type: ignore[arg-type]
        results = storage.upload_many(pairs(files), max_concurrency=4)
        assert not proxy.armed
    assert [result.error for result in results] == [None] * len(files)
    assert len(through_sdk.keys) <= 1
    for _, name, data in files:
        assert blob(azure_container, name) == data


def test_the_storage_shows_no_secret(backend_azure: AzureStorage, azurite: Azurite) -> None:
    clients = backend_azure.clients()
    assert clients.direct is not None
    sas = clients.direct.sas()
    for shown in (repr(clients), repr(clients.direct), str(vars(clients.direct))):
        assert azurite.key not in shown and sas not in shown
