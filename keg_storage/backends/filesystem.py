"""LocalFSStorage: files in a directory of the local disk.

Every path is resolved (symlinks included) and must stay inside the root. Writes go to a temp
file in the target directory and are renamed over the target on ``close()``, so readers never see
a partial file. Whole-file operations (``get``, ``put``, ``copy``) copy inside the kernel
(``copy_file_range``, as ``cp`` does) instead of a Python read loop.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import shutil
import stat as stat_module
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import arrow

from ..errors import (
    FileNotFoundInStorageError,
    InvalidPathError,
    StorageError,
    StoragePermissionError,
)
from ..progress import ByteCounter
from ..secrets import Secret, hold
from .base import (
    TEMP_PREFIX,
    TEMP_SUFFIX,
    FileMode,
    FileStat,
    InternalLinksStorageBackend,
    ListEntry,
    SecretKey,
    atomic_replace,
    publish_temp_file,
)
from .streams import WrappedFile


def kernel_copy(source: str, dst: IO[bytes]) -> int:
    """Copy a file's bytes into the new, empty file ``dst`` inside the kernel:
    ``copy_file_range`` (what ``cp`` uses, and which lets filesystems share or offload the
    copy), else a plain copy loop. Returns the number of bytes copied."""
    with open(source, "rb") as src:
        try:
            copied = 0
            while count := os.copy_file_range(src.fileno(), dst.fileno(), 1 << 30):
                copied += count
            return copied
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        src.seek(0)
        dst.seek(0)
        dst.truncate()
        shutil.copyfileobj(src, dst)
        return dst.tell()


@contextlib.contextmanager
def os_errors(backend: Any, key: str) -> Iterator[None]:
    """Turn OS errors into the CONTRACT's errors, naming backend and path (not the local path,
    which is the server's business)."""
    try:
        yield
    except (StorageError, io.UnsupportedOperation):
        raise
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        raise FileNotFoundInStorageError(backend, key) from exc
    except PermissionError as exc:
        raise StoragePermissionError(
            exc.strerror or "permission denied", backend=backend, path=key
        ) from exc
    except OSError as exc:
        raise StorageError(exc.strerror or str(exc), backend=backend, path=key) from exc


class LocalFSError(StorageError):
    """The LocalFS backend is misconfigured (its root is missing or not a directory)."""


def _is_temp_file(name: str) -> bool:
    return name.startswith(TEMP_PREFIX) and name.endswith(TEMP_SUFFIX)


class LocalFSFile(WrappedFile):
    """A local file: read in place, written through a temp file renamed over the target on
    ``close()``, or changed in place in read|write mode. OS errors (a full disk, a read-only
    directory) surface as the CONTRACT's errors naming ``storage`` and ``key``."""

    def __init__(
        self,
        path: Path,
        mode: FileMode,
        *,
        fsync: bool = False,
        storage: Any = None,
        key: str | None = None,
    ) -> None:
        super().__init__(mode)
        self.path = str(path)
        self.fsync = fsync
        self.storage = storage
        self.key = key if key is not None else self.path
        self._temp_path: str | None = None
        with self._errors():
            if self.mode == FileMode.write:
                fd, self._temp_path = tempfile.mkstemp(
                    dir=os.path.dirname(self.path), prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX
                )
                self.fp = os.fdopen(fd, "wb")
            elif self.mode == FileMode.read:
                self.fp = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            else:
                self.fp = open(self.path, "r+b")  # noqa: SIM115 - closed by close()

    def _errors(self) -> contextlib.AbstractContextManager[None]:
        return os_errors(self.storage if self.storage is not None else "LocalFSStorage", self.key)

    def read(self, size: int | None = -1) -> bytes:
        with self._errors():
            return super().read(size)

    def readinto(self, buffer: Any) -> int:
        with self._errors():
            return super().readinto(buffer)

    def write(self, data: Any) -> int:
        with self._errors():
            return super().write(data)

    def _finish(self) -> None:
        with self._errors():
            self.fp.close()
            if self._temp_path is not None:
                publish_temp_file(self._temp_path, self.path, fsync=self.fsync)
                self._temp_path = None

    def _discard(self) -> None:
        with contextlib.suppress(OSError):
            self.fp.close()
        if self._temp_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp_path)
            self._temp_path = None


class LocalFSStorage(InternalLinksStorageBackend):
    """Files under ``root`` on the local disk; links are internal links (``LinkViewMixin``).

    ``fsync=True`` flushes every written file to disk before it is published, for durability
    across power loss, at the cost of write speed.
    """

    supports_read_write = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        linked_endpoint: str | None = None,
        secret_key: SecretKey | None = None,
        name: str | None = None,
        *,
        fsync: bool = False,
    ) -> None:
        held: Secret[SecretKey] | None = hold(secret_key)
        del secret_key  # no frame of ours holds it in plain form
        given = Path(root)
        super().__init__(
            linked_endpoint=linked_endpoint, secret_key=held, name=name or f"fs-{given.name}"
        )
        self.root = given.resolve()
        if not self.root.is_dir():
            raise LocalFSError(
                "Storage root does not exist or is not a directory", backend=self, path=str(given)
            )
        self.fsync = fsync
        self._root = str(self.root)

    def __repr__(self) -> str:
        return f"LocalFSStorage(root={self._root!r}, name={self.name!r})"

    def _real_path(self, key: str) -> str:
        """The resolved local path of ``key``; refuses anything that leads outside the root."""
        real = os.path.realpath(os.path.join(self._root, key))
        if real != self._root and not real.startswith(self._root + os.sep):
            raise InvalidPathError("path leads outside the storage root", backend=self, path=key)
        return real

    def _errors(self, key: str) -> contextlib.AbstractContextManager[None]:
        return os_errors(self, key)

    def _file_stat(self, key: str) -> tuple[str, os.stat_result]:
        """The local path and status of an existing regular file (a missing one raises
        FileNotFoundError, which the caller's ``_errors`` turns into the CONTRACT's error)."""
        real = self._real_path(key)
        info = os.stat(real)
        if not stat_module.S_ISREG(info.st_mode):
            raise self._not_found(key)
        return real, info

    def _file_path(self, key: str) -> str:
        """The local path of an existing regular file."""
        return self._file_stat(key)[0]

    def _target_path(self, key: str) -> str:
        """The local path to write ``key`` to, its directory created."""
        real = self._real_path(key)
        if os.path.isdir(real):
            raise InvalidPathError("a directory exists at this path", backend=self, path=key)
        os.makedirs(os.path.dirname(real), exist_ok=True)
        return real

    def _prune_empty_parents(self, real: str) -> None:
        """Remove directories left empty by a delete or move, up to the root, so that listings
        look the same as on object stores, which have no empty directories."""
        directory = os.path.dirname(real)
        while directory != self._root and directory.startswith(self._root + os.sep):
            try:
                os.rmdir(directory)
            except OSError:
                return
            directory = os.path.dirname(directory)

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        with self._errors(prefix):
            base = self._real_path(prefix) if prefix else self._root
            if not os.path.isdir(base):
                return []
            return list(self._walk(base, prefix, recursive))

    def _walk(self, base: str, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        for entry in os.scandir(base):
            if entry.is_symlink() or _is_temp_file(entry.name):
                continue
            name = prefix + entry.name
            if entry.is_dir():
                if recursive:
                    yield from self._walk(entry.path, name + "/", recursive)
                else:
                    yield ListEntry(name + "/", None, 0)
            elif entry.is_file():
                info = entry.stat()
                yield ListEntry(name, arrow.get(info.st_mtime), info.st_size)

    def _open(self, key: str, mode: FileMode, extra_args: dict[str, Any]) -> LocalFSFile:
        with self._errors(key):
            path = self._target_path(key) if mode == FileMode.write else self._file_path(key)
            return LocalFSFile(Path(path), mode, fsync=self.fsync, storage=self, key=key)

    def _stat(self, key: str) -> FileStat:
        with self._errors(key):
            _, info = self._file_stat(key)
        etag = f'"{info.st_mtime_ns:x}-{info.st_size:x}"'
        return FileStat(info.st_size, arrow.get(info.st_mtime), etag, None)

    def _delete(self, key: str) -> None:
        with self._errors(key):
            real = self._real_path(key)
            try:
                os.unlink(real)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return
            self._prune_empty_parents(real)

    def _copy_to(self, source: str, key: str) -> int:
        """Copy a local file to ``key`` with the kernel's copy, atomically; returns its size."""
        with self._errors(key):
            target = self._target_path(key)
            with atomic_replace(target, fsync=self.fsync) as temp_file:
                return kernel_copy(source, temp_file)

    def _copy(self, key: str, new_key: str) -> None:
        with self._errors(key):
            source = self._file_path(key)
        self._copy_to(source, new_key)

    def _move(self, key: str, new_key: str) -> None:
        with self._errors(key):
            source = self._file_path(key)
            os.replace(source, self._target_path(new_key))
            self._prune_empty_parents(source)

    def _put(
        self, source: str, key: str, extra_args: dict[str, Any], count_bytes: ByteCounter
    ) -> None:
        count_bytes(self._copy_to(source, key))

    def _get(self, key: str, dest: str, count_bytes: ByteCounter) -> None:
        with self._errors(key):
            source = self._file_path(key)
        with atomic_replace(dest) as temp_file:
            copied = kernel_copy(source, temp_file)
        count_bytes(copied)


__all__ = ["FileNotFoundInStorageError", "LocalFSError", "LocalFSFile", "LocalFSStorage"]
