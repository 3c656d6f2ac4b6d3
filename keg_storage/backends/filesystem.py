"""LocalFSStorage: files in a directory of the local disk.

Confinement holds while other processes change the tree: every path is resolved from a descriptor
of the root, one component at a time, with ``O_NOFOLLOW|O_DIRECTORY``, and every create, rename,
unlink and rmdir names its entry relative to a held directory descriptor (``dir_fd``), never by a
full path after a check. A symlink is never followed, only regular files are opened
(``O_NOFOLLOW|O_NONBLOCK`` then ``fstat``: a FIFO, device or socket is refused and never blocks),
and ``r+`` refuses a file with more than one hard link.

Writes go to a temp file in the target directory (:class:`~.publish.TempFile`, unnamed where the
file system allows) published on ``close()``, so readers never see a partial file. Every publish
(and every delete) happens under the directory's publish lock (:func:`directories_locked`), where
the write's condition is decided: an unnamed file is linked at a name nothing has yet (which the
kernel refuses atomically when the name exists), anything else is renamed by :func:`place`,
``overwrite=False`` with ``renameat2(RENAME_NOREPLACE)`` (or ``link``), ``if_match`` after
comparing the target's ETag.

Whole-file operations (``get``, ``put``, ``copy``) copy inside the kernel (``copy_file_range``,
as ``cp`` does) instead of a Python read loop.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import io
import os
import posixpath
import stat as stat_module
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import arrow

from ..errors import (
    FileNotFoundInStorageError,
    InvalidPathError,
    StorageError,
    StoragePermissionError,
)
from ..progress import ByteCounter, ignore_bytes
from ..secrets import Secret, hold
from .base import (
    FileMode,
    FileStat,
    ListEntry,
    file_errors,
)
from .conditions import ALWAYS, Capabilities, WriteCondition
from .filesystem_publish import (
    BUFFER_SIZE,
    atomic_file,
    check_condition,
    directories_locked,
    entry_status,
    etag_of,
    place,
    publish_temp,
)
from .links import InternalLinksStorageBackend, SecretKey
from .listing import is_directory, sorted_entries
from .local_copy import download_file_object, kernel_copy, upload_file_object
from .publish import (
    TempFile,
    atomic_replace,
    is_temp_name,
    prune_empty_parents,
)
from .streams import WrappedFile

PATH_MAX_BYTES = 4095
"""The longest local path (Linux's PATH_MAX less the terminating NUL)."""

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def translate_os_error(backend: Any, error: Exception, key: str | None) -> StorageError | None:
    """The CONTRACT's error for an OS error, naming backend and path (not the local path, which
    is the server's business); None for anything else."""
    if not isinstance(error, OSError) or isinstance(error, io.UnsupportedOperation):
        return None
    if isinstance(error, (FileNotFoundError, NotADirectoryError, IsADirectoryError)):
        return FileNotFoundInStorageError(backend, key or "")
    if isinstance(error, PermissionError):
        return StoragePermissionError(
            error.strerror or "permission denied", backend=backend, path=key
        )
    if error.errno == errno.ELOOP:
        return InvalidPathError("a symlink in the path is not followed", backend=backend, path=key)
    if error.errno == errno.ENAMETOOLONG:
        return InvalidPathError(
            "a name in the path is too long for the file system", backend=backend, path=key
        )
    return StorageError(error.strerror or str(error), backend=backend, path=key)


class LocalFSError(StorageError):
    """The LocalFS backend is misconfigured (its root is missing or not a directory)."""


def _open_regular(dir_fd: int, name: str, flags: int) -> tuple[int, os.stat_result]:
    """Open the regular file ``name`` of the directory ``dir_fd`` without following a symlink or
    blocking: anything else (a FIFO, a device, a socket, a directory) raises FileNotFoundError,
    as if nothing were there, since the store holds only files."""
    try:
        fd = os.open(name, flags | _FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO opened for writing without a reader
            raise FileNotFoundError(errno.ENOENT, "not a regular file", name) from exc
        raise
    try:
        info = os.fstat(fd)
        if not stat_module.S_ISREG(info.st_mode):
            raise FileNotFoundError(errno.ENOENT, "not a regular file", name)
        # The status flags are the ones given (F_SETFL ignores the access and creation ones).
        fcntl.fcntl(fd, fcntl.F_SETFL, (flags | _FILE_FLAGS) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def _scan(dir_fd: int, base: str) -> list[ListEntry]:
    """The files (not symlinks, FIFOs or temp files) and sub-directories (named with their
    trailing ``/``) of ``dir_fd``, in listing order (:func:`~.listing.sorted_entries`)."""
    found = []
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            if is_temp_name(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                found.append(ListEntry(f"{base}{entry.name}/", None, 0))
            elif entry.is_file(follow_symlinks=False):
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:  # removed since it was listed
                    continue
                modified = arrow.Arrow.utcfromtimestamp(info.st_mtime)
                found.append(ListEntry(base + entry.name, modified, info.st_size))
    return sorted_entries(found)


def _walk(top: int, prefix: str, recursive: bool) -> Iterator[ListEntry]:
    """The entries under the directory ``top`` (closed when the walk ends) in listing order,
    depth first: one directory read at a time, one descriptor held per level, each opened from
    its parent's without following a symlink (a sub-directory gone, or swapped for a symlink,
    since it was read is skipped)."""
    try:
        for entry in _scan(top, prefix):
            if not recursive or not is_directory(entry):
                yield entry
                continue
            try:
                child = os.open(entry.name[len(prefix) : -1], _DIR_FLAGS, dir_fd=top)
            except (FileNotFoundError, NotADirectoryError):
                continue
            yield from _walk(child, entry.name, recursive)
    finally:
        os.close(top)


class DescriptorClimb:
    """Removes directories upwards from the held descriptor ``start``, each through ``..`` of
    the one before (never by path, so a concurrent rename cannot redirect it), and stops at the
    directory whose status is ``root``'s."""

    def __init__(self, start: int, root: os.stat_result) -> None:
        self.start = start
        self.current = start
        self.root = (root.st_dev, root.st_ino)

    def remove_directory(self, directory: str) -> bool:
        """Remove the empty directory ``directory`` (a key), the one ``current`` holds; whether
        it was removed and the walk may go on (not once the root is reached)."""
        try:
            parent = os.open("..", _DIR_FLAGS, dir_fd=self.current)
            self.close()
            self.current = parent
            os.rmdir(posixpath.basename(directory), dir_fd=parent)
            info = os.fstat(parent)
        except OSError:
            return False
        return (info.st_dev, info.st_ino) != self.root

    def close(self) -> None:
        """Close the descriptor climbed to (never ``start``, which its caller holds)."""
        if self.current != self.start:
            os.close(self.current)
            self.current = self.start


class LocalFSFile(WrappedFile):
    """A local file: read in place, written through a temp file renamed over the target on
    ``close()``, or changed in place in read|write mode. OS errors (a full disk, a read-only
    directory) surface as the CONTRACT's errors naming ``storage`` and ``key``.

    ``dir_fd``, when given, is an open descriptor of the directory holding the file, whose name
    there is ``path``'s last component; the file owns it from then on. Without it, the directory
    is opened by path. A writer publishes only as ``condition`` allows (:func:`place`).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: FileMode | str,
        *,
        fsync: bool = False,
        storage: Any = None,
        key: str | None = None,
        dir_fd: int | None = None,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        super().__init__(mode)
        self.path = os.fspath(path)
        self.fsync = fsync
        self.condition = condition
        self.storage = storage
        self.key = key if key is not None else self.path
        self._dir_fd: int | None = dir_fd
        self._temp: TempFile | None = None
        self._name = name = os.path.basename(self.path)
        try:
            with self._translation():
                if self._dir_fd is None:
                    directory = os.path.dirname(self.path) or "."
                    self._dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                if self.mode == FileMode.write:
                    self._temp = TempFile(self._dir_fd, BUFFER_SIZE)
                    self.fp = self._temp.file
                    return
                if self.mode == FileMode.read:
                    fd, _ = _open_regular(self._dir_fd, name, os.O_RDONLY)
                    self.fp = os.fdopen(fd, "rb", BUFFER_SIZE)
                else:
                    fd, info = _open_regular(self._dir_fd, name, os.O_RDWR)
                    self.fp = os.fdopen(fd, "r+b", BUFFER_SIZE)
                    if info.st_nlink > 1:
                        raise StoragePermissionError(
                            "a file with more than one hard link is not changed in place",
                            backend=self._backend(),
                            path=self.key,
                        )
        except BaseException:
            self.abort()
            raise
        self._close_dir()  # readers need the directory no more

    def _backend(self) -> Any:
        return self.storage if self.storage is not None else "LocalFSStorage"

    def _translation(self) -> contextlib.AbstractContextManager[None]:
        return file_errors(self._backend(), self.key, translate_os_error)

    def _close_dir(self) -> None:
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _finish(self) -> None:
        if self._temp is None:
            self.fp.close()
        else:
            publish_temp(
                self._temp,
                self._name,
                fsync=self.fsync,
                condition=self.condition,
                backend=self._backend(),
                key=self.key,
                reopen=self._reopen_dir(),
            )
            self._temp = None
        self._close_dir()

    def _reopen_dir(self) -> Callable[[], int] | None:
        """How its storage opens the file's directory again, made anew (None without one)."""
        if self.storage is None:
            return None
        return functools.partial(self.storage._reopen_parent, self.key)

    def _discard(self) -> None:
        fp = getattr(self, "fp", None)  # None when opening failed
        if self._temp is not None:
            self._temp.remove()
            self._temp = None
            if self.storage is not None and self._dir_fd is not None:
                self.storage._prune_after_failure(self._dir_fd, self.key)
        elif fp is not None:
            with contextlib.suppress(OSError):
                fp.close()
        self._close_dir()


class LocalFSStorage(InternalLinksStorageBackend):
    """Files under ``root`` on the local disk; links are internal links (``LinkViewMixin``).

    ``fsync=True`` flushes every written file (and its directory) to disk before it is published,
    for durability across power loss, at the cost of write speed.

    ``overwrite=False`` is decided by the kernel (``renameat2(RENAME_NOREPLACE)``, else
    ``link``); ``if_match`` under the directory's publish lock, which every keg_storage writer of
    the directory takes: it holds among keg_storage writers on this host, not against programs
    that write the directory themselves, nor writers on other hosts of a network file system.

    Keys longer than the file system allows (``max_segment_bytes`` for a name, ``max_key_bytes``
    for the whole key after the root's own path, in UTF-8) raise :class:`InvalidPathError`
    before any I/O.
    """

    capabilities = Capabilities(
        read_write=True,
        conditional_create=True,
        conditional_replace=True,
        server_side_copy=True,
        service_links=False,
        internal_links=True,
        multi_operation_links=True,
        metadata=False,
    )
    max_segment_bytes = 255  # NAME_MAX of Linux file systems
    ordered_listing = True
    keeps_mtime = True
    listing_time_precision = 0.001
    bulk_max_workers = 1
    """``upload_many``/``download_many`` run on the calling thread: each file is a few system
    calls (the kernel copies the bytes), so threads only add hand-offs and contend for the GIL
    (500 x 4 KiB: 0.036 s here against 0.20 s with 8 threads, bench/compare.py)."""
    disallowed_path_chars: frozenset[str] = frozenset()
    """Characters a subclass refuses in paths (``InvalidPathError``), beyond the control
    characters every backend refuses. 0.5's name; 0.5 refused ``~?*`` and whitespace here."""

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
        self.unsupported_path_characters = "".join(sorted(self.disallowed_path_chars))
        self._root = str(self.root)
        self.max_key_bytes = PATH_MAX_BYTES - len(os.fsencode(self._root)) - 1

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        return translate_os_error(self, error, path)

    def _open_dir(self, names: list[str], key: str, *, create: bool = False) -> int:
        """A new descriptor of the directory ``root/names...``, each component opened relative to
        its parent's descriptor without following symlinks (``create`` makes missing ones). A
        symlink or (when creating) a file in the way raises InvalidPathError."""
        fd = os.open(self._root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in names:
                try:
                    child = self._open_child_dir(fd, name, create=create)
                except NotADirectoryError:
                    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat_module.S_ISLNK(info.st_mode):
                        raise InvalidPathError(
                            "a symlink in the path is not followed", backend=self, path=key
                        ) from None
                    if create:
                        raise InvalidPathError(
                            "a file exists where the path needs a directory", backend=self, path=key
                        ) from None
                    raise
                parent, fd = fd, child
                os.close(parent)
        except BaseException:
            os.close(fd)
            raise
        return fd

    @staticmethod
    def _open_child_dir(parent: int, name: str, *, create: bool) -> int:
        """The directory ``name`` of ``parent``, made first when ``create`` and missing."""
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)

    def _open_parent(self, key: str, *, create: bool = False) -> tuple[int, str]:
        """A descriptor of the directory holding the file ``key``, and the file's name in it."""
        *names, name = key.split("/")
        return self._open_dir(names, key, create=create), name

    def _reopen_parent(self, key: str) -> int:
        """A new descriptor of the directory of ``key``, made again where it is missing (see
        :func:`~.filesystem_publish.publish_temp`)."""
        return self._open_parent(key, create=True)[0]

    def _lstat_file(self, dir_fd: int, name: str, key: str) -> os.stat_result:
        """The status of the regular file ``name`` in ``dir_fd`` (a symlink is an
        InvalidPathError, anything else not a file a FileNotFoundError)."""
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat_module.S_ISLNK(info.st_mode):
            raise InvalidPathError("a symlink is not followed", backend=self, path=key)
        if not stat_module.S_ISREG(info.st_mode):
            raise self._not_found(key)
        return info

    def _check_target(
        self, dir_fd: int, name: str, key: str, condition: WriteCondition = ALWAYS
    ) -> None:
        """Refuse to write over a directory or a symlink, or where ``condition`` fails already
        (:func:`check_condition`; it is decided again when the write publishes), from one
        ``stat`` of the target."""
        current = entry_status(dir_fd, name)
        if current is not None and stat_module.S_ISDIR(current.st_mode):
            raise InvalidPathError("a directory exists at this path", backend=self, path=key)
        if current is not None and stat_module.S_ISLNK(current.st_mode):
            raise InvalidPathError("a symlink is not written through", backend=self, path=key)
        check_condition(current, condition, self, key)

    def _open_source(self, key: str) -> IO[bytes]:
        """The regular file ``key``, open for reading."""
        dir_fd, name = self._open_parent(key)
        try:
            fd, _ = _open_regular(dir_fd, name, os.O_RDONLY)
        finally:
            os.close(dir_fd)
        return os.fdopen(fd, "rb", BUFFER_SIZE)

    def _prune_empty_parents(self, dir_fd: int, key: str) -> None:
        """Remove directories left empty by a delete or move of ``key``, from ``dir_fd`` (the
        directory holding it) up to the root (:func:`~.publish.prune_empty_parents`), so that
        listings look the same as on object stores, which have no empty directories. Each
        removal climbs through ``..`` of held descriptors and the walk stops at the root, so it
        removes only empty directories inside the root, whatever was renamed meanwhile."""
        if "/" not in key:
            return
        climb = DescriptorClimb(dir_fd, os.stat(self._root))
        try:
            prune_empty_parents(key, climb.remove_directory)
        finally:
            climb.close()

    def _prune_after_failure(self, dir_fd: int, key: str) -> None:
        """A write that published nothing (it failed, was aborted or refused) leaves no empty
        directory behind, the ones it made included (:meth:`_prune_empty_parents`): an object
        store has none to leave. Best effort: the write's own error is what the caller sees."""
        with contextlib.suppress(OSError):
            self._prune_empty_parents(dir_fd, key)

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        try:
            fd = self._open_dir(prefix.split("/")[:-1], prefix)
        except (FileNotFoundError, NotADirectoryError):
            return
        yield from _walk(fd, prefix, recursive)

    def _open(
        self,
        key: str,
        mode: FileMode,
        extra_args: dict[str, Any],
        condition: WriteCondition = ALWAYS,
    ) -> LocalFSFile:
        """A conditional writer fails early where its condition fails already, and is decided
        again when it publishes."""
        dir_fd, name = self._open_parent(key, create=mode == FileMode.write)
        try:
            if mode == FileMode.write:
                self._check_target(dir_fd, name, key, condition)
        except BaseException:
            self._prune_after_failure(dir_fd, key)
            os.close(dir_fd)
            raise
        return LocalFSFile(
            os.path.join(self._root, key),
            mode,
            fsync=self.fsync,
            storage=self,
            key=key,
            dir_fd=dir_fd,
            condition=condition,
        )

    def _stat(self, key: str) -> FileStat:
        info = self._lstat_key(key)
        return FileStat(info.st_size, arrow.get(info.st_mtime), etag_of(info), None)

    def _probe(self, key: str) -> None:
        """``exists`` needs the file's status only, not a FileStat (whose time costs half of it)."""
        self._lstat_key(key)

    def _lstat_key(self, key: str) -> os.stat_result:
        dir_fd, name = self._open_parent(key)
        try:
            return self._lstat_file(dir_fd, name, key)
        finally:
            os.close(dir_fd)

    def _delete(self, key: str) -> None:
        try:
            dir_fd, name = self._open_parent(key)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            with directories_locked(dir_fd):
                info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if stat_module.S_ISLNK(info.st_mode):
                    raise InvalidPathError("a symlink is not deleted", backend=self, path=key)
                os.unlink(name, dir_fd=dir_fd)
            self._prune_empty_parents(dir_fd, key)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        finally:
            os.close(dir_fd)

    def _copy_to(self, source: IO[bytes], key: str, condition: WriteCondition) -> int:
        """Copy an open local file to ``key`` with the kernel's copy, atomically and as
        ``condition`` allows; returns its size."""
        with self.translating(key):  # the target's key (copy() translates for the source)
            dir_fd, name = self._open_parent(key, create=True)
            try:
                self._check_target(dir_fd, name, key, condition)
                with atomic_file(
                    dir_fd,
                    name,
                    fsync=self.fsync,
                    condition=condition,
                    backend=self,
                    key=key,
                    reopen=functools.partial(self._reopen_parent, key),
                ) as temp_file:
                    return kernel_copy(source, temp_file)
            except BaseException:
                self._prune_after_failure(dir_fd, key)
                raise
            finally:
                os.close(dir_fd)

    def _copy(self, key: str, new_key: str, overwrite: bool = True) -> None:
        source = self._open_source(key)
        with source:
            self._copy_to(source, new_key, WriteCondition(overwrite=overwrite))

    def _move(self, key: str, new_key: str, overwrite: bool = True) -> None:
        """A rename under both directories' locks; create-only, one the kernel refuses where
        ``new_key`` exists (:func:`place`)."""
        dir_fd, name = self._open_parent(key)
        try:
            self._lstat_file(dir_fd, name, key)
            with self.translating(new_key):
                new_dir_fd, new_name = self._open_parent(new_key, create=True)
                try:
                    self._check_target(new_dir_fd, new_name, new_key)
                    with directories_locked(dir_fd, new_dir_fd):
                        place(
                            (dir_fd, name),
                            (new_dir_fd, new_name),
                            WriteCondition(overwrite=overwrite),
                            backend=self,
                            key=new_key,
                            new_version=False,
                        )
                finally:
                    os.close(new_dir_fd)
            self._prune_empty_parents(dir_fd, key)
        finally:
            os.close(dir_fd)

    def _put(
        self,
        source: str,
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        with self.translating(key):  # put() translates no error of the transfer's local side
            local = open(source, "rb")  # noqa: SIM115 - closed below
        with local:
            count_bytes(self._copy_to(local, key, condition))

    def _get(self, key: str, dest: str, count_bytes: ByteCounter) -> None:
        with self.translating(key):  # get() translates no error of the transfer's local side
            source = self._open_source(key)
        with source, atomic_replace(dest) as temp_file:
            copied = kernel_copy(source, temp_file)
        count_bytes(copied)

    def _upload(
        self,
        file_obj: IO[bytes],
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        condition: WriteCondition = ALWAYS,
        *,
        mtime_ns: int | None = None,
    ) -> None:
        """Into a temp file published as for a writer: a plain local file
        (:func:`~.local_copy.kernel_source`) is copied by the kernel from its position, anything
        else is read in chunks written straight to the temp file (no writer object between).
        ``mtime_ns``: the modification time the file is published with."""
        with self.translating(key):  # the store's side only, as in StorageBackend._upload
            dir_fd, name = self._open_parent(key, create=True)
        try:
            with self.translating(key):
                self._check_target(dir_fd, name, key, condition)
                temp = TempFile(dir_fd, BUFFER_SIZE)
            try:
                upload_file_object(
                    file_obj, temp.file, count_bytes, self.transfer_chunk_size, key, self
                )
                with self.translating(key):
                    publish_temp(
                        temp,
                        name,
                        fsync=self.fsync,
                        condition=condition,
                        backend=self,
                        key=key,
                        mtime_ns=mtime_ns,
                        reopen=functools.partial(self._reopen_parent, key),
                    )
            except BaseException:
                temp.remove()
                raise
        except BaseException:
            self._prune_after_failure(dir_fd, key)
            raise
        finally:
            os.close(dir_fd)

    def _upload_keeping_mtime(self, file_obj: IO[bytes], key: str, mtime: arrow.Arrow) -> None:
        """The temp file given the time (to the microsecond) before it is published, so the
        file appears with it."""
        nanoseconds = round(mtime.timestamp() * 1_000_000) * 1000
        self._upload(file_obj, key, {}, ignore_bytes, mtime_ns=nanoseconds)

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        """Into a plain local file (:func:`~.local_copy.kernel_target`) the kernel copies, at
        its position; anything else is written to from reads of the file (no reader object)."""
        with self.translating(key):
            source = self._open_source(key)
        with source:
            download_file_object(source, file_obj, count_bytes, self.transfer_chunk_size, key, self)

    def _delete_many(self, keys: list[str]) -> dict[str, Exception]:
        """Per directory: one descriptor, one publish lock and one pruning for all its keys
        (:meth:`_delete` for each key would take them per key)."""
        failed: dict[str, Exception] = {}
        by_directory: dict[str, list[str]] = {}
        for key in keys:
            by_directory.setdefault(posixpath.dirname(key), []).append(key)
        for group in by_directory.values():
            try:
                dir_fd, _ = self._open_parent(group[0])
            except (FileNotFoundError, NotADirectoryError):
                continue
            except Exception as exc:
                failed.update((key, translate_os_error(self, exc, key) or exc) for key in group)
                continue
            try:
                with directories_locked(dir_fd):
                    deleted = [key for key in group if self._unlink(dir_fd, key, failed)]
                if deleted:
                    self._prune_empty_parents(dir_fd, deleted[0])
            finally:
                os.close(dir_fd)
        return failed

    def _unlink(self, dir_fd: int, key: str, failed: dict[str, Exception]) -> bool:
        """Unlink the file ``key`` in ``dir_fd`` as :meth:`_delete` does (a symlink is refused,
        a missing file or a directory left alone); whether it was, its error in ``failed``."""
        name = posixpath.basename(key)
        try:
            if stat_module.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                raise InvalidPathError("a symlink is not deleted", backend=self, path=key)
            os.unlink(name, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return False
        except Exception as exc:
            failed[key] = translate_os_error(self, exc, key) or exc
            return False
        return True


__all__ = ["FileNotFoundInStorageError", "LocalFSError", "LocalFSFile", "LocalFSStorage"]
