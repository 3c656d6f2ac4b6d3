"""``put`` blames the local file it reads, on every backend (issue 14.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from keg_storage.backends.base import StorageBackend
from keg_storage.errors import StorageError
from tests.conftest import BACKENDS


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Iterator[StorageBackend]:
    yield request.getfixturevalue(f"backend_{request.param}")


def test_missing_local_file(storage: StorageBackend, tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    with pytest.raises(FileNotFoundError) as raised:
        storage.put(missing, "x.txt")
    assert not isinstance(raised.value, StorageError)
    assert raised.value.filename == str(missing)
    assert str(raised.value) == f"[Errno 2] No such file or directory: '{missing}'"
    assert not storage.exists("x.txt")


def test_local_directory(storage: StorageBackend, tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError) as raised:
        storage.put(tmp_path, "x.txt")
    assert str(raised.value) == f"[Errno 21] Is a directory: '{tmp_path}'"
    assert not storage.exists("x.txt")
