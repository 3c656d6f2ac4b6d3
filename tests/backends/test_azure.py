"""Azure-specific behaviour of AzureStorage, checked against Azurite with the plain SDK and a
plain HTTP client (the conformance suite covers what every backend shares)."""

from __future__ import annotations

import gzip
import io
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.storage.blob import (
    ContainerClient,
    ContainerSasPermissions,
    ContentSettings,
    generate_container_sas,
)

from keg_storage import FileMode, ShareLinkOperation
from keg_storage.backends import azure_files
from keg_storage.backends.azure import AzureReader, AzureStorage, AzureWriter
from keg_storage.backends.keep_alive import Answer, Request
from keg_storage.errors import (
    FileNotFoundInStorageError,
    InvalidPathError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    UnsupportedOperationError,
)
from tests.servers.azurite import Azurite, free_port

KiB = 1024
MiB = 1024 * KiB
BLOCK = 64 * KiB
FIVE_MINUTES = timedelta(minutes=5)


def sas_params(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


@pytest.fixture
def small_blocks(azurite: Azurite, azure_container: ContainerClient) -> Iterator[AzureStorage]:
    """A backend with 64 KiB blocks, so that small test files span many blocks."""
    with AzureStorage(
        azurite.account,
        azurite.key,
        azure_container.container_name,
        chunk_size=BLOCK,
        max_concurrency=3,
        account_url=azurite.account_url,
    ) as storage:
        yield storage


# -- links ----------------------------------------------------------------------------------


def test_download_link_serves_the_blob_with_name_and_type(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"report body"), "reports/2024 q1.csv")
    url = backend_azure.link_to(
        "reports/2024 q1.csv",
        ShareLinkOperation.download,
        FIVE_MINUTES,
        output_path="Rapport été.csv",
        content_type="text/csv",
    )
    assert sas_params(url)["sp"] == "r"
    response = requests.get(url, timeout=10)
    assert response.status_code == 200
    assert response.content == b"report body"
    assert response.headers["Content-Type"] == "text/csv"
    assert response.headers["Content-Disposition"] == (
        "attachment; filename=\"Rapport ete.csv\"; filename*=UTF-8''Rapport%20%C3%A9t%C3%A9.csv"
    )


def test_download_link_refuses_upload_and_delete(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"keep me"), "keep.txt")
    url = backend_azure.link_to("keep.txt", "download", FIVE_MINUTES)
    put = requests.put(url, data=b"evil", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert put.status_code == 403
    assert requests.delete(url, timeout=10).status_code == 403
    with backend_azure.open("keep.txt") as file:
        assert file.read() == b"keep me"


def test_upload_link_creates_a_block_blob(backend_azure: AzureStorage) -> None:
    url = backend_azure.link_to("inbox/upload.bin", ShareLinkOperation.upload, FIVE_MINUTES)
    assert sas_params(url)["sp"] == "cw"
    response = requests.put(
        url, data=b"uploaded by a browser", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10
    )
    assert response.status_code == 201
    with backend_azure.open("inbox/upload.bin") as file:
        assert file.read() == b"uploaded by a browser"
    assert requests.get(url, timeout=10).status_code == 403


def test_remove_link_deletes_the_blob(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"bye"), "old.txt")
    url = backend_azure.link_to("old.txt", "remove", FIVE_MINUTES)
    assert sas_params(url)["sp"] == "d"
    assert requests.get(url, timeout=10).status_code == 403
    assert requests.delete(url, timeout=10).status_code == 202
    assert not backend_azure.exists("old.txt")


def test_combined_link_allows_every_operation_it_names(backend_azure: AzureStorage) -> None:
    url = backend_azure.link_to("all.txt", "dur", FIVE_MINUTES)
    assert sas_params(url)["sp"] == "rcwd"
    put = requests.put(url, data=b"v1", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert put.status_code == 201
    assert requests.get(url, timeout=10).content == b"v1"
    assert requests.delete(url, timeout=10).status_code == 202
    assert not backend_azure.exists("all.txt")


def test_expired_link_is_refused(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"soon gone"), "short.txt")
    url = backend_azure.link_to("short.txt", "download", timedelta(seconds=1))
    time.sleep(2)
    assert requests.get(url, timeout=10).status_code == 403


def test_tampered_link_is_refused(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"secret"), "a.txt")
    backend_azure.upload(io.BytesIO(b"other"), "b.txt")
    url = backend_azure.link_to("a.txt", "download", FIVE_MINUTES)
    assert requests.get(url.replace("/a.txt?", "/b.txt?"), timeout=10).status_code == 403
    assert requests.get(url.replace("sp=r", "sp=rd"), timeout=10).status_code == 403


def test_link_escapes_the_blob_name(backend_azure: AzureStorage) -> None:
    path = "dir with space/ünï #1?.txt"
    backend_azure.upload(io.BytesIO(b"odd name"), path)
    url = backend_azure.link_to(path, "download", FIVE_MINUTES)
    assert "/dir%20with%20space/" in url
    assert requests.get(url, timeout=10).content == b"odd name"


def test_link_ip_restriction_is_signed(backend_azure: AzureStorage) -> None:
    url = backend_azure.link_to("a.txt", "download", FIVE_MINUTES, ip="10.0.0.0-10.0.0.255")
    assert sas_params(url)["sip"] == "10.0.0.0-10.0.0.255"


def test_deprecated_url_helpers_warn_and_work(backend_azure: AzureStorage) -> None:
    with pytest.warns(DeprecationWarning, match="link_to"):
        upload_url = backend_azure.create_upload_url("legacy.txt", FIVE_MINUTES)
    put = requests.put(
        upload_url, data=b"legacy", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10
    )
    assert put.status_code == 201
    with pytest.warns(DeprecationWarning, match="link_to"):
        download_url = backend_azure.create_download_url("legacy.txt", FIVE_MINUTES)
    assert requests.get(download_url, timeout=10).content == b"legacy"


# -- the SAS URL constructor modes ----------------------------------------------------------


def test_container_sas_mode(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"shared"), "docs/a.txt")
    container_url = backend_azure.create_container_url(FIVE_MINUTES)
    assert sas_params(container_url)["sp"] == "rwdl"
    with AzureStorage(sas_container_url=container_url) as shared:
        assert [entry.name for entry in shared.list()] == ["docs/a.txt"]
        shared.upload(io.BytesIO(b"from the SAS side"), "docs/b.txt")
        shared.copy("docs/b.txt", "docs/c.txt")
        with shared.open("docs/c.txt") as file:
            assert file.read() == b"from the SAS side"
        shared.delete("docs/a.txt")
        with pytest.raises(UnsupportedOperationError, match="account key"):
            shared.link_to("docs/b.txt", "download", FIVE_MINUTES)
        with pytest.raises(UnsupportedOperationError, match="account key"):
            shared.create_container_url(FIVE_MINUTES)
    assert [entry.name for entry in backend_azure.list("docs")] == ["docs/b.txt", "docs/c.txt"]


def test_container_sas_mode_with_the_key_can_sign_links(
    azurite: Azurite, backend_azure: AzureStorage
) -> None:
    backend_azure.upload(io.BytesIO(b"linked"), "a.txt")
    container_url = backend_azure.create_container_url(FIVE_MINUTES)
    with AzureStorage(key=azurite.key, sas_container_url=container_url) as shared:
        url = shared.link_to("a.txt", "download", FIVE_MINUTES)
    assert requests.get(url, timeout=10).content == b"linked"


def test_container_sas_ip_restriction_is_signed(backend_azure: AzureStorage) -> None:
    url = backend_azure.create_container_url(FIVE_MINUTES, ip="192.0.2.1")
    assert sas_params(url)["sip"] == "192.0.2.1"


def test_blob_sas_mode_reaches_only_its_blob(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"v1"), "only/this.txt")
    blob_url = backend_azure.link_to("only/this.txt", "dur", FIVE_MINUTES)
    with AzureStorage(sas_blob_url=blob_url) as single:
        with single.open("/only/this.txt") as file:
            assert file.read() == b"v1"
        single.upload(io.BytesIO(b"v2"), "only/this.txt")
        assert single.stat("only/this.txt").size == 2
        for call in (
            lambda: single.open("only/other.txt", "wb"),
            lambda: single.exists("other.txt"),
            lambda: single.delete("only/this.txt.bak"),
            lambda: single.copy("only/this.txt", "copy.txt"),
        ):
            with pytest.raises(InvalidPathError, match="only"):
                call()
        with pytest.raises(UnsupportedOperationError):
            single.list()
        with pytest.raises(UnsupportedOperationError, match="account key"):
            single.link_to("only/this.txt", "download", FIVE_MINUTES)
        single.delete("only/this.txt")
    assert not backend_azure.exists("only/this.txt")


def test_read_only_container_sas_refuses_writes(
    azurite: Azurite, azure_container: ContainerClient, backend_azure: AzureStorage
) -> None:
    backend_azure.upload(io.BytesIO(b"old"), "a.txt")
    sas = generate_container_sas(
        azurite.account,
        azure_container.container_name,
        account_key=azurite.key,
        permission=ContainerSasPermissions(read=True, list=True),
        expiry=datetime.now(timezone.utc) + FIVE_MINUTES,
    )
    with AzureStorage(sas_container_url=f"{azure_container.url}?{sas}") as reader:
        assert reader.exists("a.txt")
        with pytest.raises(StoragePermissionError) as raised:
            reader.upload(io.BytesIO(b"new"), "a.txt")
        assert "a.txt" in str(raised.value)
        with pytest.raises(StoragePermissionError):
            reader.delete("a.txt")
    with backend_azure.open("a.txt") as file:
        assert file.read() == b"old"


@pytest.mark.parametrize("bypassed", [False, True], ids=["proxied", "no_proxy"])
def test_the_environment_s_proxy_settings_are_followed(
    azurite: Azurite,
    azure_container: ContainerClient,
    monkeypatch: pytest.MonkeyPatch,
    bypassed: bool,
) -> None:
    """HTTP_PROXY (here a port nothing listens on) carries the requests, unless NO_PROXY names
    the service's host, as for the SDK's own transport."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1" if bypassed else "example.invalid")
    with AzureStorage(
        azurite.account,
        azurite.key,
        azure_container.container_name,
        account_url=azurite.account_url,
        retry=0,
    ) as storage:
        if bypassed:
            assert storage.exists("absent.txt") is False
        else:
            with pytest.raises(StorageConnectionError):
                storage.exists("absent.txt")


def test_constructor_needs_a_way_to_connect() -> None:
    with pytest.raises(ValueError, match="sas_container_url"):
        AzureStorage(account="acct", key="a2V5")


# -- writing --------------------------------------------------------------------------------


def test_blocks_are_committed_in_order(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    data = bytes(range(256)) * (BLOCK * 10 // 256) + b"tail"
    with small_blocks.open("big.bin", "wb") as file:
        for start in range(0, len(data), 1000):
            file.write(data[start : start + 1000])
    blob = azure_container.get_blob_client("big.bin")
    committed, uncommitted = blob.get_block_list("all")
    assert [block.size for block in committed] == [BLOCK] * 10 + [4]
    assert uncommitted == []
    assert blob.download_blob().readall() == data


def test_aborted_write_commits_nothing(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    small_blocks.upload(io.BytesIO(b"previous"), "doc.txt")
    with pytest.raises(RuntimeError), small_blocks.open("doc.txt", "wb") as file:
        file.write(b"x" * BLOCK * 5)
        raise RuntimeError("the application failed halfway")
    writer = small_blocks.open("new.txt", "wb")
    writer.write(b"y" * BLOCK * 3)
    writer.abort()
    blob = azure_container.get_blob_client("doc.txt")
    assert blob.download_blob().readall() == b"previous"
    assert blob.get_block_list("committed")[0] == []  # still the single-request upload
    assert not azure_container.get_blob_client("new.txt").exists()
    assert [entry.name for entry in small_blocks.list()] == ["doc.txt"]


def test_empty_write_creates_an_empty_blob(
    backend_azure: AzureStorage, azure_container: ContainerClient
) -> None:
    with backend_azure.open("empty.txt", "wb"):
        pass
    assert azure_container.get_blob_client("empty.txt").get_blob_properties().size == 0


@pytest.mark.parametrize("size", [10, BLOCK * 3 + 1], ids=["single-put", "blocks"])
def test_extra_args_become_content_settings_and_metadata(
    small_blocks: AzureStorage, azure_container: ContainerClient, size: int, tmp_path: Path
) -> None:
    extra_args = {
        "ContentType": "application/json",
        "ContentEncoding": "gzip",
        "CacheControl": "max-age=60",
        "ContentDisposition": "inline",
        "ContentLanguage": "fr",
        "Metadata": {"owner": "alice", "purpose": "test"},
    }
    small_blocks.upload(
        io.BytesIO(b"{}" * (size // 2) + b"}" * (size % 2)), "a.json", extra_args=extra_args
    )
    with small_blocks.open("b.json", "wb", extra_args=extra_args) as file:
        file.write(b"x" * size)
    local = tmp_path / "c.json"
    local.write_bytes(b"z" * size)
    small_blocks.put(str(local), "c.json", extra_args=extra_args)
    for name in ("a.json", "b.json", "c.json"):
        properties = azure_container.get_blob_client(name).get_blob_properties()
        settings = properties.content_settings
        assert (settings.content_type, settings.content_encoding) == ("application/json", "gzip")
        assert (settings.cache_control, settings.content_disposition) == ("max-age=60", "inline")
        assert settings.content_language == "fr"
        assert properties.metadata == {"owner": "alice", "purpose": "test"}
        assert properties.size == size
    assert small_blocks.stat("a.json").content_type == "application/json"


def test_local_file_is_staged_in_large_streamed_blocks(
    small_blocks: AzureStorage, azure_container: ContainerClient, tmp_path: Path
) -> None:
    """A local file needs no buffering, so ``upload`` stages fewer, larger blocks than
    ``chunk_size``: one per parallel transfer here (64 KiB chunks, 3 transfers)."""
    data = bytes(range(256)) * (BLOCK * 12 // 256) + b"end"
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    with local.open("rb") as file:
        small_blocks.upload(file, "big.bin")
        assert file.tell() == len(data)
    blob = azure_container.get_blob_client("big.bin")
    committed, uncommitted = blob.get_block_list("all")
    block = -(-len(data) // 3)
    assert [b.size for b in committed] == [block, block, len(data) - 2 * block]
    assert uncommitted == []
    assert blob.download_blob().readall() == data


def test_progress_of_a_local_file_follows_the_bytes_sent(
    small_blocks: AzureStorage, azure_container: ContainerClient, tmp_path: Path
) -> None:
    """Streamed blocks report bytes as they are sent, not all at once when queued; a callback
    that raises stops the upload and the old blob stays."""
    data = bytes(range(256)) * (16 * MiB // 256)  # long enough that a cancel comes in time
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    seen: list[int] = []
    small_blocks.put(str(local), "big.bin", progress_callback=seen.append)
    assert seen == sorted(seen) and seen[-1] == len(data)
    assert len(seen) > 3  # finer than the three blocks
    small_blocks.upload(io.BytesIO(b"previous"), "doc.bin")

    def cancel(count: int) -> None:
        raise KeyboardInterrupt("user cancelled")

    with pytest.raises(KeyboardInterrupt):
        small_blocks.put(str(local), "doc.bin", progress_callback=cancel)
    assert azure_container.get_blob_client("doc.bin").download_blob().readall() == b"previous"


def test_temporary_file_written_then_rewound_uploads_whole(
    small_blocks: AzureStorage, tmp_path: Path
) -> None:
    data = bytes(range(256)) * (BLOCK * 5 // 256)
    with tempfile.TemporaryFile(dir=tmp_path) as scratch:
        scratch.write(data)
        scratch.seek(0)
        small_blocks.upload(scratch, "scratch.bin")
    assert small_blocks.open("scratch.bin", "rb").read() == data


def test_file_that_shrinks_while_staged_commits_nothing(
    small_blocks: AzureStorage, azure_container: ContainerClient, tmp_path: Path
) -> None:
    """Staging reads the file by offset: a file cut short meanwhile (here, one shorter than the
    size the upload started with) fails with the path named, and the old blob stays."""
    small_blocks.upload(io.BytesIO(b"previous"), "doc.bin")
    local = tmp_path / "doc.bin"
    local.write_bytes(b"x" * BLOCK * 2)
    with (
        local.open("rb") as file,
        pytest.raises(StorageError, match=r"doc\.bin") as failure,
        small_blocks.open("doc.bin", "wb") as writer,
    ):
        assert isinstance(writer, AzureWriter)
        writer.stage_local_file(file.fileno(), 0, BLOCK * 4, BLOCK, lambda count: None)
    assert "ended at byte 131072" in str(failure.value)
    blob = azure_container.get_blob_client("doc.bin")
    assert blob.download_blob().readall() == b"previous"


def test_writer_refuses_more_blocks_than_a_blob_holds(
    small_blocks: AzureStorage, azure_container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service's limit is 50,000 blocks; lowered here so that a small write reaches it."""
    monkeypatch.setattr(azure_files, "MAX_BLOCKS", 3)
    small_blocks.upload(io.BytesIO(b"previous"), "doc.bin")
    with (
        pytest.raises(StorageError, match=r"at most 3 blocks.*doc\.bin"),
        small_blocks.open("doc.bin", "wb") as writer,
    ):
        writer.write(b"x" * BLOCK * 5)
    assert azure_container.get_blob_client("doc.bin").download_blob().readall() == b"previous"


@pytest.mark.parametrize(
    ("size", "block"),
    [
        (12 * MiB, 5 * MiB),  # chunk_size at least
        (40 * MiB, 10 * MiB),  # one block per parallel transfer
        (256 * MiB, 16 * MiB),  # STREAMED_BLOCK_SIZE at most...
        (1024**4, -(-(1024**4) // 50_000)),  # ...unless 50,000 blocks need more
    ],
)
def test_upload_block_size_follows_the_file_size(size: int, block: int) -> None:
    storage = AzureStorage("account", "a2V5", "container", max_concurrency=4)
    assert storage.upload_block_size(size) == block


def test_unknown_extra_args_are_refused(backend_azure: AzureStorage) -> None:
    with pytest.raises(UnsupportedOperationError, match="ACL"):
        backend_azure.open("a.txt", "wb", extra_args={"ACL": "public-read"})


def test_copy_keeps_content_settings(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    small_blocks.upload(
        io.BytesIO(b"z" * BLOCK * 2),
        "src.bin",
        extra_args={"ContentType": "image/png", "Metadata": {"k": "v"}},
    )
    small_blocks.copy("src.bin", "dst.bin")
    properties = azure_container.get_blob_client("dst.bin").get_blob_properties()
    assert properties.content_settings.content_type == "image/png"
    assert properties.metadata == {"k": "v"}
    assert properties.copy.status == "success"
    with pytest.raises(FileNotFoundInStorageError, match=r"missing\.bin"):
        small_blocks.copy("missing.bin", "dst.bin")


# -- reading --------------------------------------------------------------------------------


def test_reader_is_pinned_to_the_version_it_opened(
    azurite: Azurite, azure_container: ContainerClient
) -> None:
    azure_container.upload_blob("v.bin", b"1" * BLOCK * 3)
    with (
        AzureStorage(
            azurite.account,
            azurite.key,
            azure_container.container_name,
            chunk_size=BLOCK,
            max_concurrency=1,
            account_url=azurite.account_url,
        ) as storage,
        storage.open("v.bin") as file,
    ):
        assert file.read(BLOCK) == b"1" * BLOCK
        azure_container.upload_blob("v.bin", b"2" * BLOCK * 3, overwrite=True)
        with pytest.raises(StorageError, match="changed"):
            file.read()


def test_compressed_blobs_read_as_stored(backend_azure: AzureStorage) -> None:
    stored = gzip.compress(b"hello world " * 1000)
    backend_azure.upload(io.BytesIO(stored), "a.txt.gz", extra_args={"ContentEncoding": "gzip"})
    with backend_azure.open("a.txt.gz") as file:
        assert file.read() == stored
        file.seek(10)
        assert file.read(5) == stored[10:15]
    out = io.BytesIO()
    backend_azure.download("a.txt.gz", out)
    assert out.getvalue() == stored
    assert backend_azure.stat("a.txt.gz").size == len(stored)


def test_reader_and_writer_keep_their_documented_names(
    backend_azure: AzureStorage,
) -> None:
    with backend_azure.open("a.txt", FileMode.write) as writer:
        assert isinstance(writer, AzureWriter)
        writer.write(b"abc")
    with backend_azure.open("a.txt", FileMode.read) as reader:
        assert isinstance(reader, AzureReader)
        reader.seek(-2, io.SEEK_END)
        assert reader.read() == b"bc"


def test_missing_blob_fails_at_open(backend_azure: AzureStorage) -> None:
    with pytest.raises(FileNotFoundInStorageError, match=r"nope\.txt"):
        backend_azure.open("nope.txt")


# -- paths, errors, sharing -----------------------------------------------------------------


def test_backslash_is_refused_because_azure_reads_it_as_slash(
    backend_azure: AzureStorage,
) -> None:
    with pytest.raises(InvalidPathError, match="cannot be kept"):
        backend_azure.open("a\\b.txt", "wb")
    assert backend_azure.list() == []


def test_folder_marker_blobs_are_not_listed(
    backend_azure: AzureStorage, azure_container: ContainerClient
) -> None:
    azure_container.upload_blob("folder/", b"")
    azure_container.upload_blob("folder/file.txt", b"1")
    assert [entry.name for entry in backend_azure.list()] == ["folder/file.txt"]
    assert [entry.name for entry in backend_azure.list(recursive=False)] == ["folder/"]


def test_missing_container_is_named(azurite: Azurite) -> None:
    with AzureStorage(
        azurite.account, azurite.key, "no-such-container", account_url=azurite.account_url
    ) as storage:
        with pytest.raises(StorageError, match="container does not exist"):
            storage.list()
        with pytest.raises(StorageError, match="container does not exist"):
            storage.upload(io.BytesIO(b"x"), "a.txt")
        with pytest.raises(StorageError, match="container does not exist"):
            storage.exists("a.txt")


def test_wrong_key_is_a_permission_error(
    azurite: Azurite, azure_container: ContainerClient
) -> None:
    with (
        AzureStorage(
            azurite.account,
            "d3Jvbmcga2V5",
            azure_container.container_name,
            account_url=azurite.account_url,
        ) as storage,
        pytest.raises(StoragePermissionError) as raised,
    ):
        storage.exists("a.txt")
    assert raised.value.__cause__ is not None
    assert "d3Jvbmcga2V5" not in str(raised.value) + repr(storage)


def test_unreachable_service_is_a_connection_error(azure_container: ContainerClient) -> None:
    with AzureStorage(
        "devstoreaccount1",
        "a2V5",
        azure_container.container_name,
        account_url=f"http://127.0.0.1:{free_port()}/devstoreaccount1",
        retry=0,
        timeout=2,
    ) as storage:
        start = time.monotonic()
        with pytest.raises(StorageConnectionError):
            storage.exists("a.txt")
    assert time.monotonic() - start < 5


def test_secrets_stay_out_of_repr(azurite: Azurite, backend_azure: AzureStorage) -> None:
    container_url = backend_azure.create_container_url(FIVE_MINUTES)
    with AzureStorage(sas_container_url=container_url) as shared:
        assert sas_params(container_url)["sig"] not in repr(shared)
    assert azurite.key not in repr(backend_azure)


def test_one_backend_serves_many_threads(small_blocks: AzureStorage) -> None:
    def roundtrip(index: int) -> bytes:
        data = bytes([index]) * (BLOCK * 2 + index)
        small_blocks.upload(io.BytesIO(data), f"t/{index}.bin")
        out = io.BytesIO()
        small_blocks.download(f"t/{index}.bin", out)
        return out.getvalue()

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(roundtrip, range(16)))
    assert [len(result) for result in results] == [BLOCK * 2 + index for index in range(16)]
    assert len(small_blocks.list("t")) == 16


def test_close_is_idempotent_and_the_backend_reconnects(backend_azure: AzureStorage) -> None:
    backend_azure.upload(io.BytesIO(b"a"), "a.txt")
    backend_azure.close()
    backend_azure.close()
    assert backend_azure.exists("a.txt")


def test_missing_sdk_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['azure.storage.blob'] = None\n"
        "from keg_storage.backends.azure import AzureStorage\n"
        "from keg_storage.errors import MissingDependencyError\n"
        "try:\n"
        "    AzureStorage('a', 'k', 'b')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert 'pip install "keg-storage[azure]"' in out


def sdk_requests(storage: AzureStorage) -> list[str]:
    """``METHOD path`` of every request the storage sends through the SDK from now on (a
    requests response hook on its transport, no mock)."""
    transport: Any = storage.clients().container._pipeline._transport  # type: ignore[union-attr]
    while not hasattr(transport, "session"):  # the SDK wraps the transport it shares
        transport = transport._transport
    sent: list[str] = []
    transport.session.hooks["response"].append(
        lambda response, **_: sent.append(
            f"{response.request.method} {urlsplit(response.url).path}"
        )
    )
    return sent


def sent_requests(storage: AzureStorage) -> list[str]:
    """``METHOD path`` of every request the storage sends from now on, through the SDK or
    directly (:mod:`.azure_direct`: each request its connections answered, recorded on the way
    back, no mock)."""
    sent = sdk_requests(storage)
    direct = storage.clients().direct
    assert direct is not None
    send = direct.connections.answer

    def answer(
        request: Request, failed: Callable[[BaseException], None] | None = None
    ) -> Answer | None:
        answered = send(request, failed)
        sent.append(f"{request.method} {urlsplit(request.target).path}")
        return answered

    direct.connections.answer = answer  # type: ignore[method-assign]
    return sent


def test_small_blobs_are_read_without_the_sdk(small_blocks: AzureStorage) -> None:
    """``exists`` and a download of a small blob send their requests directly."""
    small_blocks.upload(io.BytesIO(b"small body"), "small.txt")
    through_sdk, sent = sdk_requests(small_blocks), sent_requests(small_blocks)
    assert small_blocks.exists("small.txt")
    assert not small_blocks.exists("missing.txt")
    target = io.BytesIO()
    small_blocks.download("small.txt", target)
    assert target.getvalue() == b"small body"
    assert [request.split()[0] for request in sent] == ["HEAD", "HEAD", "GET"]
    assert through_sdk == []


SETTINGS = {
    "ContentType": "text/csv; charset=utf-8",
    "ContentEncoding": "gzip",
    "ContentDisposition": 'attachment; filename="r.csv"',
    "ContentLanguage": "fr",
    "CacheControl": "max-age=60",
    "Metadata": {"owner": "ops", "mtime": "2024-01-01T00:00:00Z"},
}


def test_an_empty_blob_downloads_with_a_direct_get_and_its_properties(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    """The service refuses a range of an empty blob (416): its properties give the size."""
    azure_container.upload_blob("empty.txt", b"")
    through_sdk, sent = sdk_requests(small_blocks), sent_requests(small_blocks)
    target = io.BytesIO(b"old")
    target.seek(0, io.SEEK_END)
    small_blocks.download("empty.txt", target)
    assert target.getvalue() == b"old"
    assert [request.split()[0] for request in sent] == ["GET", "HEAD"]
    assert [request.split()[0] for request in through_sdk] == ["HEAD"]


def test_without_direct_requests_every_request_goes_through_the_sdk(
    azurite: Azurite, azure_container: ContainerClient
) -> None:
    with AzureStorage(
        azurite.account,
        azurite.key,
        azure_container.container_name,
        account_url=azurite.account_url,
        direct_requests=False,
    ) as storage:
        assert storage.clients().direct is None
        through_sdk = sdk_requests(storage)
        storage.upload(io.BytesIO(b"body"), "a.txt")
        assert storage.exists("a.txt")
        target = io.BytesIO()
        storage.download("a.txt", target)
        assert target.getvalue() == b"body"
    assert [request.split()[0] for request in through_sdk] == ["PUT", "HEAD", "GET"]


def test_a_small_upload_goes_directly_and_stores_what_the_sdk_stores(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    """One Put Blob without the SDK, with every content setting and metadata as headers."""
    sdk_sent, sent = sdk_requests(small_blocks), sent_requests(small_blocks)
    progress: list[int] = []
    small_blocks.upload(
        io.BytesIO(b"a,b\n"), "direct.csv", extra_args=SETTINGS, progress_callback=progress.append
    )
    assert [request.split()[0] for request in sent] == ["PUT"] and sdk_sent == []
    assert progress == [4]
    azure_container.upload_blob(
        "sdk.csv",
        b"a,b\n",
        content_settings=ContentSettings(
            content_type="text/csv; charset=utf-8",
            content_encoding="gzip",
            content_disposition='attachment; filename="r.csv"',
            content_language="fr",
            cache_control="max-age=60",
        ),
        metadata={"owner": "ops", "mtime": "2024-01-01T00:00:00Z"},
    )
    stored, by_sdk = (
        azure_container.get_blob_client(name).get_blob_properties()
        for name in ("direct.csv", "sdk.csv")
    )
    assert stored.content_settings == by_sdk.content_settings
    assert stored.metadata == by_sdk.metadata == SETTINGS["Metadata"]
    assert stored.blob_type == by_sdk.blob_type
    assert azure_container.download_blob("direct.csv", decompress=False).readall() == b"a,b\n"


def test_an_upload_the_direct_request_cannot_carry_goes_through_the_sdk(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    """Metadata the SDK would check or encode, a conditional upload and a body above a chunk
    go through the SDK."""
    direct = small_blocks.clients().direct
    assert direct is not None
    for metadata in ({"a-b": "1"}, {"a": "é"}, {"a": "line\nbreak"}, {"a": 1}):
        assert direct.request("x.txt", b"x", {"Metadata": metadata}) is None
    assert direct.request("x.txt", b"x", {"ContentType": None}) is None
    sdk_sent = sdk_requests(small_blocks)
    small_blocks.upload(io.BytesIO(b"x"), "new.txt", overwrite=False)
    small_blocks.upload(io.BytesIO(b"y" * (BLOCK + 1)), "blocks.bin")
    assert [request.split()[0] for request in sdk_sent] == ["PUT", "PUT", "PUT", "PUT"]
    assert azure_container.download_blob("new.txt").readall() == b"x"
    assert azure_container.download_blob("blocks.bin").readall() == b"y" * (BLOCK + 1)


def test_a_small_file_written_with_open_goes_directly(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    """``open('wb')`` of a file smaller than a block is one Put Blob without the SDK, its
    settings as headers; a conditional writer and a larger file go through the SDK."""
    sdk_sent, sent = sdk_requests(small_blocks), sent_requests(small_blocks)
    with small_blocks.open("written.csv", "wb", extra_args=SETTINGS) as file:
        file.write(b"a,")
        file.write(b"b\n")
    assert [request.split()[0] for request in sent] == ["PUT"] and sdk_sent == []
    properties = azure_container.get_blob_client("written.csv").get_blob_properties()
    assert properties.content_settings.content_type == SETTINGS["ContentType"]
    assert properties.metadata == SETTINGS["Metadata"]
    assert azure_container.download_blob("written.csv", decompress=False).readall() == b"a,b\n"
    sent.clear()
    with small_blocks.open("created.csv", "wb", overwrite=False) as file:
        file.write(b"x")
    with small_blocks.open("large.bin", "wb") as file:
        file.write(b"y" * (BLOCK + 1))
    assert [request.split()[0] for request in sdk_sent] == ["PUT", "PUT", "PUT", "PUT"]
    assert sent == sdk_sent


def test_an_upload_whose_direct_put_is_refused_goes_once_through_the_sdk(
    small_blocks: AzureStorage, azure_container: ContainerClient
) -> None:
    """Metadata the direct request cannot carry: one Put Blob, through the SDK only."""
    sdk_sent, sent = sdk_requests(small_blocks), sent_requests(small_blocks)
    small_blocks.upload(io.BytesIO(b"x"), "meta.txt", extra_args={"Metadata": {"a": "é"}})
    assert sent == sdk_sent and [request.split()[0] for request in sent] == ["PUT"]
    properties = azure_container.get_blob_client("meta.txt").get_blob_properties()
    assert properties.metadata == {"a": "é"}


@pytest.mark.parametrize(
    ("chunk_size", "directly"), [(2 * MiB, ["GET"]), (32 * MiB, [])], ids=["2 MiB", "32 MiB"]
)
def test_the_first_chunk_goes_directly_up_to_16_mib(
    azurite: Azurite, azure_container: ContainerClient, chunk_size: int, directly: list[str]
) -> None:
    """A first chunk of 2 MiB is one direct GET (the SDK reads the second chunk); one of
    32 MiB would be held whole outside the SDK: the SDK reads it (the whole 3 MiB blob)."""
    data = bytes(range(256)) * (3 * MiB // 256) + b"end"
    azure_container.upload_blob("big.bin", data)
    with AzureStorage(
        azurite.account,
        azurite.key,
        azure_container.container_name,
        chunk_size=chunk_size,
        account_url=azurite.account_url,
    ) as storage:
        through_sdk, sent = sdk_requests(storage), sent_requests(storage)
        target = io.BytesIO()
        storage.download("big.bin", target)
        assert target.getvalue() == data
    assert [request.split()[0] for request in through_sdk] == ["GET"]
    assert [request.split()[0] for request in sent] == [*directly, "GET"]


def test_a_sas_without_read_permission_reads_through_the_sdk(
    azurite: Azurite, azure_container: ContainerClient
) -> None:
    """A container SAS that may write and list only: the first direct read is refused, and
    from then on the SDK reads (and says what the service refuses)."""
    azure_container.upload_blob("there.txt", b"body")
    sas = generate_container_sas(
        azurite.account,
        azure_container.container_name,
        account_key=azurite.key,
        permission=ContainerSasPermissions(write=True, create=True, list=True),
        expiry=datetime.now(timezone.utc) + FIVE_MINUTES,
    )
    with AzureStorage(sas_container_url=f"{azure_container.url}?{sas}") as writer:
        sent = sent_requests(writer)
        with pytest.raises(StoragePermissionError) as raised:
            writer.exists("there.txt")
        assert raised.value.path == "there.txt"
        with pytest.raises(StoragePermissionError):
            writer.download("there.txt", io.BytesIO())
        writer.upload(io.BytesIO(b"new"), "new.txt")
        assert [item.name for item in writer.list()] == ["new.txt", "there.txt"]
    assert [request.split()[0] for request in sent] == ["HEAD", "HEAD", "GET", "PUT", "GET"]
    assert azure_container.download_blob("new.txt").readall() == b"new"


def test_download_of_a_small_blob_is_one_get(small_blocks: AzureStorage, tmp_path: Path) -> None:
    """Issue 18: the first ranged GET tells the size, so no properties request precedes it."""
    small_blocks.upload(io.BytesIO(b"small body"), "small.txt")
    sent = sent_requests(small_blocks)
    target = io.BytesIO()
    small_blocks.download("small.txt", target)
    small_blocks.get("small.txt", tmp_path / "small.txt")
    assert target.getvalue() == b"small body"
    assert (tmp_path / "small.txt").read_bytes() == b"small body"
    assert [request.split()[0] for request in sent] == ["GET", "GET"]


def test_a_small_blob_is_read_without_the_sdk(small_blocks: AzureStorage) -> None:
    """Its properties request and its first GET go directly (:mod:`.azure_direct`)."""
    small_blocks.upload(io.BytesIO(b"small body"), "small.txt")
    sdk_sent = sent_requests(small_blocks)
    direct = small_blocks.clients().direct
    assert direct is not None
    sent_directly = direct.connections.answer
    assert small_blocks.exists("small.txt")
    assert not small_blocks.exists("missing.txt")
    target = io.BytesIO()
    small_blocks.download("small.txt", target)
    assert target.getvalue() == b"small body"
    assert small_blocks.clients().direct is direct
    assert direct.connections.answer is sent_directly
    assert [request.split()[0] for request in sdk_sent] == ["HEAD", "HEAD", "GET"]


def test_download_of_a_larger_blob_is_only_ranged_gets(small_blocks: AzureStorage) -> None:
    data = bytes(range(256)) * (3 * BLOCK // 256) + b"end"
    small_blocks.upload(io.BytesIO(data), "large.bin")
    sent = sent_requests(small_blocks)
    target = io.BytesIO()
    small_blocks.download("large.bin", target)
    assert target.getvalue() == data
    assert [request.split()[0] for request in sent] == ["GET"] * 4
