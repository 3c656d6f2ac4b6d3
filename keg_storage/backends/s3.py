"""S3Storage: Amazon S3 and every S3-compatible store (MinIO, SeaweedFS, R2, ...) through boto3.

Reads and downloads are lazy ranged GETs with parallel read-ahead, writes a lazily created
multipart upload with parallel parts (a single ``put_object`` for small and empty files),
``upload``/``put`` go through boto3's transfer manager (conditional ones through the writer),
copies stay on the server, and links are SigV4 presigned URLs. Conditional writes
(``overwrite=False``, ``if_match``) are decided by the service on the request that publishes.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

import arrow

from ..errors import (
    FileExistsInStorageError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    UnsupportedOperationError,
    display_url,
    failure_cause,
    log_retry,
)
from ..http import content_disposition
from ..paths import RemotePath
from ..progress import ByteCounter, ForwardProgress
from ..secrets import hold, reveal
from .base import (
    FileMode,
    FileStat,
    ListEntry,
    RemoteFile,
    ShareLinkOperation,
    StorageBackend,
    file_errors,
)
from .base import expire_time_to_seconds as expire_time_to_seconds  # 0.5's name, re-exported
from .conditions import ALWAYS, Capabilities, WriteCondition
from .forks import PerProcess
from .object_listing import s3_listing
from .s3_errors import (
    BROKEN_BODY_ERRORS,
    client_error_code,
    condition_parameters,
    deciding,
    translate_s3_error,
)
from .s3_settings import (
    CHECKSUM_OPTIONS,
    MIN_PART_SIZE,
    RetryReporter,
    check_options,
    client_settings,
    make_clients,
    set_elsewhere,
    transfer_settings,
)
from .streams import PartUploadWriter, RangeReader

try:
    import boto3
    import botocore.exceptions
    import botocore.session
except ImportError:  # pragma: no cover - exercised by the package tests without the extra
    boto3 = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CREATE_ONLY_HEADERS", "S3FileBase", "S3Reader", "S3Storage", "S3Writer"]

MiB = 1024 * 1024
MAX_PARTS = 10_000
MAX_COPY_OBJECT_SIZE = 5 * 1024 * MiB
"""The largest object ``copy_object`` copies in one request; above it, multipart copy."""
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs live at most seven days."""
CREATE_ONLY_HEADERS = {"If-None-Match": "*"}
"""The header an upload through a create-only presigned link (``overwrite=False``) must send."""
ABORT_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
"""Pauses between further tries of an abort whose connection failed (about 4 s in all)."""

# Object attributes that a multipart copy has to carry over itself (copy_object keeps them).
_COPIED_HEAD_FIELDS = (
    "CacheControl",
    "ContentDisposition",
    "ContentEncoding",
    "ContentLanguage",
    "ContentType",
    "Expires",
    "Metadata",
)


class S3FileBase(RemoteFile):
    """What S3 readers and writers share: the bucket, the key, the client and error mapping.

    Read and write operations for S3 are very different so individual subclasses are used for
    each. Read+write mode is not available for this backend.
    """

    bucket: str
    filename: str
    client: S3Client
    storage: Any

    @property
    def path(self) -> str:
        return self.filename

    def _bind(self, bucket: str, filename: str, client: S3Client, storage: Any) -> None:
        self.bucket = bucket
        self.filename = filename
        self.client = client
        self.storage = storage if storage is not None else f"S3 bucket {bucket!r}"

    def _translation(self) -> contextlib.AbstractContextManager[None]:
        return file_errors(self.storage, self.filename, translate_s3_error)


class S3Reader(S3FileBase, RangeReader):
    """A seekable reader: ranged GETs of ``chunk_size``, up to ``max_concurrency`` in flight
    while reading sequentially, so seeking downloads nothing it skips.

    The object's size and ETag are read at construction (a missing key raises
    ``FileNotFoundInStorageError`` there); every range is requested ``If-Match`` that ETag, so a
    reader never mixes two versions of an object that is replaced while it reads.
    """

    def __init__(
        self,
        bucket: str,
        filename: str,
        client: S3Client,
        *,
        chunk_size: int = 8 * MiB,
        max_concurrency: int = 4,
        read_attempts: int = 3,
        storage: Any = None,
    ) -> None:
        self._bind(bucket, filename, client, storage)
        self.read_attempts = max(1, read_attempts)
        with self._translation():
            head = client.head_object(Bucket=bucket, Key=filename)
        self.etag: str = head["ETag"]
        self.content_type: str | None = head.get("ContentType")
        RangeReader.__init__(
            self,
            size=head["ContentLength"],
            chunk_size=chunk_size,
            max_concurrency=max_concurrency,
        )

    def _read_range(self, start: int, end: int) -> bytes:
        """The range; fetched again when the connection breaks while the body streams in.

        botocore retries failed requests itself, but not a body cut short after the response
        began, so only that phase is retried here (retries never multiply).
        """
        attempt = 1
        while True:
            response = self.client.get_object(
                Bucket=self.bucket,
                Key=self.filename,
                Range=f"bytes={start}-{end - 1}",
                IfMatch=self.etag,
            )
            try:
                with contextlib.closing(response["Body"]) as body:
                    data = body.read()
                break
            except BROKEN_BODY_ERRORS as exc:
                if attempt >= self.read_attempts:
                    raise
                attempt += 1
                _log_retry(self.storage, f"GET {self.filename}", exc, attempt, self.read_attempts)
        if len(data) != end - start:
            raise StorageError(
                f"S3 returned {len(data)} bytes for range {start}-{end - 1}",
                backend=self.storage,
                path=self.filename,
            )
        return data


class S3Writer(S3FileBase, PartUploadWriter):
    """Writes to S3 are quite a bit more complicated than reads. To support large files, we
    cannot write in a single operation and the API does not encourage streaming writes, so we
    make use of the multipart API methods:

    - create a multipart upload and get an upload id to use with subsequent calls;
    - upload "parts" of the file using the upload id and get back an ETag for each part
      (here up to ``max_concurrency`` parts at once, from worker threads);
    - combine the parts using the upload id and all the part ETags.

    Because creating a multipart upload has a cost and nothing may ever be written, the upload
    is created lazily, when the first part is full; a file smaller than ``chunk_size`` (an empty
    one included) is stored with a single ``put_object`` on ``close()``. ``abort()``, an
    exception in a ``with`` block or garbage collection abort the upload: nothing is published
    and no multipart upload is left behind. ``extra_args`` (``ContentType``, ``Metadata``, ...)
    go to the request that creates the object.

    ``condition`` (``overwrite=False`` or ``if_match``) goes with the request that publishes,
    ``put_object`` or ``complete_multipart_upload``, so the service decides it there; when it
    does not hold, ``close()`` aborts the upload and raises :class:`FileExistsInStorageError` or
    :class:`PreconditionFailedError`, and the object stays as it was.
    """

    def __init__(
        self,
        bucket: str,
        filename: str,
        client: S3Client,
        chunk_size: int = 10 * MiB,
        extra_args: dict[str, Any] | None = None,
        *,
        max_concurrency: int = 4,
        storage: Any = None,
        abort_client: S3Client | None = None,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        if chunk_size < MIN_PART_SIZE:
            raise ValueError(f"S3 parts must be at least {MIN_PART_SIZE} bytes")
        self._bind(bucket, filename, client, storage)
        self.abort_client = abort_client if abort_client is not None else client
        self.extra_args = dict(extra_args or {})
        self.condition = condition
        PartUploadWriter.__init__(self, chunk_size=chunk_size, max_concurrency=max_concurrency)
        # Worker threads get a callable that does not hold the writer: an unclosed writer must be
        # collected (and its upload aborted) on the thread that drops it, not in a worker.
        self._sender = _PartSender(client, bucket, filename, self.storage)
        self._upload_part = self._sender.upload  # type: ignore[method-assign]

    @property
    def upload_id(self) -> str | None:
        """The multipart upload in progress, if one was created."""
        return self._sender.upload_id

    def _start_parts(self) -> None:
        response = self.client.create_multipart_upload(
            Bucket=self.bucket, Key=self.filename, **self.extra_args
        )
        self._sender.upload_id = response["UploadId"]

    def _complete_parts(self, results: list[Any]) -> None:
        assert self.upload_id is not None

        def etag() -> str:
            digests = b"".join(bytes.fromhex(part["ETag"].strip('"')) for part in results)
            return f'"{hashlib.md5(digests).hexdigest()}-{len(results)}"'

        with self._deciding(etag):
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.filename,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": results},
                **condition_parameters(self.condition),
            )
        self._sender.upload_id = None

    def _abort_parts(self) -> None:
        """Abort the multipart upload, trying again for a few seconds if the connection fails.

        An abort mostly follows a failed part, often because the server or the network went
        away, and it is then sent at once, while they are still away. A multipart upload that
        is never aborted keeps its parts stored (and billed) with no end, invisible to listings,
        so the abort outlasts a short outage such as a server restart. The pauses are ours, not
        botocore's (whose backoff cannot be bounded per call, and can reach 20 s a try), and
        ``abort_client`` makes one try per call, so retries do not multiply.
        """
        upload_id, self._sender.upload_id = self.upload_id, None
        if upload_id is None:
            return
        for attempt, delay in enumerate((*ABORT_RETRY_DELAYS, None)):
            try:
                with self._translation():
                    self.abort_client.abort_multipart_upload(
                        Bucket=self.bucket, Key=self.filename, UploadId=upload_id
                    )
                return
            except StorageConnectionError as exc:
                if delay is None:
                    raise
                _log_retry(
                    self.storage,
                    f"abort of the upload of {self.filename}",
                    exc,
                    attempt + 2,
                    len(ABORT_RETRY_DELAYS) + 1,
                )
                time.sleep(delay)
            except StorageError as exc:
                # An earlier try may have reached the server before its connection broke.
                cause = exc.__cause__
                if attempt and cause is not None and client_error_code(cause) == "NoSuchUpload":
                    return
                raise

    def _put_whole(self, data: bytes) -> None:
        with self._deciding(lambda: f'"{hashlib.md5(data).hexdigest()}"'):
            self.client.put_object(
                Bucket=self.bucket,
                Key=self.filename,
                Body=data,
                **self.extra_args,
                **condition_parameters(self.condition),
            )

    @contextlib.contextmanager
    def _deciding(self, etag: Callable[[], str]) -> Iterator[None]:
        """:func:`deciding` for the request that publishes, which would give the object the
        ETag ``etag()`` (S3's: the MD5 of the body, or of the parts' MD5s then ``-<parts>``).

        botocore resends a request whose answer was lost; when the first try had published, the
        service refuses the resend (412) as the object now exists. A refusal after a resend is
        therefore checked: an object whose ETag is ``etag()`` holds exactly these bytes, so the
        write went through. Only after a resend, so a refusal at the first try always stands.
        (SeaweedFS, like AWS, answers a resent complete of a completed upload as the first.)
        """
        try:
            with deciding(self.condition, self.storage, self.filename):
                yield
        except (FileExistsInStorageError, PreconditionFailedError) as refused:
            if not (_retried(refused.__cause__) and self._stored_etag() == etag()):
                raise

    def _stored_etag(self) -> str | None:
        with contextlib.suppress(botocore.exceptions.ClientError):
            return self.client.head_object(Bucket=self.bucket, Key=self.filename)["ETag"]
        return None


def _retried(error: BaseException | None) -> bool:
    """Whether botocore sent the request that failed with ``error`` more than once."""
    response = getattr(error, "response", None) or {}
    return bool(response.get("ResponseMetadata", {}).get("RetryAttempts"))


class _PartSender:
    """Uploads one part of a multipart upload; what S3Writer's worker threads run."""

    def __init__(self, client: S3Client, bucket: str, key: str, storage: Any) -> None:
        self.client = client
        self.bucket = bucket
        self.key = key
        self.storage = storage
        self.upload_id: str | None = None

    def upload(self, number: int, data: bytes) -> dict[str, Any]:
        if number > MAX_PARTS:
            raise StorageError(
                f"more than {MAX_PARTS} parts: open the file with a larger chunk_size",
                backend=self.storage,
                path=self.key,
            )
        assert self.upload_id is not None
        response = self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
        )
        return {"PartNumber": number, "ETag": response["ETag"]}


def _log_retry(storage: Any, action: str, exc: BaseException, attempt: int, attempts: int) -> None:
    """Log a retry of keg_storage's own (a broken body, an abort) on ``keg_storage.retry``."""
    cause = failure_cause(
        exc,
        connect_timeout=getattr(storage, "connect_timeout", None),
        read_timeout=getattr(storage, "read_timeout", None),
    )
    endpoint = getattr(storage, "endpoint", None) or "its endpoint"
    log_retry(storage, action, cause, endpoint, attempt, attempts)


class S3Storage(StorageBackend):
    """Files in one S3 bucket (AWS or any S3-compatible service via ``endpoint_url``).

    Credentials come from the arguments, else from ``aws_profile``, else from boto3's usual
    chain (environment, config files, instance roles). Keyword options:

    - ``endpoint_url``: the service's URL for S3-compatible stores (``http://127.0.0.1:8333``);
    - ``addressing_style``: ``'path'``, ``'virtual'`` or ``'auto'``; default ``'path'`` with an
      ``endpoint_url`` (what most compatible stores need), else boto3's ``'auto'``;
    - ``connect_timeout``, ``read_timeout`` (seconds) and ``max_attempts`` (total tries of a
      request, with botocore's ``standard`` retry mode and its backoff);
    - ``chunk_size`` (part and range size, at least 5 MiB; default 8 MiB), ``max_concurrency``
      (parts or ranges in flight per transfer; default 4, which saturates a local link, raise it
      for far-away endpoints) and ``multipart_threshold`` (from which size ``upload``/``put``
      use a multipart upload): a transfer holds about ``chunk_size * (max_concurrency + 1)``
      bytes in memory, whatever the file size;
    - ``check_directories``: whether ``list(recursive=False)`` confirms that each directory it
      reports still holds a file. Stores built on a file system (SeaweedFS, ...) keep reporting
      emptied directories; AWS never does. Default: only with an ``endpoint_url``;
    - ``unsupported_path_characters``: characters refused in paths (``InvalidPathError``)
      because the store would change them. Default: ``"\\"`` with an ``endpoint_url`` (SeaweedFS
      and other compatible stores turn ``\\`` into ``/``, which would move the file), else none
      (AWS keeps every character). Keys longer than 1,024 bytes of UTF-8 are refused the same
      way, and with an ``endpoint_url`` also names (segments) longer than 255 bytes;
    - ``request_checksum_calculation`` and ``response_checksum_validation``: botocore's
      checksum settings. Default with an ``endpoint_url``: ``'when_required'`` (boto3 >= 1.36
      sends and checks checksums whenever S3 supports them, which many compatible stores
      refuse: boto3#4392), unless the environment or the profile sets them; else boto3's;
    - ``aws_session_token`` for temporary credentials and ``client_config`` (a botocore
      ``Config``) merged over the settings above.

    Connection errors name :attr:`endpoint` and the cause; every retry is logged on
    ``keg_storage.retry``.

    One boto3 client is made per instance and process, shared by all threads that use it (a
    forked child makes its own on first use). Links are
    presigned with Signature Version 4.
    """

    capabilities = Capabilities(
        conditional_create=True,
        conditional_replace=True,
        server_side_copy=True,
        service_links=True,
        metadata=True,
    )
    supported_extra_args = None
    max_key_bytes = 1024
    ordered_listing = True

    def __init__(
        self,
        bucket: str,
        aws_region: str | None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_profile: str | None = None,
        name: str = "s3",
        *,
        endpoint_url: str | None = None,
        aws_session_token: str | None = None,
        addressing_style: str | None = None,
        connect_timeout: float = 10,
        read_timeout: float = 60,
        max_attempts: int = 5,
        chunk_size: int = 8 * MiB,
        max_concurrency: int = 4,
        multipart_threshold: int = 8 * MiB,
        client_config: Any = None,
        check_directories: bool | None = None,
        unsupported_path_characters: str | None = None,
        request_checksum_calculation: str | None = None,
        response_checksum_validation: str | None = None,
    ) -> None:
        # Held before anything can raise, so that no frame of ours shows them in plain form.
        self._aws_secret_access_key = hold(aws_secret_access_key)
        self._aws_session_token = hold(aws_session_token)
        del aws_secret_access_key, aws_session_token
        super().__init__(name)
        check_options(boto3 is not None, chunk_size, max_concurrency, addressing_style)
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.chunk_size = chunk_size
        # download/get then read whole ranges from the reader (parallel ranged GETs, written in
        # order, so any writable file object works and memory stays bounded).
        self.transfer_chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self.multipart_threshold = multipart_threshold
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.copy_threshold = MAX_COPY_OBJECT_SIZE
        compatible = endpoint_url is not None  # an S3-compatible store rather than AWS
        self.check_directories = compatible if check_directories is None else check_directories
        if unsupported_path_characters is None:
            unsupported_path_characters = "\\" if endpoint_url else ""
        self.unsupported_path_characters = unsupported_path_characters
        # Stores built on a file system (SeaweedFS, MinIO) keep names of at most 255 bytes.
        self.max_segment_bytes = 255 if endpoint_url else None
        checksums = (request_checksum_calculation, response_checksum_validation)
        with self.translating(None):
            credentials = (aws_access_key_id, aws_profile, aws_region)
            factory = self._client_factory(*credentials, addressing_style, checksums, client_config)
            # Built again by a forked child on first use there (see keg_storage.backends.forks).
            self._clients = PerProcess(factory, eager=True)
        self.endpoint = display_url(self.client.meta.endpoint_url)
        """Where requests go (``http://127.0.0.1:8333``, ``https://s3.eu-west-1.amazonaws.com``),
        as errors and retry logs name it."""
        self.transfer_config = transfer_settings(multipart_threshold, chunk_size, max_concurrency)

    def _client_factory(
        self,
        aws_access_key_id: str | None,
        aws_profile: str | None,
        aws_region: str | None,
        addressing_style: str | None,
        checksums: tuple[str | None, str | None],
        client_config: Any,
    ) -> Callable[[], tuple[S3Client, S3Client]]:
        """What makes this storage's two clients (:func:`.s3_settings.make_clients`), from the
        boto3 session of the credentials; it holds the settings, not the storage."""
        sdk_session = botocore.session.get_session()
        session = boto3.session.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=reveal(self._aws_secret_access_key),
            aws_session_token=reveal(self._aws_session_token),
            profile_name=aws_profile,
            region_name=aws_region,
            botocore_session=sdk_session,
        )
        config = client_settings(
            functools.partial(set_elsewhere, sdk_session),
            endpoint_url=self.endpoint_url,
            addressing_style=addressing_style,
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_attempts=self.max_attempts,
            max_concurrency=self.max_concurrency,
            checksums=dict(zip(CHECKSUM_OPTIONS, checksums, strict=True)),
        )
        if client_config is not None:
            config = config.merge(client_config)
        reporter = RetryReporter(self.retry_label, self.connect_timeout, self.read_timeout)
        return functools.partial(make_clients, session, self.endpoint_url, config, reporter)

    @property
    def retry_label(self) -> str:
        """How errors and retry logs name this storage: ``s3 'archive'``."""
        return f"s3 {self.name!r}"

    def __repr__(self) -> str:
        # getattr: a traceback with locals shows ``self`` of a constructor that failed half-way.
        return f"S3Storage(name={self.name!r}, bucket={getattr(self, 'bucket', None)!r})"

    @property
    def client(self) -> S3Client:
        """This process's boto3 client, shared by its threads."""
        return self._clients.get()[0]

    @property
    def single_try_client(self) -> S3Client:
        """For the writer's abort, which retries on its own (see S3Writer._abort_parts): one
        try per call here, so that retries never multiply."""
        return self._clients.get()[1]

    def close(self) -> None:
        """Close the clients' connection pools (they reopen connections on next use); a forked
        child never closes its parent's."""
        for client in self._clients.current() or ():
            client.close()

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        return translate_s3_error(self, error, path)

    # -- primitives --------------------------------------------------------------------------

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        """Lazily, a page at a time, in listing order (:func:`.object_listing.s3_listing`)."""
        return s3_listing(self, prefix, recursive)

    def _holds_files(self, prefix: str) -> bool:
        """Whether any file (not only folder markers) has a key starting with ``prefix``."""
        paginator = self.client.get_paginator("list_objects_v2")
        with self.translating(prefix):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                if any(not obj["Key"].endswith("/") for obj in page.get("Contents", [])):
                    return True
        return False

    def _open(
        self,
        key: str,
        mode: FileMode,
        extra_args: dict[str, Any],
        condition: WriteCondition = ALWAYS,
    ) -> RemoteFile:
        if mode == FileMode.read:
            return S3Reader(
                self.bucket,
                key,
                self.client,
                chunk_size=self.chunk_size,
                max_concurrency=self.max_concurrency,
                read_attempts=self.max_attempts,
                storage=self,
            )
        return S3Writer(
            self.bucket,
            key,
            self.client,
            self.chunk_size,
            extra_args,
            max_concurrency=self.max_concurrency,
            storage=self,
            abort_client=self.single_try_client,
            condition=condition,
        )

    def _stat(self, key: str) -> FileStat:
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        return FileStat(
            size=head["ContentLength"],
            last_modified=arrow.get(head["LastModified"]).to("UTC"),
            etag=head.get("ETag"),
            content_type=head.get("ContentType"),
        )

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def copy(
        self,
        path: RemotePath | None = None,
        new_path: RemotePath | None = None,
        *,
        current_file: RemotePath | None = None,
        new_file: RemotePath | None = None,
        **options: Any,
    ) -> None:
        """Copy a file on the server; 0.5 documented the keywords ``current_file`` and
        ``new_file``, which are accepted as well as ``path`` and ``new_path``."""
        super().copy(
            _one_argument("path", path, "current_file", current_file),
            _one_argument("new_path", new_path, "new_file", new_file),
            **options,
        )

    def _copy(self, key: str, new_key: str, overwrite: bool = True) -> None:
        """Copy on the server: ``copy_object`` up to 5 GiB, a multipart copy above; with
        ``overwrite=False`` the request that publishes carries ``IfNoneMatch='*'`` (SeaweedFS
        and AWS decide it on both)."""
        condition = WriteCondition(overwrite=overwrite)
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        if head["ContentLength"] > self.copy_threshold:
            self._multipart_copy(key, new_key, head, condition)
            return
        try:
            with deciding(condition, self, new_key):
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=new_key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    CopySourceIfMatch=head["ETag"],
                    **condition_parameters(condition),
                )
        except FileExistsInStorageError as refused:
            # A 412 may also be CopySourceIfMatch's: the source was replaced since the HEAD.
            if self._exists(new_key) or refused.__cause__ is None:
                raise
            raise refused.__cause__ from None

    def _multipart_copy(
        self, key: str, new_key: str, head: Any, condition: WriteCondition = ALWAYS
    ) -> None:
        size = head["ContentLength"]
        part_size = max(self.chunk_size, math.ceil(size / MAX_PARTS), MIN_PART_SIZE)
        ranges = [(start, min(start + part_size, size)) for start in range(0, size, part_size)]
        attributes = {field: head[field] for field in _COPIED_HEAD_FIELDS if field in head}
        with self.translating(new_key):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=new_key, **attributes
            )["UploadId"]

        def copy_part(number: int, start: int, end: int) -> Any:
            response = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=new_key,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": key},
                CopySourceRange=f"bytes={start}-{end - 1}",
                CopySourceIfMatch=head["ETag"],
            )
            return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

        try:
            with ThreadPoolExecutor(self.max_concurrency, "keg-storage-copy") as executor:
                futures = [
                    executor.submit(copy_part, number, start, end)
                    for number, (start, end) in enumerate(ranges, start=1)
                ]
                parts = [future.result() for future in futures]
            with self.translating(new_key), deciding(condition, self, new_key):
                self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=new_key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition_parameters(condition),
                )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=new_key, UploadId=upload_id
                )
            raise

    def _upload(
        self,
        file_obj: IO[bytes],
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        condition: WriteCondition = ALWAYS,
    ) -> None:
        """Through boto3's transfer manager; a conditional upload through :class:`S3Writer`
        instead, since the transfer manager (s3transfer 0.19) does not pass ``IfNoneMatch`` or
        ``IfMatch`` on to the request that publishes."""
        if not condition.unconditional:
            super()._upload(file_obj, key, extra_args, count_bytes, condition=condition)
            return
        with self.translating(key):
            self.client.upload_fileobj(
                file_obj,
                self.bucket,
                key,
                ExtraArgs=extra_args or None,
                Callback=ForwardProgress(count_bytes).advance,
                Config=self.transfer_config,
            )

    def _link_to(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        **options: Any,
    ) -> str:
        """A presigned URL for exactly one operation (S3 signs one request per URL).

        An upload link with ``overwrite=False`` signs ``If-None-Match: *`` as a header the
        upload must send (:data:`CREATE_ONLY_HEADERS`): the service then refuses (412) an upload
        onto an existing object, and a request without the header does not match the signature.
        """
        content_encoding = options.pop("content_encoding", None)
        overwrite = options.pop("overwrite", True)
        if not isinstance(overwrite, bool):
            raise TypeError(f"overwrite must be a bool, not {type(overwrite).__name__}")
        if not overwrite and operation != ShareLinkOperation.upload:
            raise ValueError("overwrite=False applies to upload links only")
        if options:
            raise TypeError(f"unexpected link options: {', '.join(sorted(options))}")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if operation == ShareLinkOperation.download:
            method = "get_object"
            if output_path is not None:
                params["ResponseContentDisposition"] = content_disposition(output_path)
            if content_type is not None:
                params["ResponseContentType"] = content_type
            if content_encoding is not None:
                params["ResponseContentEncoding"] = content_encoding
        elif operation == ShareLinkOperation.upload:
            method = "put_object"
            params["ContentType"] = content_type or "application/octet-stream"
            if content_encoding is not None:
                params["ContentEncoding"] = content_encoding
            if not overwrite:
                params.update(condition_parameters(WriteCondition(overwrite=False)))
        elif operation == ShareLinkOperation.remove:
            method = "delete_object"
        else:
            raise UnsupportedOperationError(
                "S3 backends cannot generate a link for multiple operations",
                backend=self,
                path=key,
            )
        seconds = math.ceil((expires_at - arrow.utcnow()).total_seconds())
        if seconds > MAX_PRESIGN_SECONDS:
            raise ValueError("S3 presigned links expire after at most 7 days")
        url: str = self.client.generate_presigned_url(
            method, Params=params, ExpiresIn=max(1, seconds)
        )
        return url


def _one_argument(
    name: str, value: RemotePath | None, old_name: str, old_value: RemotePath | None
) -> RemotePath:
    """The argument given under its name or under its 0.5 name, never both or neither."""
    if (value is None) == (old_value is None):
        raise TypeError(f"copy() needs exactly one of {name!r} and {old_name!r}")
    return value if value is not None else old_value  # type: ignore[return-value]
