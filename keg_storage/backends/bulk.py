"""Bulk operations: :meth:`~.StorageBackend.delete_many`, :meth:`~.StorageBackend.upload_many`
and :meth:`~.StorageBackend.download_many`.

Each returns one result per item, in the order given: the item's error, or None when it was
done. One item failing (a bad path, a missing file, a refusal) never stops the others, and no
item is ever half-done: deletes are deletes, and every transfer goes through the backend's own
``_put``/``_get``, which publish each file whole or not at all.

Deletes hand the whole list of keys to the backend's ``_delete_many`` primitive, which uses its
service's batch call where it has one (S3 DeleteObjects, Azure blob batch, pipelined SFTP
removes); the default deletes one key after the other.

Transfers run in a thread pool of ``max_concurrency`` workers (the backends are thread-safe,
CONTRACT §7). A backend whose service serves many small files faster in one stream of requests
than one request at a time per thread (SFTP: pipelined, see its ``_put_batch``) sets
:attr:`~.StorageBackend.bulk_batch_files`: uploads of files up to
:attr:`~.StorageBackend.bulk_small_file_bytes` bytes, and downloads, are then handed to it in
batches of that many, one batch per worker, with a result per file all the same.

The workers report their bytes to the calling thread, which sums them into one
progress callback, cumulative and never decreasing, as :func:`~keg_storage.progress.relay_progress`
does for one transfer. That relay is written out here rather than reused, because it must also
stop the pool: when the callback raises or the caller is interrupted (``KeyboardInterrupt``),
every running transfer stops at its next chunk (its temp state removed by the backend, as for any
failed transfer), queued ones never start, and the exception propagates once they have unwound.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import math
import os
import queue
import stat
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from ..errors import StorageError
from ..paths import RemotePath
from ..progress import ByteCounter, ProgressCallback, TransferCancelledError

if TYPE_CHECKING:
    from .base import StorageBackend

LocalPath = str | os.PathLike[str]
Report = Callable[[int, int], None]
"""``report(index, amount)``: the transfer of item ``index`` moved ``amount`` bytes on."""
Batch = tuple[list[int], Callable[[Report], dict[int, Exception]]]
"""The indices of some items and the job that transfers them: it reports their bytes and
returns the error of each item that failed (raising fails them all)."""

_POLL_SECONDS = 0.1
"""How long the calling thread waits for news of the workers before looking again (so that
``KeyboardInterrupt`` is seen promptly)."""


@dataclasses.dataclass(frozen=True)
class DeleteResult:
    """What :meth:`~.StorageBackend.delete_many` did with one path.

    ``error`` is None when nothing is at ``path`` any more (a file that was already missing
    included, as for :meth:`~.StorageBackend.delete`), else the error that kept it (an
    :class:`~keg_storage.errors.InvalidPathError` for a bad path, a
    :class:`~keg_storage.errors.StoragePermissionError`, ...), naming the path and the backend.
    """

    path: str
    """The path as given."""
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """Whether the path was deleted (or had nothing to delete)."""
        return self.error is None


@dataclasses.dataclass(frozen=True)
class BatchItem:
    """One file of :meth:`~.StorageBackend.upload_many` handed to a backend's ``_put_batch``
    (a regular local file of at most :attr:`~.StorageBackend.bulk_small_file_bytes` bytes
    when planned, to be published whole at ``key``, overwriting), or of
    :meth:`~.StorageBackend.download_many` handed to its ``_get_batch``."""

    index: int
    """Its place among the pairs (what ``report`` and the returned errors are keyed by)."""
    local: str
    """The local file: the source of an upload, the destination of a download."""
    key: str
    data: bytes | None = None
    """An upload's bytes, held in memory, in place of reading ``local`` (``sync``: a small
    file read from its source store)."""
    mtime: float | None = None
    """An upload's modification time (seconds since the epoch), kept as
    :meth:`~.StorageBackend.upload_keeping_mtime` keeps it (SFTP: in whole seconds, set on the
    file before it is published; S3, Azure: as metadata); None: the time of the write."""


@dataclasses.dataclass(frozen=True)
class TransferResult:
    """What :meth:`~.StorageBackend.upload_many` or :meth:`~.StorageBackend.download_many`
    did with one pair.

    ``error`` is None when the file was transferred whole, else the error that stopped it; the
    destination then holds what it held before (nothing, or the previous content).
    """

    source: str
    """The local file (upload) or the remote path (download), as given."""
    destination: str
    """The remote path (upload) or the local file (download), as given."""
    bytes: int = 0
    """Bytes transferred: the file's size when done."""
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        """Whether the file was transferred."""
        return self.error is None


def delete_many(backend: StorageBackend, paths: Iterable[RemotePath]) -> list[DeleteResult]:
    """:meth:`~.StorageBackend.delete_many`: validate every path, delete the valid ones in one
    call of the backend's ``_delete_many``, and give a result per path."""
    given = _items(paths, "paths")
    keys: list[str | None] = []
    errors: dict[int, Exception] = {}
    for index, path in enumerate(given):
        try:
            keys.append(backend._file_key(path))
        except (StorageError, TypeError, ValueError) as exc:
            keys.append(None)
            errors[index] = exc
    unique = list(dict.fromkeys(key for key in keys if key is not None))
    failed: dict[str, Exception] = {}
    if unique:
        try:
            with backend.translating(None):
                failed = dict(backend._delete_many(unique))
        except Exception as exc:  # the whole call failed (a dead server): no key is known gone
            failed = dict.fromkeys(unique, exc)
    return [
        DeleteResult(_text(path), errors.get(index) or failed.get(keys[index] or ""))
        for index, path in enumerate(given)
    ]


def upload_many(
    backend: StorageBackend,
    pairs: Iterable[tuple[LocalPath, RemotePath]],
    *,
    max_concurrency: int,
    progress: ProgressCallback | None,
    overwrite: bool,
) -> list[TransferResult]:
    """:meth:`~.StorageBackend.upload_many`: each pair ``put`` by a worker."""

    def job(local: LocalPath, path: RemotePath) -> Callable[[ByteCounter], None]:
        def put(count_bytes: ByteCounter) -> None:
            key = backend._file_key(path)
            condition = backend._write_condition(key, overwrite, None)
            conditional = {} if condition.unconditional else {"condition": condition}
            source = os.fspath(local)
            # FileNotFoundError naming the local file, as put() raises; a directory refused
            if stat.S_ISDIR(os.stat(source).st_mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), source)
            backend._put(source, key, {}, count_bytes, **conditional)

        return put

    items = _pairs(pairs)
    jobs = [_one(index, job(local, path)) for index, (local, path) in enumerate(items)]
    size = backend.bulk_batch_files
    if overwrite and _batching(size, backend, max_concurrency, len(items)):
        small, jobs = _planned(backend, [(local, path) for local, path in items], jobs, True)
        # Each batch may have its share of the requests at once (S3 sends them from one thread).
        share = _workers(max_concurrency, len(items), backend) // max(1, _count(small, size))
        put = functools.partial(backend._put_batch, concurrency=max(1, share))
        jobs += _batches(small, size, put)
    return _run(items, jobs, max_concurrency, progress, backend)


def _batching(size: int, backend: StorageBackend, max_concurrency: int, count: int) -> bool:
    """Whether the backend takes batches (of ``size`` files: its
    :attr:`~.StorageBackend.bulk_batch_files`) and the transfers run on more than one thread
    (one after the other, each file ends before the next starts, as the caller may rely on)."""
    return size > 1 and _workers(max_concurrency, count, backend) > 1


def _planned(
    backend: StorageBackend, pairs: list[tuple[Any, Any]], jobs: list[Batch], uploads: bool
) -> tuple[list[BatchItem], list[Batch]]:
    """The pairs (local, remote) that may go in a batch: a valid key, and for ``uploads`` a
    regular local file of at most ``bulk_small_file_bytes``; and the jobs of the others, which
    keep their own (raising their error, as without batches)."""
    small: list[BatchItem] = []
    rest: list[Batch] = []
    for (local, path), single in zip(pairs, jobs, strict=True):
        try:
            item = BatchItem(single[0][0], os.fspath(local), backend._file_key(path))
            info = os.stat(item.local) if uploads else None
        except (StorageError, TypeError, ValueError, OSError):
            rest.append(single)
            continue
        if info is None or (
            stat.S_ISREG(info.st_mode) and info.st_size <= backend.bulk_small_file_bytes
        ):
            small.append(item)
        else:
            rest.append(single)
    return small, rest


def _batches(
    items: list[BatchItem],
    size: int,
    transfer: Callable[[list[BatchItem], Report], dict[int, Exception]],
) -> list[Batch]:
    """``items`` cut into as few jobs of at most ``size`` as hold them, of even sizes (65 files
    in batches of 64 go as 33 and 32, not 64 and 1), each passed whole to ``transfer``."""
    if not items:
        return []
    even = math.ceil(len(items) / _count(items, size))
    return [
        (
            [item.index for item in items[start : start + even]],
            functools.partial(transfer, items[start : start + even]),
        )
        for start in range(0, len(items), even)
    ]


def _count(items: Sequence[Any], size: int) -> int:
    """How many batches of at most ``size`` hold ``items``."""
    return math.ceil(len(items) / size)


def download_many(
    backend: StorageBackend,
    pairs: Iterable[tuple[RemotePath, LocalPath]],
    *,
    max_concurrency: int,
    progress: ProgressCallback | None,
) -> list[TransferResult]:
    """:meth:`~.StorageBackend.download_many`: each pair ``get`` by a worker."""

    def job(path: RemotePath, local: LocalPath) -> Callable[[ByteCounter], None]:
        def get(count_bytes: ByteCounter) -> None:
            backend._get(backend._file_key(path), os.fspath(local), count_bytes)

        return get

    items = _pairs(pairs)
    jobs = [_one(index, job(path, local)) for index, (path, local) in enumerate(items)]
    size = backend.bulk_download_batch_files or backend.bulk_batch_files
    if _batching(size, backend, max_concurrency, len(items)):
        small, jobs = _planned(backend, [(local, path) for path, local in items], jobs, False)
        jobs += _batches(small, size, backend._get_batch)
    return _run(items, jobs, max_concurrency, progress, backend)


DirectPutMany = Callable[[int, Callable[[int], Any], Callable[[int], None], int], Sequence[int]]
"""A backend's sender of many small uploads at once (S3's ``DirectRequests.put_many``, Azure's
``DirectRequests.put_many``): the count, the maker of each upload by number (None: not sent
there), what to tell of each stored, the concurrency; it returns the numbers not stored."""


def put_batch_directly(
    items: list[BatchItem],
    report: Report,
    concurrency: int,
    put_many: DirectPutMany | None,
    upload: Callable[[BatchItem, bytes], Any],
    put_alone: Callable[[BatchItem], int],
) -> dict[int, Exception]:
    """A backend's ``_put_batch`` where it sends small uploads without its SDK: each file read
    (up to :data:`DIRECT_BODY_LIMIT`) and made into ``upload(item, body)`` just before
    ``put_many`` sends it, ``concurrency`` at once from this thread (from 8 threads, each
    request would cost about 0.3 ms of CPU more in hand-offs of the GIL); each file it cannot
    send goes through ``put_alone`` after (the SDK, with its retries and its error; it returns
    the size), ``concurrency`` at once (:func:`_put_each`). Errors as ``_put_batch``."""
    sizes: dict[int, int] = {}

    def made(number: int) -> Any:
        item = items[number]
        try:
            body = batch_body(item, DIRECT_BODY_LIMIT)
        except OSError:
            return None  # met again, and told, by put_alone
        if body is None:
            return None
        sizes[number] = len(body)
        return upload(item, body)

    def stored(number: int) -> None:
        report(items[number].index, sizes[number])

    left: Sequence[int] = range(len(items))
    if put_many is not None:
        left = put_many(len(items), made, stored, concurrency)
    return _put_each([items[number] for number in left], report, put_alone, concurrency)


def _put_each(
    items: list[BatchItem], report: Report, put: Callable[[BatchItem], int], concurrency: int
) -> dict[int, Exception]:
    """``put`` each item (it returns the size), ``concurrency`` at once on threads of their own
    (all of a batch where the backend cannot send it directly: a proxy, ``direct_requests=
    False``), reported from this thread as each ends; the errors by index. A ``report`` that
    raises stops the rest."""
    failed: dict[int, Exception] = {}

    def settle(item: BatchItem, outcome: int | Exception) -> None:
        if isinstance(outcome, Exception):
            failed[item.index] = outcome
        else:
            report(item.index, outcome)

    if concurrency < 2 or len(items) < 2:
        for item in items:
            settle(item, _outcome(put, item))
        return failed
    pool = ThreadPoolExecutor(min(concurrency, len(items)), "keg-storage-bulk")
    try:
        futures = {pool.submit(_outcome, put, item): item for item in items}
        for future in as_completed(futures):
            settle(futures[future], future.result())
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return failed


def _outcome(put: Callable[[BatchItem], int], item: BatchItem) -> int | Exception:
    """What ``put`` returned for ``item``, or the error it raised."""
    try:
        return put(item)
    except Exception as error:
        return error


DIRECT_BODY_LIMIT = 1024 * 1024
"""The largest body (bytes, exclusive) a direct upload of a batch carries; a file that grew
past it since it was planned goes alone, streamed."""


def batch_body(item: BatchItem, limit: int) -> bytes | None:
    """An upload's bytes: ``item.data``, or its local file read whole; None when the file has
    ``limit`` bytes or more (it grew since it was planned: it goes alone, streamed)."""
    if item.data is not None:
        return item.data
    with open(item.local, "rb") as local:
        body = local.read(limit)
    return body if len(body) < limit else None


def batch_failed(
    backend: StorageBackend, error: Exception, keys: list[str]
) -> dict[str, Exception]:
    """Each of ``keys`` failed with ``error``, the SDK's failure of their whole batch request:
    translated for each key (chained to ``error``)."""
    failed: dict[str, Exception] = {}
    for key in keys:
        translated = backend._translate_error(error, key)
        if translated is not None:
            translated.__cause__ = error
        failed[key] = translated or error
    return failed


def delete_in_batches(
    keys: list[str],
    size: int,
    delete_batch: Callable[[list[str]], dict[str, Exception]],
    max_concurrency: int,
) -> dict[str, Exception]:
    """``delete_batch`` (a service's batch call) on ``keys`` cut into lists of at most
    ``size``, ``max_concurrency`` at a time; a single batch on the calling thread, where
    starting a thread would cost more than it saves. The failed keys of every batch."""
    batches = [keys[start : start + size] for start in range(0, len(keys), size)]
    if len(batches) == 1:
        return delete_batch(batches[0])
    failed: dict[str, Exception] = {}
    with ThreadPoolExecutor(max_concurrency, "keg-storage-delete") as executor:
        for errors in executor.map(delete_batch, batches):
            failed.update(errors)
    return failed


def _items(values: Iterable[Any], name: str) -> list[Any]:
    """``values`` as a list; a single str or path (which would iterate by characters) is a
    TypeError."""
    if isinstance(values, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{name} must be an iterable of paths, not a single {type(values).__name__}"
        )
    return list(values)


def _pairs(pairs: Iterable[Any]) -> list[tuple[Any, Any]]:
    items = _items(pairs, "pairs")
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"each pair must be a (source, destination) tuple, not {item!r}")
    return items


def _text(path: Any) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)


def _one(index: int, transfer: Callable[[ByteCounter], None]) -> Batch:
    """The job of item ``index`` alone: ``transfer`` raises its error."""

    def run(report: Report) -> dict[int, Exception]:
        transfer(functools.partial(report, index))
        return {}

    return [index], run


def _workers(max_concurrency: int, count: int, backend: StorageBackend | None = None) -> int:
    """How many threads run ``count`` transfers: ``max_concurrency`` (checked), at most the
    backend's :attr:`~.StorageBackend.bulk_max_workers`; 1 means the calling thread."""
    if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
        raise TypeError(f"max_concurrency must be an int, not {type(max_concurrency).__name__}")
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    cap = backend.bulk_max_workers if backend is not None else None
    return max(1, min(max_concurrency, count, cap or count))


def _run(
    items: Sequence[tuple[Any, Any]],
    jobs: Sequence[Batch],
    max_concurrency: int,
    progress: ProgressCallback | None,
    backend: StorageBackend,
) -> list[TransferResult]:
    """Run ``jobs`` in a pool of ``max_concurrency`` threads (at most the ``backend``'s
    :attr:`~.StorageBackend.bulk_max_workers`), the ``backend`` asked first to get ready for
    that many (:meth:`~.StorageBackend._reserve_sessions`); with one, on the calling thread,
    where a pool would only add hand-offs. A result per item."""
    workers = _workers(max_concurrency, len(jobs), backend)
    run = _Transfers(len(items))
    if workers == 1:
        run.run_here(jobs, progress)
    elif jobs:
        backend._reserve_sessions(workers)
        executor = ThreadPoolExecutor(workers, "keg-storage-bulk")
        try:
            for indices, transfer in jobs:
                executor.submit(run.work, indices, transfer)
            run.relay(progress)
        except BaseException:
            run.cancelled.set()
            executor.shutdown(wait=True, cancel_futures=True)
            raise
        executor.shutdown()
    elif progress is not None:
        progress(0)
    return [
        TransferResult(_text(source), _text(target), run.sizes[index], run.errors.get(index))
        for index, (source, target) in enumerate(items)
    ]


class _Transfers:
    """The state of one bulk transfer: what the workers report to the calling thread."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sizes = [0] * count  # written by the calling thread only
        self.errors: dict[int, Exception] = {}
        self.cancelled = threading.Event()
        self.news: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        """``(index, bytes)`` as a transfer moves on; None when one has ended."""

    def work(self, indices: list[int], transfer: Callable[[Report], dict[int, Exception]]) -> None:
        """Run one job in a worker; the errors it returns (or raises) are its items' results."""

        def report(index: int, amount: int) -> None:
            if self.cancelled.is_set():
                raise TransferCancelledError("the bulk transfer was stopped")
            self.news.put((index, amount))

        try:
            if self.cancelled.is_set():
                raise TransferCancelledError("the bulk transfer was stopped")
            self.errors.update(transfer(report))
        except Exception as exc:
            self.errors.update(dict.fromkeys(indices, exc))
        finally:
            for _ in indices:
                self.news.put(None)

    def run_here(self, jobs: Sequence[Batch], progress: ProgressCallback | None) -> None:
        """Run the transfers one after the other on the calling thread, reporting the total to
        ``progress`` as it grows (0 once when nothing moved). A callback that raises stops the
        transfer at that chunk (which removes its temp state, as for any failed transfer) and
        the rest never start: its exception propagates, never recorded as a file's error."""
        total, reported = 0, -1
        stopped: list[BaseException] = []

        def report(index: int, amount: int) -> None:
            nonlocal total, reported
            self.sizes[index] += amount
            total += amount
            if progress is not None and total > reported and total:
                try:
                    progress(total)
                except BaseException as exc:
                    stopped.append(exc)
                    raise
                reported = total

        for indices, transfer in jobs:
            try:
                self.errors.update(transfer(report))
            except Exception as exc:
                if stopped:
                    raise stopped[0]  # noqa: B904 - the callback's own, as the caller's
                self.errors.update(dict.fromkeys(indices, exc))
        if progress is not None and reported < 0:
            progress(total)

    def relay(self, progress: ProgressCallback | None) -> None:
        """On the calling thread until every transfer has ended: sum the workers' bytes and
        report the total to ``progress`` whenever it grew (0 once when nothing moved)."""
        ended, total, reported = 0, 0, -1
        while ended < self.count:
            try:
                news = [self.news.get(timeout=_POLL_SECONDS)]
            except queue.Empty:
                continue
            while not self.news.empty():
                news.append(self.news.get())
            for item in news:
                if item is None:
                    ended += 1
                else:
                    self.sizes[item[0]] += item[1]
                    total += item[1]
            if progress is not None and total > reported and (total or ended == self.count):
                progress(total)
                reported = total
