"""The SFTP fast path: pipelined requests on paramiko's ``SFTPClient``, the one place that
reaches into paramiko's private members.

paramiko's public API sends one request and waits for its answer; transfers as fast as
OpenSSH's ``sftp`` keep many requests in flight, which needs its private request machinery
(``_async_request``, ``_request``, ``_read_response``, ``_expecting``, ``_lock``), its
attribute parser (``SFTPAttributes._from_msg``) and two channel internals to open the
subsystem with a timeout. Those accesses live here and nowhere else, written against paramiko
3.x: :class:`Pipeline` for pipelined requests, :func:`session_class` for the SFTP client,
:func:`chunk_pipe_class` for a channel buffer without quadratic copying, :func:`lstat_many` and
:func:`remove_many` for bulk deletes, and the small request helpers below. Everything else in
keg_storage uses these names only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import struct
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

try:
    import paramiko
    from paramiko.sftp import (
        CMD_CLOSE,
        CMD_DATA,
        CMD_EXTENDED,
        CMD_EXTENDED_REPLY,
        CMD_FSETSTAT,
        CMD_HANDLE,
        CMD_LSTAT,
        CMD_OPEN,
        CMD_READ,
        CMD_REMOVE,
        CMD_STATUS,
        CMD_VERSION,
        CMD_WRITE,
        SFTP_EOF,
        SFTP_OK,
        int64,
    )
    from paramiko.sftp_attr import SFTPAttributes
except ImportError:  # pragma: no cover - exercised without the extra installed
    paramiko = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from paramiko import SFTPClient

POSIX_RENAME = "posix-rename@openssh.com"
"""The extension that renames over an existing name atomically (POSIX ``rename``)."""

# SSH_FXF_* open flags (draft-ietf-secsh-filexfer-02)
OPEN_READ, OPEN_WRITE, OPEN_CREATE, OPEN_EXCL = 0x01, 0x02, 0x08, 0x20


class Pipeline:
    """Pipelined requests on one SFTP session and the responses to them (paramiko hands each
    response to ``_async_response`` of the object that sent the request)."""

    def __init__(self, sftp: SFTPClient) -> None:
        self.sftp: Any = sftp
        self.received: dict[int, tuple[int, Any]] = {}
        self.ignored: set[int] = set()
        self._batch: list[bytes] | None = None

    def _async_response(self, t: int, msg: Any, num: int) -> None:
        if num in self.ignored:
            self.ignored.discard(num)
        else:
            self.received[num] = (t, msg)

    @contextlib.contextmanager
    def batched(self) -> Iterator[None]:
        """Requests sent inside go out together on leaving, in one write to the channel (one
        SSH packet where they fit): one system call and one encryption for all of them, as
        the few requests of a small file's transfer need. Nothing inside may wait for the
        answer to a request sent inside."""
        self._batch = []
        try:
            yield
        finally:
            packets, self._batch = self._batch, None
            if packets:
                with self.sftp.stepping():
                    self.sftp.sock.sendall(b"".join(packets))

    def _number(self) -> int:
        """A new request number whose answer comes to this object."""
        sftp = self.sftp
        with sftp._lock:
            num = int(sftp.request_number)
            sftp._expecting[num] = self
            sftp.request_number += 1
        return num

    def send(self, t: int, *args: Any) -> int:
        if self._batch is None:
            return int(self.sftp._async_request(self, t, *args))
        num = self._number()
        self._batch.append(_packet(t, num, args))
        return num

    def send_lstat(self, path: str) -> int:
        return self.send(CMD_LSTAT, path)

    def send_open(self, path: str, flags: int) -> int:
        return self.send(CMD_OPEN, path, flags, SFTPAttributes())

    def send_set_times(self, handle: bytes, seconds: int) -> int:
        """Send SSH_FXP_FSETSTAT giving the open file access and modification time
        ``seconds``; its answer is a status, as a write's."""
        attr = SFTPAttributes()
        attr.st_atime = attr.st_mtime = seconds
        return self.send(CMD_FSETSTAT, handle, attr)

    def send_posix_rename(self, old: str, new: str) -> int:
        """Send ``posix-rename@openssh.com`` (rename replacing ``new`` atomically); its answer
        is a status."""
        return self.send(CMD_EXTENDED, POSIX_RENAME, old, new)

    def send_close(self, handle: bytes) -> int:
        """Send SSH_FXP_CLOSE; its answer is a status."""
        return self.send(CMD_CLOSE, handle)

    def send_read(self, handle: bytes | None, offset: int, length: int) -> int:
        return self.send(CMD_READ, handle, int64(offset), length)

    def send_write(self, handle: bytes, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Send SSH_FXP_WRITE like ``_async_request`` would, with one copy of ``data`` instead
        of paramiko's six (Message, packet, and re-slicing while the channel window fills)."""
        num = self._number()
        length = len(data)
        header = struct.pack(">IBII", 21 + len(handle) + length, CMD_WRITE, num, len(handle))
        packet = b"".join((header, handle, struct.pack(">QI", offset, length), data))
        if self._batch is not None:
            self._batch.append(packet)
            return num
        with self.sftp.stepping():
            self.sftp.sock.sendall(memoryview(packet))
        return num

    def expect(self, nums: Iterable[int]) -> None:
        """Collect the responses to ``nums`` again. paramiko holds the collector of each pending
        request weakly, and a cyclic garbage collection clears those references before the
        finalizer of the file that owns this object runs: without this its responses would be
        dropped on arrival, and waited for forever."""
        with self.sftp._lock:
            for num in nums:
                self.sftp._expecting[num] = self

    def wait(self, num: int) -> tuple[int, Any]:
        """The response to request ``num``, reading others that arrive first."""
        while num not in self.received:
            self.sftp._read_response()
        return self.received.pop(num)

    def forget(self, nums: Iterable[int]) -> None:
        """Drop the responses of requests nobody will read, now or when they arrive."""
        for num in nums:
            if self.received.pop(num, None) is None:
                self.ignored.add(num)

    def wait_status(self, num: int) -> None:
        t, msg = self.wait(num)
        if t != CMD_STATUS:
            raise OSError(f"unexpected SFTP response type {t}")
        raise_status(msg.get_int(), msg.get_text())

    def wait_handle(self, num: int) -> bytes:
        t, msg = self.wait(num)
        if t == CMD_STATUS:
            raise_status(msg.get_int(), msg.get_text())
        if t != CMD_HANDLE:
            raise OSError(f"unexpected SFTP response type {t}")
        return bytes(msg.get_binary())

    def wait_attr(self, num: int) -> Any:
        """The attributes answered to the (L)STAT request ``num``."""
        t, msg = self.wait(num)
        if t == CMD_STATUS:
            raise_status(msg.get_int(), msg.get_text())
        return cast(Any, SFTPAttributes)._from_msg(msg)

    def wait_data(self, num: int) -> bytes | None:
        """The bytes answered to the READ request ``num``; None at end of file."""
        t, msg = self.wait(num)
        if t == CMD_DATA:
            return bytes(msg.get_binary())
        code = msg.get_int()
        if code == SFTP_EOF:
            return None
        raise_status(code, msg.get_text())
        raise OSError(f"unexpected SFTP response type {t}")


def _packet(t: int, num: int, args: tuple[Any, ...]) -> bytes:
    """The bytes of the SFTP request ``t`` numbered ``num``, its ``args`` packed as paramiko's
    ``_async_request`` packs them."""
    msg = paramiko.Message()
    msg.add_int(num)
    for item in args:
        if isinstance(item, int64):
            msg.add_int64(item)
        elif isinstance(item, int):
            msg.add_int(item)
        elif isinstance(item, SFTPAttributes):
            cast(Any, item)._pack(msg)
        else:
            msg.add_string(item)
    body = msg.asbytes()
    return struct.pack(">IB", len(body) + 1, t) + body


PIPELINE_WINDOW = 64
"""Requests kept in flight by :func:`lstat_many` and :func:`remove_many`."""


def lstat_many(sftp: Any, paths: Sequence[str]) -> list[Any]:
    """LSTAT every path, pipelined: for each, its attributes or the ``OSError`` the server
    answered (a failed connection raises)."""
    return _pipelined(sftp, [(CMD_LSTAT, path) for path in paths], _attributes)


def remove_many(sftp: Any, paths: Sequence[str]) -> list[OSError | None]:
    """REMOVE every path, pipelined: for each, None or the ``OSError`` the server answered (a
    failed connection raises)."""
    return _pipelined(sftp, [(CMD_REMOVE, path) for path in paths], _status)


def _attributes(t: int, msg: Any) -> Any:
    if t == CMD_STATUS:
        raise_status(msg.get_int(), msg.get_text())
    return cast(Any, SFTPAttributes)._from_msg(msg)


def _status(t: int, msg: Any) -> None:
    if t != CMD_STATUS:
        raise OSError(f"unexpected SFTP response type {t}")
    raise_status(msg.get_int(), msg.get_text())


def _pipelined(
    sftp: Any, requests: Sequence[tuple[int, str]], interpret: Callable[[int, Any], Any]
) -> list[Any]:
    """Send ``requests`` (a type and a path each) with up to :data:`PIPELINE_WINDOW` in flight;
    what ``interpret`` makes of each answer, in order, the ``OSError`` it raises for the
    server's refusal included. Reading the answers fails only when the connection does."""
    pipeline = Pipeline(sftp)
    pending: deque[int] = deque()
    outcomes: list[Any] = []

    def collect() -> None:
        t, msg = pipeline.wait(pending[0])
        pending.popleft()
        try:
            outcomes.append(interpret(t, msg))
        except OSError as exc:
            outcomes.append(exc)

    try:
        for kind, path in requests:
            pending.append(pipeline.send(kind, path))
            if len(pending) >= PIPELINE_WINDOW:
                collect()
        while pending:
            collect()
    except BaseException:
        pipeline.forget(pending)
        raise
    return outcomes


def raise_status(code: int, text: str) -> None:
    """Raise for an SFTP status as paramiko does (errno set for missing and refused)."""
    if code == SFTP_OK:
        return
    if code == SFTP_EOF:
        raise EOFError(text)
    if code == 2:  # SSH_FX_NO_SUCH_FILE
        raise OSError(errno.ENOENT, text)
    if code == 3:  # SSH_FX_PERMISSION_DENIED
        raise OSError(errno.EACCES, text)
    raise OSError(text)


def open_handle(sftp: Any, path: str, flags: int) -> bytes:
    """OPEN ``path`` with SSH_FXF ``flags``; the handle (paramiko's ``open`` wraps it in a
    file object we do not use)."""
    t, msg = sftp._request(CMD_OPEN, path, flags, SFTPAttributes())
    if t != CMD_HANDLE:
        raise OSError(f"unexpected SFTP response type {t}")
    return bytes(msg.get_binary())


def close_handle(sftp: Any, handle: bytes) -> None:
    sftp._request(CMD_CLOSE, handle)


def close_unanswered(sftp: Any, handle: bytes) -> None:
    """CLOSE ``handle`` without waiting for the answer, which paramiko drops when it arrives
    (as its own ``SFTPFile`` does when collected): for a reader, whose close has no outcome
    to report, this saves a round trip."""
    sftp._async_request(type(None), CMD_CLOSE, handle)


def copy_data(sftp: Any, source: bytes, target: bytes) -> None:
    """Copy the whole of the open ``source`` into the open ``target`` on the server."""
    sftp._request(CMD_EXTENDED, "copy-data", source, int64(0), int64(0), target, int64(0))


HARDLINK = "hardlink@openssh.com"
"""The extension that links a new name to a file, failing when the name exists."""


def hardlink(sftp: Any, existing: str, new: str) -> None:
    """Give the file ``existing`` the new name ``new`` on the server (``hardlink@openssh.com``);
    an ``OSError`` when ``new`` exists (OpenSSH answers a generic failure) or the server
    refuses. paramiko has no method for it."""
    sftp._request(CMD_EXTENDED, HARDLINK, existing, new)


def hardlink_then_remove(sftp: Any, existing: str, new: str) -> None:
    """:func:`hardlink` ``existing`` to ``new`` and remove ``existing``, both requests sent
    before either answer is read: one round trip. The removal is wanted whatever the link's
    answer (a published temp file's name, or a refused one's), so it need not wait for it.
    Raises the link's error first, else the removal's."""
    pipeline = Pipeline(sftp)
    link_num = pipeline.send(CMD_EXTENDED, HARDLINK, existing, new)
    remove_num = pipeline.send(CMD_REMOVE, existing)
    try:
        pipeline.wait_status(link_num)
    except OSError:
        with contextlib.suppress(OSError):
            pipeline.wait_status(remove_num)
        raise
    pipeline.wait_status(remove_num)


def request_limits(sftp: Any) -> tuple[int, int] | None:
    """The server's largest read and write request (``limits@openssh.com``; 0 for no limit),
    or None when it does not announce them."""
    if "limits@openssh.com" not in sftp.extensions:
        return None
    t, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
    if t != CMD_EXTENDED_REPLY:
        return None
    msg.get_int64()  # max packet length
    return int(msg.get_int64()), int(msg.get_int64())


def invoke_subsystem(channel: Any, name: str, timeout: float) -> None:
    """``channel.invoke_subsystem(name)``, waiting at most ``timeout`` for the server's reply
    (paramiko's ``Channel._wait_for_event`` waits with no timeout)."""
    request = paramiko.Message()
    request.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    request.add_int(channel.remote_chanid)
    request.add_string("subsystem")
    request.add_boolean(True)
    request.add_string(name)
    channel._event_pending()
    channel.transport._send_user_message(request)
    if not channel.event.wait(timeout):
        raise TimeoutError(f"no answer to the {name} subsystem request within {timeout} s")
    if not channel.event_ready:
        raise channel.transport.get_exception() or paramiko.SSHException("Channel closed.")


@functools.cache
def session_class() -> Any:
    class _SFTPSession(paramiko.SFTPClient):
        """An SFTP client that keeps the extensions the server announces (paramiko drops them)
        and that fails for good once a packet was interrupted (see :meth:`stepping`)."""

        extensions: dict[str, bytes]
        failed = False

        @contextlib.contextmanager
        def stepping(self) -> Iterator[None]:
            """Around sending or reading one packet: if that is interrupted (a timeout, a
            dropped connection, KeyboardInterrupt), the stream may have stopped in the middle of
            a packet, so the session is marked failed and every later request fails at once
            instead of waiting for an answer that cannot come."""
            if self.failed:
                raise paramiko.SSHException("this SFTP session was interrupted mid-packet")
            try:
                yield
            except BaseException:
                self.failed = True
                raise

        def _send_packet(self, t: int, packet: Any) -> None:
            with self.stepping():
                super()._send_packet(t, packet)  # type: ignore[misc]

        def _read_packet(self) -> tuple[int, bytes]:
            with self.stepping():
                return super()._read_packet()  # type: ignore[misc]

        def _send_version(self) -> int:
            msg = paramiko.Message()
            msg.add_int(3)
            self._send_packet(1, msg)  # SSH_FXP_INIT
            t, data = self._read_packet()
            if t != CMD_VERSION:
                raise paramiko.SFTPError("Incompatible sftp protocol")
            reply = paramiko.Message(data)
            version = reply.get_int()
            extensions = {}
            while reply.get_remainder():
                name = reply.get_text()
                extensions[name] = reply.get_binary()
            self.extensions = extensions
            return int(version)

    return _SFTPSession


@functools.cache
def chunk_pipe_class() -> Any:
    from paramiko.buffered_pipe import BufferedPipe

    class _ChunkPipe(BufferedPipe):
        """A channel's receive buffer that keeps the packets it is fed as they are.

        paramiko's BufferedPipe holds one ``array`` and deletes every read from its front, so
        each read moves everything still buffered: with a large window, downloads spent more
        time in ``memmove`` than in decryption. This one hands out whole packets (slicing only
        the packet a read ends in); the locking and closing logic is paramiko's own.
        """

        def __init__(self) -> None:
            super().__init__()
            self._buffer = Chunks()

    return _ChunkPipe


class Chunks:
    """The few operations BufferedPipe uses on its buffer, over a deque of bytes objects."""

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.size = 0
        self.offset = 0  # bytes of chunks[0] already consumed

    def __len__(self) -> int:
        return self.size

    def frombytes(self, data: bytes) -> None:
        if data:
            self.chunks.append(data)
            self.size += len(data)

    def __getitem__(self, limit: slice) -> Chunks:
        """``buffer[:limit]`` (only prefix slices are used): a view for ``tobytes``."""
        view = Chunks()
        view.chunks, view.offset = self.chunks, self.offset
        view.size = self.size if limit.stop is None else min(limit.stop, self.size)
        return view

    def tobytes(self) -> bytes:
        wanted, offset, parts = self.size, self.offset, []
        for chunk in self.chunks:
            piece = chunk[offset : offset + wanted] if offset or len(chunk) > wanted else chunk
            parts.append(piece)
            wanted -= len(piece)
            offset = 0
            if not wanted:
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def __delitem__(self, limit: slice) -> None:
        count = self.size if limit.stop is None else min(limit.stop, self.size)
        self.size -= count
        while count:
            available = len(self.chunks[0]) - self.offset
            if available <= count:
                self.chunks.popleft()
                self.offset = 0
                count -= available
            else:
                self.offset += count
                count = 0
