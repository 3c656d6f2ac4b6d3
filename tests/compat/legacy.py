"""A custom backend written the way keg-storage 0.5 documented it (a subclass of StorageBackend
implementing the public ``open``, ``list``, ``delete`` and ``copy``, inheriting the rest), kept on
a local directory. It is the test double of a user's own 0.5 backend: nothing here may use
today's primitives."""

from __future__ import annotations

import os
import shutil
import tempfile
import typing
from pathlib import Path

import arrow

from keg_storage.backends.base import FileMode, ListEntry, RemoteFile, StorageBackend


class LegacyFile(RemoteFile):
    """0.5's recipe: implement ``read``, ``write`` and clean up in ``close``."""

    def __init__(self, path: Path, temp_dir: Path, mode: FileMode) -> None:
        super().__init__(mode)
        self.path = path
        self.temp: str | None = None
        if self.mode & FileMode.write:
            fd, self.temp = tempfile.mkstemp(dir=temp_dir)
            self.file: typing.BinaryIO = os.fdopen(fd, "wb")
        else:
            self.file = open(path, "rb")  # noqa: SIM115 - closed by close()

    def read(self, size: int | None = -1) -> bytes:
        return self.file.read(-1 if size is None else size)

    def write(self, data: typing.Any) -> int:
        return self.file.write(data)

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
            if self.temp is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.temp, self.path)
        super().close()


class LegacyStorage(StorageBackend):
    """Files under ``root``; ``list`` is recursive with names relative to the root, like 0.5's
    LocalFSStorage."""

    def __init__(self, root: Path, name: str = "legacy") -> None:
        super().__init__(name)
        self.root = root
        self.temp_dir = root.parent / f"{root.name}-tmp"
        self.temp_dir.mkdir(exist_ok=True)

    def list(self, path: str) -> list[ListEntry]:  # type: ignore[override]
        base = self.root / path.strip("/")
        if not base.is_dir():
            return []
        entries = [
            ListEntry(
                name=file.relative_to(self.root).as_posix(),
                last_modified=arrow.get(file.stat().st_mtime),
                size=file.stat().st_size,
            )
            for file in base.rglob("*")
            if file.is_file()
        ]
        return sorted(entries, key=lambda entry: entry.name)

    def open(  # type: ignore[override]
        self, path: str, mode: FileMode | str, extra_args: typing.Any = None
    ) -> RemoteFile:
        return LegacyFile(self.root / path.strip("/"), self.temp_dir, FileMode.as_mode(mode))

    def delete(self, path: str) -> None:
        target = self.root / path.strip("/")
        if target.is_file():
            target.unlink()

    def copy(self, path: str, new_path: str) -> None:
        target = self.root / new_path.strip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.root / path.strip("/"), target)
