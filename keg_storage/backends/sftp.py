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
  and bypass two copying hot spots of paramiko (see :mod:`keg_storage.backends.sftp_fastpath`).
- **Atomic writes** through a temp file in the target directory and ``posix-rename``; copies use
  the server's ``copy-data`` extension when it has one.
- **Create-only writes** (``overwrite=False``) publish the temp file with
  ``hardlink@openssh.com``, which the server refuses when the name exists, then drop the temp
  name: of concurrent writers exactly one wins. ``if_match`` is refused before any transfer: no
  SFTP request compares and replaces in one step.

The layers: this module holds the backend's primitives; :mod:`~keg_storage.backends.sftp_file`
its file object; :mod:`~keg_storage.backends.sftp_paths` keys, confinement to ``base_path`` and
the atomic publish; :mod:`~keg_storage.backends.sftp_transport` connections, the pool, host keys,
credentials, retries and error mapping (the session API the others use);
:mod:`~keg_storage.backends.sftp_fastpath` the pipelined requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import logging
import posixpath
import stat as stat_module
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast

import arrow

from ..errors import (
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    MissingDependencyError,
    StorageConnectionError,
    StorageError,
)
from ..progress import ByteCounter, ForwardProgress, ignore_bytes
from ..secrets import Secret, hold
from .base import (
    FileMode,
    FileStat,
    InternalLinksStorageBackend,
    ListEntry,
    SecretKey,
)
from .bulk import BatchItem, Report
from .conditions import ALWAYS, Capabilities, WriteCondition
from .listing import is_directory, sorted_entries
from .publish import is_temp_name
from .sftp_bulk import get_batch, put_batch
from .sftp_fastpath import (
    OPEN_READ,
    close_handle,
    copy_data,
    lstat_many,
    open_handle,
    remove_many,
)
from .sftp_file import SFTPRemoteFile
from .sftp_paths import DIR_CHECK_ENTRIES, DIR_CHECK_TTL, RemotePaths
from .sftp_transport import (
    DEFAULT_REQUEST_SIZE,
    HOST_KEY_POLICIES,
    MAX_REQUEST_SIZE,
    SSH_LOG,
    WINDOW_SIZE,
    Credentials,
    HostKeyPolicy,
    PoolLimits,
    PoolStats,
    RetryableFailure,
    Session,
    SFTPTransport,
    is_connection_failure,
    load_pkey,
)

try:
    import paramiko
except ImportError:  # pragma: no cover - exercised without the extra installed
    paramiko = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from paramiko import SFTPClient, SSHClient

__all__ = ["SFTPLocation", "SFTPRemoteFile", "SFTPStorage"]
# Names this module had before the transport moved out, still importable from here.
__all__ += ["DEFAULT_REQUEST_SIZE", "DIR_CHECK_ENTRIES", "DIR_CHECK_TTL", "HOST_KEY_POLICIES"]
__all__ += ["MAX_REQUEST_SIZE", "PATH_MAX_BYTES", "SSH_LOG", "WINDOW_SIZE", "PoolStats"]

log = logging.getLogger(__name__)

PATH_MAX_BYTES = 4095
"""The longest remote path (Linux's PATH_MAX less the terminating NUL)."""


def missing_dependency() -> NoReturn:
    raise MissingDependencyError("SFTPStorage", "sftp", "paramiko")


@dataclass(frozen=True)
class SFTPLocation:
    """Where a key lives on the server (see :meth:`SFTPStorage.resolve`)."""

    host: str
    port: int
    path: str
    base_path: str
    kind: str = "sftp"


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

    Its ``transport`` (:class:`~keg_storage.backends.sftp_transport.SFTPTransport`) holds the
    connections, the pool, retries and error mapping; its ``paths``
    (:class:`~keg_storage.backends.sftp_paths.RemotePaths`) the keys' remote paths, the
    confinement to ``base_path`` and the atomic publish. Both serve the storage and its files.
    """

    capabilities = Capabilities(
        read_write=True,
        conditional_create=True,  # where the server offers hardlink@openssh.com (OpenSSH does)
        conditional_replace=False,
        server_side_copy=True,
        service_links=False,
        internal_links=True,
        multi_operation_links=True,
        metadata=False,
    )
    ordered_listing = True
    keeps_mtime = True  # in whole seconds (the protocol's precision)
    # The limits of the file systems OpenSSH serves (NAME_MAX, PATH_MAX): longer paths are
    # refused before a request instead of failing on the server with a bare "failure".
    max_segment_bytes = 255
    # upload_many and download_many send small files 64 at a time, pipelined on one session
    # (sftp_bulk).
    bulk_batch_files = 64

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
        held = Credentials(
            username, key_filename, hold(password), hold(passphrase), None, allow_agent,
            look_for_keys, Secret(dict(connect_kwargs or {})),
        )  # fmt: skip
        held_pkey = hold(pkey)
        held_secret_key: Secret[SecretKey] | None = hold(secret_key)
        del password, passphrase, pkey, secret_key, connect_kwargs
        super().__init__(linked_endpoint=linked_endpoint, secret_key=held_secret_key, name=name)
        check_options(host, host_key_policy, pool_size, sessions_per_connection, max_requests)
        self.host, self.port, self.username = host, int(port), username
        self.key_filename, self.allow_agent = key_filename, allow_agent
        self.look_for_keys, self.host_key_policy = look_for_keys, host_key_policy
        if known_hosts_fpath is None:
            known_hosts_fpath = str(Path("~/.ssh/known_hosts").expanduser())
        self.known_hosts_fpath = known_hosts_fpath
        self.paths = RemotePaths(self, base_path)
        self.max_key_bytes = PATH_MAX_BYTES - len(self.base_path.encode()) - 1
        self.timeout, self.max_requests, self.pool_size = timeout, max_requests, pool_size
        self.retry = 1 if retry is None else max(0, int(retry))
        if held_pkey is not None:
            held = dataclasses.replace(held, pkey=Secret(load_pkey(held_pkey, held.passphrase)))
        self.transport = SFTPTransport(
            self,
            host,
            self.port,
            credentials=held,
            host_keys=HostKeyPolicy(host_key_policy, known_hosts_fpath, known_host_keys),
            timeout=timeout,
            retry=self.retry,
            limits=PoolLimits(pool_size, sessions_per_connection, max_request_size),
        )

    def close(self) -> None:
        """Close every pooled connection; idempotent. The storage reconnects on next use."""
        self.transport.close()

    def pool_stats(self) -> PoolStats:
        """What this process's connection pool holds now: connections opened so far and open
        now, sessions in use and idle (for monitoring and tests; read-only)."""
        return self.transport.pool.stats()

    @contextlib.contextmanager
    def connection(self) -> Iterator[SFTPClient]:
        """Lease a pooled, health-checked paramiko ``SFTPClient`` for what this API lacks; it
        returns to the pool when the block ends (closed instead if its connection failed).
        Its ``extensions`` maps the SFTP extensions the server announced to their data.

        Paths are the server's, not relative to ``base_path``. Do not close the client or keep
        it after the block: it serves other operations next.
        """
        transport = self.transport
        session = transport.lease(None)
        broken = False
        try:
            yield session.sftp
        except BaseException as exc:
            broken = transport.dropped(exc, session)
            raise
        finally:
            session.sftp.chdir(None)  # the pool's operations rely on the default directory
            transport.release(session, broken=broken)

    def create_client(self) -> SSHClient:
        """A new connected, authenticated paramiko ``SSHClient`` (host key checked as for the
        pool), owned by the caller, who closes it; ``open_sftp()`` gives its SFTP client."""
        return self.transport.connect()

    @property
    def base_path(self) -> str:
        """The remote directory that is the root of every key (normalised)."""
        return self.paths.base_path

    @base_path.setter
    def base_path(self, base_path: str) -> None:
        self.paths.base_path = base_path

    @property
    def endpoint(self) -> str:
        """``host:port`` of the server, as errors and retry logs name it."""
        return self.transport.endpoint

    @property
    def retry_label(self) -> str:
        """How retry logs name this storage: ``sftp 'files'``."""
        return f"sftp {self.name!r}"

    def resolve(self, path: str) -> SFTPLocation:
        """Where ``path`` lives: host, port and absolute remote path (for debugging)."""
        return SFTPLocation(
            self.host, self.port, self.paths.remote(self._file_key(path)), self.base_path or "."
        )

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        """The StorageError for an exception a primitive let out (see
        :meth:`SFTPTransport.translate`), or None to let it through."""
        return self.transport.translate(error, path)

    # -- primitives ---------------------------------------------------------------------------

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        """One directory at a time, depth first, siblings in listing order; a pooled session
        is leased for each directory's read, never held between entries."""

        def read(directory: str) -> Callable[[Session], list[ListEntry]]:
            def read_on(session: Session) -> list[ListEntry]:
                if directory == prefix:  # below it, directories are real (lstat attributes)
                    self.paths.check_dir(session.sftp, self.paths.remote(prefix), prefix or None)
                try:
                    children = session.sftp.listdir_attr(self.paths.remote(directory))
                except OSError as exc:
                    if exc.errno == errno.ENOENT or (directory == prefix and not_a_dir(exc)):
                        return []
                    raise
                return directory_entries(directory, children)

            return read_on

        def walk(directory: str) -> Iterator[ListEntry]:
            listing = self.transport.call(directory or None, read(directory), action="list")
            for entry in listing:
                if recursive and is_directory(entry):
                    yield from walk(entry.name)
                else:
                    yield entry

        return walk(prefix)

    def _stat_attr(self, session: Session, key: str) -> Any:
        attr = self.paths.checked_attr(session.sftp, key)
        if stat_module.S_ISDIR(attr.st_mode or 0):
            raise FileNotFoundInStorageError(self, key)
        return attr

    def _stat(self, key: str) -> FileStat:
        attr = self.transport.call(
            key, lambda session: self._stat_attr(session, key), action="stat"
        )
        size = attr.st_size or 0
        etag = f'"{attr.st_mtime or 0:x}-{size:x}"'  # the server keeps none: LocalFS's form
        return FileStat(size=size, last_modified=mtime(attr), etag=etag)

    def _delete(self, key: str) -> None:
        log.info("Deleting remote file '%s'", key)

        def delete(session: Session) -> None:
            try:
                if stat_module.S_ISDIR(self.paths.checked_attr(session.sftp, key).st_mode or 0):
                    return  # a directory is not a file: nothing to do
                session.sftp.remove(self.paths.remote(key))
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return
                raise
            self.paths.prune(session.sftp, key)

        self.transport.call(key, delete, action="delete")

    def _open(
        self,
        key: str,
        mode: FileMode,
        extra_args: dict[str, Any],
        condition: WriteCondition = ALWAYS,
    ) -> SFTPRemoteFile:
        return SFTPRemoteFile(mode, key, self, condition=condition)

    def _copy(self, key: str, new_key: str, overwrite: bool = True) -> None:
        # A create-only copy is not retried: its publish may have landed before the drop.
        self.transport.call(
            key,
            lambda session: self._copy_on(session, key, new_key, overwrite),
            idempotent=overwrite,
            action="copy",
        )

    def _copy_on(self, session: Session, key: str, new_key: str, overwrite: bool = True) -> None:
        """Copy on the server where it can (``copy-data``), else through this process."""
        if not overwrite:
            self.paths.require_create_only(session, new_key)
        if "copy-data" in session.extensions:
            self._copy_data(session, key, new_key, overwrite)
        else:
            self._copy_stream(session, key, new_key, overwrite)

    def _copy_data(self, session: Session, key: str, new_key: str, overwrite: bool) -> None:
        """Server-side copy with the ``copy-data`` extension, into a temp file then published
        (create-only: hardlinked, see :meth:`RemotePaths.publish_new`)."""
        sftp = session.sftp
        self.paths.checked_attr(sftp, key)
        self.paths.check_target(sftp, new_key)
        source = open_handle(sftp, self.paths.remote(key), OPEN_READ)
        temp = None
        try:
            temp, target = self.paths.open_temp(sftp, posixpath.dirname(self.paths.remote(new_key)))
            try:
                copy_data(sftp, source, target)
            finally:
                close_handle(sftp, target)
            self.paths.publish(
                session, temp, self.paths.remote(new_key), overwrite=overwrite, key=new_key
            )
            temp = None
        finally:
            with contextlib.suppress(OSError, paramiko.SSHException):
                close_handle(sftp, source)
            if temp is not None:
                with contextlib.suppress(OSError, paramiko.SSHException):
                    sftp.remove(temp)

    def _copy_stream(self, session: Session, key: str, new_key: str, overwrite: bool) -> None:
        """Copy through this process: read and write on separate SFTP sessions (pipelined
        writes interleaved with reads on one session can deadlock paramiko)."""
        condition = WriteCondition(overwrite=overwrite)
        with SFTPRemoteFile(FileMode.read, key, self, session=session) as source:
            self._upload(cast(IO[bytes], source), new_key, {}, ignore_bytes, condition)

    def _move(self, key: str, new_key: str, overwrite: bool = True) -> None:
        if not overwrite:
            move_new = functools.partial(self._move_new, key=key, new_key=new_key)
            self.transport.call(key, move_new, idempotent=False, action="move")
            return

        def move(session: Session) -> None:
            sftp = session.sftp
            source, target = self.paths.remote(key), self.paths.remote(new_key)
            # A missing source (or a directory) fails here, so a rename's ENOENT is about the
            # target's directory: created then, not checked before every move.
            self._stat_attr(session, key)
            self.paths.check_target(sftp, new_key)
            try:
                try:
                    self.paths.publish(session, source, target)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        raise
                    self.paths.makedirs(sftp, posixpath.dirname(target))
                    self.paths.publish(session, source, target)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
                    raise
                log.info("rename of %s failed (%s); copying instead", key, exc)
                self._copy_on(session, key, new_key)
                sftp.remove(source)
            self.paths.prune(sftp, key)

        self.transport.call(key, move, idempotent=False, action="move")

    def _move_new(self, session: Session, key: str, new_key: str) -> None:
        """Create-only move: link the source at the target (refused by the server when a file
        is there), then remove the source. Where the server cannot link (another file
        system), a create-only copy then the removal."""
        sftp = session.sftp
        source, target = self.paths.remote(key), self.paths.remote(new_key)
        self._stat_attr(session, key)
        self.paths.check_target(sftp, new_key)
        try:
            try:
                self.paths.link_new(session, source, target, new_key)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                self.paths.makedirs(sftp, posixpath.dirname(target))
                self.paths.link_new(session, source, target, new_key)
        except FileExistsInStorageError:
            raise
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EACCES, errno.EPERM):
                raise
            log.info("hardlink of %s failed (%s); copying instead", key, exc)
            self._copy_on(session, key, new_key, overwrite=False)
        sftp.remove(source)
        self.paths.prune(sftp, key)

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        def transfer(count: ByteCounter) -> None:
            with SFTPRemoteFile(FileMode.read, key, self) as source:
                for piece in source.iter_pieces():
                    file_obj.write(piece)
                    count(len(piece))

        self._transfer_with_retry(transfer, file_obj, count_bytes, rewrite=True, action="download")

    def _upload(
        self,
        file_obj: IO[bytes],
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        condition: WriteCondition = ALWAYS,
        *,
        mtime: int | None = None,
    ) -> None:
        """Write through a temp file published whole by its close; ``mtime`` (seconds): the
        file's modification time, set in the round trip of the last write and the close
        (:meth:`_upload_keeping_mtime`)."""
        writers: list[SFTPRemoteFile] = []

        def transfer(count: ByteCounter) -> None:
            with SFTPRemoteFile(FileMode.write, key, self, condition=condition) as target:
                writers.append(target)
                send_from(file_obj, target, target.write_chunk_bytes, count)
                if mtime is not None:
                    target.publish_with_times(mtime)

        def may_restart() -> bool:
            """A create-only upload whose publish went out may have won before the drop: a
            restart would find its own file and report it as another's."""
            return condition.overwrite or not (writers and writers[-1].publish_sent)

        self._transfer_with_retry(
            transfer, file_obj, count_bytes, rewrite=False, action="upload", may_restart=may_restart
        )

    def _upload_keeping_mtime(self, file_obj: IO[bytes], key: str, mtime: arrow.Arrow) -> None:
        """The file published with the modification time ``mtime`` in whole seconds, set in
        the round trip of its last write and close, without a SETSTAT round trip after the
        publish (:meth:`.SFTPRemoteFile.publish_with_times`)."""
        self._upload(file_obj, key, {}, ignore_bytes, mtime=int(mtime.timestamp()))

    def _transfer_with_retry(
        self,
        transfer: Callable[[ByteCounter], None],
        file_obj: IO[bytes],
        count_bytes: ByteCounter,
        *,
        rewrite: bool,
        action: str,
        may_restart: Callable[[], bool] = lambda: True,
    ) -> None:
        """Run a whole-file transfer; when the connection drops and ``file_obj`` can seek, start
        over on a new connection (``retry`` times). A write is atomic, so a restarted upload
        publishes nothing twice; progress resumes counting only past what was reported."""
        start = start_position(file_obj)
        progress = ForwardProgress(count_bytes)

        def attempt() -> None:
            progress.reach(0)  # a restart counts again only past the furthest byte reported
            try:
                transfer(progress.advance)
            except StorageConnectionError as exc:
                if start is None or not may_restart():
                    raise
                raise RetryableFailure(exc, f"{action} {exc.path or ''}".strip()) from exc

        def rewind(failed_attempt: int) -> None:
            assert start is not None
            file_obj.seek(start)
            if rewrite:
                file_obj.truncate()

        self.transport.retrying(attempt, before_retry=rewind)

    def _reserve_sessions(self, count: int) -> None:
        """Open ``count`` sessions ahead, as channels of one connection (:meth:`.Pool.reserve`):
        measured here, one connection carrying the four sessions of a sync of 4 x 64 MiB was as
        fast as four connections, and each connection a copy opened itself cost it 40-300 ms
        first; ``upload_many`` of 500 x 4 KiB with 8 jobs took 0.09 s instead of 0.14 s."""
        self.transport.reserve(count)

    def _put_batch(
        self, items: list[BatchItem], report: Report, concurrency: int = 1
    ) -> dict[int, Exception]:
        """:func:`.sftp_bulk.put_batch`: the files' requests pipelined, stage by stage, on one
        session (whatever the ``concurrency``)."""
        return put_batch(self, items, report)

    def _get_batch(self, items: list[BatchItem], report: Report) -> dict[int, Exception]:
        """:func:`.sftp_bulk.get_batch`: the files' requests pipelined, stage by stage."""
        return get_batch(self, items, report)

    def _delete_many(self, keys: list[str]) -> dict[str, Exception]:
        """On one session, pipelined (:func:`.sftp_fastpath.lstat_many`, then
        :func:`~.sftp_fastpath.remove_many`): one round trip for the LSTATs of every key and one
        for the REMOVEs of the files, instead of two per key; then the directories left empty
        are pruned. Confinement as for :meth:`_delete`: each directory is checked (once), and a
        symlink's target too. A dropped connection retries the whole, which is idempotent."""
        log.info("Deleting %d remote files", len(keys))
        delete = functools.partial(self._delete_on, keys=keys)
        return self.transport.call(None, delete, action="delete")

    def _delete_on(self, session: Session, keys: list[str]) -> dict[str, Exception]:
        sftp = session.sftp
        failed: dict[str, Exception] = {}
        checked = []
        for key in keys:
            with self._refusal_of(key, failed):
                self.paths.check_dir(sftp, posixpath.dirname(self.paths.remote(key)), key)
                checked.append(key)
        files = []
        answers = lstat_many(sftp, [self.paths.remote(key) for key in checked])
        for key, attr in zip(checked, answers, strict=True):
            with self._refusal_of(key, failed):
                if isinstance(attr, OSError):
                    raise attr
                if stat_module.S_ISLNK(attr.st_mode or 0):
                    attr = self.paths.checked_attr(sftp, key)  # the target, if it stays inside
                if not stat_module.S_ISDIR(attr.st_mode or 0):  # a directory is not a file
                    files.append(key)
        refusals = remove_many(sftp, [self.paths.remote(key) for key in files])
        for key, refusal in zip(files, refusals, strict=True):
            with self._refusal_of(key, failed):
                if refusal is not None:
                    raise refusal
        emptied = {posixpath.dirname(key): key for key in files if key not in failed}
        for key in emptied.values():
            self.paths.prune(sftp, key)
        return failed

    @contextlib.contextmanager
    def _refusal_of(self, key: str, failed: dict[str, Exception]) -> Iterator[None]:
        """Record in ``failed`` the server's refusal about ``key`` (a missing file is none); a
        failed connection goes on to the retry of :meth:`SFTPTransport.call`."""
        try:
            yield
        except StorageError as exc:
            failed[key] = exc
        except OSError as exc:
            if is_connection_failure(exc):
                raise
            if exc.errno != errno.ENOENT:
                failed[key] = self.transport.error(exc, key)


def check_options(
    host: str, host_key_policy: str, pool_size: int, sessions_per_connection: int, max_requests: int
) -> None:
    """Refuse the options :class:`SFTPStorage` cannot work with (and a missing paramiko)."""
    if paramiko is None:
        missing_dependency()
    if not host:
        raise ValueError("SFTPStorage needs a host")
    if host_key_policy not in HOST_KEY_POLICIES:
        raise ValueError(
            f"host_key_policy must be one of {', '.join(HOST_KEY_POLICIES)}, "
            f"not {host_key_policy!r}"
        )
    if pool_size < 1 or sessions_per_connection < 1 or max_requests < 1:
        raise ValueError("pool_size, sessions_per_connection and max_requests must be >= 1")


def send_from(
    file_obj: IO[bytes], target: SFTPRemoteFile, chunk_size: int, count: ByteCounter
) -> None:
    """Write the rest of ``file_obj`` to ``target`` in reads of ``chunk_size``: a file smaller
    than that in one read, a larger one through one buffer reused by ``readinto`` (no new bytes
    object per chunk), allocated only then (a zeroed ``chunk_size`` buffer costs more than
    sending a small file)."""
    readinto = getattr(file_obj, "readinto", None)
    while chunk := file_obj.read(chunk_size):
        target.write(chunk)
        count(len(chunk))
        if len(chunk) == chunk_size and readinto is not None:
            view = memoryview(bytearray(chunk_size))
            while size := readinto(view):
                target.write(view[:size])
                count(size)
            return


def start_position(file_obj: IO[bytes]) -> int | None:
    """Where a transfer starts in ``file_obj``, or None if it cannot seek back there."""
    try:
        return file_obj.tell() if file_obj.seekable() else None
    except (AttributeError, OSError, ValueError):
        return None


def directory_entries(directory: str, children: Iterable[Any]) -> list[ListEntry]:
    """The files (not temp files, symlinks or specials) and sub-directories (named with their
    trailing ``/``) of the directory ``directory`` from its attributes, in listing order.
    Files written in the same second share one Arrow, converted once."""
    entries = []
    moments: dict[int, arrow.Arrow] = {}
    for attr in children:
        name = directory + attr.filename
        mode = attr.st_mode or 0
        if stat_module.S_ISDIR(mode):
            entries.append(ListEntry(name + "/", None, 0))
        elif stat_module.S_ISREG(mode) and not is_temp_name(attr.filename):
            modified = moments.get(attr.st_mtime)
            if modified is None:
                modified = moments[attr.st_mtime] = mtime(attr)
            entries.append(ListEntry(name, modified, attr.st_size or 0))
    return sorted_entries(entries)


def not_a_dir(exc: OSError) -> bool:
    return exc.errno in (None, errno.ENOTDIR) and not is_connection_failure(exc)


def mtime(attr: Any) -> arrow.Arrow:
    """The modification time of ``attr`` (SFTP: whole seconds) as a UTC Arrow; directly from the
    timestamp, half the cost of ``arrow.get(...).to("UTC")``, which counts in long listings."""
    return arrow.Arrow.utcfromtimestamp(attr.st_mtime or 0)
