"""The storage API every backend shares (CONTRACT §1, §3, §4, §5).

A backend subclasses :class:`StorageBackend` and implements a few primitives that receive keys
already normalised by :mod:`keg_storage.paths` (``_open``, ``_list``, ``_stat``, ``_delete`` and,
for links, ``_link_to``). The public methods here validate paths, parse modes, operations and
expiries, check ``extra_args``, order listings and relay progress callbacks, so that every backend
behaves the same. A backend overrides the other primitives (``_copy``, ``_move``, ``_download``,
``_upload``, ``_get``, ``_put``, ``_exists``) only where its service does the work better.

A backend maps its SDK's exceptions to the CONTRACT's errors in one hook,
:meth:`StorageBackend._translate_error`, which the public methods apply around their primitives
(and file objects around their reads, writes and ``close()``): primitives raise what the SDK
raised. The file objects, the 0.5-style support and internal links live in :mod:`.files`,
:mod:`.legacy` and :mod:`.links`; their names stay importable from here.
"""

from __future__ import annotations

import builtins
import codecs
import contextlib
import dataclasses
import enum
import errno
import functools
import inspect
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import IO, Any, ClassVar, Literal, TypeVar, cast, overload

import arrow

from ..errors import (
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    StorageError,
    UnsupportedOperationError,
)
from ..paths import CONTROL_CHARACTER, RemotePath, directory_prefix, file_key, glob_parts
from ..progress import ByteCounter, ProgressCallback, ignore_bytes, relay_progress
from ..secrets import install_log_redaction
from . import bulk
from .bulk import BatchItem, DeleteResult, LocalPath, Report, TransferResult
from .conditions import ALWAYS, Capabilities, WriteCondition
from .files import BinaryMode, FileMode, FileStat, ListEntry, RemoteFile, RemoteTextFile, TextMode
from .files import RemoteFileT as RemoteFileT
from .legacy import LEGACY_PRIMITIVES, legacy_stat, with_recursive
from .publish import TEMP_PREFIX as TEMP_PREFIX
from .publish import TEMP_SUFFIX as TEMP_SUFFIX
from .publish import atomic_replace

__all__ = [
    "DeleteResult",
    "FileMode",
    "FileNotFoundInStorageError",
    "FileStat",
    "InternalLinkTokenData",
    "InternalLinksStorageBackend",
    "ListEntry",
    "ProgressCallback",
    "RemoteFile",
    "RemoteTextFile",
    "ShareLinkOperation",
    "StorageBackend",
    "TransferResult",
]

Expiry = arrow.Arrow | datetime | timedelta
ErrorTranslator = Callable[[Exception, str | None], StorageError | None]
"""What :meth:`StorageBackend._translate_error` is: an exception and a key in, the
:class:`StorageError` to raise instead or None."""


class ShareLinkOperation(enum.Flag):
    """What a link allows: ``download``, ``upload``, ``remove``, or a combination."""

    download = enum.auto()
    upload = enum.auto()
    remove = enum.auto()

    def __str__(self) -> str:
        letters = {ShareLinkOperation.download: "d", ShareLinkOperation.upload: "u"}
        letters[ShareLinkOperation.remove] = "r"
        return "".join(letter for flag, letter in letters.items() if flag in self)

    @classmethod
    def as_operation(cls, obj: ShareLinkOperation | str) -> ShareLinkOperation:
        """Parse an operation: the flag, letters of ``dur`` (``'du'``), or the words
        ``download``, ``upload``, ``remove``/``delete`` (combined with ``,`` or ``|``). An
        empty operation, however given, raises ``ValueError``."""
        if isinstance(obj, ShareLinkOperation):
            if not obj:
                raise ValueError("a link needs at least one operation")
            return obj
        if not isinstance(obj, str):
            raise ValueError("as_operation() accepts only ShareLinkOperation or str arguments")
        words = {
            "download": cls.download,
            "upload": cls.upload,
            "remove": cls.remove,
            "delete": cls.remove,
        }
        letters = {"d": cls.download, "u": cls.upload, "r": cls.remove}
        operation = cls(0)
        for token in re.split(r"[\s,|]+", obj.strip().lower()):
            if token in words:
                operation |= words[token]
            elif token and set(token) <= set(letters):
                for letter in token:
                    operation |= letters[letter]
            else:
                raise ValueError(f"unknown link operation {obj!r}")
        if not operation:
            raise ValueError("a link needs at least one operation")
        return operation


def resolve_expiry(expire: Expiry) -> arrow.Arrow:
    """The UTC moment a link expires: an Arrow, a datetime (naive = UTC) or a timedelta from now.

    Raises ValueError for a moment that is not in the future.
    """
    now = arrow.utcnow()
    if isinstance(expire, timedelta):
        moment = now + expire
    elif isinstance(expire, (arrow.Arrow, datetime)):
        moment = arrow.get(expire).to("UTC")
    else:
        raise TypeError(f"expire must be an Arrow, a datetime or a timedelta, not {expire!r}")
    if moment <= now:
        raise ValueError("Expiration time is in the past")
    return moment


def expire_time_to_seconds(expire_time: Expiry) -> float:
    """Seconds from now until ``expire_time`` (keg-storage 0.5's helper, kept for its users);
    ``ValueError`` for a moment that is not in the future."""
    return (resolve_expiry(expire_time) - arrow.utcnow()).total_seconds()


class StorageBackend:
    """Base class of every backend: the public API built on a few primitives.

    Subclasses written for keg-storage 0.5, which implement the public ``open``, ``list``,
    ``delete`` (and ``copy``) instead, keep working: see :meth:`__init_subclass__`.
    """

    supported_extra_args: frozenset[str] | None = frozenset(
        {"ContentType", "ContentEncoding", "Metadata"}
    )
    """``extra_args`` keys the backend accepts; None accepts every key (S3)."""
    capabilities: ClassVar[Capabilities] = Capabilities()
    """What the backend can do (CONTRACT §9); an operation whose capability is False raises
    :class:`UnsupportedOperationError` before any I/O."""
    supports_read_write = False
    """Whether ``open(path, 'r+')`` works: ``capabilities.read_write``, kept in step with it
    (a subclass may set either)."""
    unsupported_path_characters = ""
    """Characters the service cannot keep in a key (Azure reads ``\\`` as ``/``); a path holding
    one raises :class:`InvalidPathError` before any I/O."""
    max_key_bytes: int | None = None
    """The longest key (bytes of UTF-8) the service keeps; a longer path raises
    :class:`InvalidPathError` before any I/O. None: no limit."""
    max_segment_bytes: int | None = None
    """The longest segment (file or directory name, bytes of UTF-8) the service keeps."""
    transfer_chunk_size = 8 * 1024 * 1024
    """Bytes per read/write in the generic transfer loops."""
    bulk_max_workers: int | None = None
    """The most threads :meth:`upload_many` and :meth:`download_many` use, whatever their
    ``max_concurrency``; one runs them on the calling thread. None: no cap."""
    bulk_batch_files = 1
    """How many small files :meth:`upload_many` hands to :meth:`_put_batch` (when it
    overwrites), and :meth:`download_many` to :meth:`_get_batch`, at once, when they run more
    than one thread; 1: each file is its own ``_put`` or ``_get``."""
    bulk_download_batch_files: int | None = None
    """:attr:`bulk_batch_files` for :meth:`download_many` alone, where it differs (S3: 1, it
    batches uploads only); None: the same."""
    bulk_small_file_bytes = 64 * 1024
    """The largest local file (bytes) :meth:`upload_many` puts in a batch."""
    ordered_listing = False
    """Whether ``_list`` yields its entries in listing order (sorted by name, a directory's
    with its trailing ``/``: :mod:`.listing`), fetched as they are consumed: then
    :meth:`iter_list` streams them. False (a backend written for keg-storage 0.5, or one whose
    ``_list`` returns a list in any order): the listing is collected and sorted first."""
    list_page_size: int | None = None
    """Entries fetched per request where the service pages a listing by count (S3, Azure,
    Memory's own pages); None is the service's default (S3 and Memory: 1,000; Azure: 5,000)."""
    keeps_mtime = False
    """Whether :meth:`upload_keeping_mtime` gives the file itself the time, which ``stat`` and
    listings then report (LocalFS, SFTP). False: listings give the time of the upload."""
    listing_time_precision = 1.0
    """Seconds within which two of this backend's listing times are the same time (``sync``
    takes the coarser of two stores'): 1 ms for LocalFS and Memory, whose times hold
    microseconds, 1 s for the others."""
    etag_is_md5 = False
    """Whether an ETag of 32 hex digits is the MD5 of the content (S3 single-part uploads,
    Memory): ``sync(compare='checksum')`` then compares it without reading the file."""

    def __init__(self, name: str) -> None:
        self.name = name
        install_log_redaction()  # SDK logs show credentials from the environment too

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Adapt a keg-storage 0.5 style subclass, once per class: one that implements the public
        ``open``, ``list``, ``delete`` or ``copy`` instead of the primitive gets that primitive
        routed to its override, so the operations derived from it (``get``, ``put``,
        ``download``, ``upload``, ``copy``, ``move``, ``exists``, ``stat``) use the override, and
        a ``list(path)`` override without ``recursive`` is given that argument."""
        super().__init_subclass__(**kwargs)
        if "capabilities" in cls.__dict__:
            cls.supports_read_write = cls.capabilities.read_write
        elif "supports_read_write" in cls.__dict__:
            cls.capabilities = dataclasses.replace(
                cls.capabilities, read_write=cls.supports_read_write
            )
        for public, primitive, adapter in LEGACY_PRIMITIVES:
            overridden = getattr(cls, public) is not getattr(StorageBackend, public)
            if overridden and getattr(cls, primitive) is getattr(StorageBackend, primitive):
                setattr(cls, primitive, adapter)
                if primitive == "_list" and cls._stat is StorageBackend._stat:
                    cls._stat = legacy_stat  # type: ignore[method-assign]
        if "list" in cls.__dict__ and "recursive" not in inspect.signature(cls.list).parameters:
            cls.list = with_recursive(cls.__dict__["list"])  # type: ignore[method-assign]

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        """``S3Storage('s3://bucket/app?region=eu-west-1', name='files')``: the URL
        :func:`keg_storage.from_url` rebuilds the backend from, without secrets."""
        from ..urls import backend_repr

        return backend_repr(self)

    def close(self) -> None:
        """Release pools, sockets and clients; idempotent. The backend is unusable afterwards
        only where a backend says so; most reopen what they need on next use."""

    def __enter__(self: StorageBackendT) -> StorageBackendT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def scoped(self, prefix: RemotePath) -> StorageBackend:
        """A view of this backend confined to the directory ``prefix``, for one store per
        tenant (CONTRACT §10): it shares this backend's clients and pools (closing it closes
        nothing), its names are relative to ``prefix``, nothing outside it can be reached, and
        the internal links it signs open nothing outside it. Views nest:
        ``s.scoped('a').scoped('b') == s.scoped('a/b')``. An empty prefix, or one breaking the
        path rules (``..``, control characters), raises :class:`InvalidPathError`."""
        from .scoped import scoped_view

        return scoped_view(self, prefix)

    def _file_key(self, path: RemotePath) -> str:
        return file_key(path, self)

    def _not_found(self, key: str) -> FileNotFoundInStorageError:
        return FileNotFoundInStorageError(self, key)

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        """The :class:`StorageError` for an exception a primitive raised while working on
        ``path`` (a key; None for the whole store), or None to let it through unchanged.

        The one place where a backend maps its SDK's or its OS's exceptions to the CONTRACT's
        errors (§2): the public methods apply it around their primitives, and the backend's file
        objects around their reads, writes and ``close()``, through :meth:`translating`. It is
        never called for a :class:`StorageError`. The default lets everything through.
        """
        return None

    def translating(self, path: str | None) -> contextlib.AbstractContextManager[None]:
        """A context that raises what :meth:`_translate_error` makes of an exception raised
        inside it (chained to the exception), for ``path``."""
        return translated_errors(self._translate_error, path)

    def _write_condition(self, key: str, overwrite: bool, if_match: str | None) -> WriteCondition:
        """``overwrite`` and ``if_match`` checked, and refused before any I/O where the
        backend's capabilities do not have them (CONTRACT §9)."""
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be a bool, not {type(overwrite).__name__}")
        if if_match is not None and not isinstance(if_match, str):
            raise TypeError(f"if_match must be an ETag str, not {type(if_match).__name__}")
        if not overwrite and if_match is not None:
            raise ValueError("overwrite=False and if_match exclude each other")
        if not overwrite and not self.capabilities.conditional_create:
            raise UnsupportedOperationError(
                "create-only writes (overwrite=False) are not supported", backend=self, path=key
            )
        if if_match is not None and not self.capabilities.conditional_replace:
            raise UnsupportedOperationError(
                "compare-and-swap writes (if_match) are not supported", backend=self, path=key
            )
        return WriteCondition(overwrite=overwrite, if_match=if_match)

    def _check_extra_args(self, extra_args: Mapping[str, Any] | None, key: str) -> dict[str, Any]:
        if not extra_args:
            return {}
        if self.supported_extra_args is not None:
            for arg in sorted(extra_args):
                if arg not in self.supported_extra_args:
                    raise UnsupportedOperationError(
                        f"extra_args key {arg!r} is not supported", backend=self, path=key
                    )
        metadata = extra_args.get("Metadata")
        if metadata is not None and not (
            isinstance(metadata, Mapping)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise StorageError("extra_args Metadata must map str to str", backend=self, path=key)
        return dict(extra_args)

    # -- public API ------------------------------------------------------------------------

    def list(self, path: RemotePath = "", *, recursive: bool = True) -> list[ListEntry]:
        """The files under the directory ``path`` as full keys, sorted by name.

        ``recursive=False`` lists direct children only, sub-directories as entries ending in
        ``/``. A missing directory gives ``[]``. :meth:`iter_list` gives the same lazily.
        """
        return builtins.list(self.iter_list(path, recursive=recursive))

    def iter_list(self, path: RemotePath = "", *, recursive: bool = True) -> Iterator[ListEntry]:
        """The entries of :meth:`list`, in the same order, fetched page by page as they are
        consumed (a page of the service, or one directory), so that memory does not grow with
        the number of files and the first entry comes after one page.

        ``path`` is checked at once; errors of the service are raised as :class:`StorageError`
        while iterating. A backend whose ``_list`` is not ordered (:attr:`ordered_listing`)
        is listed whole and sorted before the first entry.
        """
        return self._iter_list(directory_prefix(path, self), recursive)

    def _iter_list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        with self.translating(prefix):
            entries = self._list(prefix, recursive)
            if not self.ordered_listing:
                entries = sorted(entries, key=lambda entry: entry.name)
            yield from entries

    def glob(self, pattern: RemotePath) -> builtins.list[ListEntry]:
        """The files whose full key matches ``pattern`` (``*``, ``?``, ``[...]``, ``**``)."""
        prefix, regex = glob_parts(pattern, self)
        return [entry for entry in self.iter_list(prefix) if regex.match(entry.name)]

    @overload
    def open(
        self,
        path: RemotePath,
        mode: TextMode,
        extra_args: Mapping[str, Any] | None = None,
        *,
        encoding: str = "utf-8",
        errors: str | None = None,
        newline: str | None = None,
        overwrite: bool = True,
        if_match: str | None = None,
    ) -> RemoteTextFile: ...

    @overload
    def open(
        self,
        path: RemotePath,
        mode: BinaryMode | Literal[FileMode.read, FileMode.write] = ...,
        extra_args: Mapping[str, Any] | None = None,
        *,
        overwrite: bool = True,
        if_match: str | None = None,
    ) -> RemoteFile: ...

    @overload
    def open(
        self,
        path: RemotePath,
        mode: FileMode | str,
        extra_args: Mapping[str, Any] | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        overwrite: bool = True,
        if_match: str | None = None,
    ) -> Any: ...

    def open(
        self,
        path: RemotePath,
        mode: FileMode | str = FileMode.read,
        extra_args: Mapping[str, Any] | None = None,
        *,
        encoding: str | None = None,
        errors: str | None = None,
        newline: str | None = None,
        overwrite: bool = True,
        if_match: str | None = None,
    ) -> Any:
        """Open a remote file; a missing file opened for reading raises at once.

        A writer publishes on ``close()``; with ``overwrite=False`` only if nothing exists at
        ``path`` then (else :class:`FileExistsInStorageError`), with ``if_match=etag`` only if
        the file's ETag (as :meth:`stat` gives it) is still ``etag`` (else
        :class:`PreconditionFailedError`). Either may already fail at ``open()``.

        Without ``t`` in ``mode`` the file is binary (:class:`RemoteFile`, keg-storage 0.5's
        behaviour): ``'r'`` reads bytes, ``'w'`` writes bytes, iteration yields chunks. With
        ``'rt'``/``'wt'`` it is a :class:`RemoteTextFile` taking ``encoding``, ``errors`` and
        ``newline`` as :func:`open` does, iterating by lines. ``encoding`` defaults to
        ``'utf-8'``, not the locale's encoding as :func:`open`'s does: a stored file is read on
        other machines, so its bytes must not depend on the one that wrote it.
        """
        key = self._file_key(path)
        file_mode = FileMode.as_mode(mode)
        text = FileMode.text in file_mode
        if not text and (encoding, errors, newline) != (None, None, None):
            raise ValueError(
                f"binary mode {str(file_mode)!r} takes no encoding, errors or newline argument: "
                "open with 't' (e.g. 'rt') for text"
            )
        file_mode &= ~FileMode.text
        if not file_mode:
            raise ValueError(f"file mode {mode!r} asks neither to read nor to write")
        if file_mode == FileMode.read | FileMode.write and not self.capabilities.read_write:
            raise UnsupportedOperationError(
                "read+write mode is not supported", backend=self, path=key
            )
        condition = self._write_condition(key, overwrite, if_match)
        if not condition.unconditional and file_mode != FileMode.write:
            raise ValueError("overwrite=False and if_match apply to files opened for writing ('w')")
        if text:  # the wrapper's own checks, before any I/O
            codecs.lookup(encoding or "utf-8")
            if newline not in (None, "", "\n", "\r", "\r\n"):
                raise ValueError(f"illegal newline value: {newline!r}")
        extra = self._check_extra_args(extra_args, key)
        with self.translating(key):
            remote_file = self._open(key, file_mode, extra, **_conditional(condition))
        if not text:
            return remote_file
        try:
            return RemoteTextFile(
                remote_file, encoding=encoding or "utf-8", errors=errors, newline=newline
            )
        except BaseException:
            remote_file.abort()
            raise

    def stat(self, path: RemotePath) -> FileStat:
        """Size, last modification (UTC), ETag and content type of a file."""
        key = self._file_key(path)
        with self.translating(key):
            return self._stat(key)

    def exists(self, path: RemotePath) -> bool:
        """Whether a file exists at ``path``."""
        key = self._file_key(path)
        with self.translating(key):
            return self._exists(key)

    def delete(self, path: RemotePath) -> None:
        """Delete a file; a missing file is not an error."""
        key = self._file_key(path)
        with self.translating(key):
            self._delete(key)

    def copy(self, path: RemotePath, new_path: RemotePath, *, overwrite: bool = True) -> None:
        """Copy a file, server-side where the service can; an existing destination is replaced,
        unless ``overwrite=False`` (then :class:`FileExistsInStorageError`)."""
        key, new_key = self._file_key(path), self._file_key(new_path)
        condition = self._write_condition(new_key, overwrite, None)
        with self.translating(key):
            if key == new_key:
                self._stat(key)
                if not overwrite:
                    raise FileExistsInStorageError(FILE_EXISTS, backend=self, path=new_key)
                return
            self._copy(key, new_key, **_overwrite(condition))

    def move(self, path: RemotePath, new_path: RemotePath, *, overwrite: bool = True) -> None:
        """Move a file, server-side where the service can; an existing destination is replaced,
        unless ``overwrite=False`` (then :class:`FileExistsInStorageError`)."""
        key, new_key = self._file_key(path), self._file_key(new_path)
        condition = self._write_condition(new_key, overwrite, None)
        with self.translating(key):
            if key == new_key:
                self._stat(key)
                if not overwrite:
                    raise FileExistsInStorageError(FILE_EXISTS, backend=self, path=new_key)
                return
            self._move(key, new_key, **_overwrite(condition))

    def get(
        self,
        path: RemotePath,
        dest: str | os.PathLike[str],
        *,
        progress_callback: ProgressCallback | None = None,
    ) -> None:
        """Copy the remote file ``path`` to the local file ``dest`` (replaced whole, or untouched
        when the transfer fails)."""
        key = self._file_key(path)
        relay_progress(lambda count: self._get(key, os.fspath(dest), count), progress_callback)

    def put(
        self,
        path: str | os.PathLike[str],
        dest: str,
        *,
        progress_callback: ProgressCallback | None = None,
        extra_args: Mapping[str, Any] | None = None,
        overwrite: bool = True,
        if_match: str | None = None,
    ) -> None:
        """Copy the local file ``path`` to the remote file ``dest`` (``overwrite`` and
        ``if_match`` as for :meth:`open`).

        A missing local file raises ``FileNotFoundError`` naming it (and a directory
        ``IsADirectoryError``) before any remote call, so it is never mistaken for a missing
        remote file.
        """
        key = self._file_key(dest)
        extra = self._check_extra_args(extra_args, key)
        conditional = _conditional(self._write_condition(key, overwrite, if_match))
        source = os.fspath(path)
        if os.path.isdir(source):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), source)
        os.stat(source)  # FileNotFoundError / PermissionError naming the local file
        relay_progress(
            lambda count: self._put(source, key, extra, count, **conditional), progress_callback
        )

    def download(
        self,
        path: RemotePath,
        file_obj: IO[bytes],
        *,
        progress_callback: ProgressCallback | None = None,
    ) -> None:
        """Write the remote file ``path`` into the binary file object ``file_obj``.

        ``progress_callback`` receives the cumulative byte count on the calling thread.
        """
        key = self._file_key(path)
        relay_progress(lambda count: self._download(key, file_obj, count), progress_callback)

    def upload(
        self,
        file_obj: IO[bytes],
        path: RemotePath,
        *,
        progress_callback: ProgressCallback | None = None,
        extra_args: Mapping[str, Any] | None = None,
        overwrite: bool = True,
        if_match: str | None = None,
    ) -> None:
        """Store everything ``file_obj`` yields at ``path``, atomically (``overwrite`` and
        ``if_match`` as for :meth:`open`).

        ``progress_callback`` receives the cumulative byte count on the calling thread.
        """
        key = self._file_key(path)
        extra = self._check_extra_args(extra_args, key)
        conditional = _conditional(self._write_condition(key, overwrite, if_match))
        relay_progress(
            lambda count: self._upload(file_obj, key, extra, count, **conditional),
            progress_callback,
        )

    def upload_keeping_mtime(
        self, file_obj: IO[bytes], path: RemotePath, mtime: arrow.Arrow | datetime | float
    ) -> None:
        """:meth:`upload` (overwriting), keeping ``mtime`` (a moment, or seconds since the
        epoch) as the file's modification time, as rclone keeps a source's: set on the file,
        published with it, where the backend keeps files' times (:attr:`keeps_mtime`: LocalFS,
        SFTP in whole seconds), else stored as the metadata ``mtime`` where it keeps metadata
        (in the form :meth:`_mtime_metadata` gives), else not kept."""
        key = self._file_key(path)
        self._upload_keeping_mtime(file_obj, key, arrow.get(mtime))

    def delete_many(self, paths: Iterable[RemotePath]) -> builtins.list[DeleteResult]:
        """Delete many files, in as few requests as the service allows (S3 DeleteObjects of
        1,000 keys, Azure blob batches of 256, pipelined SFTP removes); a result per path, in
        the order given.

        As for :meth:`delete`, a missing file is no error. A path that is invalid or that the
        service refuses gets its error in its result (naming the path), and every other path is
        still deleted: nothing is raised for one path.
        """
        return bulk.delete_many(self, paths)

    def upload_many(
        self,
        pairs: Iterable[tuple[LocalPath, RemotePath]],
        *,
        max_concurrency: int = 8,
        progress: ProgressCallback | None = None,
        overwrite: bool = True,
    ) -> builtins.list[TransferResult]:
        """:meth:`put` each ``(local file, remote path)`` pair, ``max_concurrency`` at a time;
        a result per pair, in the order given.

        Each file is published whole or not at all (``overwrite`` as for :meth:`put`); one that
        fails gets its error in its result and never stops the others. ``progress`` receives the
        total bytes of all the files, cumulative, on the calling thread. If ``progress`` raises,
        or the caller is interrupted (``KeyboardInterrupt``), the running transfers stop at their
        next chunk, leaving no temp state, and the exception propagates.
        """
        return bulk.upload_many(
            self, pairs, max_concurrency=max_concurrency, progress=progress, overwrite=overwrite
        )

    def download_many(
        self,
        pairs: Iterable[tuple[RemotePath, LocalPath]],
        *,
        max_concurrency: int = 8,
        progress: ProgressCallback | None = None,
    ) -> builtins.list[TransferResult]:
        """:meth:`get` each ``(remote path, local file)`` pair, ``max_concurrency`` at a time;
        a result per pair, in the order given, as :meth:`upload_many` (each local file replaced
        whole or left untouched; its directory must exist)."""
        return bulk.download_many(self, pairs, max_concurrency=max_concurrency, progress=progress)

    def link_to(
        self,
        path: RemotePath,
        operation: ShareLinkOperation | str,
        expire: Expiry,
        output_path: str | None = None,
        content_type: str | None = None,
        **options: Any,
    ) -> str:
        """A URL that allows ``operation`` on ``path`` until ``expire``.

        ``output_path`` is the file name a browser saves a download as; ``content_type`` the type
        served (downloads) or required (S3 uploads).
        """
        key = self._file_key(path)
        parsed = ShareLinkOperation.as_operation(operation)
        check_link_header_values(output_path, content_type)
        expires_at = resolve_expiry(expire)
        with self.translating(key):
            return self._link_to(key, parsed, expires_at, output_path, content_type, **options)

    # -- primitives --------------------------------------------------------------------------

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        """Entries under ``prefix`` (``''`` or ``'a/b/'``): in listing order, lazily, where
        :attr:`ordered_listing` says so, else in any order."""
        raise NotImplementedError

    def _open(self, key: str, mode: FileMode, extra_args: dict[str, Any]) -> RemoteFile:
        raise NotImplementedError

    def _stat(self, key: str) -> FileStat:
        raise NotImplementedError

    def _delete(self, key: str) -> None:
        raise NotImplementedError

    def _link_to(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        **options: Any,
    ) -> str:
        raise UnsupportedOperationError("links are not supported", backend=self, path=key)

    def _exists(self, key: str) -> bool:
        try:
            with self.translating(key):
                self._probe(key)
        except FileNotFoundInStorageError:
            return False
        return True

    def _probe(self, key: str) -> None:
        """Raise (a not-found error for a missing file) unless ``key`` is a file, for
        :meth:`_exists`: by default :meth:`_stat`; a backend whose stat request gives an answer
        it must then build into a stat overrides it to send the request alone."""
        self._stat(key)

    def _copy(self, key: str, new_key: str, overwrite: bool = True) -> None:
        """Stream the file through this process (for services without a server-side copy).
        ``overwrite`` is passed only when False, and only to a backend whose capabilities say
        ``conditional_create``."""
        conditional = _conditional(WriteCondition(overwrite=overwrite))
        with self._open(key, FileMode.read, {}) as source:
            self._upload(cast(IO[bytes], source), new_key, {}, ignore_bytes, **conditional)

    def _move(self, key: str, new_key: str, overwrite: bool = True) -> None:
        self._copy(key, new_key, **_overwrite(WriteCondition(overwrite=overwrite)))
        self._delete(key)

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        # Only the store's side of a transfer is translated: the file's reads translate their
        # own errors, and those of the caller's file object are never the store's.
        with self.translating(key):
            source = self._open(key, FileMode.read, {})
        with source:
            while chunk := source.read(self.transfer_chunk_size):
                file_obj.write(chunk)
                count_bytes(len(chunk))

    def _upload(
        self,
        file_obj: IO[bytes],
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        """``condition`` is passed only when it is not :data:`ALWAYS` (so a backend without
        conditional writes need not take it), and then on to ``_open``."""
        with self.translating(key):  # the store's side only, as in _download
            target = self._open(key, FileMode.write, extra_args, **_conditional(condition))
        with target:
            while chunk := file_obj.read(self.transfer_chunk_size):
                target.write(chunk)
                count_bytes(len(chunk))

    def _upload_keeping_mtime(self, file_obj: IO[bytes], key: str, mtime: arrow.Arrow) -> None:
        """Upload with the metadata ``mtime`` where the backend keeps metadata, through the
        public :meth:`upload` (which a keg-storage 0.5 style backend may override). A backend
        that keeps files' times overrides this to set the time before it publishes."""
        extra_args = self._mtime_extra_args(mtime.timestamp()) or None
        self.upload(file_obj, key, extra_args=extra_args)

    def _mtime_extra_args(self, mtime: float | None) -> dict[str, Any]:
        """The upload options that keep the modification time ``mtime`` (seconds) as the
        metadata ``mtime`` where the backend keeps metadata; none for None or elsewhere."""
        if mtime is None or not self.capabilities.metadata:
            return {}
        return {"Metadata": {"mtime": self._mtime_metadata(arrow.get(mtime))}}

    def _mtime_metadata(self, mtime: arrow.Arrow) -> str:
        """The metadata value of a modification time, in the form rclone writes and reads for
        the service: RFC 3339 in UTC by default (Azure's); S3 overrides it (decimal seconds)."""
        return mtime.to("UTC").isoformat().replace("+00:00", "Z")

    def _delete_many(self, keys: builtins.list[str]) -> dict[str, Exception]:
        """Delete ``keys`` (valid, distinct); the error of each key not deleted, translated (a
        missing file is deleted). The default deletes one key after the other; a backend
        overrides it with its service's batch call."""
        failed: dict[str, Exception] = {}
        for key in keys:
            try:
                with self.translating(key):
                    self._delete(key)
            except Exception as exc:
                failed[key] = exc
        return failed

    def _get(self, key: str, dest: str, count_bytes: ByteCounter) -> None:
        with atomic_replace(dest) as local:
            self._download(key, local, count_bytes)

    def _reserve_sessions(self, count: int) -> None:
        """Get ready for ``count`` transfers at once (``sync``, and ``upload_many`` and
        ``download_many`` on more than one thread, call it before they start) where that is
        cheaper ahead of them than in each: SFTP opens the sessions as channels of one
        connection. Nothing by default; a failure is left to the transfers to meet."""

    def _put_batch(
        self, items: builtins.list[BatchItem], report: Report, concurrency: int = 1
    ) -> dict[int, Exception]:
        """Store each small local file (or the bytes given in ``item.data``, with the time
        ``item.mtime`` where given) at its key, overwriting, as :meth:`_put` (or
        :meth:`upload_keeping_mtime`) would, for :meth:`upload_many` and ``sync`` (only called
        where :attr:`bulk_batch_files` is above 1), with up to ``concurrency`` requests at once
        where the service takes them from one thread (S3, Azure; SFTP pipelines its requests on one
        session whatever it is). Reports each file's bytes as ``report(item.index, amount)``;
        returns the error of each file that failed, keyed by its index: one file's failure never
        stops the others."""
        raise NotImplementedError

    def _get_batch(self, items: builtins.list[BatchItem], report: Report) -> dict[int, Exception]:
        """Copy each remote file to its local file, replaced whole, as :meth:`_get` would, for
        :meth:`download_many`; reports and errors as :meth:`_put_batch`."""
        raise NotImplementedError

    def _put(
        self,
        source: str,
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        with open(source, "rb") as local:
            self._upload(local, key, extra_args, count_bytes, **_conditional(condition))


StorageBackendT = TypeVar("StorageBackendT", bound=StorageBackend)

FILE_EXISTS = "a file exists at this path"
"""The message of :class:`FileExistsInStorageError` for a create-only write."""
PRECONDITION_FAILED = "the file is not the version given by if_match"
"""The message of :class:`PreconditionFailedError` for a compare-and-swap write."""


def _conditional(condition: WriteCondition) -> dict[str, WriteCondition]:
    """``condition=`` for a primitive, only when the write is conditional: a backend without
    conditional writes (third-party ones and keg-storage 0.5 style ones included) is never
    passed an argument it does not take, since :meth:`StorageBackend._write_condition` refused
    the write before."""
    return {} if condition.unconditional else {"condition": condition}


def _overwrite(condition: WriteCondition) -> dict[str, bool]:
    """``overwrite=False`` for ``_copy``/``_move``, only when the copy is create-only."""
    return {} if condition.overwrite else {"overwrite": False}


def file_errors(
    storage: Any, path: str | None, translate: Callable[[Any, Exception, str | None], Any]
) -> contextlib.AbstractContextManager[None]:
    """The error translation a backend's file object applies to its reads, writes and
    ``close()``: its storage's (:meth:`StorageBackend.translating`) or, for a file made without
    one (keg-storage 0.5 let callers build readers and writers), ``translate(storage, error,
    path)`` with the label it holds instead."""
    if isinstance(storage, StorageBackend):
        return storage.translating(path)
    return translated_errors(functools.partial(translate, storage), path)


class translated_errors(contextlib.AbstractContextManager[None]):
    """Raise ``translate(error, path)``, chained to ``error``, for an exception raised inside,
    or ``error`` itself when that is None; a :class:`StorageError` passes unchanged (it was
    translated where it was raised, or raised as one). A class, not a generator context: it
    wraps every primitive and every read and write of a file, and costs a third as much."""

    __slots__ = ("path", "translate")

    def __init__(self, translate: ErrorTranslator, path: str | None) -> None:
        self.translate = translate
        self.path = path

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: Any
    ) -> None:
        if not isinstance(error, Exception) or isinstance(error, StorageError):
            return
        translated = self.translate(error, self.path)
        if translated is not None:
            raise translated from error


def check_link_header_values(output_path: Any, content_type: Any) -> None:
    """Refuse an ``output_path`` or ``content_type`` that is not a str or holds a control
    character (CR, LF, ...): both become HTTP header values of every download."""
    for name, value in (("output_path", output_path), ("content_type", content_type)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a str, not {type(value).__name__}")
        if CONTROL_CHARACTER.search(value):
            raise ValueError(f"{name} must not hold control characters: {value!r}")


# Imported last: the link backend subclasses StorageBackend (names kept importable from here).
from .links import InternalLinksStorageBackend, InternalLinkTokenData  # noqa: E402
from .links import SecretKey as SecretKey  # noqa: E402
