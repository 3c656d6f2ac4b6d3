"""The fault proxy itself: it forwards faithfully and injects exactly the faults asked for."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from .proxy import FaultProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A server that sends the N bytes asked for by ``SEND N``, or else echoes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn, contextlib.suppress(ConnectionResetError, BrokenPipeError):
            request = conn.recv(64)
            if request.startswith(b"SEND "):
                size = int(request.split()[1])
                conn.sendall(bytes(i % 251 for i in range(size)))
                return
            conn.sendall(request)
            while data := conn.recv(65536):
                conn.sendall(data)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.shutdown(socket.SHUT_RDWR)
    listener.close()


def receive_all(sock: socket.socket) -> tuple[bytes, BaseException | None]:
    received = bytearray()
    try:
        while data := sock.recv(65536):
            received += data
    except OSError as exc:
        return bytes(received), exc
    return bytes(received), None


def test_forwards_both_ways(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(b"SEND 1000000")
            data, error = receive_all(sock)
        assert error is None
        assert data == bytes(i % 251 for i in range(1_000_000))
        assert proxy.stats.downstream_bytes == 1_000_000
        assert proxy.stats.connections == 1


@pytest.mark.parametrize("cut", [0, 1, 65_535, 65_536, 400_000])
def test_cut_resets_after_exactly_n_bytes(echo_port: int, cut: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.cut_after(cut, "downstream")
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(b"SEND 1000000")
            data, error = receive_all(sock)
        assert isinstance(error, ConnectionResetError)
        assert len(data) <= cut
        assert data == bytes(i % 251 for i in range(len(data)))
        assert proxy.stats.resets == 1
        assert not proxy.armed
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(b"SEND 1000")
            assert receive_all(sock) == (bytes(i % 251 for i in range(1000)), None)


def test_upstream_cut(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.cut_after(10, "upstream")
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(b"ECHO " + b"x" * 100)
            _, error = receive_all(sock)
        assert isinstance(error, ConnectionResetError)


def test_refuse_new_connections(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.refuse_new = True
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            _, error = receive_all(sock)
        assert isinstance(error, ConnectionResetError)
        assert proxy.stats.refused == 1
        proxy.clear()
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(b"SEND 10")
            assert receive_all(sock) == (bytes(range(10)), None)


def test_stall_and_latency(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        proxy.stall_after(1, 0.5, "downstream")
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            start = time.monotonic()
            sock.sendall(b"SEND 100")
            data, error = receive_all(sock)
        assert error is None and len(data) == 100
        assert time.monotonic() - start >= 0.5
        assert proxy.stats.stalls == 1


def test_reset_all_kills_open_connections(echo_port: int) -> None:
    with FaultProxy("127.0.0.1", echo_port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port)) as sock:
            sock.sendall(b"ECHO hello")
            assert sock.recv(100) == b"ECHO hello"
            proxy.reset_all()
            _, error = receive_all(sock)
        assert isinstance(error, ConnectionResetError)
