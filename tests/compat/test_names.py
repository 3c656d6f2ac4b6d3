"""Smaller keg-storage 0.5 names that code imports or overrides."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import jwt
import pytest

from keg_storage.backends import base, filesystem
from keg_storage.errors import InvalidPathError


def test_plugin_and_cli_after_a_bare_import() -> None:
    code = textwrap.dedent(
        """
        import keg_storage
        print(keg_storage.plugin.Storage.__name__, keg_storage.cli.storage_list.name)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["Storage", "list"]


def test_expire_time_to_seconds_in_base_and_s3() -> None:
    from keg_storage.backends import s3

    assert s3.expire_time_to_seconds is base.expire_time_to_seconds
    assert 3590 < base.expire_time_to_seconds(timedelta(hours=1)) <= 3600
    with pytest.raises(ValueError, match="past"):
        base.expire_time_to_seconds(timedelta(seconds=-1))


def test_disallowed_path_chars_of_a_localfs_subclass(tmp_path: Path) -> None:
    assert filesystem.LocalFSStorage.disallowed_path_chars == frozenset()

    class NoTilde(filesystem.LocalFSStorage):
        disallowed_path_chars = frozenset("~")

    with pytest.raises(InvalidPathError):
        NoTilde(tmp_path).open("a~b.txt", "wb")
    filesystem.LocalFSStorage(tmp_path).delete("a~b.txt")


def test_azure_writer_max_block_size() -> None:
    from keg_storage.backends.azure import AzureWriter

    assert AzureWriter.max_block_size == 4000 * 1024 * 1024


def test_get_token_signing_key_is_the_overridable_hook(tmp_path: Path) -> None:
    class OwnKey(filesystem.LocalFSStorage):
        def get_token_signing_key(self) -> bytes:
            return b"k" * 64

    storage = OwnKey(tmp_path, secret_key="unused", name="own")
    token = storage.create_link_token(path="a.txt", operation="d", expire=timedelta(minutes=1))
    assert jwt.decode(token, b"k" * 64, algorithms=["HS512"])["key"] == "a.txt"
    assert storage.deserialize_link_token(token).path == "a.txt"
    plain = filesystem.LocalFSStorage(tmp_path, secret_key="unused", name="own")
    assert plain.get_token_signing_key() != b"k" * 64
