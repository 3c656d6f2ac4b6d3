"""S3Storage's file objects: :class:`S3Reader` (ranged GETs with read-ahead) and
:class:`S3Writer` (a lazily created multipart upload with parallel parts, a single
``put_object`` for small and empty files). Kept apart from :mod:`.s3`, which holds the backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from ..errors import (
    FileExistsInStorageError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    failure_cause,
    log_retry,
)
from .base import RemoteFile, file_errors
from .conditions import ALWAYS, WriteCondition
from .s3_direct import RANGE_NOT_SATISFIABLE, DirectRequests
from .s3_errors import (
    BROKEN_BODY_ERRORS,
    client_error_code,
    condition_parameters,
    deciding,
    translate_s3_error,
)
from .s3_settings import MIN_PART_SIZE
from .streams import PartUploadWriter, RangeReader

with contextlib.suppress(ImportError):  # pragma: no cover - tested without the extra too
    import botocore.exceptions

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["S3FileBase", "S3Reader", "S3Writer"]

MiB = 1024 * 1024
MAX_PARTS = 10_000
ABORT_RETRY_DELAYS = (0.25, 0.5, 1.0, 2.0)
"""Pauses between further tries of an abort whose connection failed (about 4 s in all)."""


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
    while reading sequentially (from the first read on), so seeking downloads nothing it skips.

    The object's size and ETag are read at construction (a missing key raises
    ``FileNotFoundInStorageError`` there); every range is requested ``If-Match`` that ETag, so a
    reader never mixes two versions of an object that is replaced while it reads.

    With ``first_range=True`` construction sends the GET of the first range instead of a HEAD
    (its ``Content-Range`` gives the size) and the first read takes that response's body: a
    transfer that reads from the start saves a request, and an object of at most ``chunk_size``
    costs one GET, sent by ``direct`` where given (:mod:`.s3_direct`). A reader that may seek
    first (``open()``) is better served by the HEAD.
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
        first_range: bool = False,
        direct: DirectRequests | None = None,
    ) -> None:
        self._bind(bucket, filename, client, storage)
        self._direct = direct
        self.read_attempts = max(1, read_attempts)
        self._first_response: Any = None  # a GetObject response, its body unread
        with self._translation():
            head: Any = self._get_first(chunk_size) if first_range else None
            if head is None:
                head = client.head_object(Bucket=bucket, Key=filename)
        self.etag: str = head["ETag"]
        self.content_type: str | None = head.get("ContentType")
        RangeReader.__init__(
            self,
            size=_object_size(head),
            chunk_size=chunk_size,
            max_concurrency=max_concurrency,
        )

    def _get_first(self, chunk_size: int) -> Any:
        """GET the first ``chunk_size`` bytes and keep the response, its body unread, for the
        first read; None for an empty object (S3 refuses a range of it: 416), which a HEAD
        then describes."""
        direct = self._direct.get_range(self.filename, 0, chunk_size - 1) if self._direct else None
        if direct == RANGE_NOT_SATISFIABLE:
            return None
        if isinstance(direct, dict):
            self._first_response = direct
            return direct
        try:
            response = self.client.get_object(
                Bucket=self.bucket, Key=self.filename, Range=f"bytes=0-{chunk_size - 1}"
            )
        except botocore.exceptions.ClientError as exc:
            if client_error_code(exc) in ("InvalidRange", "416"):
                return None
            raise
        if _object_size(response) > chunk_size and "ContentRange" not in response:
            response["Body"].close()  # a store that ignored the range: not a first chunk
            return response
        self._first_response = response
        return response

    def _read_range(self, start: int, end: int) -> bytes:
        """The range; fetched again when the connection breaks while the body streams in.

        botocore retries failed requests itself, but not a body cut short after the response
        began, so only that phase is retried here (retries never multiply). The first range
        comes from the GET made at construction, when there was one (only the calling thread
        reads the first chunk: see :class:`RangeReader`).
        """
        response: Any = None
        if start == 0:
            response, self._first_response = self._first_response, None
        attempt = 1
        while True:
            if response is None:
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
                response = None
                _log_retry(self.storage, f"GET {self.filename}", exc, attempt, self.read_attempts)
        if len(data) != end - start:
            raise StorageError(
                f"S3 returned {len(data)} bytes for range {start}-{end - 1}",
                backend=self.storage,
                path=self.filename,
            )
        return data

    def _release_resources(self) -> None:
        response, self._first_response = self._first_response, None
        if response is not None:
            response["Body"].close()
        super()._release_resources()


def _object_size(response: Any) -> int:
    """The object's size from a HEAD or a GET (``Content-Range: bytes 0-9/1234`` for a range)."""
    content_range = response.get("ContentRange")
    if content_range:
        return int(content_range.rpartition("/")[2])
    return int(response["ContentLength"])


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
