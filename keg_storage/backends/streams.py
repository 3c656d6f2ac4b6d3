"""Stream machinery shared by the object-store backends (S3, Azure).

:class:`RangeReader` reads an object of known size with ranged requests of ``chunk_size``,
fetching up to ``max_concurrency`` chunks ahead in parallel once reading is sequential, so that
streaming is fast, seeking downloads nothing it skips, and memory stays at about
``chunk_size * (max_concurrency + 1)``.

:class:`PartUploadWriter` buffers writes into parts of ``chunk_size``, uploads full parts in
parallel with at most ``max_concurrency`` in flight, and publishes them all on ``close()``; a file
that never fills a part (an empty file included) is stored with a single request instead.

:class:`FileSlice` is a block of a local file as a request body: streamed from the file rather
than held in memory, and rewindable for a retry.
"""

from __future__ import annotations

import io
import os
import stat
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import IO, Any

from ..errors import StorageError
from ..progress import ByteCounter, ForwardProgress
from . import cleanup
from .files import FileMode, RemoteFile


class WrappedFile(RemoteFile):
    """A remote file over a local binary file object ``fp`` (a real file, a ``BytesIO``):
    reading, writing and seeking go straight to it; subclasses decide in ``_finish`` and
    ``_discard`` what closing publishes."""

    fp: IO[bytes]

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        return self.fp.seek(offset, whence)

    def tell(self) -> int:
        self._checkClosed()
        return self.fp.tell()

    def read(self, size: int | None = -1) -> bytes:
        self._check_readable()
        return self.fp.read(-1 if size is None else size)

    def readinto(self, buffer: Any) -> int:
        self._check_readable()
        readinto = getattr(self.fp, "readinto", None)
        return readinto(buffer) if readinto else super().readinto(buffer)

    def write(self, data: Any) -> int:
        self._check_writable()
        return self.fp.write(data)


class RangeReader(RemoteFile):
    """A seekable reader over ``_read_range(start, end)``; subclasses implement that primitive.

    Reading from the start is sequential from the first read, so the read-ahead starts with
    it; the chunk a read waits for is fetched on the calling thread when it was not read
    ahead (a one-chunk object never starts a thread), and ahead chunks are requested before
    it, so that they are in flight meanwhile. The first chunk is only ever fetched on the
    calling thread.
    """

    def __init__(self, *, size: int, chunk_size: int, max_concurrency: int = 1) -> None:
        super().__init__(FileMode.read)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.size = size
        self.chunk_size = chunk_size
        self.max_concurrency = max(1, max_concurrency)
        self._position = 0
        self._chunks: dict[int, Future[bytes]] = {}
        self._last_chunk = -1
        self._executor: ThreadPoolExecutor | None = None

    def _read_range(self, start: int, end: int) -> bytes:
        """Exactly the bytes ``start`` to ``end`` (exclusive) of the object; raise on failure."""
        raise NotImplementedError

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._checkClosed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        self._check_readable()
        remaining = self.size - self._position
        if size is not None and size >= 0:
            remaining = min(size, remaining)
        if remaining <= 0:
            return b""
        parts = []
        while remaining > 0:
            chunk, offset, count = self._next_piece(remaining)
            parts.append(chunk[offset : offset + count])  # a whole chunk is not copied
            remaining -= count
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def readinto(self, buffer: Any) -> int:
        """Copy straight from the chunks into ``buffer``: one copy per byte, where ``read``
        and a copy of its result would make two (and allocate a new object per read)."""
        self._check_readable()
        view = memoryview(buffer).cast("B")
        wanted = max(0, min(len(view), self.size - self._position))
        done = 0
        while done < wanted:
            chunk, offset, count = self._next_piece(wanted - done)
            view[done : done + count] = memoryview(chunk)[offset : offset + count]
            done += count
        return done

    def _next_piece(self, limit: int) -> tuple[bytes, int, int]:
        """The chunk holding the current position, the position's offset in it and how many
        of at most ``limit`` bytes it has from there; the position moves past them."""
        index, offset = divmod(self._position, self.chunk_size)
        chunk = self._chunk(index)
        count = min(len(chunk) - offset, limit)
        if count <= 0:
            raise OSError(f"{self!r}: the object ended early, at byte {self._position}")
        self._position += count
        return chunk, offset, count

    def _chunk(self, index: int) -> bytes:
        sequential = index in (self._last_chunk, self._last_chunk + 1)
        self._last_chunk = index
        # A jump drops the read-ahead, ``index`` included: it is fetched again, then.
        for stale in [i for i in self._chunks if i < index or not sequential]:
            self._chunks.pop(stale).cancel()
        if sequential and self.max_concurrency > 1:
            # Ahead first, so that they are in flight while this thread fetches ``index``.
            last = (self.size - 1) // self.chunk_size
            for ahead in range(index + 1, min(index + self.max_concurrency, last) + 1):
                if ahead not in self._chunks:
                    self._chunks[ahead] = self._fetch(ahead, in_background=True)
        if index not in self._chunks:
            self._chunks[index] = self._fetch(index, in_background=False)
        return self._chunks[index].result()

    def _fetch(self, index: int, *, in_background: bool) -> Future[bytes]:
        start = index * self.chunk_size
        end = min(start + self.chunk_size, self.size)
        if in_background:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    self.max_concurrency, thread_name_prefix="keg-storage-read"
                )
            return self._executor.submit(self._read_range, start, end)
        future: Future[bytes] = Future()
        try:
            future.set_result(self._read_range(start, end))
        except BaseException as exc:
            future.set_exception(exc)
        return future

    def _release_resources(self) -> None:
        for future in self._chunks.values():
            future.cancel()
        self._chunks.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class FileSlice(io.RawIOBase):
    """Bytes ``[start, start + length)`` of the open file descriptor ``fd`` as a read-only,
    seekable stream: a request body that streams one block of a local file instead of holding it
    in memory, and that the SDK's retry policy can rewind. Reads use ``os.pread``, so slices of
    one file are read from many threads at once without sharing a file position.

    ``count_bytes`` hears of each byte the first time it is read, so that progress follows what
    the HTTP client sends and a resend after a rewind is not counted twice. A file that shrinks
    under the slice raises :class:`StorageError` (naming ``backend`` and ``path``, the upload's
    target) rather than sending a short body.
    """

    def __init__(
        self,
        fd: int,
        start: int,
        length: int,
        *,
        count_bytes: ByteCounter | None = None,
        backend: Any = None,
        path: str | None = None,
    ) -> None:
        super().__init__()
        self.fd = fd
        self.start = start
        self.length = length
        self.count_bytes = count_bytes
        self.backend = backend
        self.path = path
        self._position = 0
        self._progress = ForwardProgress(count_bytes) if count_bytes is not None else None

    def __len__(self) -> int:
        # What HTTP clients (requests' super_len) take for the Content-Length.
        return self.length

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.length}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._position = base + offset
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        wanted = self.length - self._position
        if size is not None and size >= 0:
            wanted = min(wanted, size)
        if wanted <= 0:
            return b""
        data = os.pread(self.fd, wanted, self.start + self._position)
        if not data:
            raise StorageError(
                f"the local file ended at byte {self.start + self._position} while it was being "
                f"uploaded (it was {self.start + self.length} bytes or more when the upload began)",
                backend=self.backend,
                path=self.path,
            )
        self._position += len(data)
        if self._progress is not None:
            self._progress.reach(self._position)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)


def local_file_extent(file_obj: IO[bytes]) -> tuple[int, int, int] | None:
    """``(fd, position, bytes left)`` when ``file_obj`` is a binary file that Python's ``open``
    made on a regular file, so that its remaining bytes can be read by offset instead of
    through it; None for anything else.

    The exact type is checked on purpose: wrappers such as ``gzip.GzipFile`` have a
    ``fileno()`` whose bytes are not what they yield, and pipes or sockets cannot be read by offset.
    """
    if type(file_obj) not in (io.FileIO, io.BufferedReader, io.BufferedRandom):
        return None
    try:
        if file_obj.writable():
            file_obj.flush()
        position = file_obj.tell()
        fd = file_obj.fileno()
        info = os.fstat(fd)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    return fd, position, max(0, info.st_size - position)


def small_body(file_obj: IO[bytes], limit: int) -> bytes | None:
    """All that ``file_obj`` has left when it is seekable and that is under ``limit`` bytes,
    read; None, the position unchanged, for a larger or unseekable one. A small body is sent in
    one request from the calling thread: a transfer manager's threads cost more than it."""
    try:
        if not file_obj.seekable():
            return None
        start = file_obj.tell()
        left = file_obj.seek(0, io.SEEK_END) - start
        file_obj.seek(start)
    except (AttributeError, OSError, ValueError):
        return None
    if left >= limit:
        return None
    parts = []
    read = 0
    while read < limit and (part := file_obj.read(limit - read)):
        parts.append(part)
        read += len(part)
    if read >= limit:  # it grew meanwhile
        file_obj.seek(start)
        return None
    return b"".join(parts)


class PartUploadWriter(RemoteFile):
    """A writer over part primitives; subclasses implement ``_upload_part``, ``_complete_parts``,
    ``_put_whole`` and, where the service keeps state for started uploads, ``_start_parts`` and
    ``_abort_parts``."""

    def __init__(self, *, chunk_size: int, max_concurrency: int = 1) -> None:
        super().__init__(FileMode.write)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        self.chunk_size = chunk_size
        self.max_concurrency = max(1, max_concurrency)
        self._buffer = bytearray()
        self._parts: list[Future[Any]] = []
        self._in_flight: set[Future[Any]] = set()
        self._executor: ThreadPoolExecutor | None = None
        self._written = 0
        self._opened_in = cleanup.prepare()
        self._failed = False

    def _start_parts(self) -> None:
        """Called once, on the writer's thread, before the first part (e.g. create the upload)."""

    def _upload_part(self, number: int, data: Any) -> Any:
        """Upload part ``number`` (1-based), ``bytes`` or, for writers that accept them, a
        :class:`FileSlice`; runs in a worker thread. The result is kept for ``_complete_parts``."""
        raise NotImplementedError

    def _complete_parts(self, results: list[Any]) -> None:
        """Publish the uploaded parts, in order."""
        raise NotImplementedError

    def _abort_parts(self) -> None:
        """Drop the parts uploaded so far (only called after ``_start_parts``)."""

    def _put_whole(self, data: bytes) -> None:
        """Store a file that never filled a part, in one request."""
        raise NotImplementedError

    def tell(self) -> int:
        return self._written

    def write(self, data: Any) -> int:
        self._check_writable()
        try:
            return self._write(data)
        except BaseException:
            self._failed = True  # the parts are incomplete: close() must not publish them
            raise

    def _write(self, data: Any) -> int:
        if not self._buffer and type(data) is bytes and len(data) == self.chunk_size:
            # A whole part given as bytes (what the transfer loops read) goes out uncopied.
            self._written += len(data)
            self._submit(data)
            return len(data)
        view = memoryview(data).cast("B")
        self._buffer += view
        self._written += len(view)
        while len(self._buffer) >= self.chunk_size:
            with memoryview(self._buffer) as buffered:
                part = bytes(buffered[: self.chunk_size])
            del self._buffer[: self.chunk_size]
            self._submit(part)
        return len(view)

    def _submit(self, part: bytes | FileSlice) -> None:
        if self._executor is None:
            self._start_parts()
            self._executor = ThreadPoolExecutor(
                self.max_concurrency, thread_name_prefix="keg-storage-write"
            )
        # Only the parts in flight are looked at, so each part costs the same however many
        # were sent before it; a failed part stops the writer at its next part.
        while True:
            done = {future for future in self._in_flight if future.done()}
            for future in done:
                if future.exception() is not None:
                    raise future.exception()  # type: ignore[misc]
            self._in_flight -= done
            if len(self._in_flight) < self.max_concurrency:
                break
            wait(self._in_flight, return_when=FIRST_COMPLETED)
        future = self._executor.submit(self._upload_part, len(self._parts) + 1, part)
        self._parts.append(future)
        self._in_flight.add(future)

    def _finish(self) -> None:
        if self._failed:
            raise StorageError(
                "a write failed earlier: nothing was published",
                backend=getattr(self, "storage", None),
                path=getattr(self, "path", None),
            )
        if self._executor is None:
            self._put_whole(bytes(self._buffer))
            self._buffer.clear()
            return
        if self._buffer:
            self._submit(bytes(self._buffer))
            self._buffer.clear()
        results = [future.result() for future in self._parts]
        self._shutdown()
        self._complete_parts(results)

    def _discard(self) -> None:
        self._buffer.clear()
        if self._executor is None:
            return
        for future in self._parts:
            future.cancel()
        self._shutdown()
        self._abort_parts()

    def _collected(self) -> None:
        """Collected unclosed: abort on the cleanup thread (parts in flight and the abort
        request are network waits, and a finalizer must not make them)."""
        cleanup.discard_later(self.abort, self._opened_in)

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._parts.clear()
            self._in_flight.clear()
