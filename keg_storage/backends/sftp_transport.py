"""The SFTP transport: SSH connections, their pool, host keys and credentials, behind one
session API (:class:`SFTPTransport`) that owns reconnecting, retrying idempotent operations,
timeouts and mapping paramiko's and the OS's errors to keg_storage's.

:class:`~keg_storage.backends.sftp.SFTPStorage` and its files use only :class:`SFTPTransport`
and the :class:`Session` it leases; the requests that go past paramiko's public API are in
:mod:`keg_storage.backends.sftp_fastpath`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import re
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import (
    FileNotFoundInStorageError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    connection_failed,
    failure_cause,
    log_retry,
)
from ..secrets import Secret, reveal, scrub, scrubbed
from .forks import PerProcess
from .sftp_fastpath import chunk_pipe_class, invoke_subsystem, request_limits, session_class

try:
    import paramiko
except ImportError:  # pragma: no cover - exercised without the extra installed
    paramiko = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from paramiko import PKey, SSHClient, Transport

    from .base import StorageBackend

log = logging.getLogger("keg_storage.backends.sftp")
SSH_LOG = "keg_storage.backends.sftp.ssh"
"""The logger of our paramiko transports, sessions and channels. paramiko logs failures of its
transport thread with their tracebacks at ERROR; on its own loggers, an application without
logging configuration would see them printed (Python's last-resort handler). Here they reach
the application's handlers if it has any, and are dropped otherwise (the library idiom)."""
logging.getLogger(SSH_LOG).addHandler(logging.NullHandler())

T = TypeVar("T")

HOST_KEY_POLICIES = ("strict", "tofu", "auto_add")
DEFAULT_REQUEST_SIZE = 32 * 1024
"""Request size for servers that do not announce their limits (every server accepts 32 KiB)."""
MAX_REQUEST_SIZE = 255 * 1024
WINDOW_SIZE = 8 * 1024 * 1024
"""SSH channel window: how much the server may send before we acknowledge (bounds memory)."""


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a storage's connection pool in this process (see
    :meth:`~keg_storage.backends.sftp.SFTPStorage.pool_stats`)."""

    connections_opened: int
    """SSH connections opened since the pool was created (reconnections included)."""
    connections: int
    """SSH connections open now."""
    sessions_in_use: int
    """SFTP sessions leased now (by operations, open files and ``connection()`` blocks)."""
    idle: int
    """SFTP sessions open and free for the next operation."""


# -- the pool ---------------------------------------------------------------------------------


class Connection:
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


class Session:
    """One SFTP session on a pooled connection, leased to one thread at a time."""

    def __init__(self, conn: Connection, sftp: Any, read_size: int, write_size: int) -> None:
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


class PoolTimeout(TimeoutError):
    """No session of the pool became free in time."""


class Pool:
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
        self._idle: list[Session] = []
        self._connections: list[Connection] = []
        self._pending = 0
        self._cond = threading.Condition()
        self.connections_opened = 0

    def acquire(self) -> Session:
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
                target = self._slot()
                if target is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._cond.wait(remaining):
                    raise PoolTimeout(
                        f"no SFTP session became free within {self.timeout} s (pool_size="
                        f"{self.size}, sessions_per_connection={self.sessions_per_connection})"
                    )
        if target is None:
            try:
                target = Connection(self._connect())
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
        return self._session_on(target)

    def _slot(self) -> Connection | None:
        """The least busy open connection with room for another session, that session
        counted on it; None when none has room (called holding the lock)."""
        alive = [c for c in self._connections if c.alive()]
        target = min(alive, key=lambda c: c.sessions, default=None)
        if target is None or target.sessions >= self.sessions_per_connection:
            return None
        target.sessions += 1
        return target

    def _session_on(self, target: Connection) -> Session:
        """A new session on ``target``, whose slot is counted already."""
        try:
            return self._open_session(target)
        except BaseException as exc:
            # A session that could not open in time (or was interrupted half-open) leaves its
            # connection in doubt: closed, so that no one waits on it again.
            suspect = not isinstance(exc, Exception) or is_connection_failure(exc)
            with self._cond:
                target.sessions -= 1
                if suspect:
                    self._connections = [c for c in self._connections if c is not target]
                self._cond.notify()
            if suspect:
                target.close()
            raise

    def reserve(self, count: int) -> None:
        """Have ``count`` idle sessions ready, ahead of ``count`` operations at once (``sync``,
        ``upload_many``, ``download_many``): the missing ones opened as channels of the
        connections already open while they have room, and only when none is open, on one new
        connection. They then find a session each instead of opening a connection each. A
        channel costs a few round trips (1-1.5 ms here); a connection a TCP and SSH handshake
        and an authentication, 22 ms here alone and 40-300 ms when three open at once."""
        opened: list[Session] = []
        try:
            with self._cond:
                unconnected = not self._connections and not self._pending
            if unconnected and count > 0:
                opened.append(self.acquire())
            while True:
                with self._cond:
                    target = None if len(self._idle) + len(opened) >= count else self._slot()
                if target is None:
                    return
                opened.append(self._session_on(target))
        finally:
            for session in opened:
                self.release(session)

    def _open_session(self, conn: Connection) -> Session:
        """A new SFTP session; every wait on it (here and later) ends after ``timeout``."""
        channel = conn.transport.open_session(
            window_size=WINDOW_SIZE, max_packet_size=MAX_REQUEST_SIZE + 1024, timeout=self.timeout
        )
        channel.in_buffer = chunk_pipe_class()()  # before any data arrives
        # Without a timeout paramiko waits for every response forever (Channel.recv).
        channel.settimeout(self.timeout)
        invoke_subsystem(channel, "sftp", self.timeout)
        sftp = session_class()(channel)
        read_size = write_size = DEFAULT_REQUEST_SIZE
        limits = request_limits(sftp)
        if limits is not None:
            read_size = min(limits[0] or MAX_REQUEST_SIZE, self.max_request_size)
            write_size = min(limits[1] or MAX_REQUEST_SIZE, self.max_request_size)
        if isinstance(conn.transport.sock, QuickAckSocket):
            conn.transport.sock.quick_ack = False  # set up: see QuickAckSocket
        return Session(conn, sftp, read_size, write_size)

    def release(self, session: Session, *, broken: bool = False) -> None:
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

    def _drop(self, session: Session) -> None:
        session.close()
        session.conn.sessions -= 1
        if not session.conn.alive():
            session.conn.close()
            self._connections = [c for c in self._connections if c is not session.conn]

    def stats(self) -> PoolStats:
        """What the pool holds now (a consistent snapshot)."""
        with self._cond:
            return PoolStats(
                connections_opened=self.connections_opened,
                connections=len(self._connections),
                sessions_in_use=sum(c.sessions for c in self._connections) - len(self._idle),
                idle=len(self._idle),
            )

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


class QuickAckSocket(socket.socket):
    """A TCP socket that acknowledges what it receives at once while ``quick_ack`` holds
    (Linux's ``TCP_QUICKACK``, which the kernel drops after a while: set again after every
    read). sshd serves SFTP with Nagle's algorithm on; right after authentication it sends two
    small packets (a host keys notice, a debug message), then holds its answer to our first
    channel open until we acknowledge them, which a delayed ACK does after 40 ms: a new
    connection's first operation took 65-85 ms here, 21-35 ms with quick ACKs. Switched off
    once the first SFTP session is open: transfers gain nothing from an ACK per segment."""

    quick_ack = True

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        data = super().recv(bufsize, flags)
        if self.quick_ack:
            self.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        return data


def quick_acking(sock: socket.socket) -> socket.socket:
    """``sock`` as a :class:`QuickAckSocket` where the system has quick ACKs (Linux)."""
    if not hasattr(socket, "TCP_QUICKACK"):
        return sock
    timeout = sock.gettimeout()
    quick = QuickAckSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
    quick.settimeout(timeout)
    return quick


# -- host keys and credentials --------------------------------------------------------------


class HostKeyPolicy:
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


def normalise_pem(text: str) -> str:
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


def key_text(pkey: Any) -> str:
    return pkey.decode(errors="replace") if isinstance(pkey, bytes) else str(pkey)


def load_pkey(pkey: Secret[Any], passphrase: Secret[str] | None) -> PKey:
    """A paramiko key from a PKey, or from private key text (PEM or OpenSSH format).

    The text and passphrase stay in Secrets, revealed only in the call that parses them."""
    if isinstance(pkey.reveal(), paramiko.PKey):
        return pkey.reveal()
    pem = Secret(normalise_pem(key_text(pkey.reveal())))
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


# -- errors and retries -------------------------------------------------------------------------


class RetryableFailure(Exception):
    """Raised by one attempt of a retried operation (see :meth:`SFTPTransport.retrying`) when
    it may succeed if tried again: ``error`` is what the caller sees once no attempt is left,
    ``action`` how the retry log names the attempt (``read a.bin at byte 1024``)."""

    def __init__(self, error: StorageError, action: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.action = action


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection failed (not the server refusing a request)."""
    if paramiko is None:
        return False
    if isinstance(exc, (paramiko.SSHException, EOFError, socket.timeout, ConnectionError)):
        return not isinstance(exc, paramiko.AuthenticationException)
    return isinstance(exc, OSError) and exc.errno in (errno.EPIPE, errno.ECONNRESET, errno.EBADF)


@contextlib.contextmanager
def refusals_ignored() -> Iterator[None]:
    """Ignore the server's refusal of a request (an SFTP status), not a failed connection or a
    timeout: those leave the session out of step and must reach the caller."""
    try:
        yield
    except OSError as exc:
        if is_connection_failure(exc):
            raise


def remove_quietly(sftp: Any, path: str) -> None:
    """Remove ``path`` on the server unless the server refuses (it may be gone already)."""
    with refusals_ignored():
        sftp.remove(path)


def close_pool(pools: PerProcess[Pool]) -> None:
    """Close this process's connections, never those a forked child inherited."""
    pool = pools.current()
    if pool is not None:
        pool.close()


@dataclass(frozen=True, repr=False)
class Credentials:
    """How to log in; the secrets stay in :class:`~keg_storage.secrets.Secret` until the one
    call that passes them to paramiko."""

    username: str | None
    key_filename: str | Sequence[str] | None
    password: Secret[str] | None
    passphrase: Secret[str] | None
    pkey: Secret[PKey] | None
    allow_agent: bool
    look_for_keys: bool
    connect_kwargs: Secret[dict[str, Any]]


@dataclass(frozen=True)
class PoolLimits:
    """The sizes of a pool: see :class:`~keg_storage.backends.sftp.SFTPStorage`."""

    pool_size: int
    sessions_per_connection: int
    max_request_size: int


class SFTPTransport:
    """The session API of one :class:`~keg_storage.backends.sftp.SFTPStorage`.

    It connects (host key checked before authenticating, connection attempts retried), leases
    pooled sessions (one pool per process, closed when the storage is garbage-collected or the
    interpreter exits), runs operations on them with :meth:`call` (idempotent ones retried on a
    dropped connection) and maps every paramiko or OS error to keg_storage's with
    :meth:`error`. It holds its storage weakly: the pool must not keep the storage alive.
    """

    def __init__(
        self,
        backend: StorageBackend,
        host: str,
        port: int,
        *,
        credentials: Credentials,
        host_keys: HostKeyPolicy,
        timeout: float,
        retry: int,
        limits: PoolLimits,
    ) -> None:
        self.backend_ref = weakref.ref(backend)
        self.host = host
        self.port = port
        self.credentials = credentials
        self.host_keys = host_keys
        self.timeout = timeout
        self.retry = retry
        request_size = max(1024, min(limits.max_request_size, MAX_REQUEST_SIZE))
        pool_args = (limits.pool_size, limits.sessions_per_connection, request_size)
        self.pools: PerProcess[Pool] = PerProcess(lambda: Pool(self.connect, *pool_args, timeout))
        self.finalizer = weakref.finalize(backend, close_pool, self.pools)
        """Closes this process's connections when the storage is garbage-collected or the
        interpreter exits (what ``close()`` does)."""

    @property
    def backend(self) -> StorageBackend | None:
        return self.backend_ref()

    @property
    def pool(self) -> Pool:
        """This process's pool (a forked child opens its own connections on first use there,
        see :mod:`keg_storage.backends.forks`)."""
        return self.pools.get()

    def close(self) -> None:
        close_pool(self.pools)

    @property
    def endpoint(self) -> str:
        """``host:port`` of the server, as errors and retry logs name it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def host_key_name(self) -> str:
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    # -- retries ----------------------------------------------------------------------------------

    def retrying(
        self,
        attempt: Callable[[], T],
        *,
        attempts: int | None = None,
        before_retry: Callable[[int], None] | None = None,
    ) -> T:
        """Run ``attempt`` until it succeeds or raises anything but :class:`RetryableFailure`,
        at most ``attempts`` times (``retry + 1`` by default), logging each retry on
        ``keg_storage.retry``; ``before_retry(failed_attempt)`` runs before the next. When no
        attempt is left, the last failure's ``error`` is raised. The only retry loop of SFTP."""
        total = self.retry + 1 if attempts is None else attempts
        for number in range(1, total + 1):
            try:
                return attempt()
            except RetryableFailure as failure:
                if number == total:
                    raise failure.error from failure.error.__cause__
                self.log_retry(failure.action, failure.error, number + 1, total)
            if before_retry is not None:
                before_retry(number)
        raise AssertionError("unreachable")

    def log_retry(self, action: str, exc: BaseException, attempt: int, attempts: int) -> None:
        """Log a retry on ``keg_storage.retry``, with the cause of the failure before it."""
        cause = getattr(exc, "cause", None) or failure_cause(
            exc, connect_timeout=self.timeout, read_timeout=self.timeout
        )
        log_retry(self.backend, action, cause, self.endpoint, attempt, attempts)

    @staticmethod
    def retryable(error: StorageError, cause: BaseException, action: str) -> RetryableFailure:
        """The failure of one attempt that :meth:`retrying` tries again: ``error``, caused by
        ``cause``, is raised when no attempt is left."""
        error.__cause__ = cause
        return RetryableFailure(error, action)

    # -- error mapping ----------------------------------------------------------------------------

    def unreachable(self, exc: BaseException, key: str | None = None) -> StorageConnectionError:
        """``connection to SFTP at host:port failed: <cause>``."""
        return connection_failed(
            "SFTP",
            self.endpoint,
            exc,
            backend=self.backend,
            path=key,
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
        )

    def error(
        self,
        exc: BaseException,
        key: str | None,
        *,
        dropped: bool = False,
        session: Session | None = None,
    ) -> StorageError:
        """The keg_storage error for a paramiko/OS error about ``key``, met on ``session``."""
        if isinstance(exc, StorageError):
            return exc
        if dropped or is_connection_failure(exc):
            # paramiko's channels report a dead transport as "Socket is closed"; the transport
            # keeps what killed it ("Connection reset by peer").
            saved = session.conn.transport.saved_exception if session is not None else None
            return self.unreachable(saved if saved is not None else exc, key)
        code = getattr(exc, "errno", None)
        backend = self.backend
        if code == errno.ENOENT and key is not None:
            return FileNotFoundInStorageError(backend, key)
        if code in (errno.EACCES, errno.EPERM):
            return StoragePermissionError(f"permission denied: {exc}", backend=backend, path=key)
        return StorageError(f"SFTP operation failed: {exc}", backend=backend, path=key)

    def translate(self, exc: Exception, key: str | None) -> StorageError | None:
        """The error for an exception a primitive let out: paramiko's and failed connections
        are mapped as :meth:`error` does; anything else (a StorageError, the caller's own file
        object failing) goes through unchanged."""
        if isinstance(exc, StorageError):
            return None
        if is_connection_failure(exc) or (
            paramiko is not None and isinstance(exc, paramiko.SFTPError)
        ):
            return self.error(exc, key)
        return None

    def dropped(self, exc: BaseException, session: Session | None) -> bool:
        """Whether ``exc``, met on ``session``, means its connection is gone."""
        return is_connection_failure(exc) or (session is not None and not session.usable())

    # -- sessions ---------------------------------------------------------------------------------

    def lease(self, key: str | None) -> Session:
        """A session of the pool for an operation on ``key``; give it back with
        :meth:`release`. Connection failures name ``key``."""
        try:
            return self.pool.acquire()
        except PoolTimeout as exc:
            raise StorageConnectionError(
                f"connection to SFTP at {self.endpoint} failed: {exc}",
                backend=self.backend,
                path=key,
            ) from exc
        except StorageConnectionError as exc:
            if exc.path is not None or key is None:
                raise
            # Connecting knows no path: the error names the one this operation was about.
            error = StorageConnectionError(exc.reason, backend=self.backend, path=key)
            error.cause = exc.cause
            raise error from exc
        except StorageError:
            raise
        except Exception as exc:  # a new session that did not open (in time)
            if is_connection_failure(exc):
                raise self.error(exc, key, dropped=True) from exc
            raise

    def reserve(self, count: int) -> None:
        """:meth:`Pool.reserve`; a failure is only logged: the operations that need a session
        open their own and meet it there, each with its error."""
        try:
            self.pool.reserve(count)
        except Exception as exc:
            log.debug("opening %d SFTP sessions ahead failed: %s", count, exc)

    def release(self, session: Session, *, broken: bool = False) -> None:
        """Return a leased session; a ``broken`` one is closed with its connection."""
        self.pool.release(session, broken=broken)

    def call(
        self,
        key: str | None,
        operation: Callable[[Session], T],
        *,
        idempotent: bool = True,
        action: str = "request",
    ) -> T:
        """Run ``operation`` on a leased session, retrying idempotent ones on a dropped
        connection, and map paramiko's errors to keg_storage's. A session whose connection
        failed goes back to the pool as broken, so it is replaced, never reused."""

        def attempt() -> T:
            session = self.lease(key)
            try:
                result = operation(session)
            except StorageError:
                self.release(session)
                raise
            except Exception as exc:
                dropped = self.dropped(exc, session)
                self.release(session, broken=dropped)
                error = self.error(exc, key, dropped=dropped, session=session)
                if not dropped:
                    raise error from exc
                raise self.retryable(error, exc, f"{action} {key or ''}".strip()) from exc
            except BaseException:
                self.release(session, broken=True)
                raise
            self.release(session)
            return result

        return self.retrying(attempt, attempts=None if idempotent else 1)

    # -- connecting -------------------------------------------------------------------------------

    def connect(self) -> SSHClient:
        """A new authenticated SSH connection; host key checked before authenticating, and
        a failure to reach the server retried ``retry`` times."""
        return self.retrying(self.connect_once, before_retry=lambda n: time.sleep(0.1 * 2**n))

    def connect_once(self) -> SSHClient:
        """One connection attempt; a network failure raises :class:`RetryableFailure`."""
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        except OSError as exc:
            raise self.retryable(self.unreachable(exc), exc, "connect") from exc
        sock = quick_acking(sock)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # A server that vanished (no FIN, no RST) is noticed in about a minute, not two hours.
        for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        transports: list[Transport] = []
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(self.host_keys)  # type: ignore[arg-type]
        # paramiko's frames hold the revealed credentials: every exception out of connect() is
        # scrubbed (those frames cut off) before it leaves.
        try:
            client.connect(
                self.host, port=self.port, **self.connect_options(sock, transports.append)
            )
        except StorageConnectionError as exc:  # from the host key check
            client.close()
            raise StorageConnectionError(str(exc), backend=self.backend) from scrub(exc)
        except paramiko.AuthenticationException as exc:
            client.close()
            raise StorageConnectionError(
                f"authentication failed for user {self.credentials.username!r} at "
                f"{self.endpoint}: {exc}",
                backend=self.backend,
            ) from scrub(exc)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            # Before closing: the transport thread then fails on the closed socket, for no cause.
            cause = handshake_failure(exc, transports)
            client.close()
            raise self.retryable(self.unreachable(cause), scrub(exc), "connect") from exc
        except BaseException as exc:
            client.close()
            scrub(exc)
            raise
        return client

    def connect_options(
        self, sock: socket.socket, opened: Callable[[Transport], None]
    ) -> dict[str, Any]:
        """The arguments of ``SSHClient.connect``, secrets revealed: pass them on directly.
        ``opened`` receives the paramiko transport once it exists."""
        credentials = self.credentials
        options: dict[str, Any] = {
            "username": credentials.username,
            "key_filename": credentials.key_filename,
            "pkey": reveal(credentials.pkey),
            "password": reveal(credentials.password),
            "passphrase": reveal(credentials.passphrase),
            "allow_agent": credentials.allow_agent,
            "look_for_keys": credentials.look_for_keys,
            "timeout": self.timeout,
            "banner_timeout": self.timeout,
            "auth_timeout": self.timeout,
            "sock": sock,
            "transport_factory": self.transport_factory(opened),
        }
        options.update(credentials.connect_kwargs.reveal())
        return options

    def transport_factory(self, opened: Callable[[Transport], None]) -> Callable[..., Transport]:
        """paramiko's ``transport_factory``: fast ciphers first, the host key type we know
        asked for first, our logger, keepalives and timeouts."""
        known_types = self.host_keys.known_types(self.host_key_name)

        def create(sock: Any, **kwargs: Any) -> Transport:
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
            opened(transport)
            transport.set_keepalive(30)
            # Waits for a key re-exchange to end before sending (30 s by default).
            transport.clear_to_send_timeout = self.timeout
            return transport

        return create


def handshake_failure(exc: BaseException, transports: list[Transport]) -> BaseException:
    """What made the SSH handshake fail. paramiko's ``connect`` reports a handshake that did
    not end in time as "No existing session": the transport thread's own failure, if it has
    one by now, says why, else the server did not answer in time."""
    if str(exc) != "No existing session" or not transports:
        return exc
    saved = transports[0].saved_exception
    return saved if saved is not None else TimeoutError("the SSH handshake timed out")
