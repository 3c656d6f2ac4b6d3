"""The SFTP session API (keg_storage.backends.sftp_transport) through its public names: the pool's
statistics, the one retry loop and the error mapping behind ``SFTPStorage._translate_error``."""

from __future__ import annotations

import io
import logging
import socket

import paramiko
import pytest

from keg_storage import FileNotFoundInStorageError, StorageConnectionError, StorageError
from keg_storage.backends.sftp import PoolStats, SFTPStorage
from keg_storage.backends.sftp_transport import QuickAckSocket
from tests.fixtures.backend_sftp import make_storage
from tests.servers.sshd import SSHServer


def test_pool_stats_tell_connections_and_sessions(backend_sftp: SFTPStorage) -> None:
    assert backend_sftp.pool_size == 8  # what the link view's transfer cap is half of
    backend_sftp.upload(io.BytesIO(b"x"), "a.txt")
    assert backend_sftp.pool_stats() == PoolStats(
        connections_opened=1, connections=1, sessions_in_use=0, idle=1
    )
    with backend_sftp.open("a.txt"), backend_sftp.open("a.txt"):  # a second connection
        assert backend_sftp.pool_stats() == PoolStats(2, 2, sessions_in_use=2, idle=0)
    assert backend_sftp.pool_stats() == PoolStats(2, 2, sessions_in_use=0, idle=2)
    backend_sftp.close()
    assert backend_sftp.pool_stats() == PoolStats(2, 0, sessions_in_use=0, idle=0)


def test_sessions_reserved_ahead_are_channels_of_the_open_connection(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    """What ``sync`` and the bulk transfers ask for before they start: idle sessions on the
    connection already open (on one new connection when none is), at most
    ``sessions_per_connection`` of them, never a connection of their own; the operations then
    take them without connecting."""
    with make_storage(
        sftp_server, sftp_base_path, pool_size=2, sessions_per_connection=3
    ) as storage:
        storage._reserve_sessions(4)
        assert storage.pool_stats() == PoolStats(1, 1, sessions_in_use=0, idle=3)
        storage.upload(io.BytesIO(b"x"), "a.txt")
        storage._reserve_sessions(4)
        assert storage.pool_stats() == PoolStats(1, 1, sessions_in_use=0, idle=3)
        with storage.open("a.txt") as first, storage.open("a.txt") as second:
            assert first.read() + second.read() == b"xx"
            assert storage.pool_stats() == PoolStats(1, 1, sessions_in_use=2, idle=1)
        storage._reserve_sessions(2)  # enough are idle already
        assert storage.pool_stats() == PoolStats(1, 1, sessions_in_use=0, idle=3)


@pytest.mark.skipif(not hasattr(socket, "TCP_QUICKACK"), reason="Linux's TCP_QUICKACK")
def test_quick_acks_only_while_a_connection_is_set_up(backend_sftp: SFTPStorage) -> None:
    """Acknowledged at once while the connection and its first session open (sshd's answer to
    the channel open waits for it, 40 ms otherwise); then as TCP usually does."""
    quick: list[bool] = []
    recv = QuickAckSocket.recv

    def recording_recv(sock: QuickAckSocket, bufsize: int, flags: int = 0) -> bytes:
        quick.append(sock.quick_ack)
        return recv(sock, bufsize, flags)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(QuickAckSocket, "recv", recording_recv)
        backend_sftp.upload(io.BytesIO(b"x" * 100_000), "a.txt")
        assert backend_sftp.exists("a.txt")
    assert quick[0] and not quick[-1]
    assert quick == sorted(quick, reverse=True)  # never switched on again


def test_retry_loop_logs_each_retry_and_raises_the_last_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What every SFTP retry goes through: a RetryableFailure is tried again ``retry`` times,
    each retry logged with its cause, and the last failure's error is what the caller sees;
    anything else goes through at once."""
    storage = SFTPStorage("127.0.0.1", "user", port=1, known_host_keys="", retry=2)
    attempts: list[int] = []
    rewinds: list[int] = []

    def attempt() -> None:
        attempts.append(len(attempts) + 1)
        cause = ConnectionResetError("Connection reset by peer")
        error = storage.transport.error(cause, "a.txt")
        raise storage.transport.retryable(error, cause, f"read a.txt at byte {len(attempts)}")

    with (
        caplog.at_level(logging.WARNING, "keg_storage.retry"),
        pytest.raises(StorageConnectionError) as excinfo,
    ):
        storage.transport.retrying(attempt, before_retry=rewinds.append)
    assert attempts == [1, 2, 3] and rewinds == [1, 2]
    assert str(excinfo.value) == (
        "connection to SFTP at 127.0.0.1:1 failed: Connection reset by peer "
        "(backend SFTPStorage 'sftp', path 'a.txt')"
    )
    assert isinstance(excinfo.value.__cause__, ConnectionResetError)
    assert [record.getMessage() for record in caplog.records] == [
        "sftp 'sftp': read a.txt at byte 1 failed (Connection reset by peer) at 127.0.0.1:1; "
        "retrying (attempt 2 of 3)",
        "sftp 'sftp': read a.txt at byte 2 failed (Connection reset by peer) at 127.0.0.1:1; "
        "retrying (attempt 3 of 3)",
    ]

    def refused() -> None:
        attempts.append(0)
        raise FileNotFoundInStorageError(storage, "b.txt")

    attempts.clear()
    with pytest.raises(FileNotFoundInStorageError):
        storage.transport.retrying(refused)
    assert attempts == [0]


def test_translate_maps_paramiko_and_connection_errors_only() -> None:
    """What ``SFTPStorage._translate_error`` (the base class's error hook) answers, through
    the transport's mapping: failed connections and paramiko's errors become keg_storage's,
    the caller's own errors and keg_storage's go through."""
    storage = SFTPStorage("127.0.0.1", "user", port=1, known_host_keys="")
    translate = storage.transport.translate
    dropped = translate(ConnectionResetError("Connection reset by peer"), "a.txt")
    assert isinstance(dropped, StorageConnectionError)
    assert str(dropped) == (
        "connection to SFTP at 127.0.0.1:1 failed: Connection reset by peer "
        "(backend SFTPStorage 'sftp', path 'a.txt')"
    )
    refused = translate(paramiko.SFTPError("Garbage packet received"), "a.txt")
    assert type(refused) is StorageError
    assert str(refused) == (
        "SFTP operation failed: Garbage packet received (backend SFTPStorage 'sftp', path 'a.txt')"
    )
    assert translate(OSError("source broke"), "a.txt") is None
    assert translate(FileNotFoundInStorageError(storage, "a.txt"), "a.txt") is None
