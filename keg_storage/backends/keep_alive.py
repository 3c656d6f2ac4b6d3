"""HTTP requests on keep-alive connections of keg_storage's own, each exchange framed by h11:
the direct requests of S3 (:mod:`.s3_direct`) and Azure (:mod:`.azure_direct`), whose answers'
bodies are small or, for Azure's first GET of a download, a chunk held whole as the SDK holds
it (:attr:`Request.answer_limit`).

Why not the SDKs' pools (urllib3 under botocore, requests under azure-core): for a 4 KiB PUT,
an HTTP session, urllib3 and http.client cost about 0.35 ms of CPU (the pool's bookkeeping,
header objects, the ``email``-based parsing of the answer), most of a direct request's; an
exchange here costs about 0.05 ms. From 8 threads, that decides how many small files a second
this process can send; :meth:`KeepAliveConnections.succeeded` sends many from one thread.

Each backend sets the connections up as its SDK sets up its own (TLS verification and CA
bundle, client certificate, socket options, connect and read timeouts) and only where the SDK
uses no proxy. A request that gets no whole answer here (a refused or cut connection, a
timeout, an answer h11 cannot frame) is left to the caller, which sends it through the SDK;
one that meets a kept connection the server had closed goes once more on a new one, as urllib3
does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, NamedTuple

try:
    import h11
except ImportError:  # pragma: no cover - the s3 and azure extras bring it; without, the SDKs' pools
    h11 = None  # type: ignore[assignment]

MAX_ANSWER_BODY = 64 * 1024
"""The most bytes of an answer's body read by default (an error's XML); a larger body closes
the connection instead and the request has no answer."""

_RECEIVE_SIZE = 64 * 1024

REST_AFTER_FAILURE = 30.0
"""Seconds no request is sent on these connections after a connection could not be opened
(refused, unreachable, no connection in time) or an answer did not come in time: the callers
send their requests through their SDKs meanwhile, with its retries, so that a dead or silent
server costs one try more than the SDK's, not one more per request. A connection cut or
closed (which costs no wait) rests nothing."""


class NoAnswer(Exception):
    """The request got no whole answer on its connection."""


class Request(NamedTuple):
    """One request, signed."""

    method: str
    target: str
    """The path and query."""
    headers: list[tuple[str, str]]
    body: bytes
    answer_limit: int = MAX_ANSWER_BODY
    """The most bytes of the answer's body taken (a larger one: no answer)."""


class Answer(NamedTuple):
    """A whole answer."""

    status: int
    headers: list[tuple[bytes, bytes]]
    """As h11 gives them: names in lower case."""
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of the header ``name`` (in lower case), None without it."""
        wanted = name.encode("ascii")
        for key, value in self.headers:
            if key == wanted:
                return value.decode("latin-1")
        return None


Answered = Callable[[int, "int | None"], None]
"""Told each request's number and the status of its answer (None: no whole answer came)."""

Resent = Callable[[str, str, BaseException], None]
"""Told of a request sent alone that got no answer, which the caller sends again through its
SDK: the request's method, the key (the service's own) and the failure."""

_FAILURES = (OSError, NoAnswer, asyncio.TimeoutError)


def telling(resent: Resent | None, method: str, key: str) -> Callable[[BaseException], None] | None:
    """What tells ``resent`` (if any) that the request ``method`` of ``key`` got no answer:
    the ``failed`` of :meth:`KeepAliveConnections.answer`."""
    if resent is None:
        return None
    return lambda error: resent(method, key, error)


class Framing:
    """One connection's HTTP/1.1 state (h11): the bytes of each request, and its answer read
    from the bytes that come, whatever carries them (a blocking socket or an asyncio stream)."""

    def __init__(self) -> None:
        self.http = h11.Connection(h11.CLIENT)
        self.answered = False
        """Whether any byte of the current request's answer came (a kept connection that fails
        before any did was closed by the server while it was idle)."""
        self._response: Any = None
        self._body: list[bytes] = []
        self._length = 0
        self._limit = MAX_ANSWER_BODY

    def request(self, request: Request) -> bytes:
        """The bytes to send for ``request``."""
        self.answered, self._response, self._body, self._length = False, None, [], 0
        self._limit = request.answer_limit
        http = self.http
        data = http.send(
            h11.Request(method=request.method, target=request.target, headers=request.headers)
        )
        if request.body:
            data += http.send(h11.Data(data=request.body))
        return data + http.send(h11.EndOfMessage())

    def receive(self, data: bytes) -> Answer | None:
        """Take the bytes received (``b""``: the end of the stream): the answer once it is
        whole, None while more bytes are needed. Raises :class:`NoAnswer` when it cannot be
        whole or its body is above the request's ``answer_limit``."""
        try:
            return self._answer_of(data)
        except h11.ProtocolError as error:
            unframed = error
        if not data:  # the stream ended in the middle of an answer, or before it
            raise NoAnswer("the server closed the connection")
        raise NoAnswer(f"an answer h11 cannot frame: {unframed}") from unframed

    def _answer_of(self, data: bytes) -> Answer | None:
        """:meth:`receive`, h11's refusals raised as they come."""
        self.http.receive_data(data)
        self.answered = self.answered or bool(data)
        while True:
            event = self.http.next_event()
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                self._response = event
            elif isinstance(event, h11.Data):
                self._length += len(event.data)
                if self._length > self._limit:
                    raise NoAnswer(f"an answer's body above {self._limit} bytes")
                self._body.append(event.data)
            elif isinstance(event, h11.EndOfMessage):
                response = self._response
                return Answer(response.status_code, response.headers, b"".join(self._body))
            elif isinstance(event, h11.ConnectionClosed):
                raise NoAnswer("the server closed the connection")

    def reusable(self) -> bool:
        """Whether the exchange ended with the connection kept open, ready for the next."""
        if self.http.our_state is h11.DONE and self.http.their_state is h11.DONE:
            self.http.start_next_cycle()
            return True
        return False


class Connection:
    """One blocking keep-alive socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.framing = Framing()

    def answer(self, request: Request) -> Answer:
        """Send the request; its answer. Raises :class:`NoAnswer` or ``OSError`` when no whole
        answer came."""
        self.sock.sendall(self.framing.request(request))
        answer = None
        while answer is None:
            answer = self.framing.receive(self.sock.recv(_RECEIVE_SIZE))
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class Streams:
    """One keep-alive connection as asyncio streams."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framing = Framing()

    async def answer(self, request: Request, read_timeout: float) -> Answer:
        """As :meth:`Connection.answer`, each read waited for at most ``read_timeout``."""
        self.writer.write(self.framing.request(request))
        await self.writer.drain()
        answer = None
        while answer is None:
            received = await asyncio.wait_for(self.reader.read(_RECEIVE_SIZE), read_timeout)
            answer = self.framing.receive(received)
        return answer

    def close(self) -> None:
        self.writer.close()


class KeepAliveConnections:
    """The idle connections to one endpoint, shared by the threads of one process; and the
    connections of requests sent many at once from one thread."""

    def __init__(
        self,
        url: str,
        context: ssl.SSLContext | None,
        socket_options: list[tuple[int, int, Any]],
        timeouts: tuple[float, float],
        max_idle: int,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if context else 80)
        self.context = context
        self.socket_options = socket_options
        self.connect_timeout, self.read_timeout = timeouts
        self.max_idle = max_idle
        self._idle: list[Connection] = []
        self._lock = threading.Lock()
        self._resting_until = 0.0

    def answer(
        self, request: Request, failed: Callable[[BaseException], None] | None = None
    ) -> Answer | None:
        """Send the request on an idle connection (or a new one): its answer, None when it got
        no whole answer (see the module), ``failed`` told why; None without sending it while
        these connections rest (:data:`REST_AFTER_FAILURE`)."""
        if self.resting():
            return None
        kept = self._take()
        if kept is not None:
            try:
                return self._exchange(kept, request)
            except _FAILURES as error:
                if kept.framing.answered:  # a cut answer; else closed by the server while idle
                    self._failed(error, failed)
                    return None
        try:
            conn = self._connect()
        except _FAILURES as error:
            self._failed(error, failed, unreachable=True)
            return None
        try:
            return self._exchange(conn, request)
        except _FAILURES as error:
            self._failed(error, failed)
            return None

    def resting(self) -> bool:
        """Whether these connections rest (see :data:`REST_AFTER_FAILURE`)."""
        return time.monotonic() < self._resting_until

    def _failed(
        self,
        error: BaseException,
        failed: Callable[[BaseException], None] | None = None,
        *,
        unreachable: bool = False,
    ) -> None:
        """A request got no answer: rest after a wait (:data:`REST_AFTER_FAILURE`), and tell
        ``failed`` why."""
        if unreachable or isinstance(error, (TimeoutError, asyncio.TimeoutError)):
            self._resting_until = time.monotonic() + REST_AFTER_FAILURE
        if failed is not None:
            failed(error)

    def _send_all(
        self,
        count: int,
        request: Callable[[int], Request | None],
        answered: Answered,
        concurrency: int,
    ) -> None:
        """Send requests ``0`` to ``count - 1`` (``request(number)`` makes each just before it
        goes; None: it is not sent) and tell ``answered`` of each as its answer comes (its
        exception stops them all and is raised). With ``concurrency`` above 1, from this thread
        on that many connections of their own at once (asyncio: no thread hand-off per
        request); else, or where this thread runs an event loop already, one after the other
        as :meth:`answer`."""
        if concurrency > 1 and count > 1 and not _loop_running():
            numbers = iter(range(count))
            turns = min(concurrency, count)
            asyncio.run(_all(self._send_in_turn(numbers, request, answered) for _ in range(turns)))
            return
        for number in range(count):
            made = request(number)
            answer = None if made is None else self.answer(made)
            answered(number, None if answer is None else answer.status)

    def succeeded(
        self,
        count: int,
        request: Callable[[int], Request | None],
        success: int,
        done: Callable[[int], None],
        concurrency: int,
        seen: Callable[[int | None], None] | None = None,
    ) -> list[int]:
        """:meth:`_send_all`, telling ``done`` of each request answered ``success`` as it is
        (and ``seen`` of every status); the numbers of the others, in order."""
        failed: list[int] = []

        def answered(number: int, status: int | None) -> None:
            if seen is not None:
                seen(status)
            if status == success:
                done(number)
            else:
                failed.append(number)

        self._send_all(count, request, answered, concurrency)
        return sorted(failed)

    async def _send_in_turn(
        self, numbers: Iterator[int], request: Callable[[int], Request | None], answered: Answered
    ) -> None:
        """Send the next request of ``numbers`` whenever the last one was answered, on one
        connection kept from one to the next (replaced when it cannot be kept)."""
        streams: Streams | None = None
        try:
            for number in numbers:
                made = None if self.resting() else request(number)
                answer = None
                if made is not None:
                    answer, streams = await self._exchange_async(streams, made)
                answered(number, None if answer is None else answer.status)
        finally:
            if streams is not None:
                streams.close()

    async def _exchange_async(
        self, streams: Streams | None, request: Request
    ) -> tuple[Answer | None, Streams | None]:
        """The request's answer and the connection for the next one (None: open a new one);
        a kept connection that fails before any answer is replaced once, as in :meth:`answer`."""
        if streams is not None:
            try:
                return await self._exchange_streams(streams, request)
            except _FAILURES as error:
                if streams.framing.answered:  # a cut answer; else closed by the server while idle
                    self._failed(error)
                    return None, None
        try:
            opened = await self._open_streams()
        except _FAILURES as error:
            self._failed(error, unreachable=True)
            return None, None
        try:
            return await self._exchange_streams(opened, request)
        except _FAILURES as error:
            self._failed(error)
            return None, None

    async def _exchange_streams(
        self, streams: Streams, request: Request
    ) -> tuple[Answer, Streams | None]:
        """As :meth:`_exchange`, on asyncio streams: the connection for the next request."""
        try:
            answer = await streams.answer(request, self.read_timeout)
        except BaseException:
            streams.close()
            raise
        if streams.framing.reusable():
            return answer, streams
        streams.close()
        return answer, None

    async def _open_streams(self) -> Streams:
        opening = asyncio.open_connection(
            self.host,
            self.port,
            ssl=self.context,
            server_hostname=self.host if self.context is not None else None,
        )
        reader, writer = await asyncio.wait_for(opening, self.connect_timeout)
        sock = writer.get_extra_info("socket")
        for level, option, value in self.socket_options:
            sock.setsockopt(level, option, value)
        return Streams(reader, writer)

    def _exchange(self, conn: Connection, request: Request) -> Answer:
        try:
            answer = conn.answer(request)
        except BaseException:
            conn.close()
            raise
        if conn.framing.reusable():
            self._keep(conn)
        else:
            conn.close()
        return answer

    def _connect(self) -> Connection:
        sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        try:
            for level, option, value in self.socket_options:
                sock.setsockopt(level, option, value)
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
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


async def _all(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the coroutines at once until all ended; the first exception stops the others."""
    await asyncio.gather(*coroutines)


def _loop_running() -> bool:
    """Whether this thread runs an asyncio event loop (asyncio.run cannot start another)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def available() -> bool:
    """Whether h11 is installed (the ``s3`` and ``azure`` extras bring it)."""
    return h11 is not None


def tls_context(
    context: ssl.SSLContext,
    ca_bundle: str | bool | None,
    cert_file: str | None = None,
    key_file: str | None = None,
) -> ssl.SSLContext:
    """``context`` checking the server's certificate against ``ca_bundle`` (a file or a
    directory; None: the system's) with its host name, or not at all when ``ca_bundle`` is
    ``False``; with the client certificate if any."""
    if ca_bundle is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.verify_mode = ssl.CERT_REQUIRED
        context.check_hostname = True
        if not isinstance(ca_bundle, str):
            context.load_default_certs()
        elif os.path.isdir(ca_bundle):
            context.load_verify_locations(capath=ca_bundle)
        else:
            context.load_verify_locations(cafile=ca_bundle)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context
