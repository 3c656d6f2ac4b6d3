"""AzureStorage: Azure Blob Storage (block blobs) through azure-storage-blob.

Three ways to connect, as in keg-storage 0.5: an account name and key plus a container
(``bucket``), a container SAS URL, or a blob SAS URL (then the backend holds that one blob).
``account_url`` points the account mode at an emulator (Azurite) or a sovereign cloud.

Reads are ranged GETs of ``chunk_size`` with read-ahead; writes stage blocks of ``chunk_size`` in
parallel and commit the block list on ``close()``, so a failed or aborted write publishes nothing.
``upload`` and ``put`` of a local file stage larger blocks streamed straight from the file.
Clients are built once, share one HTTP connection pool and are safe to use from many threads.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

import arrow

from ..errors import (
    FileNotFoundInStorageError,
    InvalidPathError,
    MissingDependencyError,
    StorageError,
    StoragePermissionError,
    UnsupportedOperationError,
    failure_cause,
    log_resend,
    log_retry,
)
from ..http import content_disposition
from ..progress import ByteCounter
from ..secrets import Secret, hold, reveal, scrub, scrubbed
from .azure_direct import DirectRequests, Upload
from .azure_errors import (
    azure_error,
    condition_arguments,
    deciding,
    split_timeouts,
    translate_azure_error,
)
from .azure_files import (
    DEFAULT_CHUNK_SIZE,
    MAX_BLOCK_SIZE,
    MAX_BLOCKS,
    AzureFile,
    AzureReader,
    AzureWriter,
)
from .base import (
    Expiry,
    FileMode,
    FileStat,
    ListEntry,
    RemoteFile,
    ShareLinkOperation,
    StorageBackend,
    resolve_expiry,
)
from .bulk import (
    DIRECT_BODY_LIMIT,
    BatchItem,
    Report,
    batch_body,
    batch_failed,
    delete_in_batches,
    put_batch_directly,
)
from .conditions import ALWAYS, Capabilities, WriteCondition
from .forks import PerProcess
from .keep_alive import Resent
from .object_listing import azure_listing
from .prefixes import KeyPrefix, user_path
from .streams import local_file_extent, small_body

try:
    import requests
    from azure.core.exceptions import ResourceNotFoundError
    from azure.core.pipeline.transport import RequestsTransport
    from azure.storage.blob import (
        BlobClient,
        BlobSasPermissions,
        BlobServiceClient,
        ContainerClient,
        ContainerSasPermissions,
        ContentSettings,
        ExponentialRetry,
        generate_blob_sas,
        generate_container_sas,
    )
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    _IMPORT_ERROR: ImportError | None = None
    # azure-core's transport warns "Unable to stream download." when a body breaks off, which
    # the retry policy then retries (and we log on keg_storage.retry, or raise). Its loggers have
    # no handler, so without logging configuration Python would print that on stderr: the
    # library idiom, a NullHandler, keeps it for the application's handlers only.
    logging.getLogger("azure.core.pipeline.transport").addHandler(logging.NullHandler())
except ImportError as exc:  # the backend is optional: the error surfaces when it is used
    _IMPORT_ERROR = exc

__all__ = ["DEFAULT_CHUNK_SIZE", "AzureFile", "AzureReader", "AzureStorage", "AzureWriter"]

DELETE_BATCH = 256
"""Deletes per blob batch request: the service's limit."""
STREAMED_BLOCK_SIZE = 16 * 1024 * 1024
"""The block size ``upload`` aims at for a local file. Streamed from the file, a block costs no
memory, and fewer requests are faster: 16 MiB blocks uploaded about 10 % faster than 4 MiB ones
on Azurite (bench/azure.py), and the service serves blocks above 4 MiB on its high-throughput
path."""
COPY_POLL_SECONDS = (0.1, 2.0)
"""First and longest wait between checks of a pending server-side copy."""

_EXTRA_ARG_SETTINGS = {
    "ContentType": "content_type",
    "ContentEncoding": "content_encoding",
    "ContentDisposition": "content_disposition",
    "ContentLanguage": "content_language",
    "CacheControl": "cache_control",
}


@functools.cache
def _logged_retry_class() -> Any:
    class _LoggedRetry(ExponentialRetry):
        """The SDK's exponential retry policy, each retry logged on ``keg_storage.retry``
        through the ``retry_hook`` the policy calls before it waits (unless a call passes its
        own hook). ``label``, ``endpoint`` and ``timeout`` are those of the storage."""

        label = "azure"
        endpoint = "its account URL"
        timeout: float | tuple[float, float] | None = None

        def configure_retries(self, request: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().configure_retries(request)
            if settings["hook"] is None:
                settings["hook"] = self.report
            return settings

        def report(
            self, retry_count: int, request: Any, response: Any = None, error: Any = None, **_: Any
        ) -> None:
            if error is not None:
                connect, read = split_timeouts(self.timeout)
                cause = failure_cause(error, connect_timeout=connect, read_timeout=read)
            else:
                cause = f"HTTP {response.status_code}" if response is not None else "failure"
            # The blob name: the URL's path after the account URL's and the container.
            path = unquote(urlsplit(request.url).path)
            prefix = urlsplit(self.endpoint).path.rstrip("/") + "/"
            key = path[len(prefix) :].partition("/")[2] if path.startswith(prefix) else ""
            action = f"{request.method} {key}" if key else request.method
            log_retry(
                self.label, action, cause, self.endpoint, retry_count + 2, self.total_retries + 1
            )

    return _LoggedRetry


def _check_transfer_settings(chunk_size: int, max_concurrency: int) -> None:
    if not 0 < chunk_size <= MAX_BLOCK_SIZE:
        raise ValueError(f"chunk_size must be between 1 and {MAX_BLOCK_SIZE} bytes")
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")


def _resend_logger(label: str, endpoint: str, timeout: float | tuple[float, float]) -> Resent:
    """What logs a direct request that got no answer, which goes again through the SDK
    (:func:`.log_resend`); it holds the storage's label and settings, not the storage."""
    connect, read = split_timeouts(timeout)

    def resent(method: str, name: str, error: BaseException) -> None:
        cause = failure_cause(error, connect_timeout=connect, read_timeout=read)
        log_resend(label, f"{method} {name}", cause, endpoint)

    return resent


def _unread(*_: Any) -> SimpleNamespace:
    """The ``cls`` of an SDK call whose answer is not read: an object that takes the
    attributes the SDK sets on what ``cls`` returns."""
    return SimpleNamespace()


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


@dataclass
class AzureClients:
    """The SDK clients of one connection: a container client, or a single blob client."""

    container: ContainerClient | None
    blob: BlobClient | None
    direct: DirectRequests | None = None
    """The sender of requests without the SDK's pipeline (:mod:`.azure_direct`), with a
    container client and ``direct_requests``."""

    def close(self) -> None:
        for client in (self.container, self.blob):
            if client is not None:
                client.close()
        if self.direct is not None:
            self.direct.close()


class AzureStorage(StorageBackend):
    """Azure Blob Storage, with block blobs.

    Connect with ``account``, ``key`` and ``bucket`` (the container), with ``sas_container_url``,
    or with ``sas_blob_url`` (the backend then holds only that blob: any other path raises
    :class:`InvalidPathError`). In the account mode ``account_url`` replaces
    ``https://<account>.blob.core.windows.net`` (emulators, sovereign clouds).

    Keyword options: ``max_concurrency`` (parallel block transfers per file, default 4),
    ``timeout`` (seconds, or a ``(connect, read)`` pair; default ``(20, 60)`` as the SDK),
    ``retry`` (None for the SDK's exponential retry policy: 3 retries after about 18, 24 and
    42 s; an int for that many retries after about 2, 4, 8... s; or a retry policy object of
    your own). The retries of the first two are logged on ``keg_storage.retry``; a request fails
    after at most ``retry + 1`` tries of ``timeout`` each plus those waits (one more for a
    request first sent directly, below).

    ``direct_requests`` (default True): small unconditional uploads (alone, and in the batches
    of ``upload_many`` and ``sync``), the properties request of ``exists`` and ``open('rb')``
    and the first GET of a download (of a ``chunk_size`` up to 16 MiB) go with a container SAS
    on keep-alive connections of keg_storage's own, without the SDK's pipeline
    (:mod:`.azure_direct`; its policies do not see them); any failure or unexpected answer
    sends the request again through the SDK, with its retries and typed errors. False sends
    every request through the SDK.

    ``prefix`` (account and container SAS modes): every key lives under it (``prefix='app'``:
    the file ``a.txt`` is the blob ``app/a.txt``), as under LocalFS's root; listings, copies,
    moves and SAS links stay inside it and name keys relative to it. Normalised by the path
    rules (``..`` refused).

    Links are SAS URLs signed with the account key: download grants ``r``, upload ``cw``, remove
    ``d``; they can be combined. Without the key (SAS URL modes) ``link_to`` raises
    :class:`UnsupportedOperationError`.
    """

    capabilities = Capabilities(
        conditional_create=True,
        conditional_replace=True,
        server_side_copy=True,
        service_links=True,
        multi_operation_links=True,  # one SAS combines permissions
        metadata=True,
    )
    supported_extra_args = frozenset(_EXTRA_ARG_SETTINGS) | {"Metadata"}
    # The service reads a backslash in a blob name as "/" (a file "x\\y" would silently become
    # "y" in the directory "x"), so such paths are refused before any request.
    unsupported_path_characters = "\\"
    max_key_bytes = 1024
    ordered_listing = True
    bulk_batch_files = 10_000
    """upload_many sends its small files in one batch (up to this many), ``max_concurrency``
    at once from one thread, without the SDK's pipeline (:meth:`_put_batch`); download_many
    gives each file a thread."""
    bulk_download_batch_files = 1

    def __init__(
        self,
        account: str | None = None,
        key: str | None = None,
        bucket: str | None = None,
        sas_container_url: str | None = None,
        sas_blob_url: str | None = None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        name: str = "azure",
        *,
        account_url: str | None = None,
        max_concurrency: int = 4,
        timeout: float | tuple[float, float] = (20.0, 60.0),
        retry: int | Any | None = None,
        prefix: str = "",
        direct_requests: bool = True,
    ) -> None:
        # Held before anything can raise, so that no frame of ours shows them in plain form.
        self._key = hold(key)
        self._sas_container_url = hold(sas_container_url)
        self._sas_blob_url = hold(sas_blob_url)
        del key, sas_container_url, sas_blob_url
        super().__init__(name)
        if _IMPORT_ERROR is not None:
            raise MissingDependencyError(
                "AzureStorage", "azure", "azure-storage-blob"
            ) from _IMPORT_ERROR
        _check_transfer_settings(chunk_size, max_concurrency)
        self.account = account
        self.bucket = bucket
        self._prefix = KeyPrefix.of(prefix, self)
        self.prefix = self._prefix.name
        """Where every key lives in the container (``''``: the whole container)."""
        self.max_key_bytes = self._prefix.key_bytes(type(self).max_key_bytes or 1024)
        if self.prefix and self._sas_blob_url:
            raise ValueError("a prefix needs a container: a blob SAS URL gives one blob only")
        self.chunk_size = chunk_size
        # upload/download/get/put then move whole blocks, which the reader and writer pass on
        # without slicing them.
        self.transfer_chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self.timeout = timeout
        self.retry = retry
        self.direct_requests = direct_requests
        self.account_url: str | None = None
        self.endpoint = "its account URL"
        """The account URL (``https://<account>.blob.core.windows.net``), as errors name it."""
        self._account_mode: tuple[str, Secret[str], str] | None = None
        if account and self._key and bucket:
            default_url = f"https://{account}.blob.core.windows.net"
            self.account_url = (account_url or default_url).rstrip("/")
            self._account_mode = (account, self._key, bucket)
        elif not (self._sas_container_url or self._sas_blob_url):
            raise ValueError(
                "Must provide a sas_container_url, a sas_blob_url, or a combination of account, "
                "key, and bucket"
            )
        # Built again by a forked child on first use there (see keg_storage.backends.forks);
        # eager: a malformed URL fails here, not at first use (no request is made).
        self._clients = PerProcess(self._make_clients, eager=True)

    @property
    def key(self) -> str | None:
        """The account key (held in a :class:`~keg_storage.secrets.Secret`, never shown)."""
        return reveal(self._key)

    @property
    def sas_container_url(self) -> str | None:
        """The container SAS URL given (held in a Secret: it carries the SAS signature)."""
        return reveal(self._sas_container_url)

    @property
    def sas_blob_url(self) -> str | None:
        """The blob SAS URL given (held in a Secret: it carries the SAS signature)."""
        return reveal(self._sas_blob_url)

    # -- connection --------------------------------------------------------------------------

    @property
    def _pool_size(self) -> int:
        """The most connections kept open to the service: the SDK's default pool keeps 10, and
        parallel transfers of several files would open and drop extra ones."""
        return max(16, 4 * self.max_concurrency)

    def _client_options(self, url: str) -> dict[str, Any]:
        """The SDK clients' options for the service at ``url``: our transport and retries."""
        connect, read = self.timeout if isinstance(self.timeout, tuple) else (self.timeout,) * 2
        session = requests.Session()
        # requests reads the proxy and CA-bundle variables of the environment (and ~/.netrc,
        # whose credentials would replace the SDK's signature) again for every request, a
        # tenth of a small request's CPU here: they are read once, for this service's host.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(url)
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        # urllib3 must not retry: azure-core's policy does.
        adapter = HTTPAdapter(
            pool_maxsize=self._pool_size,
            max_retries=Retry(total=False, redirect=False, raise_on_status=False),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        transport = RequestsTransport(
            session=session,
            session_owner=True,
            connection_timeout=connect,
            read_timeout=read,
            connection_data_block_size=256 * 1024,
            connection_verify=ca_bundle or True,
        )
        options: dict[str, Any] = {"transport": transport}
        if isinstance(self.retry, int):
            # The SDK's default waits 18, 24, 42 s (for a busy service); a count given here
            # waits about 2, 4, 8 s, so that retry=1 fails within seconds on a dead endpoint.
            options["retry_policy"] = _logged_retry_class()(
                initial_backoff=0,
                increment_base=2,
                random_jitter_range=1,
                retry_total=self.retry,
                retry_connect=self.retry,
                retry_read=self.retry,
                retry_status=self.retry,
            )
        elif self.retry is None:
            options["retry_policy"] = _logged_retry_class()()
        else:
            options["retry_policy"] = self.retry
        return options

    def clients(self) -> AzureClients:
        """This process's SDK clients, built on first use (again after :meth:`close`) and then
        shared by its threads."""
        return self._clients.get()

    def _make_clients(self) -> AzureClients:
        with scrubbed():  # the SDK's frames hold the key or SAS URL
            sas_url = self._sas_container_url or self._sas_blob_url
            options = self._client_options(self.account_url or reveal(sas_url) or "")
            if self.account_url is not None and self._account_mode is not None:
                account, key, bucket = self._account_mode
                service = BlobServiceClient(
                    self.account_url,
                    credential={"account_name": account, "account_key": key.reveal()},
                    **options,
                )
                container = service.get_container_client(bucket)
                direct = self._direct_requests(container, key, None, options["transport"])
                clients = AzureClients(container, None, direct)
            elif self._sas_container_url:
                container_url = self._sas_container_url.reveal()
                container = ContainerClient.from_container_url(container_url, **options)
                sas = hold(urlsplit(container_url).query or None)
                direct = self._direct_requests(container, None, sas, options["transport"])
                clients = AzureClients(container, None, direct)
            else:
                assert self._sas_blob_url
                clients = AzureClients(
                    None, BlobClient.from_blob_url(self._sas_blob_url.reveal(), **options)
                )
        client: Any = clients.container or clients.blob
        # The account URL, without the SAS query: errors and retry logs show it.
        self.endpoint = f"{client.scheme}://{client.primary_hostname}"
        policy = options["retry_policy"]
        if isinstance(policy, _logged_retry_class()):
            policy.label, policy.endpoint, policy.timeout = (
                self.retry_label,
                self.endpoint,
                self.timeout,
            )
        return clients

    def _direct_requests(
        self,
        container: ContainerClient,
        key: Secret[str] | None,
        sas: Secret[str] | None,
        transport: RequestsTransport,
    ) -> DirectRequests | None:
        """The sender of direct requests (:mod:`.azure_direct`), unless they are off."""
        if not self.direct_requests:
            return None
        endpoint = f"{container.scheme}://{container.primary_hostname}"
        resent = _resend_logger(self.retry_label, endpoint, self.timeout)
        return DirectRequests.for_container(container, key, sas, transport, self._pool_size, resent)

    @property
    def retry_label(self) -> str:
        """How retry logs name this storage: ``azure 'files'``."""
        return f"azure {self.name!r}"

    def close(self) -> None:
        """Close the HTTP connections; the next operation opens new ones. A forked child never
        closes its parent's."""
        clients = self._clients.discard()
        if clients is not None:
            clients.close()

    def _container(self, key: str | None = None) -> ContainerClient:
        container = self.clients().container
        if container is None:
            raise UnsupportedOperationError(
                "a blob SAS URL gives access to one blob only", backend=self, path=key
            )
        return container

    def _blob(self, key: str) -> BlobClient:
        clients = self.clients()
        if clients.container is not None:
            return clients.container.get_blob_client(self._prefix.service(key))
        assert clients.blob is not None
        if key != clients.blob.blob_name:
            raise InvalidPathError(
                f"the configured SAS blob URL gives access to {clients.blob.blob_name!r} only",
                backend=self,
                path=key,
            )
        return clients.blob

    # -- primitives --------------------------------------------------------------------------

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        return translate_azure_error(self, error, user_path(path))

    def _open(
        self,
        key: str,
        mode: FileMode,
        extra_args: dict[str, Any],
        condition: WriteCondition = ALWAYS,
    ) -> RemoteFile:
        if mode == FileMode.read:
            return self._reader(key)
        return self._writer(key, extra_args, condition, direct=True)

    def _writer(
        self, key: str, extra_args: dict[str, Any], condition: WriteCondition, *, direct: bool
    ) -> AzureWriter:
        """A writer of ``key``; with ``direct``, an unconditional one puts a small whole file
        with :meth:`_put_directly` first."""
        settings = {_EXTRA_ARG_SETTINGS[k]: v for k, v in extra_args.items() if k != "Metadata"}
        return AzureWriter(
            FileMode.write,
            self._blob(key),
            self.chunk_size,
            max_concurrency=self.max_concurrency,
            content_settings=ContentSettings(**settings) if settings else None,
            metadata=extra_args.get("Metadata"),
            storage=self,
            path=key,
            condition=condition,
            put_directly=(
                functools.partial(self._put_directly, key, dict(extra_args))
                if direct and condition.unconditional
                else None
            ),
        )

    def _put_directly(self, key: str, options: dict[str, Any], body: bytes) -> bool:
        """Store the whole ``body`` at ``key`` in one Put Blob sent without the SDK's pipeline
        (:mod:`.azure_direct`), if it is at most ``chunk_size`` and 1 MiB; True when it was
        stored, False when it must go through the SDK (larger, direct requests off, an option
        the SDK must encode, no answer)."""
        direct = self.clients().direct
        if direct is None or len(body) > min(self.chunk_size, DIRECT_BODY_LIMIT):
            return False
        return direct.put(self._prefix.service(key), body, options)

    def _reader(self, key: str, *, first_range: bool = False) -> AzureReader:
        return AzureReader(
            FileMode.read,
            self._blob(key),
            self.chunk_size,
            max_concurrency=self.max_concurrency,
            storage=self,
            path=key,
            first_range=first_range,
            direct=self.clients().direct,
        )

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        """The reader's chunks, in order, the first of which tells the size (no properties
        request first), so a blob of at most ``chunk_size`` is one GET on this thread."""
        with self.translating(key):
            source = self._reader(key, first_range=True)
        with source:
            while chunk := source.read(self.transfer_chunk_size):
                file_obj.write(chunk)
                count_bytes(len(chunk))

    def _upload(
        self,
        file_obj: IO[bytes],
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        """A body of at most ``chunk_size`` and 1 MiB, unconditional, is one Put Blob sent
        directly where it can be (:mod:`.azure_direct`); a local file larger than one chunk is
        staged in blocks streamed from the file (see :data:`STREAMED_BLOCK_SIZE`); anything
        else goes through the writer. Either way the file object ends at its end, as if it had
        been read."""
        direct = condition.unconditional and self.clients().direct is not None
        limit = min(self.chunk_size, DIRECT_BODY_LIMIT) + 1
        body = small_body(file_obj, limit) if direct else None
        if body is not None:
            if not self._put_directly(key, extra_args, body):
                with self.translating(key):
                    writer = self._writer(key, extra_args, condition, direct=False)
                with writer:
                    writer.write(body)
            count_bytes(len(body))
            return
        extent = local_file_extent(file_obj)
        if extent is None or extent[2] <= self.chunk_size:
            super()._upload(file_obj, key, extra_args, count_bytes, condition=condition)
            return
        fd, start, size = extent
        block_size = self.upload_block_size(size)
        if block_size > MAX_BLOCK_SIZE:
            raise StorageError(
                f"{size} bytes is more than a blob holds ({MAX_BLOCKS} blocks of "
                f"{MAX_BLOCK_SIZE} bytes)",
                backend=self,
                path=key,
            )
        with self._open(key, FileMode.write, extra_args, condition) as target:
            assert isinstance(target, AzureWriter)
            target.stage_local_file(fd, start, size, block_size, count_bytes)
        file_obj.seek(start + size)

    def upload_block_size(self, size: int) -> int:
        """At least ``chunk_size``; ``STREAMED_BLOCK_SIZE`` when the file fills one such block
        per parallel transfer (smaller blocks otherwise, so that every transfer has one); and
        large enough that ``size`` fits in ``MAX_BLOCKS`` blocks."""
        per_transfer = math.ceil(size / self.max_concurrency)
        return max(
            self.chunk_size,
            min(STREAMED_BLOCK_SIZE, per_transfer),
            math.ceil(size / MAX_BLOCKS),
        )

    def _put_batch(
        self, items: list[BatchItem], report: Report, concurrency: int = 1
    ) -> dict[int, Exception]:
        """Small files sent without the SDK's pipeline, ``concurrency`` at once on connections
        of their own, from this thread (:func:`.bulk.put_batch_directly`,
        :mod:`.azure_direct`); the others through the SDK after."""
        direct = self.clients().direct

        def upload(item: BatchItem, body: bytes) -> Upload:
            return self._prefix.service(item.key), body, self._mtime_extra_args(item.mtime)

        put_many = direct.put_many if direct is not None else None
        return put_batch_directly(items, report, concurrency, put_many, upload, self._put_alone)

    def _put_alone(self, item: BatchItem) -> int:
        """Upload one file of a batch through the SDK, as :meth:`_put` does; its size."""
        counted: list[int] = []
        options = self._mtime_extra_args(item.mtime)
        body = batch_body(item, DIRECT_BODY_LIMIT)
        with io.BytesIO(body) if body is not None else open(item.local, "rb") as source:
            self._upload(source, item.key, options, counted.append)
        return sum(counted)

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        """Lazily, a page at a time, in listing order (:func:`.object_listing.azure_listing`)."""
        container, service_prefix = self._container(prefix), self._prefix.service(prefix)
        entries = azure_listing(container, service_prefix, recursive, self.list_page_size)
        yield from self._prefix.listed(entries)

    def _stat(self, key: str) -> FileStat:
        properties = self._blob(key).get_blob_properties()
        return FileStat(
            size=properties.size,
            last_modified=arrow.get(properties.last_modified),
            etag=properties.etag,
            content_type=properties.content_settings.content_type,
        )

    def _probe(self, key: str) -> None:
        """The properties request that :meth:`_stat` sends, its answer not made into the SDK's
        ``BlobProperties`` nor a stat (a tenth of a small request's CPU); sent directly where it
        can be (:mod:`.azure_direct`). A ``404`` but for a missing blob (a missing container)
        is left to the SDK, which raises what it means."""
        direct = self.clients().direct  # with a container only: no blob client needed
        answer = direct.properties(self._prefix.service(key)) if direct is not None else None
        if answer is not None and answer.status == 200:
            return
        if answer is not None and answer.header("x-ms-error-code") == "BlobNotFound":
            raise self._not_found(key)
        self._blob(key).get_blob_properties(cls=_unread)

    def _delete(self, key: str) -> None:
        blob = self._blob(key)
        # Translated here: a missing blob is no error, and only a translated one says so.
        with contextlib.suppress(FileNotFoundInStorageError), self.translating(key):
            blob.delete_blob(delete_snapshots="include")

    def _copy(self, key: str, new_key: str, overwrite: bool = True) -> None:
        """Server-side copy; waits until the service has finished it. With ``overwrite=False``
        the copy is started ``If-None-Match: *``, so the service refuses it onto a blob that
        exists (Azurite enforces it too)."""
        condition = WriteCondition(overwrite=overwrite)
        source, target = self._blob(key), self._blob(new_key)
        with self.translating(new_key):  # failures name the target, but a missing source
            try:
                with deciding(condition, self, new_key):
                    result = target.start_copy_from_url(
                        source.url, **condition_arguments(condition)
                    )
            except ResourceNotFoundError as exc:
                raise azure_error(self, scrub(exc), key) from exc
            status = result.get("copy_status")
            delay, longest = COPY_POLL_SECONDS
            while status == "pending":
                time.sleep(delay)
                delay = min(2 * delay, longest)
                status = target.get_blob_properties().copy.status
        if status != "success":
            raise StorageError(
                f"server-side copy from {key!r} ended {status!r}", backend=self, path=new_key
            )

    # -- links -------------------------------------------------------------------------------

    def _signing_key(self, key: str | None) -> tuple[str, Secret[str]]:
        """The account name and key that sign SAS tokens; a clear error without them."""
        clients = self.clients()
        client = clients.container if clients.container is not None else clients.blob
        account = self.account or getattr(client, "account_name", None)
        if not (self._key and account):
            raise UnsupportedOperationError(
                "SAS links are signed with the storage account key, which this AzureStorage was "
                "not given: pass key= (and account=, or a SAS URL naming the account)",
                backend=self,
                path=key,
            )
        return account, self._key

    def _link_to(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        ip: str | None = None,
        overwrite: bool = True,
        **options: Any,
    ) -> str:
        if not overwrite:
            raise UnsupportedOperationError(
                "Azure SAS links cannot be create-only (overwrite=False): a SAS grants "
                "permissions, not conditions, and the upload's own headers decide those",
                backend=self,
                path=key,
            )
        if options:
            raise TypeError(f"unsupported link options for Azure: {', '.join(sorted(options))}")
        blob = self._blob(key)
        account, account_key = self._signing_key(key)
        download = ShareLinkOperation.download in operation
        upload = ShareLinkOperation.upload in operation
        permission = BlobSasPermissions(
            read=download,
            create=upload,
            write=upload,
            delete=ShareLinkOperation.remove in operation,
        )
        with scrubbed():  # the SDK's frames hold the revealed key
            sas = generate_blob_sas(
                account,
                blob.container_name,
                blob.blob_name,
                account_key=account_key.reveal(),
                permission=permission,
                expiry=expires_at.datetime,
                ip=ip,
                content_disposition=content_disposition(output_path)
                if download and output_path
                else None,
                content_type=content_type if download else None,
            )
        return f"{_without_query(blob.url)}?{sas}"

    def create_download_url(self, path: str, expire: Expiry) -> str:
        """Deprecated: use ``link_to(path, 'download', expire)``."""
        warnings.warn(
            "create_download_url() is deprecated; use link_to(path, 'download', expire)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.link_to(path, ShareLinkOperation.download, expire)

    def create_upload_url(self, path: str, expire: Expiry) -> str:
        """Deprecated: use ``link_to(path, 'upload', expire)``. Upload with
        ``PUT`` and the header ``x-ms-blob-type: BlockBlob``."""
        warnings.warn(
            "create_upload_url() is deprecated; use link_to(path, 'upload', expire)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.link_to(path, ShareLinkOperation.upload, expire)

    def create_container_url(self, expire: Expiry, ip: str | None = None) -> str:
        """A container SAS URL (read, write, delete, list) valid until ``expire``, optionally
        only from the address or range ``ip``; usable as ``sas_container_url``."""
        expires_at = resolve_expiry(expire)
        container = self._container()
        if self.prefix:
            raise UnsupportedOperationError(
                "a container SAS URL would reach outside the prefix", backend=self
            )
        account, account_key = self._signing_key(None)
        with scrubbed():  # the SDK's frames hold the revealed key
            sas = generate_container_sas(
                account,
                container.container_name,
                account_key=account_key.reveal(),
                permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
                expiry=expires_at.datetime,
                ip=ip,
            )
        return f"{_without_query(container.url)}?{sas}"

    def _delete_many(self, keys: list[str]) -> dict[str, Exception]:
        """Blob batches of up to 256 deletes (the service's limit), ``max_concurrency`` at a
        time; one request per key where the backend holds one blob (a blob SAS URL). A missing
        blob is deleted; a refused one gets its status; a batch that fails gives its error to
        each of its keys."""
        if self.clients().container is None:
            return super()._delete_many(keys)
        return delete_in_batches(keys, DELETE_BATCH, self._delete_batch, self.max_concurrency)

    def _delete_batch(self, keys: list[str]) -> dict[str, Exception]:
        try:
            with scrubbed():
                responses = list(
                    self._container().delete_blobs(
                        *map(self._prefix.service, keys),
                        delete_snapshots="include",
                        raise_on_any_failure=False,
                    )
                )
        except Exception as exc:
            return batch_failed(self, exc, keys)
        failed: dict[str, Exception] = {}
        for key, response in zip(keys, responses, strict=True):
            if response.status_code in (202, 404):
                continue
            code = response.headers.get("x-ms-error-code") or "no error code"
            reason = f"{code}, HTTP {response.status_code}"
            if response.status_code == 403:
                failed[key] = StoragePermissionError(
                    f"Azure refused access ({reason})", backend=self, path=key
                )
            else:
                failed[key] = StorageError(
                    f"Azure refused the delete ({reason})", backend=self, path=key
                )
        return failed
