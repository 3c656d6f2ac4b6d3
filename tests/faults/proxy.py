"""A fault-injecting TCP proxy for the fault tests.

It listens on a free loopback port and forwards every connection to a real server. Faults can be
armed at any time: reset a connection once a number of bytes has crossed it in one direction,
stall a direction for a while, delay every chunk, or refuse new connections. No installable
server does this, so the test suite owns it (and tests it in test_proxy.py).
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["upstream", "downstream"]
"""``upstream``: client → server; ``downstream``: server → client."""

_CHUNK = 64 * 1024
CUT_CAUSE = "(?:Connection reset by peer|the server closed the connection)"
"""How a retry log line names a connection this proxy cut (a pattern): its reset, or the end
of the stream a client read before it."""


@dataclass
class _Cut:
    direction: Direction
    after_bytes: int
    seen: int = 0


@dataclass
class _Stall:
    direction: Direction
    after_bytes: int
    seconds: float
    seen: int = 0


@dataclass
class ProxyStats:
    connections: int = 0
    upstream_bytes: int = 0
    downstream_bytes: int = 0
    resets: int = 0
    stalls: int = 0
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def _reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0, so the peer sees a TCP RST, not an orderly end of stream."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class FaultProxy:
    """Forward ``127.0.0.1:<port>`` to ``(target_host, target_port)``, with faults on demand."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.stats = ProxyStats()
        self.latency = 0.0
        self.refuse_new = False
        self._cuts: list[_Cut] = []
        self._stalls: list[_Stall] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True, name="fault-proxy")
        self._thread.start()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def cut_after(self, after_bytes: int, direction: Direction = "downstream") -> None:
        """Reset the connection that carries the ``after_bytes``-th byte (counted from now,
        across all connections) in ``direction``; fires once."""
        with self._lock:
            self._cuts.append(_Cut(direction, after_bytes))

    def stall_after(
        self, after_bytes: int, seconds: float, direction: Direction = "downstream"
    ) -> None:
        """Hold ``direction`` for ``seconds`` once ``after_bytes`` more bytes crossed it; once."""
        with self._lock:
            self._stalls.append(_Stall(direction, after_bytes, seconds))

    def reset_all(self) -> None:
        """Reset every open connection (a server or network dying mid-transfer) within 0.1 s."""
        with self._lock:
            self._connections.clear()

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._cuts.clear()
            self._stalls.clear()
        self.latency = 0.0
        self.refuse_new = False

    @property
    def armed(self) -> bool:
        """Whether a cut or stall is still waiting to fire."""
        with self._lock:
            return bool(self._cuts or self._stalls)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.reset_all()
        self._thread.join(timeout=5)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refuse_new:
                with self.stats.lock:
                    self.stats.refused += 1
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                _reset(client)
                continue
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._connections.update((client, server))
            with self.stats.lock:
                self.stats.connections += 1
            threading.Thread(target=self._relay, args=(client, server), daemon=True).start()

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        """Copy both directions in one thread, so that a reset closes sockets no other thread
        is blocked on (closing a socket under a blocked recv sends no RST on Linux)."""
        pair = (client, server)
        sinks: dict[socket.socket, tuple[socket.socket, Direction]] = {
            client: (server, "upstream"),
            server: (client, "downstream"),
        }
        open_sources = set(pair)
        try:
            while open_sources and not self._stopped.is_set():
                with self._lock:
                    if client not in self._connections:
                        break
                ready, _, _ = select.select(list(open_sources), [], [], 0.1)
                for source in ready:
                    sink, direction = sinks[source]
                    data = source.recv(_CHUNK)
                    if not data:
                        open_sources.discard(source)
                        with contextlib.suppress(OSError):
                            sink.shutdown(socket.SHUT_WR)
                        continue
                    passed = self._apply_faults(data, direction, sink)
                    if passed is None:
                        with self.stats.lock:
                            self.stats.resets += 1
                        return
                    if self.latency:
                        time.sleep(self.latency)
                    sink.sendall(passed)
                    with self.stats.lock:
                        if direction == "upstream":
                            self.stats.upstream_bytes += len(passed)
                        else:
                            self.stats.downstream_bytes += len(passed)
        except OSError:
            pass
        finally:
            with self._lock:
                self._connections.difference_update(pair)
            for sock in pair:
                _reset(sock)

    def _apply_faults(self, data: bytes, direction: Direction, sink: socket.socket) -> bytes | None:
        """Send what may pass before a cut and return None (the caller resets), or stall, or
        pass everything."""
        with self._lock:
            cut = next((c for c in self._cuts if c.direction == direction), None)
            stall = next((s for s in self._stalls if s.direction == direction), None)
            if cut is not None:
                allowed = cut.after_bytes - cut.seen
                cut.seen += len(data)
                if cut.seen >= cut.after_bytes:
                    self._cuts.remove(cut)
                else:
                    cut = None
            if stall is not None:
                stall.seen += len(data)
                if stall.seen >= stall.after_bytes:
                    self._stalls.remove(stall)
                else:
                    stall = None
        if cut is not None:
            with contextlib.suppress(OSError):
                sink.sendall(data[: max(0, allowed)])
            return None
        if stall is not None:
            with self.stats.lock:
                self.stats.stalls += 1
            time.sleep(stall.seconds)
        return data
