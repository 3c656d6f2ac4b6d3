"""The connections of S3's small direct requests (:mod:`.s3_direct`): keep-alive sockets of
this module's own, each exchange framed by h11.

Why not the client's urllib3 pool, which the direct GETs use: for a 4 KiB PUT, botocore's HTTP
session, urllib3 and http.client cost about 0.35 ms of CPU (the pool's bookkeeping, header
objects, the ``email``-based parsing of the answer), most of a direct request's; an exchange
here costs about 0.05 ms. From 8 threads, that decides how many small files a second this
process can send.

Only an endpoint the client reaches without a proxy (from its config or the environment) gets
these; the connections are set up as the client sets up its own: its TLS verification (its CA
bundle, or none with ``verify=False``), its client certificate, its socket options, its connect
and read timeouts, at most ``max_pool_connections`` kept idle. A request that gets no whole
answer here (a refused or cut connection, a timeout, an answer h11 cannot frame) is left to the
caller, which sends it through the client; one that meets a kept connection the server had
closed goes once more on a new one, as urllib3 does.
"""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterable
from typing import Any

try:
    import h11
    from botocore.httpsession import create_urllib3_context, get_cert_path
except ImportError:  # pragma: no cover - the s3 extra brings both; without h11, the client's pool
    h11 = None  # type: ignore[assignment]

MAX_ANSWER_BODY = 64 * 1024
"""The most bytes of an answer's body read to keep its connection (an error's XML); a larger
body closes the connection instead."""

_RECEIVE_SIZE = 64 * 1024


class NoAnswer(Exception):
    """The request got no whole answer on its connection."""


class Connection:
    """One keep-alive socket and its h11 state."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.http = h11.Connection(h11.CLIENT)
        self.answered = False
        """Whether any byte of the current exchange's answer came (a kept connection that fails
        before any did was closed by the server while it was idle)."""

    def status(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> int:
        """Send the request; the status of its answer, whose body is read and dropped. Raises
        :class:`NoAnswer` or ``OSError`` when no whole answer came."""
        http = self.http
        data = http.send(h11.Request(method=method, target=target, headers=list(headers)))
        if body:
            data += http.send(h11.Data(data=body))
        self.sock.sendall(data + http.send(h11.EndOfMessage()))
        status, length = 0, 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                received = self.sock.recv(_RECEIVE_SIZE)
                http.receive_data(received)
                self.answered = self.answered or bool(received)
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                length += len(event.data)
                if length > MAX_ANSWER_BODY:
                    raise NoAnswer(f"an answer's body above {MAX_ANSWER_BODY} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return status
            elif isinstance(event, h11.ConnectionClosed):
                raise NoAnswer("the server closed the connection")

    def reusable(self) -> bool:
        """Whether the exchange ended with the connection kept open, ready for the next."""
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
            return True
        return False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class KeepAliveConnections:
    """The idle connections to one endpoint, shared by the threads of one process."""

    def __init__(
        self,
        url: str,
        context: ssl.SSLContext | None,
        socket_options: list[tuple[int, int, Any]],
        timeouts: tuple[float, float],
        max_idle: int,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.address = (parts.hostname or "", parts.port or (443 if context else 80))
        self.context = context
        self.socket_options = socket_options
        self.connect_timeout, self.read_timeout = timeouts
        self.max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()

    def status(
        self, method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes = b""
    ) -> int | None:
        """Send the request on an idle connection (or a new one): the status of its answer,
        None when it got no whole answer (see the module)."""
        headers = list(headers)
        kept = self._take()
        if kept is not None:
            try:
                return self._exchange(kept, method, target, headers, body)
            except (OSError, NoAnswer, h11.ProtocolError):
                if kept.answered:  # a cut answer; else closed by the server while idle
                    return None
        try:
            return self._exchange(self._connect(), method, target, headers, body)
        except (OSError, NoAnswer, h11.ProtocolError):
            return None

    def _exchange(
        self,
        conn: Connection,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> int:
        conn.answered = False
        try:
            status = conn.status(method, target, headers, body)
        except BaseException:
            conn.close()
            raise
        if conn.reusable():
            self._keep(conn)
        else:
            conn.close()
        return status

    def _connect(self) -> Connection:
        sock = socket.create_connection(self.address, timeout=self.connect_timeout)
        try:
            for level, option, value in self.socket_options:
                sock.setsockopt(level, option, value)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.address[0])
            sock.settimeout(self.read_timeout)
        except BaseException:
            sock.close()
            raise
        return Connection(sock)

    def _take(self) -> Connection | None:
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _keep(self, conn: Connection) -> None:
        with self._lock:
            if len(self._idle) < self.max_idle:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close the idle connections (new ones open on next use)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def connections_like_the_clients(
    http_session: Any, config: Any, url: str
) -> KeepAliveConnections | None:
    """Connections to ``url``'s endpoint set up as the client's (``http_session``, its
    botocore ``URLLib3Session``, and ``config``, its ``Config``); None when the client reaches
    it through a proxy, its session is not one this module knows how to read, or h11 is not
    installed."""
    if h11 is None:
        return None
    try:
        if http_session._proxy_config.proxy_url_for(url):
            return None
        verify, cert_file, key_file = (
            http_session._verify,
            http_session._cert_file,
            http_session._key_file,
        )
        socket_options = list(http_session._socket_options)
    except AttributeError:
        return None
    https = url.lower().startswith("https:")
    context = tls_context(verify, cert_file, key_file) if https else None
    timeouts = (config.connect_timeout, config.read_timeout)
    return KeepAliveConnections(url, context, socket_options, timeouts, config.max_pool_connections)


def tls_context(verify: Any, cert_file: str | None, key_file: str | None) -> ssl.SSLContext:
    """The TLS settings botocore gives urllib3: its context, the server's certificate checked
    against the CA bundle ``verify`` names (botocore's own bundle for True) with its host name,
    or not at all for ``verify=False``; the client certificate if any."""
    context = create_urllib3_context()
    if verify:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        path = get_cert_path(verify)
        if not path:
            context.load_default_certs()
        elif os.path.isdir(path):
            context.load_verify_locations(capath=path)
        else:
            context.load_verify_locations(cafile=path)
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context
