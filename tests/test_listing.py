"""Lazy listings (CONTRACT §11) as a user sees them on each backend: requests or directory reads
made before the first entry, errors raised while iterating, and the CLI printing as it goes.
The order itself is checked on every backend by the kit's ListingCases (tests/conformance)."""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import arrow
import click
import pytest
from click.testing import CliRunner

from keg_storage import (
    FileNotFoundInStorageError,
    InvalidPathError,
    LocalFSStorage,
    MemoryStorage,
    StorageBackend,
    StorageConnectionError,
    StorageError,
)
from keg_storage.backends.base import ListEntry
from keg_storage.backends.sftp_transport import SSH_LOG
from keg_storage.cli import add_storage_commands, set_backend_factory


def fill(storage: StorageBackend, keys: list[str]) -> None:
    def put(key: str) -> None:
        with storage.open(key, "wb") as file:
            file.write(b"x")

    with ThreadPoolExecutor(8) as executor:
        list(executor.map(put, keys))


class BrokenHalfway(MemoryStorage):
    """A store whose connection drops after the first entry of a listing."""

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        yield next(iter(super()._list(prefix, recursive)))
        raise ConnectionResetError("the server went away")

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        if isinstance(error, ConnectionError):
            return StorageConnectionError(str(error), backend=self, path=path)
        return None


def test_errors_while_iterating_are_translated_and_name_the_path() -> None:
    storage = BrokenHalfway()
    fill(storage, ["docs/a.txt", "docs/b.txt"])
    entries = storage.iter_list("docs")
    assert next(entries).name == "docs/a.txt"
    with pytest.raises(StorageConnectionError) as raised:
        next(entries)
    assert raised.value.path == "docs/"
    assert "the server went away" in str(raised.value)
    assert isinstance(raised.value.__cause__, ConnectionResetError)


def test_cli_list_prints_entries_as_they_arrive(tmp_path: Path) -> None:
    """What was listed before a failure is on stdout; the failure is one line, exit code 1."""
    storage = BrokenHalfway()
    fill(storage, ["docs/a.txt", "docs/b.txt"])

    @click.group()
    @click.pass_context
    def group(ctx: click.Context) -> None:
        set_backend_factory(ctx, lambda: storage)

    result = CliRunner().invoke(add_storage_commands(group), ["list", "--simple", "docs"])
    assert result.exit_code == 1
    assert result.stdout == "docs/a.txt\n"
    assert "the server went away" in result.stderr
    assert "Traceback" not in result.output


def test_localfs_symlinked_directory_fails_while_iterating(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "f.txt").write_bytes(b"x")
    (root / "link").symlink_to(root / "real")
    storage = LocalFSStorage(root)
    entries = storage.iter_list("link")  # the path is valid: the walk finds the symlink
    with pytest.raises(InvalidPathError) as raised:
        next(entries)
    assert raised.value.path == "link/"


def test_localfs_reads_one_directory_before_the_first_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first entry of a tree of 20 directories comes after reading the root and the first
    directory only (a spy on os.scandir counts the directories read)."""
    for directory in range(20):
        (tmp_path / f"d{directory:02}").mkdir()
        (tmp_path / f"d{directory:02}" / "f.txt").write_bytes(b"x")
    storage = LocalFSStorage(tmp_path)
    reads: list[object] = []
    real_scandir = os.scandir

    def counting_scandir(path: Any) -> Any:
        reads.append(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", counting_scandir)
    entries = storage.iter_list()
    assert next(entries).name == "d00/f.txt"
    assert len(reads) == 2
    assert len(list(entries)) == 19
    assert len(reads) == 21


def test_s3_first_entry_after_one_request(backend_s3: Any) -> None:
    """25 keys in pages of 10: one ListObjectsV2 request before the first entry, three in all
    (SeaweedFS: one delimited listing per directory, here one)."""
    fill(backend_s3, [f"docs/{index:02}.txt" for index in range(25)])
    backend_s3.list_page_size = 10
    requests: list[str] = []
    backend_s3.client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **kwargs: requests.append("list")
    )
    entries = backend_s3.iter_list("docs")
    assert next(entries).name == "docs/00.txt"
    assert len(requests) == 1
    assert [entry.name for entry in entries][-1] == "docs/24.txt"
    assert len(requests) == 3


def test_s3_missing_bucket_fails_while_iterating(seaweedfs: Any) -> None:
    from tests.fixtures.backend_s3 import make_storage

    with make_storage(seaweedfs, "no-such-bucket-here") as storage:
        entries = storage.iter_list("docs")
        with pytest.raises(StorageError) as raised:
            next(entries)
    assert raised.value.path == "docs/"
    assert raised.value.reason == "the bucket does not exist"


def test_azure_first_entry_after_one_request(
    backend_azure: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """25 blobs in pages of 10: one List Blobs request before the first entry, three in all
    (counted in azure-core's request log)."""
    fill(backend_azure, [f"docs/{index:02}.txt" for index in range(25)])
    backend_azure.list_page_size = 10
    caplog.set_level(logging.INFO, "azure.core.pipeline.policies.http_logging_policy")

    def requests() -> int:
        return sum(  # the log hides query values: "comp=REDACTED"
            record.getMessage().startswith("Request URL:") and "&comp=" in record.getMessage()
            for record in caplog.records
        )

    entries = backend_azure.iter_list("docs")
    assert next(entries).name == "docs/00.txt"
    assert requests() == 1
    assert [entry.name for entry in entries][-1] == "docs/24.txt"
    assert requests() == 3


def test_azure_pages_continue_after_names_a_url_query_reserves(backend_azure: Any) -> None:
    """Pages of one blob: each next page starts from a name holding ``?``, ``#``, ``&``, ``%``,
    ``+`` or a space (sent as the marker), and a prefix may hold them too."""
    names = ["a b/1", "a#b/2", "a%20b", "a&b=c", "a+b", "a?b/3", "a?b/4", "\u00e9"]
    fill(backend_azure, names)
    backend_azure.list_page_size = 1
    assert [entry.name for entry in backend_azure.iter_list()] == sorted(names)
    assert [entry.name for entry in backend_azure.iter_list("a?b")] == ["a?b/3", "a?b/4"]
    assert [entry.name for entry in backend_azure.iter_list(recursive=False)] == [
        "a b/",
        "a#b/",
        "a%20b",
        "a&b=c",
        "a+b",
        "a?b/",
        "\u00e9",
    ]


def test_azure_missing_container_fails_while_iterating(azurite: Any) -> None:
    from keg_storage.backends.azure import AzureStorage

    with AzureStorage(
        azurite.account, azurite.key, "no-such-container", account_url=azurite.account_url
    ) as storage:
        entries = storage.iter_list("docs")
        with pytest.raises(StorageError) as raised:
            next(entries)
    assert raised.value.path == "docs/"
    assert raised.value.reason.startswith("the container does not exist")
    assert not isinstance(raised.value, FileNotFoundInStorageError)


def test_sftp_reads_one_directory_at_a_time(
    backend_sftp: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """paramiko logs each directory read (``listdir``, on our SSH logger): two before the
    first entry of a tree of five directories (the root and the first), six in all."""
    fill(backend_sftp, [f"d{directory}/f.txt" for directory in range(5)])
    caplog.set_level(logging.DEBUG, SSH_LOG)

    def reads() -> int:  # "[chan 1] listdir(b'/srv/t-.../d0/')"
        return sum("] listdir(" in record.getMessage() for record in caplog.records)

    entries = backend_sftp.iter_list()
    assert next(entries).name == "d0/f.txt"
    assert reads() == 2
    assert len(list(entries)) == 4
    assert reads() == 6


@pytest.mark.parametrize(
    "text",
    [
        "Sat, 05 Dec 2026 00:02:24 GMT",  # HTTP's form, which Azure sends
        "05 Dec 2026 00:02:24 GMT",  # other forms go through the email parser
        "Sat, 05 Dec 2026 01:02:24 +0100",
    ],
)
def test_azure_modification_times_are_read_as_utc_arrows(text: str) -> None:
    from keg_storage.backends.azure_list_pages import http_date

    moment = http_date(text)
    assert moment == arrow.Arrow(2026, 12, 5, 0, 2, 24, tzinfo=datetime.timezone.utc)
    assert moment.tzinfo == datetime.timezone.utc
