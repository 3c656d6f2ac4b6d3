"""SFTP storage on any SSH server, through paramiko (``pip install "keg-storage[sftp]"``).

What keg-storage 0.5 lacked, this backend does:

- **Host keys are checked strictly** by default, against a known_hosts file and/or
  ``known_host_keys`` lines; ``host_key_policy='tofu'`` records the first key seen and
  ``'auto_add'`` accepts any new key with a warning on every connection. A key that differs from
  a known one is refused under every policy.
- **One pool of SSH connections per instance**, safe to share between threads: sessions are
  reused, checked before reuse without a round trip (``Transport.is_active``), replaced when the
  server dropped them, and closed by :meth:`SFTPStorage.close` or at interpreter exit. Sockets get
  ``TCP_NODELAY`` (without it every synchronous request waits for a delayed ACK) and keepalive.
  Idempotent operations retry on a dropped connection; ``upload``/``download`` of seekable
  files start over and streaming reads resume at their position on a new connection.
- **Pipelined transfers**: reads and writes keep up to ``max_requests`` SFTP requests in flight,
  like OpenSSH's ``sftp``, with request sizes taken from the server's ``limits@openssh.com``,
  and bypass two copying hot spots of paramiko (see ``_ChunkPipe`` and ``send_write``).
- **Atomic writes** through a temp file in the target directory and ``posix-rename``; copies use
  the server's ``copy-data`` extension when it has one.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import posixpath
import re
import secrets
import socket
import stat as stat_module
import struct
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, TypeVar, cast

import arrow

from ..errors import (
    FileNotFoundInStorageError,
    InvalidPathError,
    MissingDependencyError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    connection_failed,
    failure_cause,
    log_retry,
)
from ..progress import ByteCounter, ignore_bytes
from ..secrets import Secret, hold, reveal, scrub, scrubbed
from . import cleanup
from .base import (
    FileMode,
    FileStat,
    InternalLinksStorageBackend,
    ListEntry,
    RemoteFile,
    SecretKey,
)
from .forks import PerProcess

try:
    import paramiko
    from paramiko.sftp import (
        CMD_CLOSE,
        CMD_DATA,
        CMD_EXTENDED,
        CMD_EXTENDED_REPLY,
        CMD_HANDLE,
        CMD_LSTAT,
        CMD_OPEN,
        CMD_READ,
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
    from paramiko import PKey, SFTPClient, SSHClient, Transport

__all__ = ["SFTPLocation", "SFTPRemoteFile", "SFTPStorage"]

log = logging.getLogger(__name__)
SSH_LOG = f"{__name__}.ssh"
"""The logger of our paramiko transports, sessions and channels. paramiko logs failures of its
transport thread with their tracebacks at ERROR; on its own loggers, an application without
logging configuration would see them printed (Python's last-resort handler). Here they reach
the application's handlers if it has any, and are dropped otherwise (the library idiom)."""
logging.getLogger(SSH_LOG).addHandler(logging.NullHandler())

T = TypeVar("T")

HOST_KEY_POLICIES = ("strict", "tofu", "auto_add")
TEMP_NAME = re.compile(r"^\.keg-storage-[0-9a-f]{16}\.part$")
DEFAULT_REQUEST_SIZE = 32 * 1024
"""Request size for servers that do not announce their limits (every server accepts 32 KiB)."""
MAX_REQUEST_SIZE = 255 * 1024
WINDOW_SIZE = 8 * 1024 * 1024
"""SSH channel window: how much the server may send before we acknowledge (bounds memory)."""
PATH_MAX_BYTES = 4095
"""The longest remote path (Linux's PATH_MAX less the terminating NUL)."""

DIR_CHECK_TTL = 5.0
"""Seconds a directory found to resolve inside ``base_path`` is trusted without asking again."""
DIR_CHECK_ENTRIES = 1024
"""The most directories remembered as checked (the memory is cleared when it is full)."""

# SSH_FXF_* open flags (draft-ietf-secsh-filexfer-02)
_READ, _WRITE, _CREATE, _TRUNC, _EXCL = 0x01, 0x02, 0x08, 0x10, 0x20


def _missing_dependency() -> NoReturn:
    raise MissingDependencyError("SFTPStorage", "sftp", "paramiko")


@dataclass(frozen=True)
class SFTPLocation:
    """Where a key lives on the server (see :meth:`SFTPStorage.resolve`)."""

    host: str
    port: int
    path: str
    base_path: str
    kind: str = "sftp"


# -- SFTP sessions --------------------------------------------------------------------------


class _Responses:
    """Collects the responses to pipelined requests (paramiko hands them to ``_async_response``)."""

    def __init__(self, sftp: SFTPClient) -> None:
        self.sftp: Any = sftp
        self.received: dict[int, tuple[int, Any]] = {}
        self.ignored: set[int] = set()

    def _async_response(self, t: int, msg: Any, num: int) -> None:
        if num in self.ignored:
            self.ignored.discard(num)
        else:
            self.received[num] = (t, msg)

    def send(self, t: int, *args: Any) -> int:
        return int(self.sftp._async_request(self, t, *args))

    def send_write(self, handle: bytes, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Send SSH_FXP_WRITE like ``_async_request`` would, with one copy of ``data`` instead
        of paramiko's six (Message, packet, and re-slicing while the channel window fills)."""
        sftp = self.sftp
        with sftp._lock:
            num = int(sftp.request_number)
            sftp._expecting[num] = self
            sftp.request_number += 1
        length = len(data)
        header = struct.pack(">IBII", 21 + len(handle) + length, CMD_WRITE, num, len(handle))
        packet = b"".join((header, handle, struct.pack(">QI", offset, length), data))
        with sftp.stepping():
            sftp.sock.sendall(memoryview(packet))
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
        _raise_status(msg.get_int(), msg.get_text())

    def wait_handle(self, num: int) -> bytes:
        t, msg = self.wait(num)
        if t == CMD_STATUS:
            _raise_status(msg.get_int(), msg.get_text())
        if t != CMD_HANDLE:
            raise OSError(f"unexpected SFTP response type {t}")
        return bytes(msg.get_binary())


@functools.cache
def _session_class() -> Any:
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
def _chunk_pipe_class() -> Any:
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
            self._buffer = _Chunks()

    return _ChunkPipe


class _Chunks:
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

    def __getitem__(self, limit: slice) -> _Chunks:
        """``buffer[:limit]`` (only prefix slices are used): a view for ``tobytes``."""
        view = _Chunks()
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


class _Connection:
    """One SSH connection of the pool; it can carry several SFTP sessions (channels)."""

    def __init__(self, client: SSHClient) -> None:
        self.client = client
        self.transport: Transport = client.get_transport()  # type: ignore[assignment]
        self.sessions = 0
        self.closed = False

    def alive(self) -> bool:
        return not self.closed and self.transport.is_active()

    def close(self) -> None:
        self.closed = True
        self.client.close()


class _Session:
    """One SFTP session on a pooled connection, leased to one thread at a time."""

    def __init__(self, conn: _Connection, sftp: Any, read_size: int, write_size: int) -> None:
        self.conn = conn
        self.sftp = sftp
        self.read_size = read_size
        self.write_size = write_size

    @property
    def extensions(self) -> dict[str, bytes]:
        return self.sftp.extensions

    def usable(self) -> bool:
        channel = self.sftp.get_channel()
        return (
            not self.sftp.failed
            and self.conn.alive()
            and not channel.closed
            and not channel.eof_received
        )

    def fail(self) -> None:
        """Mark the session out of step with the server (never reused, nothing waited for)."""
        self.sftp.failed = True

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sftp.close()


class _PoolTimeout(TimeoutError):
    """No session of the pool became free in time."""


def _invoke_subsystem(channel: Any, name: str, timeout: float) -> None:
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


class _Pool:
    """A thread-safe pool of SFTP sessions over at most ``size`` SSH connections.

    A lease takes an idle session (most recently used first), else opens a connection while
    fewer than ``size`` exist, else opens another session on the least busy connection (at most
    ``sessions_per_connection``), else waits for a release.
    """

    def __init__(
        self,
        connect: Callable[[], SSHClient],
        size: int,
        sessions_per_connection: int,
        max_request_size: int,
        timeout: float,
    ) -> None:
        self._connect = connect
        self.size = size
        self.sessions_per_connection = sessions_per_connection
        self.max_request_size = max_request_size
        self.timeout = timeout
        self._idle: list[_Session] = []
        self._connections: list[_Connection] = []
        self._pending = 0
        self._cond = threading.Condition()
        self.connections_opened = 0

    def acquire(self) -> _Session:
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while True:
                while self._idle:
                    session = self._idle.pop()
                    if session.usable():
                        return session
                    self._drop(session)
                if len(self._connections) + self._pending < self.size:
                    self._pending += 1
                    target = None
                    break
                busy = [c for c in self._connections if c.alive()]
                target = min(busy, key=lambda c: c.sessions, default=None)
                if target is not None and target.sessions < self.sessions_per_connection:
                    target.sessions += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    raise _PoolTimeout(
                        f"no SFTP session became free within {self.timeout} s (pool_size="
                        f"{self.size}, sessions_per_connection={self.sessions_per_connection})"
                    )
        if target is None:
            try:
                target = _Connection(self._connect())
            except BaseException:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify()
                raise
            target.sessions = 1
            with self._cond:
                # One step, so a waiter never counts the connection neither pending nor open.
                self._pending -= 1
                self._connections.append(target)
                self.connections_opened += 1
                self._cond.notify_all()  # its other session slots are free for waiters
        try:
            return self._open_session(target)
        except BaseException as exc:
            # A session that could not open in time (or was interrupted half-open) leaves its
            # connection in doubt: closed, so that no one waits on it again.
            suspect = not isinstance(exc, Exception) or _is_connection_failure(exc)
            with self._cond:
                target.sessions -= 1
                if suspect:
                    self._connections = [c for c in self._connections if c is not target]
                self._cond.notify()
            if suspect:
                target.close()
            raise

    def _open_session(self, conn: _Connection) -> _Session:
        """A new SFTP session; every wait on it (here and later) ends after ``timeout``."""
        channel = conn.transport.open_session(
            window_size=WINDOW_SIZE, max_packet_size=MAX_REQUEST_SIZE + 1024, timeout=self.timeout
        )
        channel.in_buffer = _chunk_pipe_class()()  # before any data arrives
        # Without a timeout paramiko waits for every response forever (Channel.recv).
        channel.settimeout(self.timeout)
        _invoke_subsystem(channel, "sftp", self.timeout)
        sftp = _session_class()(channel)
        read_size = write_size = DEFAULT_REQUEST_SIZE
        if "limits@openssh.com" in sftp.extensions:
            t, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
            if t == CMD_EXTENDED_REPLY:
                msg.get_int64()  # max packet length
                read_size = min(msg.get_int64() or MAX_REQUEST_SIZE, self.max_request_size)
                write_size = min(msg.get_int64() or MAX_REQUEST_SIZE, self.max_request_size)
        return _Session(conn, sftp, read_size, write_size)

    def release(self, session: _Session, *, broken: bool = False) -> None:
        """Return a session; a broken one is closed with its whole connection."""
        if broken or not session.usable():
            session.conn.close()
            with self._cond:
                self._drop(session)
                self._cond.notify()
            return
        with self._cond:
            self._idle.append(session)
            self._cond.notify()

    def _drop(self, session: _Session) -> None:
        session.close()
        session.conn.sessions -= 1
        if not session.conn.alive():
            session.conn.close()
            self._connections = [c for c in self._connections if c is not session.conn]

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            connections, self._connections = self._connections, []
            self._cond.notify_all()
        for session in idle:
            session.close()
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.close()


# -- host keys and credentials --------------------------------------------------------------


class _HostKeyPolicy:
    """Checks the server's key against the known keys; see :class:`SFTPStorage`."""

    def __init__(
        self,
        policy: str,
        known_hosts_fpath: str | None,
        known_host_keys: str | None,
    ) -> None:
        self.policy = policy
        self.path = known_hosts_fpath
        self.keys = paramiko.HostKeys()
        self.lock = threading.Lock()
        self.unverified: set[tuple[str, str]] = set()
        if known_hosts_fpath and Path(known_hosts_fpath).expanduser().exists():
            self.keys.load(str(Path(known_hosts_fpath).expanduser()))
        for line in (known_host_keys or "").splitlines():
            entry = paramiko.hostkeys.HostKeyEntry.from_line(line.strip())
            if entry is not None and entry.key is not None:
                for name in entry.hostnames:
                    self.keys.add(name, entry.key.get_name(), entry.key)

    def missing_host_key(self, client: Any, hostname: str, key: PKey) -> None:
        """paramiko's hook, called for every connection (the client itself knows no keys),
        after the key exchange and before any credential is sent."""
        self.check(hostname, key)

    def known_types(self, name: str) -> list[str]:
        with self.lock:
            known = self.keys.lookup(name)
            return list(known.keys()) if known else []

    def check(self, name: str, key: PKey) -> None:
        """Raise :class:`StorageConnectionError` unless the key may be trusted."""
        with self.lock:
            known = self.keys.lookup(name)
            if known:
                if known.get(key.get_name()) == key:
                    if (name, key.get_base64()) in self.unverified:
                        self._warn_unverified(name, key)
                    return
                raise StorageConnectionError(
                    f"host key mismatch for {name}: the server offered a {key.get_name()} key "
                    f"(SHA256:{key.fingerprint.split(':', 1)[-1]}) that differs from the known "
                    "one; refusing to connect (possible man-in-the-middle attack)"
                )
            if self.policy == "strict":
                raise StorageConnectionError(
                    f"unknown host key for {name} ({key.get_name()} "
                    f"SHA256:{key.fingerprint.split(':', 1)[-1]}): add it to known_hosts or "
                    "known_host_keys, or choose host_key_policy='tofu'"
                )
            self.keys.add(name, key.get_name(), key)
            if self.policy == "tofu":
                if self.path:
                    path = Path(self.path).expanduser()
                    path.parent.mkdir(parents=True, exist_ok=True)
                    with path.open("a") as known_hosts:
                        known_hosts.write(f"{name} {key.get_name()} {key.get_base64()}\n")
                log.info("Trusting %s key for %s on first use", key.get_name(), name)
            if self.policy == "auto_add":
                self.unverified.add((name, key.get_base64()))
                self._warn_unverified(name, key)

    @staticmethod
    def _warn_unverified(name: str, key: PKey) -> None:
        log.warning(
            "Accepting the unverified %s host key of %s (host_key_policy='auto_add'); "
            "connections are open to man-in-the-middle attacks",
            key.get_name(),
            name,
        )


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)
_PEM_HEADER = re.compile(r"(Proc-Type: \S+|DEK-Info: [^\s]+)")


def _normalise_pem(text: str) -> str:
    """A PEM whose line breaks were lost (or turned into spaces or ``\\n``) made readable again."""
    text = text.strip().replace("\\n", "\n")
    match = _PEM_BLOCK.search(text)
    if match is None:
        return text
    label, body = match.group(1), match.group(2)
    headers = _PEM_HEADER.findall(body)
    for header in headers:
        body = body.replace(header, "")
    base64 = re.sub(r"\s+", "", body)
    lines = [f"-----BEGIN {label}-----", *headers]
    if headers:
        lines.append("")
    lines += [base64[i : i + 64] for i in range(0, len(base64), 64)]
    lines.append(f"-----END {label}-----")
    return "\n".join(lines) + "\n"


def _key_text(pkey: Any) -> str:
    return pkey.decode(errors="replace") if isinstance(pkey, bytes) else str(pkey)


def _load_pkey(pkey: Secret[Any], passphrase: Secret[str] | None) -> PKey:
    """A paramiko key from a PKey, or from private key text (PEM or OpenSSH format).

    The text and passphrase stay in Secrets, revealed only in the call that parses them."""
    if isinstance(pkey.reveal(), paramiko.PKey):
        return pkey.reveal()
    pem = Secret(_normalise_pem(_key_text(pkey.reveal())))
    key_classes: list[Any] = [paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey]
    if "BEGIN RSA" in pem.reveal():
        key_classes.reverse()
    errors = []
    for key_class in key_classes:
        try:
            with scrubbed():  # paramiko's frames hold the key text and the passphrase
                return key_class.from_private_key(
                    io.StringIO(pem.reveal()), password=reveal(passphrase)
                )
        except paramiko.PasswordRequiredException as exc:
            raise ValueError("pkey is encrypted: pass its passphrase=") from exc
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{key_class.__name__}: {exc}")
    raise ValueError("pkey is not a readable private key (" + "; ".join(errors) + ")")


# -- the backend ------------------------------------------------------------------------------


class SFTPStorage(InternalLinksStorageBackend):
    """Files on an SSH server, under ``base_path``, through a thread-safe pool of connections.

    The positional arguments are those of keg-storage 0.5 (``username``, ``key_filename`` and
    ``known_hosts_fpath`` are now optional; ``known_hosts_fpath=None`` reads
    ``~/.ssh/known_hosts``). Keyword-only options:

    - ``password``: password authentication (never shown in a repr, an error or a log);
      ``passphrase`` decrypts an encrypted key.
    - ``pkey``: a ``paramiko.PKey`` or private key text; PEMs whose line breaks were lost in a
      secret store are repaired.
    - ``base_path``: the remote directory that is the root of every key; nothing above it is
      reachable, symlinks on the server included: a key whose resolution on the server leaves
      ``base_path`` is refused with :class:`~keg_storage.errors.InvalidPathError` (a user who
      races symlinks on the server itself is held only by the server's ``ChrootDirectory``).
    - ``host_key_policy``: ``'strict'`` (refuse unknown hosts), ``'tofu'`` (trust and record
      the first key seen in ``known_hosts_fpath``) or ``'auto_add'`` (accept unknown keys, with a
      warning on every connection). A changed key is refused under every policy.
    - ``known_host_keys``: known_hosts lines as a string, in addition to the file.
    - ``timeout``: seconds any wait on the server may last: connecting, the SSH banner,
      authentication, opening a session and every SFTP request; a server that stops answering
      gives :class:`StorageConnectionError`, and the session is never used again.
    - ``connect_kwargs``: extra arguments for ``paramiko.SSHClient.connect``.
    - ``retry``: how many times an idempotent operation is retried on a dropped connection, and
      a connection attempt on failure to connect (default 1).
    - ``pool_size``: the most SSH connections kept open (default 8); each carries up to
      ``sessions_per_connection`` SFTP sessions when more threads need one at once.
    - ``max_requests``: SFTP requests kept in flight by a transfer (default 64, like OpenSSH);
      ``max_request_size`` bounds each (the server's limits apply too).
    """

    supports_read_write = True
    # The limits of the file systems OpenSSH serves (NAME_MAX, PATH_MAX): longer paths are
    # refused before a request instead of failing on the server with a bare "failure".
    max_segment_bytes = 255

    def __init__(
        self,
        host: str,
        username: str | None = None,
        key_filename: str | Sequence[str] | None = None,
        known_hosts_fpath: str | None = None,
        port: int = 22,
        allow_agent: bool = False,
        look_for_keys: bool = False,
        linked_endpoint: str | None = None,
        secret_key: SecretKey | None = None,
        name: str = "sftp",
        *,
        password: str | None = None,
        passphrase: str | None = None,
        pkey: Any = None,
        base_path: str = "/",
        host_key_policy: str = "strict",
        known_host_keys: str | None = None,
        timeout: float = 10,
        connect_kwargs: Mapping[str, Any] | None = None,
        retry: int | None = None,
        pool_size: int = 8,
        sessions_per_connection: int = 8,
        max_requests: int = 64,
        max_request_size: int = MAX_REQUEST_SIZE,
    ) -> None:
        # Held before anything can raise, so that no frame of ours shows them in plain form.
        self._password = hold(password)
        self._passphrase = hold(passphrase)
        held_pkey = hold(pkey)
        held_secret_key: Secret[SecretKey] | None = hold(secret_key)
        self._connect_kwargs = Secret(dict(connect_kwargs or {}))
        del password, passphrase, pkey, secret_key, connect_kwargs
        super().__init__(linked_endpoint=linked_endpoint, secret_key=held_secret_key, name=name)
        if paramiko is None:
            _missing_dependency()
        if not host:
            raise ValueError("SFTPStorage needs a host")
        if host_key_policy not in HOST_KEY_POLICIES:
            raise ValueError(
                f"host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}, "
                f"not {host_key_policy!r}"
            )
        if pool_size < 1 or sessions_per_connection < 1 or max_requests < 1:
            raise ValueError("pool_size, sessions_per_connection and max_requests must be >= 1")
        self.host = host
        self.port = int(port)
        self.username = username
        self.key_filename = key_filename
        if known_hosts_fpath is None:
            known_hosts_fpath = str(Path("~/.ssh/known_hosts").expanduser())
        self.known_hosts_fpath = known_hosts_fpath
        self.allow_agent = allow_agent
        self.look_for_keys = look_for_keys
        self.base_path = _normalise_base(base_path)
        self.max_key_bytes = PATH_MAX_BYTES - len(self.base_path.encode()) - 1
        # base_path as the server resolves it, and the directories found to resolve inside it
        # (remote path -> monotonic expiry); a plain dict, whose single operations need no lock.
        self._base_real: str | None = None
        self._checked_dirs: dict[str, float] = {}
        self.host_key_policy = host_key_policy
        self.timeout = timeout
        self.retry = 1 if retry is None else max(0, int(retry))
        self.max_requests = max_requests
        self._pkey = None if held_pkey is None else Secret(_load_pkey(held_pkey, self._passphrase))
        self._host_keys = _HostKeyPolicy(host_key_policy, known_hosts_fpath, known_host_keys)
        # One pool per process: a forked child opens its own connections on first use there
        # (see keg_storage.backends.forks).
        self._pools = PerProcess(
            functools.partial(
                _Pool,
                _weak_method(self._connect),
                pool_size,
                sessions_per_connection,
                max(1024, min(max_request_size, MAX_REQUEST_SIZE)),
                timeout,
            )
        )
        # Closes the connections when the storage is garbage-collected or the interpreter exits.
        self._finalizer = weakref.finalize(self, _close_pool, self._pools)

    def __repr__(self) -> str:
        # getattr: a traceback with locals shows ``self`` of a constructor that failed half-way.
        fields = ("host", "port", "username", "base_path", "name")
        shown = ", ".join(f"{field}={getattr(self, field, None)!r}" for field in fields)
        return f"SFTPStorage({shown})"

    @property
    def _pool(self) -> _Pool:
        return self._pools.get()

    def close(self) -> None:
        """Close every pooled connection; idempotent. The storage reconnects on next use."""
        _close_pool(self._pools)

    @contextlib.contextmanager
    def connection(self) -> Iterator[SFTPClient]:
        """Lease a pooled, health-checked paramiko ``SFTPClient`` for what this API lacks; it
        returns to the pool when the block ends (closed instead if its connection failed).

        Paths are the server's, not relative to ``base_path``. Do not close the client or keep
        it after the block: it serves other operations next.
        """
        session = self._lease(None)
        broken = False
        try:
            yield session.sftp
        except BaseException as exc:
            broken = _is_connection_failure(exc) or not session.usable()
            raise
        finally:
            session.sftp.chdir(None)  # the pool's operations rely on the default directory
            self._pool.release(session, broken=broken)

    def create_client(self) -> SSHClient:
        """A new connected, authenticated paramiko ``SSHClient`` (host key checked as for the
        pool), owned by the caller, who closes it; ``open_sftp()`` gives its SFTP client."""
        return self._connect()

    # -- connections --------------------------------------------------------------------------

    @property
    def _host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    @property
    def endpoint(self) -> str:
        """``host:port`` of the server, as errors and retry logs name it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def retry_label(self) -> str:
        """How retry logs name this storage: ``sftp 'files'``."""
        return f"sftp {self.name!r}"

    def _unreachable(self, exc: BaseException, key: str | None = None) -> StorageConnectionError:
        """``connection to SFTP at host:port failed: <cause>``; marked transient (retried)."""
        error = connection_failed(
            "SFTP",
            self.endpoint,
            exc,
            backend=self,
            path=key,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
        )
        error.transient = True  # type: ignore[attr-defined]
        return error

    def _connect(self) -> SSHClient:
        """A new authenticated SSH connection; host key checked before authenticating."""
        attempts = self.retry + 1
        for attempt in range(1, attempts + 1):
            try:
                return self._connect_once()
            except StorageConnectionError as exc:
                if not getattr(exc, "transient", False) or attempt == attempts:
                    raise
                log_retry(
                    self, "connect", exc.cause or str(exc), self.endpoint, attempt + 1, attempts
                )
            time.sleep(0.1 * 2**attempt)
        raise AssertionError("unreachable")

    def _connect_once(self) -> SSHClient:
        name = self._host_key_name
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise self._unreachable(exc) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # A server that vanished (no FIN, no RST) is noticed in about a minute, not two hours.
        for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        known_types = self._host_keys.known_types(name)
        transports: list[Transport] = []

        def transport_factory(sock: Any, **kwargs: Any) -> Transport:
            transport = paramiko.Transport(sock, **kwargs)
            options = transport.get_security_options()
            # AES-GCM needs no separate MAC: the fastest cipher paramiko has.
            fast = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
            available = [c for c in fast if c in options.ciphers]
            options.ciphers = tuple(available + [c for c in options.ciphers if c not in fast])
            if known_types:  # ask for the key type we know, so that the check can succeed
                ordered = [k for k in options.key_types if k in known_types]
                ordered += [k for k in options.key_types if k not in known_types]
                options.key_types = tuple(ordered)
            transport.set_log_channel(SSH_LOG)
            transports.append(transport)
            transport.set_keepalive(30)
            # Waits for a key re-exchange to end before sending (30 s by default).
            transport.clear_to_send_timeout = self.timeout
            return transport

        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(self._host_keys)  # type: ignore[arg-type]
        # paramiko's frames hold the revealed credentials: every exception out of connect() is
        # scrubbed (those frames cut off) before it leaves.
        try:
            client.connect(
                self.host, port=self.port, **self._connect_options(sock, transport_factory)
            )
        except StorageConnectionError as exc:  # from the host key check
            client.close()
            raise StorageConnectionError(str(exc), backend=self) from scrub(exc)
        except paramiko.AuthenticationException as exc:
            client.close()
            raise StorageConnectionError(
                f"authentication failed for user {self.username!r} at {self.endpoint}: {exc}",
                backend=self,
            ) from scrub(exc)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # Before closing: the transport thread then fails on the closed socket, for no cause.
            cause = self._handshake_failure(exc, transports)
            client.close()
            raise self._unreachable(cause) from scrub(exc)
        except BaseException as exc:
            client.close()
            scrub(exc)
            raise
        return client

    def _handshake_failure(self, exc: BaseException, transports: list[Transport]) -> BaseException:
        """What made the SSH handshake fail. paramiko's ``connect`` reports a handshake that
        did not end in time as "No existing session": the transport thread's own failure, if
        it has one by now, says why, else the server did not answer in time."""
        if str(exc) != "No existing session" or not transports:
            return exc
        saved = transports[0].saved_exception
        return saved if saved is not None else TimeoutError("the SSH handshake timed out")

    def _connect_options(self, sock: socket.socket, transport_factory: Any) -> dict[str, Any]:
        """The arguments of ``SSHClient.connect``, secrets revealed: pass them on directly."""
        options: dict[str, Any] = {
            "username": self.username,
            "key_filename": self.key_filename,
            "pkey": reveal(self._pkey),
            "password": reveal(self._password),
            "passphrase": reveal(self._passphrase),
            "allow_agent": self.allow_agent,
            "look_for_keys": self.look_for_keys,
            "timeout": self.timeout,
            "banner_timeout": self.timeout,
            "auth_timeout": self.timeout,
            "sock": sock,
            "transport_factory": transport_factory,
        }
        options.update(self._connect_kwargs.reveal())
        return options

    def _lease(self, key: str | None) -> _Session:
        try:
            return self._pool.acquire()
        except _PoolTimeout as exc:
            raise StorageConnectionError(
                f"connection to SFTP at {self.endpoint} failed: {exc}", backend=self, path=key
            ) from exc
        except StorageConnectionError as exc:
            if exc.path is not None or key is None:
                raise
            # Connecting knows no path: the error names the one this operation was about.
            error = StorageConnectionError(exc.reason, backend=self, path=key)
            error.cause = exc.cause
            raise error from exc
        except StorageError:
            raise
        except Exception as exc:  # a new session that did not open (in time)
            if _is_connection_failure(exc):
                raise self._error(exc, key, dropped=True) from exc
            raise

    def _call(
        self,
        key: str | None,
        operation: Callable[[_Session], T],
        *,
        idempotent: bool = True,
        action: str = "request",
    ) -> T:
        """Run ``operation`` on a leased session, retrying idempotent ones on a dropped
        connection, and map paramiko's errors to keg_storage's. A session whose connection
        failed goes back to the pool as broken, so it is replaced, never reused."""
        attempts = self.retry + 1 if idempotent else 1
        for attempt in range(attempts):
            session = self._lease(key)
            try:
                result = operation(session)
            except StorageError:
                self._pool.release(session)
                raise
            except Exception as exc:
                dropped = _is_connection_failure(exc) or not session.usable()
                self._pool.release(session, broken=dropped)
                if dropped and attempt + 1 < attempts:
                    error = self._error(exc, key, dropped=True, session=session)
                    self._log_retry(f"{action} {key or ''}".strip(), error, attempt + 2, attempts)
                    continue
                raise self._error(exc, key, dropped=dropped, session=session) from exc
            except BaseException:
                self._pool.release(session, broken=True)
                raise
            self._pool.release(session)
            return result
        raise AssertionError("unreachable")

    def _error(
        self,
        exc: BaseException,
        key: str | None,
        *,
        dropped: bool = False,
        session: _Session | None = None,
    ) -> StorageError:
        """The keg_storage error for a paramiko/OS error about ``key``, met on ``session``."""
        if isinstance(exc, StorageError):
            return exc
        if dropped or _is_connection_failure(exc):
            # paramiko's channels report a dead transport as "Socket is closed"; the transport
            # keeps what killed it ("Connection reset by peer").
            saved = session.conn.transport.saved_exception if session is not None else None
            return self._unreachable(saved if saved is not None else exc, key)
        code = getattr(exc, "errno", None)
        if code == errno.ENOENT and key is not None:
            return FileNotFoundInStorageError(self, key)
        if code in (errno.EACCES, errno.EPERM):
            return StoragePermissionError(f"permission denied: {exc}", backend=self, path=key)
        return StorageError(f"SFTP operation failed: {exc}", backend=self, path=key)

    def _log_retry(self, action: str, exc: BaseException, attempt: int, attempts: int) -> None:
        """Log a retry on ``keg_storage.retry``, with the cause of the failure before it."""
        cause = getattr(exc, "cause", None) or failure_cause(
            exc, connect_timeout=self.timeout, read_timeout=self.timeout
        )
        log_retry(self, action, cause, self.endpoint, attempt, attempts)

    # -- paths --------------------------------------------------------------------------------

    def _remote(self, key: str) -> str:
        """The remote path of a key (or of a directory prefix ``a/b/``)."""
        key = key.strip("/")
        if not key:
            return self.base_path or "."
        if not self.base_path:
            return key
        return posixpath.join(self.base_path, key)

    def resolve(self, path: str) -> SFTPLocation:
        """Where ``path`` lives: host, port and absolute remote path (for debugging)."""
        return SFTPLocation(
            self.host, self.port, self._remote(self._file_key(path)), self.base_path or "."
        )

    # -- confinement: symlinks on the server ------------------------------------------------

    def _outside(self, key: str | None) -> InvalidPathError:
        return InvalidPathError(
            f"the path resolves outside base_path {self.base_path or '.'!r} on the server "
            "(a symlink)",
            backend=self,
            path=key,
        )

    def _inside(self, sftp: Any, real: str) -> bool:
        """Whether the resolved remote path ``real`` is ``base_path`` or below it."""
        base = self._base_real
        if base is None:
            try:
                base = self._base_real = sftp.normalize(self.base_path or ".")
            except OSError as exc:  # base_path and its parent are missing: compare as written
                if exc.errno != errno.ENOENT:
                    raise
                base = posixpath.join(sftp.normalize("."), self.base_path)
        return real == base or real.startswith(base.rstrip("/") + "/")

    def _check_dir(self, sftp: Any, remote_dir: str, key: str | None) -> None:
        """Refuse ``key`` if ``remote_dir`` resolves outside ``base_path`` on the server.

        One REALPATH round trip (the server resolves every symlink), remembered for
        ``DIR_CHECK_TTL`` seconds. A directory missing with its parent is judged by its nearest
        ancestor that resolves: whatever is created below it is a real directory.
        """
        if self._checked_dirs.get(remote_dir, 0.0) > time.monotonic():
            return
        try:
            real = sftp.normalize(remote_dir or ".")
        except OSError as exc:
            parent = posixpath.dirname(remote_dir)
            if exc.errno != errno.ENOENT or parent == remote_dir:
                raise
            self._check_dir(sftp, parent, key)
            return
        if not self._inside(sftp, real):
            raise self._outside(key)
        if len(self._checked_dirs) >= DIR_CHECK_ENTRIES:
            self._checked_dirs.clear()
        self._checked_dirs[remote_dir] = time.monotonic() + DIR_CHECK_TTL

    def _check_link(self, sftp: Any, remote: str, key: str) -> None:
        """Refuse ``key``, a symlink on the server, if it resolves outside ``base_path``."""
        if not self._inside(sftp, sftp.normalize(remote)):
            raise self._outside(key)

    def _checked_attr(self, sftp: Any, key: str) -> Any:
        """The attributes of ``key`` (``OSError`` ENOENT when missing), refusing a path that
        leaves ``base_path``; a symlink that stays inside gives its target's attributes."""
        remote = self._remote(key)
        self._check_dir(sftp, posixpath.dirname(remote), key)
        attr = sftp.lstat(remote)
        if stat_module.S_ISLNK(attr.st_mode or 0):
            self._check_link(sftp, remote, key)
            attr = sftp.stat(remote)
        return attr

    def _check_target(self, sftp: Any, key: str) -> None:
        """Refuse writing ``key`` through a directory or over a symlink that leaves
        ``base_path`` (a missing target is fine)."""
        remote = self._remote(key)
        self._check_dir(sftp, posixpath.dirname(remote), key)
        try:
            attr = sftp.lstat(remote)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        if stat_module.S_ISLNK(attr.st_mode or 0):
            self._check_link(sftp, remote, key)

    def _makedirs(self, sftp: Any, remote_dir: str) -> None:
        """Create ``remote_dir`` and its missing parents (tolerating concurrent creation)."""
        if remote_dir in ("", "/", "."):
            return
        try:
            sftp.mkdir(remote_dir)
            return
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                self._makedirs(sftp, posixpath.dirname(remote_dir))
            elif exc.errno in (errno.EACCES, errno.EPERM):
                raise
            else:  # already there (OpenSSH answers a generic failure)
                if stat_module.S_ISDIR(sftp.stat(remote_dir).st_mode or 0):
                    return
                raise
        try:
            sftp.mkdir(remote_dir)
        except OSError:
            if not stat_module.S_ISDIR(sftp.stat(remote_dir).st_mode or 0):
                raise

    def _prune(self, sftp: Any, key: str) -> None:
        """Remove the directories ``key`` leaves empty, up to the root (as object stores do)."""
        parent = posixpath.dirname(key)
        while parent:
            remote = self._remote(parent)
            try:
                sftp.rmdir(remote)
            except OSError:
                return
            self._checked_dirs.pop(remote, None)  # whatever appears there next is checked anew
            parent = posixpath.dirname(parent)

    def _open_temp(self, sftp: Any, remote_dir: str, temp: str | None = None) -> tuple[str, bytes]:
        """Create an empty temp file in ``remote_dir`` (creating the directory); its handle.
        ``temp`` names it (from :func:`_temp_path`) for a caller that must know the name even
        when the server's answer never comes."""
        temp = temp or _temp_path(remote_dir)
        for attempt in range(3):
            try:
                return temp, _open_handle(sftp, temp, _WRITE | _CREATE | _EXCL)
            except OSError as exc:
                if exc.errno != errno.ENOENT or attempt == 2:
                    raise
                self._makedirs(sftp, remote_dir)
        raise AssertionError("unreachable")

    def _publish(self, session: _Session, temp: str, target: str) -> None:
        """Rename ``temp`` over ``target`` atomically (posix-rename), else remove + rename."""
        sftp = session.sftp
        if "posix-rename@openssh.com" in session.extensions:
            sftp.posix_rename(temp, target)
            return
        try:
            sftp.rename(temp, target)
        except OSError:
            with contextlib.suppress(OSError):
                sftp.remove(target)
            sftp.rename(temp, target)

    # -- primitives ---------------------------------------------------------------------------

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        def walk(session: _Session) -> list[ListEntry]:
            entries: list[ListEntry] = []
            # Directories found below are real ones (the listing's attributes are lstat's).
            self._check_dir(session.sftp, self._remote(prefix), prefix or None)
            pending = deque([prefix])
            while pending:
                directory = pending.popleft()
                try:
                    children = session.sftp.listdir_attr(self._remote(directory))
                except OSError as exc:
                    if exc.errno == errno.ENOENT or (directory == prefix and _not_a_dir(exc)):
                        continue
                    raise
                for attr in children:
                    name = directory + attr.filename
                    mode = attr.st_mode or 0
                    if stat_module.S_ISDIR(mode):
                        if recursive:
                            pending.append(name + "/")
                        else:
                            entries.append(ListEntry(name + "/", None, 0))
                    elif stat_module.S_ISREG(mode) and not TEMP_NAME.match(attr.filename):
                        entries.append(ListEntry(name, _mtime(attr), attr.st_size or 0))
            return entries

        return self._call(prefix or None, walk, action="list")

    def _stat_attr(self, session: _Session, key: str) -> Any:
        attr = self._checked_attr(session.sftp, key)
        if stat_module.S_ISDIR(attr.st_mode or 0):
            raise FileNotFoundInStorageError(self, key)
        return attr

    def _stat(self, key: str) -> FileStat:
        attr = self._call(key, lambda session: self._stat_attr(session, key), action="stat")
        return FileStat(size=attr.st_size or 0, last_modified=_mtime(attr))

    def _delete(self, key: str) -> None:
        log.info("Deleting remote file '%s'", key)

        def delete(session: _Session) -> None:
            try:
                if stat_module.S_ISDIR(self._checked_attr(session.sftp, key).st_mode or 0):
                    return  # a directory is not a file: nothing to do
                session.sftp.remove(self._remote(key))
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            self._prune(session.sftp, key)

        self._call(key, delete, action="delete")

    def _open(self, key: str, mode: FileMode, extra_args: dict[str, Any]) -> SFTPRemoteFile:
        return SFTPRemoteFile(mode, key, self)

    def _copy(self, key: str, new_key: str) -> None:
        self._call(key, lambda session: self._copy_on(session, key, new_key), action="copy")

    def _copy_on(self, session: _Session, key: str, new_key: str) -> None:
        """Copy on the server where it can (``copy-data``), else through this process."""
        if "copy-data" in session.extensions:
            self._copy_data(session, key, new_key)
        else:
            self._copy_stream(session, key, new_key)

    def _copy_data(self, session: _Session, key: str, new_key: str) -> None:
        """Server-side copy with the ``copy-data`` extension, into a temp file then renamed."""
        sftp = session.sftp
        self._checked_attr(sftp, key)
        self._check_target(sftp, new_key)
        source = _open_handle(sftp, self._remote(key), _READ)
        temp = None
        try:
            temp, target = self._open_temp(sftp, posixpath.dirname(self._remote(new_key)))
            try:
                sftp._request(
                    CMD_EXTENDED, "copy-data", source, int64(0), int64(0), target, int64(0)
                )
            finally:
                sftp._request(CMD_CLOSE, target)
            self._publish(session, temp, self._remote(new_key))
            temp = None
        finally:
            with contextlib.suppress(OSError, paramiko.SSHException):
                sftp._request(CMD_CLOSE, source)
            if temp is not None:
                with contextlib.suppress(OSError, paramiko.SSHException):
                    sftp.remove(temp)

    def _copy_stream(self, session: _Session, key: str, new_key: str) -> None:
        """Copy through this process: read and write on separate SFTP sessions (pipelined
        writes interleaved with reads on one session can deadlock paramiko)."""
        with SFTPRemoteFile(FileMode.read, key, self, session=session) as source:
            self._upload(cast(IO[bytes], source), new_key, {}, ignore_bytes)

    def _move(self, key: str, new_key: str) -> None:
        def move(session: _Session) -> None:
            sftp = session.sftp
            source, target = self._remote(key), self._remote(new_key)
            # A missing source (or a directory) fails here, so a rename's ENOENT is about the
            # target's directory: created then, not checked before every move.
            self._stat_attr(session, key)
            self._check_target(sftp, new_key)
            try:
                try:
                    self._publish(session, source, target)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                    self._makedirs(sftp, posixpath.dirname(target))
                    self._publish(session, source, target)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
                    raise
                log.info("rename of %s failed (%s); copying instead", key, exc)
                self._copy_on(session, key, new_key)
                sftp.remove(source)
            self._prune(sftp, key)

        self._call(key, move, idempotent=False, action="move")

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        def transfer(count: ByteCounter) -> None:
            with SFTPRemoteFile(FileMode.read, key, self) as source:
                for piece in source.iter_pieces():
                    file_obj.write(piece)
                    count(len(piece))

        self._transfer_with_retry(transfer, file_obj, count_bytes, rewrite=True, action="download")

    def _upload(
        self, file_obj: IO[bytes], key: str, extra_args: dict[str, Any], count_bytes: ByteCounter
    ) -> None:
        def transfer(count: ByteCounter) -> None:
            with SFTPRemoteFile(FileMode.write, key, self) as target:
                chunk_size = target.write_chunk_bytes
                readinto = getattr(file_obj, "readinto", None)
                if readinto is not None:
                    view = memoryview(bytearray(chunk_size))
                    while size := readinto(view):
                        target.write(view[:size])
                        count(size)
                    return
                while chunk := file_obj.read(chunk_size):
                    target.write(chunk)
                    count(len(chunk))

        self._transfer_with_retry(transfer, file_obj, count_bytes, rewrite=False, action="upload")

    def _transfer_with_retry(
        self,
        transfer: Callable[[ByteCounter], None],
        file_obj: IO[bytes],
        count_bytes: ByteCounter,
        *,
        rewrite: bool,
        action: str,
    ) -> None:
        """Run a whole-file transfer; when the connection drops and ``file_obj`` can seek, start
        over on a new connection (``retry`` times). A write is atomic, so a restarted upload
        publishes nothing twice; progress resumes counting only past what was reported."""
        try:
            start: int | None = file_obj.tell() if file_obj.seekable() else None
        except (AttributeError, OSError, ValueError):
            start = None
        reported = 0
        for attempt in range(self.retry + 1):
            done = 0

            def count(size: int) -> None:
                nonlocal done, reported
                done += size
                if done > reported:
                    count_bytes(done - reported)
                    reported = done

            try:
                transfer(count)
                return
            except StorageConnectionError as exc:
                if start is None or attempt == self.retry:
                    raise
                self._log_retry(
                    f"{action} {exc.path or ''}".strip(), exc, attempt + 2, self.retry + 1
                )
                file_obj.seek(start)
                if rewrite:
                    file_obj.truncate()


def _close_pool(pools: PerProcess[_Pool]) -> None:
    """Close this process's connections, never those a forked child inherited."""
    pool = pools.current()
    if pool is not None:
        pool.close()


def _weak_method(method: Callable[[], T]) -> Callable[[], T]:
    """``method`` without a strong reference to its object (the pool must not keep its storage
    alive, or the storage would never be garbage-collected and its connections closed)."""
    ref = weakref.WeakMethod(method)

    def call() -> T:
        bound = ref()
        if bound is None:
            raise StorageConnectionError("the SFTPStorage was garbage-collected")
        return bound()

    return call


def _is_connection_failure(exc: BaseException) -> bool:
    if paramiko is None:
        return False
    if isinstance(exc, (paramiko.SSHException, EOFError, socket.timeout, ConnectionError)):
        return not isinstance(exc, paramiko.AuthenticationException)
    return isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.EBADF)


def _not_a_dir(exc: OSError) -> bool:
    return exc.errno in (None, errno.ENOTDIR) and not _is_connection_failure(exc)


def _mtime(attr: Any) -> arrow.Arrow:
    return arrow.get(attr.st_mtime or 0).to("UTC")


def _normalise_base(base_path: str) -> str:
    """``'/'`` stays ``'/'``; ``'/a/b/'`` becomes ``'/a/b'``; a relative path (from the login
    directory) loses its trailing slash; ``''`` means the login directory."""
    if base_path.startswith("/"):
        return "/" + "/".join(p for p in base_path.split("/") if p) if base_path.strip("/") else "/"
    return "/".join(p for p in base_path.split("/") if p)


def _raise_status(code: int, text: str) -> None:
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


def _open_handle(sftp: Any, path: str, flags: int) -> bytes:
    t, msg = sftp._request(CMD_OPEN, path, flags, SFTPAttributes())
    if t != CMD_HANDLE:
        raise OSError(f"unexpected SFTP response type {t}")
    return bytes(msg.get_binary())


def _temp_path(remote_dir: str) -> str:
    """A new temp file path in ``remote_dir`` (listings hide it, see TEMP_NAME)."""
    return posixpath.join(remote_dir, f".keg-storage-{secrets.token_hex(8)}.part")


def _remove_quietly(sftp: Any, path: str) -> None:
    with _refusals_ignored():
        sftp.remove(path)


@contextlib.contextmanager
def _refusals_ignored() -> Iterator[None]:
    """Ignore the server's refusal of a request (an SFTP status), not a failed connection or a
    timeout: those leave the session out of step and must reach the caller."""
    try:
        yield
    except OSError as exc:
        if _is_connection_failure(exc):
            raise


# -- remote files ---------------------------------------------------------------------------


class SFTPRemoteFile(RemoteFile):
    """A remote file with pipelined reads and writes.

    Reading keeps up to ``max_requests`` read requests in flight once reading is sequential and
    seeks without fetching skipped bytes. Writing (``'w'``) goes to a temp file in the target
    directory (created with its parents), pipelined, and is renamed over the target on
    :meth:`close`; :meth:`abort` or an exception removes the temp file. ``'r+'`` reads and
    writes the existing file in place. The file holds one pooled SFTP session until closed.
    """

    def __init__(
        self,
        mode: FileMode | str,
        path: str,
        client: SFTPStorage,
        *,
        session: _Session | None = None,
    ) -> None:
        super().__init__(mode)
        self.path = path
        self.client = client
        self._session: _Session | None = None
        self._handle: bytes | None = None
        self._temp: str | None = None
        self._target = client._remote(path)
        self._position = 0
        self._size = 0
        # write pipeline
        self._unacked: deque[int] = deque()
        self._buffer = bytearray()
        self._buffer_start = 0
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
        attempts = 1 if session is not None else client.retry + 1
        for attempt in range(attempts):
            try:
                self._session = session if session is not None else client._lease(path)
                self._responses = _Responses(self._session.sftp)
                self._open_remote()
                return
            except Exception as exc:
                dropped = self._session is not None and (
                    _is_connection_failure(exc) or not self._session.usable()
                )
                error = client._error(exc, path, dropped=dropped, session=self._session)
                self._release(broken=dropped)
                self._drop_unanswered_temp(created=dropped)
                if dropped and attempt + 1 < attempts:
                    client._log_retry(f"open {path}", error, attempt + 2, attempts)
                    continue
                super().close()
                raise error from exc
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
    def write_chunk_bytes(self) -> int:
        """A good size for the caller's writes: 16 requests' worth."""
        assert self._session is not None
        return self._session.write_size * 16

    def _open_remote(self) -> None:
        assert self._session is not None
        sftp = self._session.sftp
        client, directory = self.client, posixpath.dirname(self._target)
        client._check_dir(sftp, directory, self.path)
        # LSTAT pipelined with the OPEN: one round trip for both.
        stat_num = self._responses.send(CMD_LSTAT, self._target)
        if self.mode == FileMode.write:
            # Named first: a temp file the server created but whose handle never arrived is
            # still removed (see __init__).
            self._temp = _temp_path(directory)
            try:
                self._handle = client._open_temp(sftp, directory, self._temp)[1]
            except BaseException:
                self._responses.forget([stat_num])
                raise
            try:
                attr = self._wait_attr(stat_num)
                if stat_module.S_ISLNK(attr.st_mode or 0):
                    client._check_link(sftp, self._target, self.path)
            except (OSError, InvalidPathError) as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
                    return  # a new file
                self._close_handle()
                _remove_quietly(sftp, self._temp)
                self._temp = None
                raise
            return
        flags = _READ | (_WRITE if self.writable() else 0)
        open_num = self._responses.send(CMD_OPEN, self._target, flags, SFTPAttributes())
        attr = stat_error = handle = open_error = None
        try:
            attr = self._wait_attr(stat_num)
            if stat_module.S_ISLNK(attr.st_mode or 0):
                client._check_link(sftp, self._target, self.path)
                attr = sftp.stat(self._target)
        except (OSError, InvalidPathError) as exc:
            stat_error = exc
        try:
            handle = self._responses.wait_handle(open_num)
        except OSError as exc:
            open_error = exc
        is_dir = attr is not None and stat_module.S_ISDIR(attr.st_mode or 0)
        if handle is not None and (attr is None or is_dir):
            sftp._request(CMD_CLOSE, handle)
        if stat_error is not None:
            raise stat_error
        if is_dir:
            raise OSError(errno.ENOENT, "is a directory")
        if open_error is not None:
            raise open_error
        assert attr is not None
        self._handle = handle
        self._size = attr.st_size or 0

    def _wait_attr(self, num: int) -> Any:
        """The attributes answered to the (L)STAT request ``num``."""
        t, msg = self._responses.wait(num)
        if t == CMD_STATUS:
            _raise_status(msg.get_int(), msg.get_text())
        return cast(Any, SFTPAttributes)._from_msg(msg)

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
        for attempt in range(self.client.retry + 1):
            try:
                return self._take(limit)
            except Exception as exc:
                dropped = _is_connection_failure(exc) or (
                    self._session is not None and not self._session.usable()
                )
                if not dropped or self.writable() or self._borrowed:
                    raise
                if attempt == self.client.retry:
                    raise
                self.client._log_retry(
                    f"read {self.path} at byte {self._position}",
                    self.client._error(exc, self.path, dropped=True, session=self._session),
                    attempt + 2,
                    self.client.retry + 1,
                )
                self._reopen()
        raise AssertionError("unreachable")

    def _reopen(self) -> None:
        """Open the file again on a new session, keeping the position."""
        self._release(broken=True)
        self._handle = None
        self._inflight.clear()
        self._data = b""
        self._session = self.client._lease(self.path)
        self._responses = _Responses(self._session.sftp)
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
            needed = 1 if limit is None else -(-limit // request)
            self._window = max(1, min(needed, self.client.max_requests))
        else:  # sequential reading: grow the read-ahead, like OpenSSH
            self._window = min(self._window * 2, self.client.max_requests)
        self._send_reads(request)
        offset, length, num = self._inflight.popleft()
        t, msg = self._responses.wait(num)
        self._send_reads(request)
        if t == CMD_DATA:
            data = msg.get_binary()
            self._data, self._data_start = data, offset
            if len(data) < length:  # a short read: ask again from where it stopped
                self._reset_reads()
            if not data:
                self._eof_at = offset
            return
        code = msg.get_int()
        if code == SFTP_EOF:
            self._eof_at = offset
            self._data, self._data_start = b"", offset
            self._reset_reads()
            return
        _raise_status(code, msg.get_text())

    def _send_reads(self, request: int) -> None:
        limit = max(self._size, self._position + 1)
        while len(self._inflight) < self._window and (
            self._next_offset < limit or not self._inflight
        ):
            num = self._responses.send(CMD_READ, self._handle, int64(self._next_offset), request)
            self._inflight.append((self._next_offset, request, num))
            self._next_offset += request

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
            not isinstance(exc, OSError) or _is_connection_failure(exc)
        ):
            self._session.fail()
        if not isinstance(exc, Exception):
            return exc
        dropped = self._session is not None and not self._session.usable()
        if isinstance(exc, (OSError, EOFError)) or dropped or _is_connection_failure(exc):
            return self.client._error(exc, self.path, dropped=dropped, session=self._session)
        return exc

    # -- closing ---------------------------------------------------------------------------------

    def _close_handle(self) -> None:
        if self._handle is not None and self._session is not None:
            handle, self._handle = self._handle, None
            self._reset_reads()
            self._session.sftp._request(CMD_CLOSE, handle)

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
                self._flush_writes()
            self._close_handle()
            if self._temp is not None:
                self.client._publish(self._session, self._temp, self._target)
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
        the temp file, each bounded by the timeout; on a session that failed, wait for nothing
        and remove the temp file through another session."""
        if self._session is None:
            return
        self._buffer.clear()
        temp, self._temp = self._temp, None
        try:
            if self._session.usable():
                sftp = self._session.sftp
                while self._unacked:
                    with _refusals_ignored():
                        self._responses.wait_status(self._unacked.popleft())
                with _refusals_ignored():
                    self._close_handle()
                if temp is not None:
                    _remove_quietly(sftp, temp)
                    temp = None
        except BaseException as exc:
            self._failure(exc)
            if not isinstance(exc, Exception) or not _is_connection_failure(exc):
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
            self.client._call(self.path, lambda session: _remove_quietly(session.sftp, temp))

    def _release(self, *, broken: bool) -> None:
        session, self._session = self._session, None
        if session is not None and not self._borrowed:
            self.client._pool.release(session, broken=broken)
