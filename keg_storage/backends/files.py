"""The file objects of :meth:`StorageBackend.open <keg_storage.backends.base.StorageBackend.open>`
and what listings and ``stat`` return (CONTRACT §3): :class:`RemoteFile`, the raw binary file every
backend's reader and writer subclass, :class:`RemoteTextFile` over it, :class:`FileMode`,
:class:`ListEntry` and :class:`FileStat`. Importable from :mod:`keg_storage.backends.base` too.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NamedTuple, TypeVar

import arrow

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


class ListEntry(NamedTuple):
    """One entry of :meth:`StorageBackend.list`: a file, or a directory whose name ends in ``/``
    (size 0, ``last_modified`` None) in a non-recursive listing."""

    name: str
    last_modified: arrow.Arrow | None
    size: int


@dataclass(frozen=True)
class FileStat:
    """What :meth:`StorageBackend.stat` tells about a file; None where the service has none.

    ``etag`` has one form on every backend, HTTP's quoted strong form (``'"abc"'``): the
    service's own ETag on S3 and Azure, an MD5 of the content on Memory, and the modification
    time and size on LocalFS and SFTP (whose servers keep no ETag).
    """

    size: int
    last_modified: arrow.Arrow
    etag: str | None = None
    content_type: str | None = None


class RemoteFile(io.RawIOBase):
    """A remote file opened by :meth:`StorageBackend.open`, a raw binary file object.

    Subclasses implement ``read(size)`` and/or ``write(data)`` (plus ``seek``/``tell`` where they
    can). A writer implements the hooks ``_finish`` (publish what was written, release resources)
    and ``_discard`` (drop what was written, release resources): a class that defines ``_finish``
    without a ``_discard`` is refused when it is defined, since its ``abort()`` would publish. A
    reader implements only ``_release_resources``, which both hooks call by default. This class
    makes writes atomic from the caller's side: ``close()`` publishes, while an exception in a
    ``with`` block, :meth:`abort` or garbage collection of an unclosed writer (with a
    ``ResourceWarning``) discard.

    Iterating over a remote file yields chunks of :attr:`iter_chunk_size` bytes, not lines, as
    in keg-storage 0.5; open it with ``'rt'`` for lines (:class:`RemoteTextFile`).
    """

    iter_chunk_size = 5 * 1024 * 1024
    """Default chunk size of :meth:`iter_chunks` and of iterating over the file (5 MiB)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give every ``read``, ``readinto`` and ``write`` a subclass defines the file's error
        translation (:meth:`_translation`), every ``write`` the check for ``str``, and refuse a
        writer that would publish on ``abort()`` (in one place, for every backend's file,
        third-party ones included)."""
        super().__init_subclass__(**kwargs)
        for name in ("read", "readinto", "write"):
            if name in cls.__dict__:
                method = _translated(cls.__dict__[name])
                setattr(cls, name, _refusing_str(method) if name == "write" else method)
        if "_finish" in cls.__dict__ and cls._discard is RemoteFile._discard:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} defines _finish (publishing what was "
                "written) but no _discard: abort(), an exception in a with block and garbage "
                "collection would publish too. Define _discard to drop what was written, or, "
                "for a reader, only _release_resources"
            )

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

    def _translation(self) -> contextlib.AbstractContextManager[None]:
        """Where the errors of this file's reads, writes, ``close()`` and ``abort()`` are
        translated: a backend's file returns its storage's ``translating(key)`` (see
        ``StorageBackend._translate_error``); by default nowhere."""
        return contextlib.nullcontext()

    def _release_resources(self) -> None:
        """Release what the file holds (connections, descriptors, threads) and publish nothing:
        all that closing a reader does, and what ``_finish`` and ``_discard`` do by default."""

    def _finish(self) -> None:
        """Publish what was written and release resources (a writer overrides it, and then
        ``_discard`` too)."""
        self._release_resources()

    def _discard(self) -> None:
        """Drop what was written and release resources; nothing is published."""
        self._release_resources()

    def close(self) -> None:
        """Publish the written data (writers) and release resources; idempotent."""
        if self.closed:
            return
        try:
            with self._translation():
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
            with self._translation():
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


def _translated(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` inside the file's error translation (:meth:`RemoteFile._translation`)."""

    @functools.wraps(method)
    def translated(self: RemoteFile, *args: Any, **kwargs: Any) -> Any:
        with self._translation():
            return method(self, *args, **kwargs)

    return translated


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


__all__ = [
    "BinaryMode",
    "FileMode",
    "FileStat",
    "ListEntry",
    "RemoteFile",
    "RemoteFileT",
    "RemoteTextFile",
    "TextMode",
]
