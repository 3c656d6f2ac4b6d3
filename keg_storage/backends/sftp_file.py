"""The file object of :class:`~keg_storage.backends.sftp.SFTPStorage`: pipelined reads and
writes on one leased session of its :class:`~keg_storage.backends.sftp_transport.SFTPTransport`,
writes published atomically through a temp file (see :mod:`keg_storage.backends.sftp_paths`)."""

from __future__ import annotations

import contextlib
import errno
import io
import posixpath
import stat as stat_module
from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import FileExistsInStorageError, InvalidPathError, StorageError
from . import cleanup
from .base import FILE_EXISTS, FileMode, RemoteFile
from .conditions import ALWAYS, WriteCondition
from .sftp_fastpath import (
    OPEN_CREATE,
    OPEN_EXCL,
    OPEN_READ,
    OPEN_WRITE,
    Pipeline,
    close_handle,
    close_unanswered,
)
from .sftp_transport import Session, is_connection_failure, refusals_ignored, remove_quietly

TEMP_FLAGS = OPEN_WRITE | OPEN_CREATE | OPEN_EXCL
"""How a writer's temp file is opened: created, never an existing file."""

if TYPE_CHECKING:
    from .sftp import SFTPStorage

__all__ = ["SFTPRemoteFile"]


class SFTPRemoteFile(RemoteFile):
    """A remote file with pipelined reads and writes.

    Reading keeps up to ``max_requests`` read requests in flight once reading is sequential and
    seeks without fetching skipped bytes. Writing (``'w'``) goes to a temp file in the target
    directory (created with its parents), pipelined, and is renamed over the target on
    :meth:`close`; :meth:`abort` or an exception removes the temp file. ``'r+'`` reads and
    writes the existing file in place. The file holds one pooled SFTP session until closed.

    A create-only writer (``condition`` with ``overwrite=False``) fails at open when the file
    exists then (the LSTAT sent with the OPEN tells, no extra round trip) and publishes with
    ``hardlink@openssh.com``, which fails if a file appeared meanwhile.
    """

    def __init__(
        self,
        mode: FileMode | str,
        path: str,
        client: SFTPStorage,
        *,
        session: Session | None = None,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        super().__init__(mode)
        self.path = path
        self.overwrite = condition.overwrite
        self.publish_sent = False
        """Whether the publishing request went out (its outcome unknown if the connection
        then dropped: a create-only write is not retried past that point)."""
        self.client = client
        self._transport = client.transport
        self._paths = client.paths
        self._session: Session | None = None
        self._handle: bytes | None = None
        self._temp: str | None = None
        self._target = client.paths.remote(path)
        self._position = 0
        self._size = 0
        # write pipeline
        self._unacked: deque[int] = deque()
        self._buffer = bytearray()
        self._buffer_start = 0
        self._times: int | None = None
        # read pipeline: (offset, length, request number), in order
        self._inflight: deque[tuple[int, int, int]] = deque()
        self._next_offset = 0
        self._window = 1
        self._data = b""
        self._data_start = 0
        self._eof_at: int | None = None
        self._borrowed = session is not None  # a reader on the caller's session (copies)
        self._opened_in = cleanup.prepare()
        self._write_failed = False
        self._open_with_retry(session)

    def _open_with_retry(self, session: Session | None) -> None:
        """Lease a session (unless the caller lent one) and open the remote file, again on a
        new session if the connection dropped."""
        path = self.path

        def attempt() -> None:
            try:
                self._session = session if session is not None else self._transport.lease(path)
                self._responses = Pipeline(self._session.sftp)
                self._open_remote()
            except Exception as exc:
                dropped = self._session is not None and self._transport.dropped(exc, self._session)
                error = self._transport.error(exc, path, dropped=dropped, session=self._session)
                self._release(broken=dropped)
                self._drop_unanswered_temp(created=dropped)
                if dropped:
                    raise self._transport.retryable(error, exc, f"open {path}") from exc
                raise error from exc

        try:
            self._transport.retrying(attempt, attempts=1 if session is not None else None)
        except Exception:
            super().close()
            raise
        except BaseException:
            self._release(broken=True)
            self._drop_unanswered_temp(created=True)
            super().close()
            raise

    @property
    def sftp(self) -> Any:
        """The paramiko SFTP client this file uses (for compatibility with keg-storage 0.5)."""
        return self._session.sftp if self._session else None

    @property
    def requests_in_flight(self) -> int:
        """Read requests sent and not yet answered (read-only; the read-ahead's size now)."""
        return len(self._inflight)

    @property
    def write_chunk_bytes(self) -> int:
        """A good size for the caller's writes: 16 requests' worth."""
        assert self._session is not None
        return self._session.write_size * 16

    def _open_remote(self) -> None:
        assert self._session is not None
        sftp = self._session.sftp
        directory = posixpath.dirname(self._target)
        self._paths.check_dir(sftp, directory, self.path)
        if self.mode == FileMode.write:
            self._open_temp(sftp, directory)
            return
        # LSTAT pipelined with the OPEN: one round trip for both.
        flags = OPEN_READ | (OPEN_WRITE if self.writable() else 0)
        with self._responses.batched():
            stat_num = self._responses.send_lstat(self._target)
            open_num = self._responses.send_open(self._target, flags)
        attr = stat_error = handle = open_error = None
        try:
            attr = self._responses.wait_attr(stat_num)
            if stat_module.S_ISLNK(attr.st_mode or 0):
                self._paths.check_link(sftp, self._target, self.path)
                attr = sftp.stat(self._target)
        except (OSError, InvalidPathError) as exc:
            stat_error = exc
        try:
            handle = self._responses.wait_handle(open_num)
        except OSError as exc:
            open_error = exc
        is_dir = attr is not None and stat_module.S_ISDIR(attr.st_mode or 0)
        if handle is not None and (attr is None or is_dir):
            close_handle(sftp, handle)
        if stat_error is not None:
            raise stat_error
        if is_dir:
            raise OSError(errno.ENOENT, "is a directory")
        if open_error is not None:
            raise open_error
        assert attr is not None
        self._handle = handle
        self._size = attr.st_size or 0

    def _open_temp(self, sftp: Any, directory: str) -> None:
        """A writer's start: its temp file opened in ``directory``, the target checked (a
        symlink leaving ``base_path``, or any file for a create-only write, is refused)."""
        assert self._session is not None
        if not self.overwrite:
            self._paths.require_create_only(self._session, self.path)
        # Named first: a temp file the server created but whose handle never arrived is
        # still removed (see __init__). LSTAT and OPEN go out together: one round trip.
        self._temp = self._paths.temp_path(directory)
        with self._responses.batched():
            stat_num = self._responses.send_lstat(self._target)
            open_num = self._responses.send_open(self._temp, TEMP_FLAGS)
        try:
            self._handle = self._temp_handle(sftp, directory, open_num)
        except BaseException:
            self._responses.forget([stat_num])
            raise
        try:
            attr = self._responses.wait_attr(stat_num)
            if stat_module.S_ISLNK(attr.st_mode or 0):
                self._paths.check_link(sftp, self._target, self.path)
            if not self.overwrite:
                raise FileExistsInStorageError(FILE_EXISTS, backend=self.client, path=self.path)
        except (OSError, InvalidPathError, FileExistsInStorageError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
                return  # a new file
            self._close_handle()
            remove_quietly(sftp, self._temp)
            self._temp = None
            raise

    def _temp_handle(self, sftp: Any, directory: str, open_num: int) -> bytes:
        """The handle answered to ``open_num``, the OPEN of the temp file; where its directory
        is missing, it is created and the temp file opened again."""
        try:
            return self._responses.wait_handle(open_num)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
        assert self._temp is not None
        return self._paths.open_temp(sftp, directory, self._temp, dir_missing=True)[1]

    # -- reading ---------------------------------------------------------------------------------

    def seekable(self) -> bool:
        return FileMode.read in self.mode

    def tell(self) -> int:
        self._checkClosed()
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._checkClosed()
        if not self.seekable():
            raise io.UnsupportedOperation("seek")
        if whence == io.SEEK_SET:
            position = offset
        elif whence == io.SEEK_CUR:
            position = self._position + offset
        elif whence == io.SEEK_END:
            self._flush_writes()
            position = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if position < 0:
            raise ValueError(f"negative seek position {position}")
        if position != self._position:
            self._flush_buffer()
        self._position = position
        return position

    def read(self, size: int | None = -1) -> bytes:
        self._check_readable()
        self._flush_writes()
        want = None if size is None or size < 0 else size
        if want == 0:
            return b""
        parts: list[bytes] = []
        got = 0
        try:
            while want is None or got < want:
                piece = self._take_resuming(None if want is None else want - got)
                if not piece:
                    break
                parts.append(piece)
                got += len(piece)
        except BaseException as exc:
            raise self._failure(exc) from exc
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def iter_pieces(self) -> Iterator[bytes]:
        """The rest of the file, in the pieces the server sent (no copying into chunks)."""
        self._check_readable()
        self._flush_writes()
        try:
            while piece := self._take_resuming(None):
                yield piece
        except BaseException as exc:
            raise self._failure(exc) from exc

    def _take_resuming(self, limit: int | None) -> bytes:
        """``_take``, resuming on a new connection where a dropped one stopped (readers only:
        reads are idempotent, and the position says where to go on)."""

        def attempt() -> bytes:
            try:
                return self._take(limit)
            except Exception as exc:
                session = self._session
                if self.writable() or self._borrowed or not self._transport.dropped(exc, session):
                    raise
                if session is not None:
                    session.fail()  # never reused: it is released as broken
                error = self._transport.error(exc, self.path, dropped=True, session=session)
                action = f"read {self.path} at byte {self._position}"
                raise self._transport.retryable(error, exc, action) from exc

        return self._transport.retrying(attempt, before_retry=lambda failed: self._reopen())

    def _reopen(self) -> None:
        """Open the file again on a new session, keeping the position."""
        self._release(broken=True)
        self._handle = None
        self._inflight.clear()
        self._data = b""
        self._session = self._transport.lease(self.path)
        self._responses = Pipeline(self._session.sftp)
        self._open_remote()

    def _take(self, limit: int | None) -> bytes:
        """Up to ``limit`` bytes at the current position (b"" at end of file)."""
        start = self._position - self._data_start
        if not 0 <= start < len(self._data):
            if self._eof_at is not None and self._position >= self._eof_at:
                return b""
            self._fetch(limit)
            start = self._position - self._data_start
            if not 0 <= start < len(self._data):
                return b""
        end = len(self._data) if limit is None else start + limit
        piece = self._data[start:end]
        self._position += len(piece)
        return piece

    def _fetch(self, limit: int | None) -> None:
        """Make ``self._data`` start at the current position, keeping the pipeline full."""
        assert self._session is not None
        request = self._session.read_size
        if not self._inflight or self._inflight[0][0] != self._position:
            self._reset_reads()
            self._next_offset = self._position
            ahead = max(0, self._size - self._position)  # to the size known at open
            needed = -(-ahead // request) + 1 if limit is None else -(-limit // request)
            self._window = max(1, min(needed, self.client.max_requests))
        else:  # sequential reading: grow the read-ahead, like OpenSSH
            self._window = min(self._window * 2, self.client.max_requests)
        self._send_reads(request)
        offset, length, num = self._inflight.popleft()
        data = self._responses.wait_data(num)
        if data is None:  # end of file
            self._eof_at = offset
            self._data, self._data_start = b"", offset
            self._reset_reads()
            return
        self._send_reads(request)
        self._data, self._data_start = data, offset
        if len(data) < length:  # a short read: ask again from where it stopped
            self._reset_reads()
        if not data:
            self._eof_at = offset

    def _send_reads(self, request: int) -> None:
        limit = max(self._size, self._position) + 1  # up to the end-of-file probe at the size
        while len(self._inflight) < self._window and (
            self._next_offset < limit or not self._inflight
        ):
            # A request that would cross the size known at open ends there, so that the next
            # one, the end-of-file probe, goes out with it rather than after a short read.
            length = request
            if self._next_offset < self._size:
                length = min(request, self._size - self._next_offset)
            num = self._responses.send_read(self._handle, self._next_offset, length)
            self._inflight.append((self._next_offset, length, num))
            self._next_offset += length

    def _reset_reads(self) -> None:
        """Forget read-ahead requests (their responses are dropped when they arrive)."""
        self._responses.forget(num for _, _, num in self._inflight)
        self._inflight.clear()

    # -- writing ---------------------------------------------------------------------------------

    def write(self, data: Any) -> int:
        self._check_writable()
        view = memoryview(data).cast("B")
        count = len(view)
        if not self._buffer:
            self._buffer_start = self._position
        self._position += count
        assert self._session is not None
        try:
            if self._data:  # written bytes may overlap what was read ahead
                self._data = b""
                self._reset_reads()
            size = self._session.write_size
            done = 0
            if self._buffer:  # complete the pending request first
                done = min(size - len(self._buffer), count)
                self._buffer += view[:done]
                if len(self._buffer) == size:
                    self._send_write(self._buffer)
                    self._buffer.clear()
            while count - done >= size:  # whole requests straight from the caller's buffer
                self._send_write(view[done : done + size])
                done += size
            self._buffer += view[done:]
        except BaseException as exc:
            self._write_failed = True  # close() must not publish a file with a hole
            raise self._failure(exc) from exc
        return count

    def publish_with_times(self, seconds: int) -> None:
        """Have ``close()`` publish the file with the modification (and access) time
        ``seconds``: an FSETSTAT goes out with the last write and the CLOSE
        (:meth:`_close_after_writes`), answered in their round trip, before the publish."""
        self._check_writable()
        self._times = seconds

    def _send_write(self, chunk: bytes | bytearray | memoryview) -> None:
        assert self._handle is not None
        num = self._responses.send_write(self._handle, self._buffer_start, chunk)
        self._buffer_start += len(chunk)
        self._size = max(self._size, self._buffer_start)
        self._unacked.append(num)
        while len(self._unacked) > self.client.max_requests:
            self._responses.wait_status(self._unacked.popleft())

    def _flush_buffer(self) -> None:
        if self._buffer:
            try:
                self._send_write(self._buffer)
            except BaseException as exc:
                raise self._failure(exc) from exc
            self._buffer.clear()

    def _flush_writes(self) -> None:
        """Send buffered bytes and wait until the server acknowledged every write."""
        self._flush_buffer()
        try:
            while self._unacked:
                self._responses.wait_status(self._unacked.popleft())
        except BaseException as exc:
            raise self._failure(exc) from exc

    def flush(self) -> None:
        """Send buffered bytes and wait for the server to acknowledge every write."""
        if not self.closed and self.writable() and self._session is not None:
            self._flush_writes()

    def _failure(self, exc: BaseException) -> BaseException:
        """The error to raise for ``exc``, met in the middle of requests. Unless the server
        refused one (an SFTP status), the session may be out of step (a response lost to an
        interrupt, a timeout): it is marked failed, so that nothing waits on it again."""
        if isinstance(exc, StorageError):
            return exc
        if self._session is not None and (
            not isinstance(exc, OSError) or is_connection_failure(exc)
        ):
            self._session.fail()
        if not isinstance(exc, Exception):
            return exc
        dropped = self._session is not None and not self._session.usable()
        if isinstance(exc, (OSError, EOFError)) or dropped or is_connection_failure(exc):
            return self._transport.error(exc, self.path, dropped=dropped, session=self._session)
        return exc

    # -- closing ---------------------------------------------------------------------------------

    def _close_handle(self) -> None:
        if self._handle is not None and self._session is not None:
            handle, self._handle = self._handle, None
            self._reset_reads()
            close_handle(self._session.sftp, handle)

    def _close_after_writes(self) -> None:
        """Send the buffered bytes, the FSETSTAT of :meth:`publish_with_times` and the CLOSE
        together (:meth:`.Pipeline.batched`), then wait for every answer: one round trip for
        the final requests of a writer. The server handles a session's requests in order, so
        the time is set and the handle closed after the writes, and a refused write (or time)
        still fails here, before anything is published."""
        if self._handle is None or self._session is None:
            self._flush_writes()
            return
        self._reset_reads()
        with self._responses.batched():
            self._flush_buffer()
            handle, self._handle = self._handle, None
            if self._times is not None:
                self._unacked.append(self._responses.send_set_times(handle, self._times))
            close_num = self._responses.send_close(handle)
        try:
            while self._unacked:
                self._responses.wait_status(self._unacked.popleft())
        except BaseException as exc:
            self._responses.forget([close_num])
            raise self._failure(exc) from exc
        self._responses.wait_status(close_num)

    def _close_reader(self) -> None:
        """Close a reader's handle without waiting for the answer (:func:`close_unanswered`)."""
        if self._handle is not None and self._session is not None:
            handle, self._handle = self._handle, None
            self._reset_reads()
            close_unanswered(self._session.sftp, handle)

    def _finish(self) -> None:
        if self._session is None:
            return
        try:
            if self._write_failed:
                raise StorageError(
                    "a write failed earlier: nothing was published",
                    backend=self.client,
                    path=self.path,
                )
            if self.writable():
                self._close_after_writes()
            else:
                self._close_reader()
            if self._temp is not None:
                self.publish_sent = True
                self._paths.publish(
                    self._session, self._temp, self._target, overwrite=self.overwrite, key=self.path
                )
                self._temp = None
        except BaseException as exc:
            error = self._failure(exc)
            if isinstance(exc, Exception) and not self.writable() and not self._session.usable():
                # A reader has nothing to publish: a dropped connection is no failure to close.
                self._release(broken=True)
                return
            if error is exc:
                raise
            raise error from exc  # close() then discards (and releases the session)
        self._release(broken=False)

    def _discard(self) -> None:
        """Drop what was written: wait for the writes in flight, close the handle and remove
        the temp file, each bounded by the timeout, then the directories left empty (the ones
        the write made included); on a session that failed, wait for nothing and remove the
        temp file through another session."""
        if self._session is None:
            return
        self._buffer.clear()
        temp, self._temp = self._temp, None
        try:
            if self._session.usable():
                sftp = self._session.sftp
                while self._unacked:
                    with refusals_ignored():
                        self._responses.wait_status(self._unacked.popleft())
                with refusals_ignored():
                    self._close_handle()
                if temp is not None:
                    remove_quietly(sftp, temp)
                    temp = None
                    self._paths.prune(sftp, self.path)  # as a delete does: no empty directory
        except BaseException as exc:
            self._failure(exc)
            if not isinstance(exc, Exception) or not is_connection_failure(exc):
                raise  # an interrupt (or a bug) is the caller's; the session is released below
        finally:
            self._unacked.clear()
            self._release(broken=not self._session.usable())
        if temp is not None:
            self._remove_orphan(temp)

    def _collected(self) -> None:
        """Collected unclosed: discard on the cleanup thread, never on the collecting one."""
        cleanup.discard_later(self._discard_collected, self._opened_in)

    def _discard_collected(self) -> None:
        if self._session is not None and self._session.usable():
            self._responses.expect(self._unacked)
        super()._collected()

    def _drop_unanswered_temp(self, *, created: bool) -> None:
        """After a failed open: forget the temp file, removing it (through another session)
        when the server may have ``created`` it without its answer arriving."""
        temp, self._temp = self._temp, None
        if temp is not None and created:
            self._remove_orphan(temp)

    def _remove_orphan(self, temp: str) -> None:
        """Remove the temp file of a write whose connection died, through a new connection."""
        with contextlib.suppress(StorageError):
            self._transport.call(self.path, lambda session: remove_quietly(session.sftp, temp))

    def _release(self, *, broken: bool) -> None:
        session, self._session = self._session, None
        if session is not None and not self._borrowed:
            self._transport.release(session, broken=broken)
