"""AzureStorage's file objects: :class:`AzureReader` (ranged GETs with read-ahead, pinned to
the blob's ETag) and :class:`AzureWriter` (blocks staged in parallel, committed as a block list
on ``close()``, a single upload for small files). Kept apart from :mod:`.azure`, which holds
the backend.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import FileExistsInStorageError, PreconditionFailedError, StorageError, log_retry
from ..progress import ByteCounter
from .azure_direct import DirectRequests
from .azure_errors import condition_arguments, deciding, translate_azure_error
from .base import FileMode, RemoteFile, file_errors
from .conditions import ALWAYS, WriteCondition
from .streams import FileSlice, PartUploadWriter, RangeReader

with contextlib.suppress(ImportError):  # the backend is optional: azure.py says so when used
    from azure.core import MatchConditions
    from azure.core.exceptions import HttpResponseError
    from azure.storage.blob import BlobBlock, BlobClient, ContentSettings

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_BLOCKS",
    "MAX_BLOCK_SIZE",
    "AzureFile",
    "AzureReader",
    "AzureWriter",
]

DEFAULT_CHUNK_SIZE = 5 * 1024 * 1024
MAX_BLOCK_SIZE = 4000 * 1024 * 1024
"""The service's limit for one staged block."""
MAX_BLOCKS = 50_000
"""The service's limit for the blocks of one blob."""


class AzureFile(RemoteFile):
    """Base of the Azure file objects: one blob, read or written through its ``blob_client``.

    Reading and writing a blob work so differently that each has its own class.
    """

    blob_client: BlobClient
    path: str
    storage: Any

    def _translation(self) -> contextlib.AbstractContextManager[None]:
        return file_errors(self.storage, self.path, translate_azure_error)


class AzureReader(AzureFile, RangeReader):
    """Reads a blob with ranged GETs of ``chunk_size``, ``max_concurrency`` of them ahead of a
    sequential reader. Reads are pinned to the blob's ETag at ``open()``: if the blob is replaced
    meanwhile, reading fails instead of mixing two versions. A blob stored with a
    ``Content-Encoding`` reads as its stored bytes (never decompressed).

    With ``first_range=True`` construction downloads the first chunk instead of reading the
    blob's properties (the response's ``Content-Range`` gives the size), so a transfer that
    reads from the start saves a request and a blob of at most ``chunk_size`` is one GET.
    With ``direct`` (the storage's :class:`.azure_direct.DirectRequests`) the properties
    request, or that GET, goes without the SDK's pipeline where it can."""

    def __init__(
        self,
        mode: FileMode | str,
        blob_client: BlobClient,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        max_concurrency: int = 1,
        storage: Any = None,
        path: str | None = None,
        first_range: bool = False,
        direct: DirectRequests | None = None,
    ) -> None:
        if FileMode.as_mode(mode) != FileMode.read:
            raise ValueError("AzureReader reads only: open it with mode 'rb'")
        self.blob_client = blob_client
        self.path = path if path is not None else blob_client.blob_name
        self.storage = storage
        self._first_data: bytes | None = None
        self._direct = direct
        with self._translation():
            size = self._download_first(chunk_size) if first_range else self._direct_properties()
            if size is None:
                properties = blob_client.get_blob_properties()
                self.etag, size = properties.etag, properties.size
        RangeReader.__init__(
            self, size=size, chunk_size=chunk_size, max_concurrency=max_concurrency
        )

    def _direct_properties(self) -> int | None:
        """The blob's size (its ETag kept) from a properties request sent directly; None where
        the SDK must ask."""
        answer = self._direct.properties(self.blob_client.blob_name) if self._direct else None
        etag = answer.header("etag") if answer is not None and answer.status == 200 else None
        length = answer.header("content-length") if answer is not None else None
        if etag is None or length is None or not length.isdigit():
            return None
        self.etag = etag
        return int(length)

    def _download_first(self, chunk_size: int) -> int | None:
        """Download the first ``chunk_size`` bytes (directly where it can), kept for the first
        read; the blob's size, or None for an empty blob (the service refuses a range of it:
        416)."""
        name = self.blob_client.blob_name
        answer = self._direct.first_range(name, chunk_size) if self._direct else None
        if answer is not None and answer.status == 416:
            return None
        if answer is not None and answer.status == 206:
            etag, size = answer.header("etag"), answer.header("content-range")
            total = "" if size is None else size.rpartition("/")[2]
            if etag is not None and total.isdigit():
                self.etag, self._first_data = etag, answer.body
                return int(total)
        try:
            stream = self._download(0, chunk_size)
        except HttpResponseError as exc:
            if exc.status_code == 416:
                return None
            raise
        self.etag = stream.properties.etag
        self._first_data = stream.readall()
        return int(stream.properties.content_range.rpartition("/")[2])

    def _download(self, start: int, length: int, **conditions: Any) -> Any:
        return self.blob_client.download_blob(
            offset=start,
            length=length,
            max_concurrency=1,
            decompress=False,  # the stored bytes, as S3 and the other backends return them
            raw_request_hook=_BodyRetryLog(self.storage, self.path),
            **conditions,
        )

    def _read_range(self, start: int, end: int) -> bytes:
        """The range; the first one as downloaded at construction, when it was (only the
        calling thread reads the first chunk: see :class:`RangeReader`)."""
        if start == 0 and self._first_data is not None:
            data, self._first_data = self._first_data, None
            # A server may answer a shorter range than asked for: the SDK reads on.
            return data if len(data) >= end else data + self._read_range(len(data), end)
        stream = self._download(
            start, end - start, etag=self.etag, match_condition=MatchConditions.IfNotModified
        )
        return stream.readall()

    def _release_resources(self) -> None:
        self._first_data = None
        super()._release_resources()


class _BodyRetryLog:
    """Logs the downloads azure-storage-blob starts again on its own when a response body
    breaks off: its downloader tries up to 3 times, outside the retry policy and with no hook
    of its own. Each new request of one ``download_blob`` call after the first is such a retry
    (the retry policy sends the same request object again, and logs those itself)."""

    attempts = 3

    def __init__(self, storage: Any, path: str) -> None:
        self.storage = storage
        self.path = path
        self.requests: list[Any] = []

    def __call__(self, pipeline_request: Any) -> None:
        request = pipeline_request.http_request
        if any(seen is request for seen in self.requests):
            return
        self.requests.append(request)
        if len(self.requests) > 1:
            log_retry(
                self.storage,
                f"GET {self.path}",
                "the response broke off",
                getattr(self.storage, "endpoint", None) or "its account URL",
                len(self.requests),
                self.attempts,
            )


class AzureWriter(AzureFile, PartUploadWriter):
    """Writes a block blob: full blocks of ``chunk_size`` are staged in parallel (at most
    ``max_concurrency`` in flight, so memory stays bounded) and committed in order by
    ``close()``. A file smaller than one block, an empty one included, is a single upload.

    An aborted or failed write commits nothing, so the previous blob stays. The service has no
    call to drop staged blocks; it discards uncommitted blocks itself after a week.

    ``condition`` (``overwrite=False`` or ``if_match``) goes with the request that publishes,
    the commit or the single-shot upload, so the service decides it there; when it does not
    hold, ``close()`` raises :class:`FileExistsInStorageError` or
    :class:`PreconditionFailedError` and the blob stays as it was.

    ``put_directly``, given by :class:`~.azure.AzureStorage`, puts a small whole file without
    the SDK's pipeline and says whether it did; the SDK's upload follows where it did not.
    """

    max_block_size = MAX_BLOCK_SIZE
    """The largest block (``chunk_size``) the service accepts (0.5's name; now 4,000 MiB)."""

    def __init__(
        self,
        mode: FileMode | str,
        blob_client: BlobClient,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        *,
        max_concurrency: int = 1,
        content_settings: ContentSettings | None = None,
        metadata: Mapping[str, str] | None = None,
        storage: Any = None,
        path: str | None = None,
        condition: WriteCondition = ALWAYS,
        put_directly: Callable[[bytes], bool] | None = None,
    ) -> None:
        if FileMode.as_mode(mode) != FileMode.write:
            raise ValueError("AzureWriter writes only: open it with mode 'wb'")
        if not 0 < chunk_size <= self.max_block_size:
            raise ValueError(f"chunk_size must be between 1 and {self.max_block_size} bytes")
        self.blob_client = blob_client
        self.path = path if path is not None else blob_client.blob_name
        self.storage = storage
        self.content_settings = content_settings
        self.metadata = dict(metadata) if metadata else None
        self.condition = condition
        self._put_directly = put_directly
        # Every block id of one blob must have the same length; a random prefix keeps the blocks
        # of concurrent or earlier, aborted writers apart.
        self._block_prefix = uuid.uuid4().hex
        PartUploadWriter.__init__(self, chunk_size=chunk_size, max_concurrency=max_concurrency)
        # Worker threads get a callable that does not hold the writer, so that an unclosed
        # writer is collected when its caller drops it, not later in a worker.
        self._upload_part = functools.partial(  # type: ignore[method-assign]
            _stage_block, blob_client, self._block_prefix, storage, self.path
        )

    def stage_local_file(
        self, fd: int, start: int, size: int, block_size: int, count_bytes: ByteCounter
    ) -> None:
        """Stage ``size`` bytes of the open file ``fd`` from offset ``start``, in blocks of
        ``block_size`` each streamed from the file (:class:`FileSlice`), so memory stays small
        whatever the block size; ``count_bytes`` follows the bytes as they are sent. Only on a
        fresh writer; ``close()`` commits as usual."""
        if self.tell():
            raise ValueError("stage_local_file needs a writer nothing was written to")
        with self._translation():  # as write() is: a failed block surfaces here
            for offset in range(start, start + size, block_size):
                length = min(block_size, start + size - offset)
                block = FileSlice(
                    fd,
                    offset,
                    length,
                    count_bytes=count_bytes,
                    backend=self.storage,
                    path=self.path,
                )
                self._submit(block)
                self._written += length

    def _complete_parts(self, results: list[Any]) -> None:
        """Commit the blocks. A refused conditional commit is checked against the blob's
        committed blocks: the SDK resends a commit whose answer was lost, and when the first try
        had committed, the service refuses the resend. The block ids are this writer's alone (a
        random prefix), so a blob made of exactly them is this write's own."""
        try:
            with deciding(self.condition, self.storage, self.path):
                self.blob_client.commit_block_list(
                    [BlobBlock(block_id) for block_id in results],
                    content_settings=self.content_settings,
                    metadata=self.metadata,
                    **condition_arguments(self.condition),
                )
        except (FileExistsInStorageError, PreconditionFailedError):
            committed, _ = self.blob_client.get_block_list("committed")
            if [block.id for block in committed] != results:
                raise

    def _put_whole(self, data: bytes) -> None:
        """One Put Blob: first through ``put_directly`` where the storage gave it (it says
        whether that stored the blob), else through the SDK."""
        if self._put_directly is not None and self._put_directly(data):
            return
        with deciding(self.condition, self.storage, self.path):
            self.blob_client.upload_blob(
                data,
                length=len(data),
                overwrite=True,
                content_settings=self.content_settings,
                metadata=self.metadata,
                **condition_arguments(self.condition),
            )


def _stage_block(
    blob_client: BlobClient, prefix: str, storage: Any, path: str, number: int, data: Any
) -> str:
    """Stage block ``number`` (1-based) of an :class:`AzureWriter`; what its workers run."""
    if number > MAX_BLOCKS:
        raise StorageError(
            f"a blob holds at most {MAX_BLOCKS} blocks: write it with a larger chunk_size",
            backend=storage,
            path=path,
        )
    block_id = f"{prefix}{number:08d}"
    blob_client.stage_block(block_id, data, length=len(data))
    return block_id
