"""Small uploads, the first GET of a download and the HEAD of ``exists``, signed and sent
without the client's request pipeline.

A ``put_object`` of a 4 KiB body costs about 0.9 ms of CPU in boto3, and half of it is the
pipeline around the request (parameter validation and serialisation, a dozen event hooks,
endpoint resolution, parsing the answer); a third of the rest is botocore's signer. Moving many
small files from several threads is bound by that CPU, which the GIL serialises.

:class:`DirectRequests` keeps from the client its credentials (refreshed as the client
refreshes them) and its connection pool (its TLS, proxy and timeout settings), and signs with
:class:`Signer`, checked against botocore's. The requests' address and signing scope come from
the client itself, through a presigned URL, so virtual-host or path addressing, regional and
custom endpoints are the ones the client would use. Only a body below :data:`DIRECT_LIMIT` with
options that are plain headers, the first range of a download and the HEAD of ``exists`` go
this way. Any answer but the one expected and any failure to send hands the request back to the
caller, which sends it through the client, whose retries, error parsing and typed errors apply
unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import threading
import time
import urllib.parse
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .keep_alive import KeepAliveConnections, Request, Resent, available, telling, tls_context
from .s3_settings import EXPECT_CONTINUE_FROM

try:
    import botocore.exceptions
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.httpsession import create_urllib3_context, get_cert_path
    from botocore.response import StreamingBody
except ImportError:  # pragma: no cover - exercised by the package tests without the extra
    pass

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DIRECT_LIMIT = EXPECT_CONTINUE_FROM
"""A body sent directly is smaller (1 MiB), so it goes with its headers, as the client's own
requests do, and hashing it for the signature is cheap."""

HEADER_OPTIONS = {
    "ContentType": "Content-Type",
    "ContentEncoding": "Content-Encoding",
    "ContentDisposition": "Content-Disposition",
    "ContentLanguage": "Content-Language",
    "CacheControl": "Cache-Control",
}
"""The ``put_object`` options that are one header each, as botocore sends them; ``Metadata``
goes as ``x-amz-meta-*`` headers. An upload with any other option goes through the client."""

_PROBE_KEY = "k"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""A header name (RFC 9110's token)."""


class S3Clients(NamedTuple):
    """What an S3Storage sends its requests with, in one process."""

    client: S3Client
    """The client of every request (its retries logged)."""
    single_try: S3Client
    """A client that makes one try per call."""
    direct: DirectRequests | None
    """The sender of requests without the client's pipeline, if the storage uses one."""


def clients_with_direct_requests(
    make_clients: Callable[[], tuple[S3Client, S3Client]],
    session: Any,
    bucket: str | None,
    resent: Resent | None = None,
) -> S3Clients:
    """The two clients ``make_clients`` makes, and a direct sender of the first one's requests
    to ``bucket`` (with the credentials of ``session``, the boto3 session behind them, telling
    ``resent`` of each that got no answer), unless ``bucket`` is None."""
    client, single_try = make_clients()
    direct = DirectRequests(client, session, bucket, resent) if bucket is not None else None
    return S3Clients(client, single_try, direct)


class Upload(NamedTuple):
    """One small upload of :meth:`DirectRequests.put_many`."""

    key: str
    """The bucket's own key."""
    body: bytes
    options: Mapping[str, Any]
    """``put_object`` options (see :meth:`DirectRequests.headers`)."""


RANGE_NOT_SATISFIABLE = 416
"""S3's answer to a range of an empty object."""


class Route(NamedTuple):
    """Where a bucket's direct requests go and how they are signed."""

    bucket_url: str
    """The URL of the bucket's keys, ending in ``/``."""
    region: str
    """The region of the signing scope."""
    credentials: Any
    """botocore's credentials, which refresh themselves."""
    host: str
    """The ``Host`` header signed (no default port), as botocore's signer writes it."""
    bucket_path: str
    """The path of :attr:`bucket_url` (``/bucket/``, or ``/`` with virtual-host addressing)."""


class DirectRequests:
    """Sends small ``put_object`` requests, first ranged GETs and HEADs to one bucket of one
    client (see the module).

    The route is learnt from the client on first use, so making a storage sends nothing and
    needs no credentials yet. It is given up for good (every request then goes through the
    client) when the client cannot give one (no SigV4, no credentials) or when S3 answers a
    direct request with a redirect or a ``400``: a bucket in another region than the client's,
    which the client follows and remembers."""

    def __init__(
        self, client: S3Client, session: Any, bucket: str, resent: Resent | None = None
    ) -> None:
        self.client = client
        self._resent = resent
        self.session = session
        self.bucket = bucket
        config: Any = client.meta.config
        self.config = config
        self.checksum = self.config.request_checksum_calculation == "when_supported"
        # The client's connection pool, which botocore exposes only as _endpoint.http_session.
        self.http_session: Any = getattr(getattr(client, "_endpoint", None), "http_session", None)
        # An S3 Express directory bucket signs with session tokens of its own.
        self.usable = self.http_session is not None and not bucket.endswith("--x-s3")
        self._route: Route | None = None
        self.connections: KeepAliveConnections | None = None
        """Where PUTs and HEADs go (:mod:`.keep_alive`), set with the route; None: the
        client's pool."""
        self._lock = threading.Lock()
        self.signer = Signer()

    def route(self) -> Route | None:
        """The bucket's route, learnt once; None while direct requests are not usable."""
        if self._route is None and self.usable:
            with self._lock:
                if self._route is None and self.usable:
                    self._route = self._learn_route()
                    self.usable = self._route is not None
                    if self._route is not None:
                        self.connections = connections_like_the_clients(
                            self.http_session, self.config, self._route.bucket_url
                        )
        return self._route if self.usable else None

    def _learn_route(self) -> Route | None:
        """The address and signing scope the client would use, read from a URL it presigns."""
        try:
            credentials = self.session.get_credentials()
            if credentials is None:
                return None
            presigned = self.client.generate_presigned_url(
                "put_object", Params={"Bucket": self.bucket, "Key": _PROBE_KEY}
            )
        except botocore.exceptions.BotoCoreError:
            return None  # the client's own requests will say what is wrong
        url = urllib.parse.urlsplit(presigned)
        query = urllib.parse.parse_qs(url.query)
        scope = query.get("X-Amz-Credential", [""])[0].split("/")
        if len(scope) != 5 or scope[3] != "s3" or not url.path.endswith("/" + _PROBE_KEY):
            return None  # not SigV4 (an UNSIGNED or legacy signature_version)
        bucket_path = url.path[: -len(_PROBE_KEY)]
        bucket_url = f"{url.scheme}://{url.netloc}{bucket_path}"
        return Route(bucket_url, scope[2], credentials, _host_of(url), bucket_path)

    def put(self, key: str, body: bytes, options: Mapping[str, Any]) -> bool:
        """Store ``body`` at ``key`` (the bucket's own key); True when S3 answered ``200``,
        False when the caller must send it through the client instead."""
        headers = self.headers(body, options)
        return headers is not None and self.status("PUT", key, headers, body) == 200

    def get_range(self, key: str, first: int, last: int) -> dict[str, Any] | int | None:
        """GET bytes ``first`` to ``last`` of ``key``: the answer as ``get_object`` gives it
        (``ETag``, ``ContentType``, ``ContentRange``, ``ContentLength`` and the ``Body``,
        unread), :data:`RANGE_NOT_SATISFIABLE` for a range of an empty object, or None when the
        caller must ask through the client."""
        response = self.send("GET", key, {"Range": f"bytes={first}-{last}"}, stream=True)
        if response is None:
            return None
        headers = response.headers
        length = headers.get("Content-Length", "")
        if response.status_code != 206 or "ETag" not in headers or not length.isdigit():
            if response.status_code >= 400:  # an error's short body: the connection is kept
                response.raw.drain_conn()
                response.raw.release_conn()
            else:  # a store that ignored the range: its answer may be large
                response.raw.close()
            return RANGE_NOT_SATISFIABLE if response.status_code == 416 else None
        return {
            "ETag": headers["ETag"],
            "ContentType": headers.get("Content-Type"),
            "ContentRange": headers.get("Content-Range"),
            "ContentLength": int(length),
            "Body": StreamingBody(response.raw, int(length)),
        }

    def head_status(self, key: str) -> int | None:
        """The status of a HEAD of ``key`` (``200``: there, ``404``: missing), None when the
        caller must ask through the client."""
        return self.status("HEAD", key, {})

    def status(
        self, method: str, key: str, headers: dict[str, str], body: bytes = b""
    ) -> int | None:
        """Send a request whose answer's body is not needed (on :attr:`connections` where the
        route has them): the answer's status, None as for :meth:`send`."""
        route = self.route()
        connections = self.connections
        if route is None or connections is None:
            response = self.send(method, key, headers, body)
            return None if response is None else int(response.status_code)
        request = self._request(route, method, key, headers, body)
        failed = telling(self._resent, method, key)
        answer = None if request is None else connections.answer(request, failed)
        status = None if answer is None else answer.status
        self._check_route(status)
        return status

    def put_many(
        self,
        count: int,
        upload: Callable[[int], Upload | None],
        stored: Callable[[int], None],
        concurrency: int,
    ) -> Sequence[int]:
        """Store uploads ``0`` to ``count - 1`` (``upload(number)`` reads each just before it
        goes; None: not sent here), ``concurrency`` at once from this thread where the route has
        :attr:`connections` (:meth:`.KeepAliveConnections.succeeded`), telling ``stored`` of each
        stored as it is (its exception stops them all); the numbers of the others, which the
        caller must send through the client."""
        route = self.route()
        connections = self.connections
        if route is None or connections is None:
            return range(count)

        def request(number: int) -> Request | None:
            made = upload(number)
            headers = None if made is None else self.headers(made.body, made.options)
            if made is None or headers is None:
                return None
            return self._request(route, "PUT", made.key, headers, made.body)

        return connections.succeeded(count, request, 200, stored, concurrency, self._check_route)

    def _request(
        self, route: Route, method: str, key: str, headers: dict[str, str], body: bytes
    ) -> Request | None:
        """The request signed; None when the credentials cannot be had."""
        path = route.bucket_path + urllib.parse.quote(key, safe="/~")
        try:
            signed = self.signer.sign(method, route, path, headers, body)
        except botocore.exceptions.BotoCoreError:
            return None
        return Request(method, path, list(signed.items()), body)

    def send(
        self,
        method: str,
        key: str,
        headers: dict[str, str],
        body: bytes = b"",
        *,
        stream: bool = False,
    ) -> Any:
        """Sign a request for ``key`` (the bucket's own key, quoted as botocore quotes it) and
        send it on the client's pool: its response, None if there is no route or it could not
        be sent or answered. A redirect or a ``400`` gives the route up (see the class)."""
        route = self.route()
        if route is None:
            return None
        path = urllib.parse.quote(key, safe="/~")
        try:
            signed = self.signer.sign(method, route, route.bucket_path + path, headers, body)
        except botocore.exceptions.BotoCoreError:
            return None  # the client's own request will say what is wrong
        # The pool passes the headers on to urllib3, which takes any mapping.
        headers_sent: Any = signed
        request = AWSPreparedRequest(
            method, route.bucket_url + path, headers_sent, body or None, stream
        )
        try:
            response = self.http_session.send(request)
        except botocore.exceptions.BotoCoreError as error:
            if (failed := telling(self._resent, method, key)) is not None:
                failed(error)
            return None
        self._check_route(response.status_code)
        return response

    def _check_route(self, status: int | None) -> None:
        """Give the route up on a redirect or a ``400`` (see the class)."""
        if status is not None and (300 <= status < 400 or status == 400):
            self.usable = False

    def close(self) -> None:
        """Close the idle connections of :attr:`connections`."""
        if self.connections is not None:
            self.connections.close()

    def headers(self, body: bytes, options: Mapping[str, Any]) -> dict[str, str] | None:
        """The request's headers, None when ``body`` or ``options`` need the client."""
        if len(body) >= DIRECT_LIMIT:
            return None
        headers = {"Content-Length": str(len(body))}
        for option, value in options.items():
            if option == "Metadata" and isinstance(value, Mapping):
                headers.update((f"x-amz-meta-{name}", meta) for name, meta in value.items())
            elif option in HEADER_OPTIONS:
                headers[HEADER_OPTIONS[option]] = value
            else:
                return None
        if not all(_plain(name, value) for name, value in headers.items()):
            return None  # botocore's own checks and encodings apply
        if self.checksum:  # as botocore sends it when the setting is "when_supported"
            crc = zlib.crc32(body).to_bytes(4, "big")
            headers["x-amz-checksum-crc32"] = base64.b64encode(crc).decode()
        return headers


def connections_like_the_clients(
    http_session: Any, config: Any, url: str
) -> KeepAliveConnections | None:
    """Connections to ``url``'s endpoint (:mod:`.keep_alive`) set up as the client's
    (``http_session``, its botocore ``URLLib3Session``, and ``config``, its ``Config``): its
    CA bundle, or no check with ``verify=False``, its client certificate, socket options and
    timeouts. None when the client reaches it through a proxy, its session is not one this
    function knows how to read, or h11 is not installed."""
    if not available():
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
    context = None
    if url.lower().startswith("https:"):
        ca_bundle = get_cert_path(verify) if verify else False
        context = tls_context(create_urllib3_context(), ca_bundle, cert_file, key_file)
    timeouts = (config.connect_timeout, config.read_timeout)
    return KeepAliveConnections(url, context, socket_options, timeouts, config.max_pool_connections)


def _plain(name: str, value: Any) -> bool:
    """Whether a header can go as it is: a token for a name, printable ASCII for a value."""
    return (
        bool(_TOKEN.fullmatch(name))
        and isinstance(value, str)
        and value.isascii()
        and value.isprintable()
    )


def _host_of(url: urllib.parse.SplitResult) -> str:
    """The ``Host`` header of ``url`` as botocore signs it: lower case, an IPv6 address in
    brackets, the port only if it is not the scheme's default."""
    host = url.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if url.port is not None and url.port != {"http": 80, "https": 443}.get(url.scheme):
        host = f"{host}:{url.port}"
    return host


EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Signer:
    """Signature Version 4 of a direct request (AWS's "Authenticating Requests" for S3, header
    form, the payload signed), on plain strings.

    Written here rather than taken from botocore's ``S3SigV4Auth``, which costs about 0.2 ms of
    CPU a request, a third of a small upload's, building its canonical request through
    ``email``-based header objects and deriving the signing key each time. This one keeps the
    day's signing key and writes the same headers and signature: tests/backends/test_s3_direct.py
    checks it against botocore's signer, and every test against SeaweedFS against a server
    that checks signatures."""

    def __init__(self) -> None:
        self._key: tuple[str, str, str, bytes] | None = None  # day, region, secret, key

    def sign(
        self, method: str, route: Route, path: str, headers: dict[str, str], body: bytes
    ) -> dict[str, str]:
        """``headers`` with ``Host``, ``X-Amz-Date``, ``X-Amz-Content-SHA256``, the session
        token if any and ``Authorization``, for ``method`` on ``path`` (the bucket's path and a
        key, quoted) of ``route``."""
        credentials = route.credentials.get_frozen_credentials()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        signed = {
            **headers,
            "Host": route.host,
            "X-Amz-Date": stamp,
            "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256,
        }
        if credentials.token:
            signed["X-Amz-Security-Token"] = credentials.token
        canonical = sorted(
            (name.lower(), " ".join(value.split())) for name, value in signed.items()
        )
        names = ";".join(name for name, _ in canonical)
        request = "\n".join(
            (
                method,
                path,
                "",
                "".join(f"{name}:{value}\n" for name, value in canonical),
                names,
                signed["X-Amz-Content-SHA256"],
            )
        )
        scope = f"{stamp[:8]}/{route.region}/s3/aws4_request"
        digest = hashlib.sha256(request.encode()).hexdigest()
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{digest}"
        key = self.signing_key(stamp[:8], route.region, credentials.secret_key)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={names}, Signature={signature}"
        )
        return signed

    def signing_key(self, day: str, region: str, secret: str) -> bytes:
        """The key of ``day`` and ``region`` (four HMACs), kept until either changes."""
        cached = self._key
        if cached is not None and cached[:3] == (day, region, secret):
            return cached[3]
        key = ("AWS4" + secret).encode()
        for part in (day, region, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self._key = (day, region, secret, key)
        return key
