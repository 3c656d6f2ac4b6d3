"""Small Azure requests sent without the SDK's pipeline: small uploads (alone, and in the
batches of :meth:`.AzureStorage._put_batch`: ``upload_many`` and ``sync``), the properties
request of ``exists`` and ``open('rb')``, and the first GET of a download.

``upload_blob`` of a 4 KiB body costs about 1 ms of CPU in the SDK (its policies, the
request's serialisation, the SharedKey signature, requests and urllib3): on two CPUs shared
with the server, that bounds how many small files a second go. A Put Blob here is a PUT with a
container SAS on a kept connection (:mod:`.keep_alive`), 0.17 ms; a ``HEAD`` 0.12 ms where
``get_blob_properties`` costs 1 ms. The SAS is the storage's own (``sas_container_url``) or,
with an account key, one this module makes with the SDK's ``generate_container_sas`` (read,
create and write, valid for an hour, made again ten minutes before it ends), so no request is
signed here. Any answer the caller does not expect and any failure to send hands the request
back to the caller, which sends it through the SDK with its retries and its typed errors; a
``403`` to a read (a SAS of the storage's own without read permission) stops the direct reads.
"""

from __future__ import annotations

import datetime
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..secrets import Secret
from .keep_alive import (
    Answer,
    KeepAliveConnections,
    Request,
    Resent,
    available,
    telling,
    tls_context,
)

try:
    import certifi
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas
except ImportError:  # pragma: no cover - exercised by the package tests without the extra
    pass

SAS_LIFETIME = datetime.timedelta(hours=1)
SAS_RENEWAL = datetime.timedelta(minutes=10)
"""A SAS this module made is made again when less than this is left of it."""

FIRST_RANGE_LIMIT = 16 * 1024 * 1024
"""The largest first range of a download sent here (its body is held whole, as the SDK holds
a chunk): a larger ``chunk_size``'s goes through the SDK."""

Upload = tuple[str, bytes, Mapping[str, Any]]
"""A blob's name (the container's own), its bytes and its upload options (``extra_args``:
content settings and ``Metadata``)."""

SETTING_HEADERS = {
    "ContentType": "x-ms-blob-content-type",
    "ContentEncoding": "x-ms-blob-content-encoding",
    "ContentDisposition": "x-ms-blob-content-disposition",
    "ContentLanguage": "x-ms-blob-content-language",
    "CacheControl": "x-ms-blob-cache-control",
}
"""The Put Blob header of each content setting an upload takes."""


class DirectRequests:
    """Requests to one container (see the module).

    ``container``: the SDK's container client, whose URL, API version and account name the
    requests use; ``account_key``: the key to make SAS tokens with, or None with ``sas``, the
    query of the storage's own container SAS URL (both held as :class:`.Secret`);
    ``transport``: the SDK's ``RequestsTransport`` the storage made, whose CA bundle and
    timeouts the connections take; ``max_idle``: the most kept open, as its pool keeps;
    ``resent``: told of each request sent alone that got no answer, which the caller sends
    again through the SDK (its method, the blob's name and the failure)."""

    def __init__(
        self,
        container: Any,
        account_key: Secret[str] | None,
        sas: Secret[str] | None,
        transport: Any,
        max_idle: int,
        resent: Resent | None = None,
    ) -> None:
        self.container_url = container.url.split("?", 1)[0]
        url = urllib.parse.urlsplit(self.container_url)
        self.container_path = url.path
        self.host = url.netloc
        self.api_version = container.api_version
        self.account_name = container.account_name
        self.container_name = container.container_name
        self._key = account_key
        self._sas = sas
        self._sas_ends: datetime.datetime | None = None
        self._lock = threading.Lock()
        self._resent = resent
        self.reads = True
        """False once a read was refused (``403``): the SAS does not allow reads."""
        config = transport.connection_config
        context = None
        if url.scheme == "https":  # requests' own default bundle for verify=True
            ca_bundle = config.verify if config.verify is not True else certifi.where()
            context = tls_context(ssl.create_default_context(), ca_bundle)
        timeouts = (config.timeout, config.read_timeout)
        self.connections = KeepAliveConnections(self.container_url, context, [], timeouts, max_idle)

    @classmethod
    def for_container(
        cls,
        container: Any,
        account_key: Secret[str] | None,
        sas: Secret[str] | None,
        transport: Any,
        max_idle: int,
        resent: Resent | None = None,
    ) -> DirectRequests | None:
        """The sender for ``container``, or None where the SDK's requests go through a proxy
        (``transport``'s session has one) or h11 is not installed."""
        if not available() or not (account_key or sas) or transport.session.proxies:
            return None
        return cls(container, account_key, sas, transport, max_idle, resent)

    def put_many(
        self,
        count: int,
        upload: Callable[[int], Upload | None],
        stored: Callable[[int], None],
        concurrency: int,
    ) -> Sequence[int]:
        """Store uploads ``0`` to ``count - 1`` (``upload(number)`` reads each just before it
        goes; None: not sent here), ``concurrency`` at once from this thread
        (:meth:`.KeepAliveConnections.succeeded`), telling ``stored`` of each stored as it is
        (its exception stops them all); the numbers of the others, which the caller must send
        through the SDK."""

        def request(number: int) -> Request | None:
            made = upload(number)
            return None if made is None else self.request(*made)

        return self.connections.succeeded(count, request, 201, stored, concurrency)

    def put(self, name: str, body: bytes, options: Mapping[str, Any]) -> bool:
        """Store ``body`` at ``name``: True when the service answered ``201``, False when the
        caller must send it through the SDK."""
        request = self.request(name, body, options)
        answer = None if request is None else self._send(request, name)
        return answer is not None and answer.status == 201

    def request(self, name: str, body: bytes, options: Mapping[str, Any]) -> Request | None:
        """The Put Blob of ``body`` at ``name`` with ``options`` (see :data:`Upload`); None
        when an option needs the SDK (one it would check or encode)."""
        headers = [
            ("Host", self.host),
            ("x-ms-version", self.api_version),
            ("x-ms-blob-type", "BlockBlob"),
            ("Content-Length", str(len(body))),
        ]
        for option, value in options.items():
            if option == "Metadata" and isinstance(value, Mapping):
                for key, item in value.items():
                    if not (isinstance(key, str) and key.isidentifier() and key.isascii()):
                        return None
                    if not _plain(item):
                        return None
                    headers.append((f"x-ms-meta-{key}", item))
            elif option in SETTING_HEADERS and _plain(value):
                headers.append((SETTING_HEADERS[option], value))
            else:
                return None
        return Request("PUT", self._target(name), headers, body)

    def properties(self, name: str) -> Answer | None:
        """The answer to a Get Blob Properties (``HEAD``) of ``name``; None where the caller
        must ask through the SDK."""
        return self._read(Request("HEAD", self._target(name), self._read_headers(), b""), name)

    def first_range(self, name: str, length: int) -> Answer | None:
        """The answer to a GET of the first ``length`` bytes of ``name``; None where the
        caller must ask through the SDK (``length`` above :data:`FIRST_RANGE_LIMIT` too)."""
        if length > FIRST_RANGE_LIMIT:
            return None
        headers = [*self._read_headers(), ("x-ms-range", f"bytes=0-{length - 1}")]
        return self._read(Request("GET", self._target(name), headers, b"", length), name)

    def _read(self, request: Request, name: str) -> Answer | None:
        if not self.reads:
            return None
        answer = self._send(request, name)
        if answer is not None and answer.status == 403:
            self.reads = False
            return None
        return answer

    def _send(self, request: Request, name: str) -> Answer | None:
        """The request sent alone: its answer, or None with ``resent`` told why."""
        return self.connections.answer(request, telling(self._resent, request.method, name))

    def _read_headers(self) -> list[tuple[str, str]]:
        return [("Host", self.host), ("x-ms-version", self.api_version)]

    def _target(self, name: str) -> str:
        """The path and query of the blob ``name``'s requests."""
        return f"{self.container_path}/{urllib.parse.quote(name, safe='~/')}?{self.sas()}"

    def sas(self) -> str:
        """The container SAS the requests carry."""
        if self._key is None:
            assert self._sas is not None
            return self._sas.reveal()
        now = datetime.datetime.now(datetime.timezone.utc)
        with self._lock:
            sas = self._sas
            if sas is None or self._sas_ends is None or self._sas_ends - now < SAS_RENEWAL:
                self._sas_ends = now + SAS_LIFETIME
                sas = self._sas = Secret(
                    generate_container_sas(
                        self.account_name,
                        self.container_name,
                        account_key=self._key.reveal(),
                        permission=ContainerSasPermissions(read=True, write=True, create=True),
                        expiry=self._sas_ends,
                    )
                )
            return sas.reveal()

    def close(self) -> None:
        """Close the idle connections."""
        self.connections.close()


def _plain(value: Any) -> bool:
    """Whether a header value can go as it is: printable ASCII."""
    return isinstance(value, str) and value.isascii() and value.isprintable()
