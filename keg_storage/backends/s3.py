"""S3Storage: Amazon S3 and every S3-compatible store (MinIO, SeaweedFS, R2, ...) through boto3.

Reads and downloads are lazy ranged GETs with parallel read-ahead (a download's first GET tells
the size: no HEAD), writes a lazily created multipart upload with parallel parts (a single
``put_object`` for small and empty files); ``upload``/``put`` send a body below
``multipart_threshold`` in one ``put_object`` on the calling thread and a larger one through
boto3's transfer manager (conditional ones through the writer). The file classes live in
:mod:`.s3_files`. Copies stay on the server, and links are SigV4 presigned URLs. Conditional writes
(``overwrite=False``, ``if_match``) are decided by the service on the request that publishes.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import IO, TYPE_CHECKING, Any

import arrow

from ..errors import (
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    StorageError,
    UnsupportedOperationError,
    display_url,
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
)
from .base import expire_time_to_seconds as expire_time_to_seconds  # 0.5's name, re-exported
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
from .object_listing import s3_listing
from .prefixes import KeyPrefix, user_path
from .s3_direct import S3Clients, Upload, clients_with_direct_requests
from .s3_errors import (
    condition_parameters,
    deciding,
    translate_s3_error,
)
from .s3_files import MAX_PARTS, S3FileBase, S3Reader, S3Writer
from .s3_settings import (
    CHECKSUM_OPTIONS,
    MIN_PART_SIZE,
    RetryReporter,
    check_options,
    client_settings,
    make_clients,
    set_elsewhere,
    transfer_settings,
    use_fast_timestamps,
)
from .streams import small_body

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
MAX_COPY_OBJECT_SIZE = 5 * 1024 * MiB
"""The largest object ``copy_object`` copies in one request; above it, multipart copy."""
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
"""SigV4 presigned URLs live at most seven days."""
DELETE_BATCH = 1000
"""Keys per DeleteObjects request: S3's limit."""
CREATE_ONLY_HEADERS = {"If-None-Match": "*"}
"""The header an upload through a create-only presigned link (``overwrite=False``) must send."""

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
      ``Config``) merged over the settings above;
    - ``prefix``: every key lives under it (``prefix='app'``: the file ``a.txt`` is the object
      ``app/a.txt``), as under LocalFS's root; listings, copies, moves and presigned links stay
      inside it and name keys relative to it. Normalised by the path rules (``..`` refused);
    - ``direct_requests`` (default True): an unconditional upload below 1 MiB whose only options
      are content headers and metadata, the first ranged GET of a download and the HEAD of
      ``exists`` are signed with SigV4 (a signer of keg_storage's, checked against botocore's)
      and sent without the client's request pipeline: the GET on the client's connection pool,
      the uploads and HEADs on kept connections set up as the client's (0.17 ms of CPU for a
      small upload where ``put_object`` takes 0.9: :mod:`.s3_direct`, :mod:`.keep_alive`).
      They skip the client's event hooks; any refusal or failure sends the request again
      through the client, with its retries and errors. False sends every request through the
      client.

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
    etag_is_md5 = True  # of single-part uploads; a multipart one's ends in -N
    bulk_batch_files = 10_000
    """upload_many sends its small files in one batch (up to this many), ``max_concurrency``
    at once from one thread (:meth:`_put_batch`); download_many gives each file a thread."""
    bulk_download_batch_files = 1

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
        prefix: str = "",
        direct_requests: bool = True,
    ) -> None:
        # Held before anything can raise, so that no frame of ours shows them in plain form.
        self._aws_secret_access_key = hold(aws_secret_access_key)
        self._aws_session_token = hold(aws_session_token)
        del aws_secret_access_key, aws_session_token
        super().__init__(name)
        check_options(boto3 is not None, chunk_size, max_concurrency, addressing_style)
        self.bucket = bucket
        self.endpoint_url = endpoint_url
        self.aws_region, self.aws_profile = aws_region, aws_profile
        self.addressing_style = addressing_style
        self._prefix = KeyPrefix.of(prefix, self)
        self.prefix = self._prefix.name
        """Where every key lives in the bucket (``''``: the whole bucket)."""
        self.max_key_bytes = self._prefix.key_bytes(type(self).max_key_bytes or 1024)
        self._set_transfer_settings(chunk_size, max_concurrency, multipart_threshold)
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.copy_threshold = MAX_COPY_OBJECT_SIZE
        self._set_store_limits(endpoint_url, check_directories, unsupported_path_characters)
        checksums = (request_checksum_calculation, response_checksum_validation)
        with self.translating(None):
            credentials = (aws_access_key_id, aws_profile, aws_region)
            settings = (addressing_style, checksums, client_config)
            direct_bucket = bucket if direct_requests else None
            factory = self._client_factory(*credentials, *settings, direct_bucket)
            # Built again by a forked child on first use there (see keg_storage.backends.forks).
            self._clients = PerProcess(factory, eager=True)
        self.endpoint = display_url(self.client.meta.endpoint_url)
        """Where requests go (``http://127.0.0.1:8333``, ``https://s3.eu-west-1.amazonaws.com``),
        as errors and retry logs name it."""

    def _set_transfer_settings(
        self, chunk_size: int, max_concurrency: int, multipart_threshold: int
    ) -> None:
        """The sizes and parallelism of transfers, and boto3's TransferConfig made of them."""
        self.chunk_size = chunk_size
        # download/get then read whole ranges from the reader (parallel ranged GETs, written in
        # order, so any writable file object works and memory stays bounded).
        self.transfer_chunk_size = chunk_size
        self.max_concurrency = max_concurrency
        self.multipart_threshold = multipart_threshold
        self.transfer_config = transfer_settings(multipart_threshold, chunk_size, max_concurrency)

    def _set_store_limits(
        self,
        endpoint_url: str | None,
        check_directories: bool | None,
        unsupported_path_characters: str | None,
    ) -> None:
        """Where an S3-compatible store (an ``endpoint_url``) differs from AWS, unless given:
        its one-level listings confirm each directory, ``\\`` is refused in keys, and (built on
        a file system, as SeaweedFS and MinIO are) a segment holds at most 255 bytes."""
        self.check_directories = (
            endpoint_url is not None if check_directories is None else check_directories
        )
        if unsupported_path_characters is None:
            unsupported_path_characters = "\\" if endpoint_url else ""
        self.unsupported_path_characters = unsupported_path_characters
        self.max_segment_bytes = 255 if endpoint_url else None

    def _client_factory(
        self,
        aws_access_key_id: str | None,
        aws_profile: str | None,
        aws_region: str | None,
        addressing_style: str | None,
        checksums: tuple[str | None, str | None],
        client_config: Any,
        direct_bucket: str | None,
    ) -> Callable[[], S3Clients]:
        """What makes this storage's two clients (:func:`.s3_settings.make_clients`), from the
        boto3 session of the credentials, and the sender of direct requests to ``direct_bucket``
        (:mod:`.s3_direct`); it holds the settings, not the storage."""
        sdk_session = botocore.session.get_session()
        use_fast_timestamps(sdk_session)
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
        make = functools.partial(make_clients, session, self.endpoint_url, config, reporter)
        return functools.partial(
            clients_with_direct_requests, make, session, direct_bucket, reporter.resent
        )

    @property
    def retry_label(self) -> str:
        """How errors and retry logs name this storage: ``s3 'archive'``."""
        return f"s3 {self.name!r}"

    @property
    def client(self) -> S3Client:
        """This process's boto3 client, shared by its threads."""
        return self._clients.get().client

    @property
    def single_try_client(self) -> S3Client:
        """For the writer's abort, which retries on its own (see S3Writer._abort_parts): one
        try per call here, so that retries never multiply."""
        return self._clients.get().single_try

    def close(self) -> None:
        """Close the clients' connection pools and the direct requests' connections (they
        reopen connections on next use); a forked child never closes its parent's."""
        if clients := self._clients.current():
            clients.client.close()
            clients.single_try.close()
            if clients.direct is not None:
                clients.direct.close()

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        return translate_s3_error(self, error, user_path(path))

    # -- primitives --------------------------------------------------------------------------

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        """Lazily, a page at a time, in listing order (:func:`.object_listing.s3_listing`),
        names relative to the prefix."""
        yield from self._prefix.listed(s3_listing(self, self._prefix.service(prefix), recursive))

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
            return self._reader(key)
        return S3Writer(
            self.bucket,
            self._prefix.service(key),
            self.client,
            self.chunk_size,
            extra_args,
            max_concurrency=self.max_concurrency,
            storage=self,
            abort_client=self.single_try_client,
            condition=condition,
        )

    def _reader(self, key: str, *, first_range: bool = False) -> S3Reader:
        return S3Reader(
            self.bucket,
            self._prefix.service(key),
            self.client,
            chunk_size=self.chunk_size,
            max_concurrency=self.max_concurrency,
            read_attempts=self.max_attempts,
            storage=self,
            first_range=first_range,
            direct=self._clients.get().direct,
        )

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        """The reader's chunks, in order: parallel ranged GETs, the first of which tells the
        size (no HEAD), so an object of at most ``chunk_size`` is one GET on this thread.

        Not boto3's ``download_fileobj``: it sends a HEAD first, and writes by offset from its
        own threads, which needs a seekable ``file_obj``; here any writable one works."""
        with self.translating(key):
            source = self._reader(key, first_range=True)
        with source:
            while chunk := source.read(self.transfer_chunk_size):
                file_obj.write(chunk)
                count_bytes(len(chunk))

    def _stat(self, key: str) -> FileStat:
        head = self.client.head_object(Bucket=self.bucket, Key=self._prefix.service(key))
        return FileStat(
            size=head["ContentLength"],
            last_modified=arrow.get(head["LastModified"]).to("UTC"),
            etag=head.get("ETag"),
            content_type=head.get("ContentType"),
        )

    def _probe(self, key: str) -> None:
        """The HEAD that :meth:`_stat` sends, its answer not made into a stat (sent directly
        where it can be: :mod:`.s3_direct`)."""
        direct, service_key = self._clients.get().direct, self._prefix.service(key)
        status = direct.head_status(service_key) if direct else None
        if status == 404:
            raise FileNotFoundInStorageError(self, key)
        if status != 200:
            self.client.head_object(Bucket=self.bucket, Key=service_key)

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._prefix.service(key))

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
        source, target = self._prefix.service(key), self._prefix.service(new_key)
        head = self.client.head_object(Bucket=self.bucket, Key=source)
        if head["ContentLength"] > self.copy_threshold:
            self._multipart_copy(key, new_key, head, condition)
            return
        try:
            with deciding(condition, self, new_key):
                self.client.copy_object(
                    Bucket=self.bucket,
                    Key=target,
                    CopySource={"Bucket": self.bucket, "Key": source},
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
        source, target = self._prefix.service(key), self._prefix.service(new_key)
        with self.translating(new_key):
            upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=target, **attributes
            )["UploadId"]

        def copy_part(number: int, start: int, end: int) -> Any:
            response = self.client.upload_part_copy(
                Bucket=self.bucket,
                Key=target,
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": source},
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
                    Key=target,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},
                    **condition_parameters(condition),
                )
        except BaseException:
            with contextlib.suppress(Exception):
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=target, UploadId=upload_id
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
        """A body under ``multipart_threshold`` in one ``put_object`` on this thread (a body
        under 1 MiB with plain options sent directly, :mod:`.s3_direct`, where it can), a larger
        one through boto3's transfer manager; a conditional upload through :class:`S3Writer`
        instead, since the transfer manager (s3transfer 0.19) does not pass ``IfNoneMatch`` or
        ``IfMatch`` on to the request that publishes."""
        if not condition.unconditional:
            super()._upload(file_obj, key, extra_args, count_bytes, condition=condition)
            return
        body = small_body(file_obj, self.multipart_threshold)
        if body is not None:
            direct = self._clients.get().direct
            service_key = self._prefix.service(key)
            if direct is None or not direct.put(service_key, body, extra_args):
                self._put_object(key, body, extra_args)
            count_bytes(len(body))
            return
        with self.translating(key):
            self.client.upload_fileobj(
                file_obj,
                self.bucket,
                self._prefix.service(key),
                ExtraArgs=extra_args or None,
                Callback=ForwardProgress(count_bytes).advance,
                Config=self.transfer_config,
            )

    def _put_batch(
        self, items: list[BatchItem], report: Report, concurrency: int = 1
    ) -> dict[int, Exception]:
        """Small files sent directly, ``concurrency`` at once on connections of their own, from
        this thread (:func:`.bulk.put_batch_directly`, :meth:`.DirectRequests.put_many`)."""
        direct = self._clients.get().direct

        def upload(item: BatchItem, body: bytes) -> Upload:
            return Upload(self._prefix.service(item.key), body, self._mtime_extra_args(item.mtime))

        put_many = direct.put_many if direct is not None else None
        return put_batch_directly(items, report, concurrency, put_many, upload, self._put_alone)

    def _put_alone(self, item: BatchItem) -> int:
        """Upload one file of a batch through the client; its size. A local file that grew
        since it was planned goes as any upload (multipart above ``multipart_threshold``)."""
        body = batch_body(item, DIRECT_BODY_LIMIT)
        if body is not None:
            self._put_object(item.key, body, self._mtime_extra_args(item.mtime))
            return len(body)
        counted: list[int] = []
        with open(item.local, "rb") as source:
            self._upload(source, item.key, self._mtime_extra_args(item.mtime), counted.append)
        return sum(counted)

    def _put_object(self, key: str, body: bytes, extra_args: dict[str, Any]) -> None:
        """One ``put_object`` through the client: what the transfer manager would send for a
        small body too, without its threads and their hand-off."""
        with self.translating(key):
            service_key = self._prefix.service(key)
            self.client.put_object(Bucket=self.bucket, Key=service_key, Body=body, **extra_args)

    def _mtime_metadata(self, mtime: arrow.Arrow) -> str:
        """Seconds as a decimal (``1700000000.250000``): the form rclone writes on S3."""
        return f"{mtime.timestamp():.6f}"

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
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._prefix.service(key)}
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

    def _delete_many(self, keys: list[str]) -> dict[str, Exception]:
        """DeleteObjects with up to 1,000 keys per request (S3's limit), ``max_concurrency``
        requests at a time. A key S3 reports in the response's ``Errors`` gets that error (a
        missing key is deleted); a request that fails gives its error to each of its keys."""
        return delete_in_batches(keys, DELETE_BATCH, self._delete_batch, self.max_concurrency)

    def _delete_batch(self, keys: list[str]) -> dict[str, Exception]:
        objects: list[Any] = [{"Key": self._prefix.service(key)} for key in keys]
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            )
        except Exception as exc:
            return batch_failed(self, exc, keys)
        failed: dict[str, Exception] = {}
        for refusal in response.get("Errors", []):
            key = self._prefix.relative(refusal.get("Key", ""))
            refused: Any = {"Error": dict(refusal)}
            cause = botocore.exceptions.ClientError(refused, "DeleteObjects")
            error = translate_s3_error(self, cause, key)
            if error is not None and not isinstance(error, FileNotFoundInStorageError):
                error.__cause__ = cause
                failed[key] = error
        return failed


def _one_argument(
    name: str, value: RemotePath | None, old_name: str, old_value: RemotePath | None
) -> RemotePath:
    """The argument given under its name or under its 0.5 name, never both or neither."""
    if (value is None) == (old_value is None):
        raise TypeError(f"copy() needs exactly one of {name!r} and {old_name!r}")
    return value if value is not None else old_value  # type: ignore[return-value]
