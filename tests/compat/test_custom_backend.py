"""A custom backend written for keg-storage 0.5 (public open/list/delete/copy only) gets every
operation derived from them, each going through its overrides."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from keg_storage import FileNotFoundInStorageError

from .legacy import LegacyStorage


def test_every_derived_operation_uses_the_public_overrides(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    storage = LegacyStorage(root)
    progress: list[int] = []
    storage.upload(io.BytesIO(b"uploaded"), "docs/a.txt", progress_callback=progress.append)
    assert (root / "docs" / "a.txt").read_bytes() == b"uploaded"
    assert progress == [8]

    out = io.BytesIO()
    storage.download("docs/a.txt", out)
    assert out.getvalue() == b"uploaded"

    local = tmp_path / "local.txt"
    local.write_bytes(b"put")
    storage.put(local, "docs/b.txt")
    storage.get("docs/b.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_bytes() == b"put"

    storage.move("docs/b.txt", "moved/b.txt")
    assert not (root / "docs" / "b.txt").exists()
    assert (root / "moved" / "b.txt").read_bytes() == b"put"
    assert storage.exists("moved/b.txt") and not storage.exists("docs/b.txt")
    assert storage.stat("docs/a.txt").size == 8
    assert [e.name for e in storage.glob("*/*.txt")] == ["docs/a.txt", "moved/b.txt"]
    # today's recursive argument, added to the 0.5 list(path) by StorageBackend
    one_level = storage.list("", recursive=False)  # type: ignore[call-arg]
    assert [e.name for e in one_level] == ["docs/", "moved/"]

    with pytest.raises(FileNotFoundInStorageError):
        storage.download("missing.txt", io.BytesIO())
    with pytest.raises(FileNotFoundInStorageError):
        storage.stat("missing.txt")
