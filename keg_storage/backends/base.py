"""The storage API every backend shares (CONTRACT §1, §3, §4, §5).

A backend subclasses :class:`StorageBackend` and implements a few primitives that receive keys
already normalised by :mod:`keg_storage.paths` (``_open``, ``_list``, ``_stat``, ``_delete`` and,
for links, ``_link_to``). The public methods here validate paths, parse modes, operations and
expiries, check ``extra_args``, sort listings and relay progress callbacks, so that every backend
behaves the same. A backend overrides the other primitives (``_copy``, ``_move``, ``_download``,
``_upload``, ``_get``, ``_put``, ``_exists``) only where its service does the work better.
"""

from __future__ import annotations

import builtins
import codecs
import contextlib
import enum
import errno
import functools
import hashlib
import inspect
import io
import math
import os
import re
import tempfile
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import IO, Any, Literal, NamedTuple, TypeVar, cast, overload

import arrow
import jwt

from ..errors import (
    ExpiredLinkTokenError,
    FileNotFoundInStorageError,
    LinkTokenError,
    MalformedLinkTokenError,
    StorageError,
    UnsupportedOperationError,
    describe_backend,
)
from ..paths import RemotePath, directory_prefix, file_key, glob_parts, path_text
from ..progress import ByteCounter, ProgressCallback, ignore_bytes, relay_progress
from ..secrets import Secret, hold, install_log_redaction, scrubbed

__all__ = [
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
]

Expiry = arrow.Arrow | datetime | timedelta
SecretKey = str | bytes | Sequence[str | bytes]
RemoteFileT = TypeVar("RemoteFileT", bound="RemoteFile")
TextMode = Literal["rt", "tr", "wt", "tw", "r+t", "rt+", "w+t", "wt+"]
"""Mode strings that open a :class:`RemoteTextFile` (for type checkers)."""
BinaryMode = Literal["r", "rb", "br", "w", "wb", "bw", "r+", "r+b", "rb+", "w+", "w+b", "wb+"]
"""Mode strings that open a binary :class:`RemoteFile` (for type checkers)."""


class FileMode(enum.Flag):
    """How a remote file is opened: ``read``, ``write`` or both (``read | write``), in binary
    (the default) or ``text``."""

    read = enum.auto()
    write = enum.auto()
    text = enum.auto()

    def __str__(self) -> str:
        letters = ("r" if FileMode.read in self else "") + ("w" if FileMode.write in self else "")
        return letters + ("t" if FileMode.text in self else "b")

    @classmethod
    def as_mode(cls, obj: FileMode | str) -> FileMode:
        """Parse ``'r'``, ``'rb'``, ``'wt'``, ``'r+'`` (read|write), ... into a FileMode.

        Only the letters ``r``, ``w``, ``b``, ``t`` and ``+`` are accepted; the string must ask
        for reading or writing. Without ``t`` a file is binary (keg-storage 0.5's behaviour):
        ``'r'`` reads bytes.
        """
        if isinstance(obj, FileMode):
            return obj
        if not isinstance(obj, str):
            raise ValueError("as_mode() accepts only FileMode or str arguments")
        if "a" in obj:
            raise ValueError(
                f"unsupported file mode {obj!r}: appending is not supported (objects are written "
                "whole); read the file and write it again with 'w'"
            )
        unknown = set(obj) - set("rwbt+")
        if unknown:
            raise ValueError(
                f"unsupported file mode {obj!r}: {''.join(sorted(unknown))!r} is not one of the "
                "letters r, w, b, t, +"
            )
        if "b" in obj and "t" in obj:
            raise ValueError(f"file mode {obj!r} asks for both binary (b) and text (t)")
        mode = cls(0)
        if "r" in obj or ("+" in obj and "w" in obj):
            mode |= cls.read
        if "w" in obj or ("+" in obj and "r" in obj):
            mode |= cls.write
        if not mode:
            raise ValueError(f"file mode {obj!r} asks neither to read nor to write")
        if "t" in obj:
            mode |= cls.text
        return mode


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


class ListEntry(NamedTuple):
    """One entry of :meth:`StorageBackend.list`: a file, or a directory whose name ends in ``/``
    (size 0, ``last_modified`` None) in a non-recursive listing."""

    name: str
    last_modified: arrow.Arrow | None
    size: int


@dataclass(frozen=True)
class FileStat:
    """What :meth:`StorageBackend.stat` tells about a file; None where the service has none."""

    size: int
    last_modified: arrow.Arrow
    etag: str | None = None
    content_type: str | None = None


class RemoteFile(io.RawIOBase):
    """A remote file opened by :meth:`StorageBackend.open`, a raw binary file object.

    Subclasses implement ``read(size)`` and/or ``write(data)`` (plus ``seek``/``tell`` where they
    can) and the hooks ``_finish`` (publish what was written, release resources) and ``_discard``
    (drop what was written, release resources). This class makes writes atomic from the caller's
    side: ``close()`` publishes, while an exception in a ``with`` block, :meth:`abort` or garbage
    collection of an unclosed writer (with a ``ResourceWarning``) discard.

    Iterating over a remote file yields chunks of :attr:`iter_chunk_size` bytes, not lines, as
    in keg-storage 0.5; open it with ``'rt'`` for lines (:class:`RemoteTextFile`).
    """

    iter_chunk_size = 5 * 1024 * 1024
    """Default chunk size of :meth:`iter_chunks` and of iterating over the file (5 MiB)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every ``write`` a subclass defines the check for ``str`` (in one place, for
        every backend's writer, third-party ones included)."""
        super().__init_subclass__(**kwargs)
        if "write" in cls.__dict__:
            cls.write = _refusing_str(cls.__dict__["write"])  # type: ignore[assignment]

    def __init__(self, mode: FileMode | str) -> None:
        super().__init__()
        self.mode = FileMode.as_mode(mode)

    def __repr__(self) -> str:
        # getattr: a traceback with locals shows ``self`` of a constructor that failed half-way.
        path, mode = getattr(self, "path", None), getattr(self, "mode", None)
        return f"<{type(self).__name__} path={path!r} mode={str(mode)!r}>"

    def readable(self) -> bool:
        return FileMode.read in self.mode

    def writable(self) -> bool:
        return FileMode.write in self.mode

    def read(self, size: int | None = -1) -> bytes:
        """Read up to ``size`` bytes (all that is left when ``size`` is -1 or None)."""
        self._check_readable()
        raise NotImplementedError(f"{type(self).__name__} does not implement read()")

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def write(self, data: Any) -> int:
        """Write the bytes-like ``data``; it becomes visible only when :meth:`close` succeeds.
        A ``str`` raises ``TypeError``: text needs a file opened with ``'wt'``."""
        _check_not_str(self, data)
        self._check_writable()
        raise NotImplementedError(f"{type(self).__name__} does not implement write()")

    def _check_readable(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self.readable():
            raise io.UnsupportedOperation("File not opened for reading")

    def _check_writable(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        if not self.writable():
            raise io.UnsupportedOperation("File not opened for writing")

    def iter_chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        """Yield the rest of the file in chunks of ``chunk_size`` (default ``iter_chunk_size``)."""
        size = chunk_size or self.iter_chunk_size
        while chunk := self.read(size):
            yield chunk

    def __iter__(self) -> Iterator[bytes]:
        self._checkClosed()
        return self.iter_chunks()

    def _finish(self) -> None:
        """Publish what was written (writers) and release resources."""

    def _discard(self) -> None:
        """Drop what was written (writers) and release resources."""
        self._finish()

    def close(self) -> None:
        """Publish the written data (writers) and release resources; idempotent."""
        if self.closed:
            return
        try:
            self._finish()
        except BaseException:
            with contextlib.suppress(Exception):  # the original failure is the one to report
                self._discard()
            raise
        finally:
            super().close()

    def abort(self) -> None:
        """Discard everything written: nothing is published, the previous content stays."""
        if self.closed:
            return
        try:
            self._discard()
        finally:
            super().close()

    def __enter__(self: RemoteFileT) -> RemoteFileT:
        self._checkClosed()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if exc_type is not None and self.writable():
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        try:
            if self.closed:
                return
            if self.writable():
                warnings.warn(
                    f"{self!r} was garbage-collected without close(): its writes were discarded",
                    ResourceWarning,
                    source=self,
                    stacklevel=2,
                )
            self._collected()
        except Exception:  # finalizers must not raise; a half-built file has nothing to release
            pass

    def _collected(self) -> None:
        """What garbage collection does with a file left open: a writer discards, a reader
        closes. Network files queue this on the cleanup thread instead (:mod:`.cleanup`), so that
        a finalizer never waits on the network."""
        if self.writable():
            self.abort()
        else:
            self.close()


def _check_not_str(file: RemoteFile, data: Any) -> None:
    if isinstance(data, str):
        raise TypeError(
            f"{file!r} is a binary file: write() takes bytes, not str; open it with mode 'wt' "
            "to write text"
        )


def _refusing_str(write: Callable[[Any, Any], int]) -> Callable[[Any, Any], int]:
    """``write`` preceded by the check that ``data`` is not a ``str``."""

    @functools.wraps(write)
    def checked_write(self: RemoteFile, data: Any) -> int:
        _check_not_str(self, data)
        return write(self, data)

    return checked_write


class _UnclosingBufferedWriter(io.BufferedWriter):
    """A buffered writer whose garbage collection leaves the remote file to its own finalizer,
    which discards it with a ``ResourceWarning``; the standard one would flush and publish."""

    def __del__(self) -> None:
        pass


class _UnclosingBufferedRandom(io.BufferedRandom):
    """:class:`_UnclosingBufferedWriter` for ``r+`` files."""

    def __del__(self) -> None:
        pass


class RemoteTextFile(io.TextIOWrapper):
    """A remote file opened with ``'rt'`` or ``'wt'``: an :class:`io.TextIOWrapper` over a
    buffered :class:`RemoteFile`, iterating by lines.

    Writes stay atomic: :meth:`close` publishes, an exception in a ``with`` block or
    :meth:`abort` publishes nothing, and a writer garbage-collected unclosed is discarded with a
    ``ResourceWarning``, as for the binary file. ``remote_file`` is the binary
    :class:`RemoteFile` underneath.
    """

    def __init__(
        self,
        remote_file: RemoteFile,
        *,
        encoding: str,
        errors: str | None,
        newline: str | None,
    ) -> None:
        buffered: io.BufferedIOBase
        if remote_file.readable() and remote_file.writable():
            buffered = _UnclosingBufferedRandom(remote_file)
        elif remote_file.writable():
            buffered = _UnclosingBufferedWriter(remote_file)
        else:
            buffered = io.BufferedReader(remote_file)
        super().__init__(buffered, encoding=encoding, errors=errors, newline=newline)
        self.remote_file = remote_file

    def __repr__(self) -> str:
        remote_file = getattr(self, "remote_file", None)
        path = getattr(remote_file, "path", None)
        mode = getattr(remote_file, "mode", None)
        text_mode = str(mode).replace("b", "t") if mode is not None else None
        return f"<{type(self).__name__} path={path!r} mode={text_mode!r}>"

    def close(self) -> None:
        """Publish what was written (writers) and release resources; idempotent. When writing
        out the text still buffered fails, nothing is published (``TextIOWrapper.close`` would
        close, and so publish, the remote file after a failed flush)."""
        if not self.closed and self.remote_file.writable():
            try:
                self.flush()
            except BaseException:
                self.abort()
                raise
        super().close()

    def abort(self) -> None:
        """Discard everything written: nothing is published, the previous content stays."""
        self.remote_file.abort()

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        if exc_type is not None and self.remote_file.writable():
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:
        """Leave an unclosed file to the :class:`RemoteFile`'s finalizer: a writer is then
        discarded with a ``ResourceWarning``, never published (``TextIOWrapper`` would close,
        and so publish, it)."""


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
    supports_read_write = False
    """Whether ``open(path, 'r+')`` works (the service can change a file in place)."""
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
        for public, primitive, adapter in _LEGACY_PRIMITIVES:
            overridden = getattr(cls, public) is not getattr(StorageBackend, public)
            if overridden and getattr(cls, primitive) is getattr(StorageBackend, primitive):
                setattr(cls, primitive, adapter)
                if primitive == "_list" and cls._stat is StorageBackend._stat:
                    cls._stat = _legacy_stat  # type: ignore[method-assign]
        if "list" in cls.__dict__ and "recursive" not in inspect.signature(cls.list).parameters:
            cls.list = _with_recursive(cls.__dict__["list"])  # type: ignore[method-assign]

    def __str__(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    def close(self) -> None:
        """Release pools, sockets and clients; idempotent. The backend is unusable afterwards
        only where a backend says so; most reopen what they need on next use."""

    def __enter__(self: StorageBackendT) -> StorageBackendT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _file_key(self, path: RemotePath) -> str:
        return file_key(path, self)

    def _not_found(self, key: str) -> FileNotFoundInStorageError:
        return FileNotFoundInStorageError(self, key)

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
        ``/``. A missing directory gives ``[]``.
        """
        prefix = directory_prefix(path, self)
        return sorted(self._list(prefix, recursive), key=lambda entry: entry.name)

    def glob(self, pattern: RemotePath) -> builtins.list[ListEntry]:
        """The files whose full key matches ``pattern`` (``*``, ``?``, ``[...]``, ``**``)."""
        prefix, regex = glob_parts(pattern, self)
        return [entry for entry in self.list(prefix) if regex.match(entry.name)]

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
    ) -> RemoteTextFile: ...

    @overload
    def open(
        self,
        path: RemotePath,
        mode: BinaryMode | Literal[FileMode.read, FileMode.write] = ...,
        extra_args: Mapping[str, Any] | None = None,
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
    ) -> Any:
        """Open a remote file; a missing file opened for reading raises at once.

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
        if file_mode == FileMode.read | FileMode.write and not self.supports_read_write:
            raise UnsupportedOperationError(
                "read+write mode is not supported", backend=self, path=key
            )
        if text:  # the wrapper's own checks, before any I/O
            codecs.lookup(encoding or "utf-8")
            if newline not in (None, "", "\n", "\r", "\r\n"):
                raise ValueError(f"illegal newline value: {newline!r}")
        remote_file = self._open(key, file_mode, self._check_extra_args(extra_args, key))
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
        return self._stat(self._file_key(path))

    def exists(self, path: RemotePath) -> bool:
        """Whether a file exists at ``path``."""
        return self._exists(self._file_key(path))

    def delete(self, path: RemotePath) -> None:
        """Delete a file; a missing file is not an error."""
        self._delete(self._file_key(path))

    def copy(self, path: RemotePath, new_path: RemotePath) -> None:
        """Copy a file, server-side where the service can; an existing destination is replaced."""
        key, new_key = self._file_key(path), self._file_key(new_path)
        if key == new_key:
            self._stat(key)
            return
        self._copy(key, new_key)

    def move(self, path: RemotePath, new_path: RemotePath) -> None:
        """Move a file, server-side where the service can; an existing destination is replaced."""
        key, new_key = self._file_key(path), self._file_key(new_path)
        if key == new_key:
            self._stat(key)
            return
        self._move(key, new_key)

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
    ) -> None:
        """Copy the local file ``path`` to the remote file ``dest``.

        A missing local file raises ``FileNotFoundError`` naming it (and a directory
        ``IsADirectoryError``) before any remote call, so it is never mistaken for a missing
        remote file.
        """
        key = self._file_key(dest)
        extra = self._check_extra_args(extra_args, key)
        source = os.fspath(path)
        if os.path.isdir(source):
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), source)
        os.stat(source)  # FileNotFoundError / PermissionError naming the local file
        relay_progress(lambda count: self._put(source, key, extra, count), progress_callback)

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
    ) -> None:
        """Store everything ``file_obj`` yields at ``path``, atomically.

        ``progress_callback`` receives the cumulative byte count on the calling thread.
        """
        key = self._file_key(path)
        extra = self._check_extra_args(extra_args, key)
        relay_progress(lambda count: self._upload(file_obj, key, extra, count), progress_callback)

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
        return self._link_to(
            key, parsed, resolve_expiry(expire), output_path, content_type, **options
        )

    # -- primitives --------------------------------------------------------------------------

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        """Entries under ``prefix`` (``''`` or ``'a/b/'``), in any order."""
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
            self._stat(key)
        except FileNotFoundInStorageError:
            return False
        return True

    def _copy(self, key: str, new_key: str) -> None:
        """Stream the file through this process (for services without a server-side copy)."""
        with self._open(key, FileMode.read, {}) as source:
            self._upload(cast(IO[bytes], source), new_key, {}, ignore_bytes)

    def _move(self, key: str, new_key: str) -> None:
        self._copy(key, new_key)
        self._delete(key)

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        with self._open(key, FileMode.read, {}) as source:
            while chunk := source.read(self.transfer_chunk_size):
                file_obj.write(chunk)
                count_bytes(len(chunk))

    def _upload(
        self, file_obj: IO[bytes], key: str, extra_args: dict[str, Any], count_bytes: ByteCounter
    ) -> None:
        with self._open(key, FileMode.write, extra_args) as target:
            while chunk := file_obj.read(self.transfer_chunk_size):
                target.write(chunk)
                count_bytes(len(chunk))

    def _get(self, key: str, dest: str, count_bytes: ByteCounter) -> None:
        with atomic_replace(dest) as local:
            self._download(key, local, count_bytes)

    def _put(
        self, source: str, key: str, extra_args: dict[str, Any], count_bytes: ByteCounter
    ) -> None:
        with open(source, "rb") as local:
            self._upload(local, key, extra_args, count_bytes)


StorageBackendT = TypeVar("StorageBackendT", bound=StorageBackend)


# -- keg-storage 0.5 subclasses (see StorageBackend.__init_subclass__) ----------------------------


def _legacy_open(
    self: StorageBackend, key: str, mode: FileMode, extra_args: dict[str, Any]
) -> RemoteFile:
    """The primitive ``_open`` through a public ``open`` override (0.5's may lack extra_args)."""
    with _typed_not_found(self, key):
        if extra_args:
            return cast(RemoteFile, self.open(key, mode, extra_args=extra_args))
        return cast(RemoteFile, self.open(key, mode))


@contextlib.contextmanager
def _typed_not_found(backend: StorageBackend, key: str) -> Iterator[None]:
    """A plain ``FileNotFoundError`` from a 0.5 override as ``FileNotFoundInStorageError``."""
    try:
        yield
    except FileNotFoundInStorageError:
        raise
    except FileNotFoundError as exc:
        raise backend._not_found(key) from exc


def _legacy_list(self: StorageBackend, prefix: str, recursive: bool) -> Iterable[ListEntry]:
    """The primitive ``_list`` through a public ``list(path)`` override that returns the full
    keys of every file under ``path`` (as 0.5's LocalFS and S3 did)."""
    entries = [e for e in self.list(prefix) if e.name.lstrip("/").startswith(prefix)]
    if recursive:
        return entries
    children: dict[str, ListEntry] = {}
    for entry in entries:
        head, slash, _ = entry.name.lstrip("/")[len(prefix) :].partition("/")
        name = prefix + head + slash
        children.setdefault(name, ListEntry(name, None, 0) if slash else entry._replace(name=name))
    return children.values()


def _legacy_stat(self: StorageBackend, key: str) -> FileStat:
    """``stat`` from the listing of the file's directory (0.5 backends have no ``stat``)."""
    parent = key.rpartition("/")[0]
    for entry in self._list(f"{parent}/" if parent else "", False):
        if entry.name == key and entry.last_modified is not None:
            return FileStat(size=entry.size, last_modified=arrow.get(entry.last_modified))
    raise self._not_found(key)


def _with_recursive(legacy_list: Callable[[Any, str], builtins.list[ListEntry]]) -> Any:
    """A 0.5 ``list(path)`` override that also takes today's ``recursive`` (and a default path):
    ``recursive=False`` folds its listing into direct children."""

    @functools.wraps(legacy_list)
    def list(
        self: StorageBackend, path: RemotePath = "", *, recursive: bool = True
    ) -> builtins.list[ListEntry]:
        if recursive:
            return legacy_list(self, path_text(path, self))
        prefix = directory_prefix(path, self)
        return sorted(_legacy_list(self, prefix, False), key=lambda entry: entry.name)

    return list


def _legacy_delete(self: StorageBackend, key: str) -> None:
    self.delete(key)


def _legacy_copy(self: StorageBackend, key: str, new_key: str) -> None:
    with _typed_not_found(self, key):
        self.copy(key, new_key)


_LEGACY_PRIMITIVES: tuple[tuple[str, str, Any], ...] = (
    ("open", "_open", _legacy_open),
    ("list", "_list", _legacy_list),
    ("delete", "_delete", _legacy_delete),
    ("copy", "_copy", _legacy_copy),
)


@contextlib.contextmanager
def atomic_replace(target: str, *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Yield a new temp file beside ``target``, open for writing; on success it replaces
    ``target`` (with the permissions a new file would get), on failure it is removed and
    ``target`` is untouched.

    The temp file is written through the descriptor that created it: reopening it with
    ``O_TRUNC`` would make ext4 flush it on close (its replace-by-truncate heuristic), which
    halves the speed of a large copy.
    """
    fd, temp_path = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(target)), prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "wb") as temp_file:
            yield temp_file
        publish_temp_file(temp_path, target, fsync=fsync)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


TEMP_PREFIX = ".keg-storage-"
TEMP_SUFFIX = ".tmp"


def publish_temp_file(temp_path: str, target: str, *, fsync: bool) -> None:
    """Give a finished temp file normal permissions and rename it over ``target``."""
    os.chmod(temp_path, 0o666 & ~current_umask())
    if fsync:
        with open(temp_path, "rb") as written:
            os.fsync(written.fileno())
    os.replace(temp_path, target)


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_link_header_values(output_path: Any, content_type: Any) -> None:
    """Refuse an ``output_path`` or ``content_type`` that is not a str or holds a control
    character (CR, LF, ...): both become HTTP header values of every download."""
    for name, value in (("output_path", output_path), ("content_type", content_type)):
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a str, not {type(value).__name__}")
        if any(unicodedata.category(char) == "Cc" for char in value):
            raise ValueError(f"{name} must not hold control characters: {value!r}")


class InternalLinkTokenData(NamedTuple):
    """What an internal link token allows: the key, the operations and, signed with them, the
    file name to serve a download as and its content type."""

    path: str
    operations: ShareLinkOperation
    output_path: str | None = None
    content_type: str | None = None

    def serialize(self) -> dict[str, Any]:
        """The token's claims: ``key``, ``op`` and, when set, ``output_path``, ``content_type``."""
        claims: dict[str, Any] = {"key": self.path, "op": str(self.operations)}
        if self.output_path is not None:
            claims["output_path"] = self.output_path
        if self.content_type is not None:
            claims["content_type"] = self.content_type
        return claims

    @classmethod
    def deserialize(cls, data: Mapping[str, Any]) -> InternalLinkTokenData:
        """The data of verified token claims (the inverse of :meth:`serialize`).

        Claims of the wrong type (``key`` and ``op`` must be strings, ``output_path`` and
        ``content_type`` strings without control characters when present) raise
        :class:`MalformedLinkTokenError`: the link view answers 400, never 500."""
        for claim in ("key", "op"):
            if not isinstance(data.get(claim), str):
                raise MalformedLinkTokenError(f"link token claim {claim!r} must be a string")
        output_path, content_type = data.get("output_path"), data.get("content_type")
        try:
            check_link_header_values(output_path, content_type)
        except ValueError as exc:
            raise MalformedLinkTokenError(f"link token claims are invalid: {exc}") from exc
        return cls(
            path=data["key"],
            operations=ShareLinkOperation.as_operation(data["op"]),
            output_path=output_path,
            content_type=content_type,
        )

    @property
    def allow_download(self) -> bool:
        """Whether the token allows ``download``."""
        return ShareLinkOperation.download in self.operations

    @property
    def allow_upload(self) -> bool:
        """Whether the token allows ``upload``."""
        return ShareLinkOperation.upload in self.operations

    @property
    def allow_remove(self) -> bool:
        """Whether the token allows ``remove``."""
        return ShareLinkOperation.remove in self.operations


def _secret_bytes(secret_key: SecretKey) -> list[bytes]:
    """The one or more secrets of a ``secret_key`` setting, as bytes."""
    secrets = [secret_key] if isinstance(secret_key, (str, bytes)) else list(secret_key)
    return [secret.encode() if isinstance(secret, str) else bytes(secret) for secret in secrets]


class InternalLinksStorageBackend(StorageBackend):
    """A backend whose links point at the application (``LinkViewMixin``) instead of the service.

    Links carry an HS512 JWT (PyJWT) whose key is derived from ``secret_key`` and the backend's
    name, so a token made for one backend never works on another. ``secret_key`` may be a str,
    bytes, or a list of them: the first signs, all verify (key rotation).
    """

    token_algorithm = "HS512"

    def __init__(
        self,
        *,
        linked_endpoint: str | None,
        secret_key: SecretKey | Secret[SecretKey] | None,
        name: str,
    ) -> None:
        held: Secret[SecretKey] | None = hold(secret_key)
        del secret_key  # from here on no frame holds it in plain form
        super().__init__(name)
        self.linked_endpoint = linked_endpoint
        self._token_keys = self._derive_token_keys(held)

    def _derive_token_keys(self, secret_key: Secret[SecretKey] | None) -> list[Secret[bytes]]:
        """The signing keys, each a :class:`Secret` (revealed only inside the jwt calls)."""
        if secret_key is None:
            return []
        raws = [Secret(raw) for raw in _secret_bytes(secret_key.reveal())]
        if not all(raws):
            raise ValueError(f"{self!r}: secret_key must not be empty")
        prefix = f"{self.name}signer".encode()
        return [Secret(hashlib.sha512(prefix + raw.reveal()).digest()) for raw in raws]

    def _require_token_keys(self) -> list[Secret[bytes]]:
        if not self._token_keys:
            raise ValueError(f"{self!r} must be configured with secret_key to use links")
        return self._token_keys

    def get_token_signing_key(self) -> bytes:
        """The HS512 key new tokens are signed with (the first of ``secret_key``'s); override
        to sign with a key of your own, which then also verifies tokens."""
        return self._require_token_keys()[0].reveal()

    def _signing_key(self) -> Secret[bytes]:
        """The signing key, never held in plain form: an override of
        :meth:`get_token_signing_key` (keg-storage 0.5's hook) when the class has one, else the
        first derived key."""
        if type(self).get_token_signing_key is InternalLinksStorageBackend.get_token_signing_key:
            return self._require_token_keys()[0]
        return Secret(self.get_token_signing_key())

    def create_link_token(
        self,
        *,
        path: RemotePath,
        operation: ShareLinkOperation | str,
        expire: Expiry,
        output_path: str | None = None,
        content_type: str | None = None,
    ) -> str:
        """A signed token allowing ``operation`` on ``path`` until ``expire``."""
        key = self._file_key(path)
        parsed = ShareLinkOperation.as_operation(operation)
        check_link_header_values(output_path, content_type)
        return self._sign_token(key, parsed, resolve_expiry(expire), output_path, content_type)

    def _sign_token(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
    ) -> str:
        """The token for arguments already validated (by ``create_link_token`` or ``link_to``)."""
        signing_key = self._signing_key()
        claims = InternalLinkTokenData(key, operation, output_path, content_type).serialize()
        claims["iat"] = int(arrow.utcnow().timestamp())
        claims["exp"] = math.ceil(expires_at.timestamp())
        with scrubbed():
            return jwt.encode(claims, signing_key.reveal(), algorithm=self.token_algorithm)

    def deserialize_link_token(self, token: str | bytes) -> InternalLinkTokenData:
        """Verify a token and return what it allows.

        Raises :class:`ExpiredLinkTokenError` for an expired token, :class:`MalformedLinkTokenError`
        for something that is not a JWT, and :class:`LinkTokenError` for any other failure.
        """
        keys = [self._signing_key(), *self._token_keys[1:]]
        claims: dict[str, Any] | None = None
        for key in keys:
            try:
                with scrubbed():  # jwt's frames hold the revealed key
                    claims = jwt.decode(
                        token,
                        key.reveal(),
                        algorithms=[self.token_algorithm],
                        options={"require": ["exp", "key", "op"], "verify_iat": False},
                    )
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.ExpiredSignatureError as exc:
                raise ExpiredLinkTokenError("link token has expired", backend=self) from exc
            except jwt.InvalidAlgorithmError as exc:
                raise LinkTokenError("link token uses a refused algorithm", backend=self) from exc
            except jwt.DecodeError as exc:
                raise MalformedLinkTokenError("link token is malformed", backend=self) from exc
            except jwt.InvalidTokenError as exc:
                raise LinkTokenError(f"link token is invalid: {exc}", backend=self) from exc
        if claims is None:
            raise LinkTokenError("link token signature is invalid", backend=self)
        try:
            data = InternalLinkTokenData.deserialize(claims)
            return data._replace(path=self._file_key(data.path))
        except MalformedLinkTokenError as exc:
            raise MalformedLinkTokenError(str(exc), backend=self) from exc
        except (ValueError, TypeError) as exc:  # InvalidPathError is a ValueError
            raise LinkTokenError(f"link token claims are invalid: {exc}", backend=self) from exc

    def _link_to(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        **options: Any,
    ) -> str:
        try:
            import flask
        except ImportError as exc:
            raise UnsupportedOperationError(
                'internal links are served by a Flask app: pip install "keg-storage[flask]", '
                "or override link_to",
                backend=self,
                path=key,
            ) from exc
        if not self.linked_endpoint:
            raise ValueError(f"{self!r} must be configured with linked_endpoint to use links")
        token = self._sign_token(key, operation, expires_at, output_path, content_type)
        try:
            return flask.url_for(self.linked_endpoint, token=token, _external=True, **options)
        except RuntimeError as exc:  # outside a request and without SERVER_NAME
            raise ValueError(
                "links outside a request need the app's SERVER_NAME (and PREFERRED_URL_SCHEME) "
                f"configured (backend {describe_backend(self)}, path {key!r})"
            ) from exc
