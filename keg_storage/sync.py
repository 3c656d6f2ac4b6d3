"""``sync``: make a directory of one store hold what a directory of another holds.

Between any two :class:`~keg_storage.backends.base.StorageBackend` instances (LocalFS, Memory, S3,
Azure, SFTP, a backend of your own), following rclone's ``sync`` where it fits:

- **Planning** merges the two sorted listings (``iter_list(path)`` where the backend has it,
  else ``list(path)``: names in the same order on every backend; :func:`merge_listings` walks
  any two sorted iterables) into actions: copy what the destination lacks or holds
  differently, delete (with ``delete=True``) what the source lacks, skip the rest. Only the
  actions are held in memory.
- **What is compared** (``compare``): ``'size-mtime'`` (the default) compares sizes, then times
  from the listings, without a request per file. A destination that keeps modification times
  (``keeps_mtime``: LocalFS, SFTP; sync sets them to the source's) holds the same file when
  both times agree within the coarser ``listing_time_precision`` of the two stores (1 ms LocalFS
  and Memory, 1 s the others). On a store that keeps only its own upload time (S3, Azure,
  Memory), the destination holds the same file when it was written no earlier than the source's
  last change (in whole seconds, the precision of those stores' listings). ``'checksum'``
  compares sizes, then content: the MD5 ETags where both stores give one (``etag_is_md5``: S3
  single-part uploads, Memory), an MD5 of the other side streamed where one does, else an MD5 of
  both sides streamed.
- **Copying** runs ``jobs`` files at once: ``jobs`` threads sharing the two backends (their
  clients and pools are thread-safe) each take the next file from one queue. A small file is
  read whole into memory (``download``), a larger one streams from ``src.open(key, 'rb')``,
  into ``dst.upload``, which publishes it atomically, so a partial file is never visible at the
  destination, and an interrupted sync leaves nothing behind but whole files. Into a store
  that takes batches of small files (``bulk_batch_files``: SFTP, S3, Azure), the files up to
  its ``bulk_small_file_bytes`` go in batches instead (:func:`copy_tasks`): each file read
  whole, then the batch published with one ``_put_batch`` (SFTP: requests pipelined on one
  session; S3 and Azure: one request after the other on a kept connection; each file still its
  own atomic publish with its time). Before copying, each store is asked to
  open what ``jobs`` transfers need (``_reserve_sessions``: SFTP sessions as channels of the
  connection the listing opened, not a connection per thread). Source times are
  kept as rclone keeps them, by the destination's ``upload_keeping_mtime``: set on SFTP files in
  the round trip of the last write and on LocalFS temp files (``utime``), before the publish;
  stored as metadata ``mtime`` on stores with metadata (S3: seconds as a decimal string, Azure:
  RFC 3339, the forms rclone writes and reads).
- **Deleting** (``delete=True``) happens after every copy, with the destination's
  ``delete_many`` (the service's batch call) on batches of 1,000 files (:func:`delete_files`).
- A file that fails is reported in :attr:`SyncResult.failures` with its error; the others go on.
  A progress callback that raises (``KeyboardInterrupt``) stops the sync: no new file starts,
  the running ones stop at their next chunk, publishing nothing, and the exception propagates.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import hashlib
import io
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, Literal, cast

import arrow

from .backends.base import ListEntry, StorageBackend
from .backends.bulk import BatchItem
from .errors import StorageError
from .paths import RemotePath, directory_prefix

__all__ = [
    "SyncAction",
    "SyncCancelledError",
    "SyncFailure",
    "SyncProgress",
    "SyncResult",
    "delete_files",
    "merge_listings",
    "sync",
]

Compare = Literal["size-mtime", "checksum"]
COMPARE_MODES: tuple[str, ...] = ("size-mtime", "checksum")

_HASH_CHUNK = 1024 * 1024
SMALL_FILE = 1024 * 1024
"""Files up to this size are copied through memory (see :func:`copy_file`)."""

DELETE_BATCH = 1000
"""Files per ``delete_many`` call of a sync (S3's DeleteObjects limit): progress after each."""
_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class SyncAction:
    """One thing a sync does to a file: ``copy`` it (``reason``: ``new``, ``size``,
    ``modified``, ``content``) or ``delete`` it from the destination (``reason``:
    ``not at source``). ``name`` is relative to the synced directories."""

    kind: Literal["copy", "delete"]
    name: str
    size: int
    reason: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name} ({self.reason}, {self.size} bytes)"


@dataclass(frozen=True)
class SyncFailure:
    """A file the sync could not copy, check or delete, and why."""

    action: str
    name: str
    error: BaseException

    def __str__(self) -> str:
        return f"{self.action} {self.name}: {self.error}"


@dataclass(frozen=True)
class SyncProgress:
    """What a sync has done so far: files finished (copied, deleted, checked or failed) and
    bytes copied, out of what the plan holds."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


@dataclass
class SyncResult:
    """What a sync did (or, with ``dry_run``, would do): ``actions``, every copy and delete
    planned (a failed one too), copies first, by name; the counts, bytes copied, seconds
    taken, and every failure with its error."""

    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: list[SyncFailure] = field(default_factory=list)
    actions: list[SyncAction] = field(default_factory=list)
    dry_run: bool = False

    @property
    def ok(self) -> bool:
        """Whether every file was done."""
        return not self.failures

    def __str__(self) -> str:
        """The summary line: ``3 copied, 1996 skipped, 1 deleted, 12582912 bytes in 1.2 s``
        (a dry run: ``would copy 3 (12582912 bytes), would delete 1, 1996 skipped``)."""
        failed = f", {len(self.failures)} failed" if self.failures else ""
        if self.dry_run:
            return (
                f"would copy {self.copied} ({self.bytes} bytes), would delete {self.deleted}, "
                f"{self.skipped} skipped{failed}"
            )
        return (
            f"{self.copied} copied, {self.skipped} skipped, {self.deleted} deleted, "
            f"{self.bytes} bytes in {self.seconds:.1f} s{failed}"
        )


class SyncCancelledError(Exception):
    """Raised inside a running copy to stop it after the sync was stopped."""


ProgressFunction = Callable[[SyncProgress], None]
Task = Callable[[], None]


def merge_listings(
    source: Iterable[ListEntry], source_prefix: str, target: Iterable[ListEntry], target_prefix: str
) -> Iterator[tuple[str, ListEntry | None, ListEntry | None]]:
    """Walk two listings sorted by name together: ``(name, source entry, target entry)`` per
    name (relative to each prefix), None on the side that lacks it. A listing out of order
    raises :class:`StorageError`: the merge would take present files for missing ones."""
    sources, targets = _relative(source, source_prefix), _relative(target, target_prefix)
    src, dst = next(sources, None), next(targets, None)
    while src is not None or dst is not None:
        if dst is None or (src is not None and src[0] < dst[0]):
            assert src is not None
            yield src[0], src[1], None
            src = next(sources, None)
        elif src is None or dst[0] < src[0]:
            yield dst[0], None, dst[1]
            dst = next(targets, None)
        else:
            yield src[0], src[1], dst[1]
            src, dst = next(sources, None), next(targets, None)


def _relative(entries: Iterable[ListEntry], prefix: str) -> Iterator[tuple[str, ListEntry]]:
    """Files of a sorted listing with their names relative to ``prefix``, checked in order."""
    last: str | None = None
    for entry in entries:
        if entry.name.endswith("/"):
            continue
        if last is not None and entry.name <= last:
            raise StorageError(f"listing is not sorted by name ({last!r} before {entry.name!r})")
        last = entry.name
        yield entry.name[len(prefix) :], entry


def _listing(backend: StorageBackend, prefix: str) -> Iterable[ListEntry]:
    """The files under ``prefix`` in name order: lazily, page by page, where the backend has
    ``iter_list`` (CONTRACT §11), else its ``list``."""
    lister = getattr(backend, "iter_list", None) or backend.list
    return cast(Iterable[ListEntry], lister(prefix))


@dataclass(frozen=True)
class _Rules:
    """How two listing entries of one name are compared."""

    compare: str
    target_keeps_mtime: bool
    window: float

    @classmethod
    def of(cls, src: StorageBackend, dst: StorageBackend, compare: str) -> _Rules:
        window = max(src.listing_time_precision, dst.listing_time_precision)
        return cls(compare, dst.keeps_mtime, window)

    def difference(self, src: ListEntry, dst: ListEntry) -> str | None:
        """Why the destination's file differs (``size``, ``modified``), None when it is the
        same as far as the listings tell, ``check`` when only content can tell."""
        if src.size != dst.size:
            return "size"
        if self.compare == "checksum":
            return "check"
        if src.last_modified is None or dst.last_modified is None:
            return "modified"
        if self.target_keeps_mtime:
            delta = abs((dst.last_modified - src.last_modified).total_seconds())
            return None if delta < self.window else "modified"
        written = dst.last_modified.timestamp()
        return None if written >= math.floor(src.last_modified.timestamp()) else "modified"


@dataclass
class _Plan:
    copies: list[tuple[SyncAction, ListEntry]] = field(default_factory=list)
    checks: list[tuple[SyncAction, ListEntry]] = field(default_factory=list)
    deletes: list[SyncAction] = field(default_factory=list)
    skipped: int = 0


def _make_plan(
    pairs: Iterable[tuple[str, ListEntry | None, ListEntry | None]], rules: _Rules, delete: bool
) -> _Plan:
    """What to copy, to check (``checksum``) and to delete; only the skipped files' count is
    kept of the rest."""
    plan = _Plan()
    for name, src, dst in pairs:
        if src is None:
            assert dst is not None
            if delete:
                plan.deletes.append(SyncAction("delete", name, dst.size, "not at source"))
            continue
        reason = "new" if dst is None else rules.difference(src, dst)
        if reason is None:
            plan.skipped += 1
        elif reason == "check":
            plan.checks.append((SyncAction("copy", name, src.size, "content"), src))
        else:
            plan.copies.append((SyncAction("copy", name, src.size, reason), src))
    return plan


class _CountingReader(io.RawIOBase):
    """A source file as ``upload`` reads it: counts the bytes read past the furthest point
    reached (a restarted upload seeks back) and stops the copy once the sync is stopped."""

    def __init__(self, source: IO[bytes], job: _Job) -> None:
        super().__init__()
        self.source = source
        self.job = job
        self.position = self.furthest = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.source.seekable()

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.position = self.source.seek(offset, whence)
        return self.position

    def tell(self) -> int:
        return self.position

    def read(self, size: int | None = -1) -> bytes:
        """The source's own read (``RawIOBase.read`` would allocate ``size`` bytes first, for
        every small file read with a large ``size``)."""
        self._check()
        data = self.source.read(-1 if size is None else size)
        self._count(len(data))
        return data

    def readinto(self, buffer: Any) -> int:
        self._check()
        count = cast(int, self.source.readinto(buffer))  # type: ignore[attr-defined]
        self._count(count)
        return count

    def _check(self) -> None:
        self.job.check_running()

    def _count(self, count: int) -> None:
        self.position += count
        if self.position > self.furthest:
            self.job.count_bytes(self.position - self.furthest)
            self.furthest = self.position


@dataclass
class _Job:
    """What the threads of one sync share."""

    src: StorageBackend
    dst: StorageBackend
    src_prefix: str
    dst_prefix: str
    dry_run: bool
    result: SyncResult
    jobs: int = 1
    reporting: bool = False
    """Whether a progress callback waits for files to finish (else nothing wakes per file)."""
    files_total: int = 0
    bytes_total: int = 0
    files_done: int = 0
    bytes_done: int = 0
    reported: SyncProgress | None = None
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    changed: threading.Event = field(default_factory=threading.Event)
    """Set as a file finishes (when ``reporting``) and as a thread ends: wakes the calling
    thread, which reports progress and waits for the threads."""

    def check_running(self) -> None:
        """Raise :class:`SyncCancelledError` once the sync was stopped."""
        if self.stopped.is_set():
            raise SyncCancelledError("the sync was stopped")

    def count_bytes(self, count: int) -> None:
        with self.lock:
            self.bytes_done += count

    def progress(self) -> SyncProgress:
        with self.lock:
            done = (self.files_done, self.files_total, self.bytes_done, self.bytes_total)
        return SyncProgress(*done)

    def finish(
        self,
        *,
        copied: int = 0,
        size: int = 0,
        deleted: int = 0,
        skipped: int = 0,
        failure: SyncFailure | None = None,
    ) -> None:
        """Count a file done, with what became of it."""
        with self.lock:
            self.files_done += 1
            self.result.copied += copied
            self.result.bytes += size
            self.result.deleted += deleted
            self.result.skipped += skipped
            if failure is not None:
                self.result.failures.append(failure)
        if self.reporting and not self.changed.is_set():  # once per wake of the caller
            self.changed.set()

    def copy(self, action: SyncAction, entry: ListEntry) -> None:
        """Copy one file, atomically at the destination, keeping its modification time."""
        if self.dry_run:
            self.finish(copied=1, size=action.size)
            return
        try:
            size = copy_file(self, action.name, entry)
        except Exception as error:
            self.finish(failure=SyncFailure("copy", action.name, error))
            return
        self.finish(copied=1, size=size)

    def copy_batch(self, batch: Sequence[tuple[SyncAction, ListEntry]]) -> None:
        """Copy small files with one ``_put_batch`` of the destination (SFTP: its requests
        pipelined, stage by stage, on one session; S3 and Azure: sent one after the other on a
        kept connection, without the SDK's pipeline): each read whole from the source first,
        then each published atomically with its modification time. A file that fails fails
        alone."""
        items: list[BatchItem] = []
        for index, (action, entry) in enumerate(batch):
            try:
                items.append(read_for_batch(self, index, action.name, entry))
            except Exception as error:
                self.finish(failure=SyncFailure("copy", action.name, error))
        if not items:
            return
        try:
            errors = self.dst._put_batch(items, lambda _, amount: self.count_batched(amount))
        except Exception as error:
            errors = dict.fromkeys((item.index for item in items), error)
        for item in items:
            name = batch[item.index][0].name
            if (failed := errors.get(item.index)) is not None:
                self.finish(failure=SyncFailure("copy", name, failed))
            else:
                self.finish(copied=1, size=len(item.data or b""))

    def count_batched(self, count: int) -> None:
        """Count the bytes of a batched file written; stop the batch once the sync was
        stopped (it then publishes none of its files)."""
        self.check_running()
        self.count_bytes(count)

    def check(self, action: SyncAction, entry: ListEntry) -> None:
        """Compare one file's content on both sides, and copy it where it differs."""
        try:
            same = same_content(
                self.src, self.src_prefix + action.name, self.dst, self.dst_prefix + action.name
            )
        except Exception as error:
            self.finish(failure=SyncFailure("check", action.name, error))
            return
        if same:
            self.finish(skipped=1)
            return
        with self.lock:
            self.result.actions.append(action)
            self.bytes_total += action.size
        self.copy(action, entry)

    def delete(self, actions: list[SyncAction]) -> None:
        """Delete the destination's files of ``actions`` with one ``delete_many`` (the
        service's batch call: S3 DeleteObjects, Azure blob batch, pipelined SFTP removes)."""
        if self.dry_run:
            for _ in actions:
                self.finish(deleted=1)
            return
        try:
            results = self.dst.delete_many([self.dst_prefix + action.name for action in actions])
        except Exception as error:
            for action in actions:
                self.finish(failure=SyncFailure("delete", action.name, error))
            return
        for action, result in zip(actions, results, strict=True):
            if result.error is None:
                self.finish(deleted=1)
            else:
                self.finish(failure=SyncFailure("delete", action.name, result.error))


def copy_file(job: _Job, name: str, entry: ListEntry) -> int:
    """Copy one file into the destination's atomic upload, keeping its modification time
    (:func:`store`); returns the bytes copied.

    A small file (the listing says at most :data:`SMALL_FILE` bytes) is read whole with
    ``download`` (one request where the store can) and uploaded from memory, a larger one
    streams from ``open(key, 'rb')``, so memory stays within ``jobs`` small files or parts."""
    src_key, dst_key = job.src_prefix + name, job.dst_prefix + name
    if entry.size <= SMALL_FILE:
        data = read_whole(job, src_key)
        store(job.dst, io.BytesIO(data), dst_key, entry.last_modified)
        job.count_bytes(len(data))
        return len(data)
    with job.src.open(src_key, "rb") as source:
        reader = _CountingReader(cast(IO[bytes], source), job)
        store(job.dst, cast(IO[bytes], reader), dst_key, entry.last_modified)
    return reader.furthest


def read_for_batch(job: _Job, index: int, name: str, entry: ListEntry) -> BatchItem:
    """A small file of a batch (see :func:`copy_tasks`): its destination key checked and its
    content read whole from the source."""
    key = job.dst._file_key(job.dst_prefix + name)
    data = read_whole(job, job.src_prefix + name)
    mtime = None if entry.last_modified is None else entry.last_modified.timestamp()
    return BatchItem(index, "", key, data=data, mtime=mtime)


def read_whole(job: _Job, src_key: str) -> bytes:
    """A small file of the source, read whole with ``download`` (one request where the store
    can), unless the sync was stopped."""
    job.check_running()
    buffer = io.BytesIO()
    job.src.download(src_key, buffer)
    return buffer.getvalue()


def copy_tasks(job: _Job, copies: Sequence[tuple[SyncAction, ListEntry]]) -> list[Task]:
    """A task per file to copy, but where the destination takes batches of small files
    (:attr:`~.StorageBackend.bulk_batch_files`: SFTP, S3, Azure), those up to its
    :attr:`~.StorageBackend.bulk_small_file_bytes` go in batches, a task each
    (:meth:`_Job.copy_batch`): a small file copied alone costs the destination a few round
    trips and, from ``jobs`` threads at once, more CPU than the whole batch's stream does per
    file. Batches are cut so that every thread gets some; the other files go first."""
    dst = job.dst
    largest = dst.bulk_small_file_bytes if not job.dry_run and dst.bulk_batch_files > 1 else -1
    small = [copy for copy in copies if copy[1].size <= largest]
    alone = [copy for copy in copies if copy[1].size > largest]
    tasks: list[Task] = [functools.partial(job.copy, action, entry) for action, entry in alone]
    size = max(1, min(dst.bulk_batch_files, math.ceil(len(small) / job.jobs)))
    for start in range(0, len(small), size):
        tasks.append(functools.partial(job.copy_batch, small[start : start + size]))
    return tasks


def store(dst: StorageBackend, file_obj: IO[bytes], key: str, mtime: arrow.Arrow | None) -> None:
    """Upload ``file_obj`` to ``key`` of ``dst`` keeping the modification time ``mtime``
    (:meth:`~keg_storage.backends.base.StorageBackend.upload_keeping_mtime`: set on the file
    before it is published where the destination keeps times, else as metadata where it keeps
    metadata)."""
    if mtime is None:
        dst.upload(file_obj, key)
    else:
        dst.upload_keeping_mtime(file_obj, key, mtime)


def md5_etag(backend: StorageBackend, key: str) -> str | None:
    """The MD5 of a file's content as its ETag tells it (S3 single-part uploads, Memory), or
    None where the ETag is something else (a multipart upload's, another store's)."""
    if not backend.etag_is_md5:
        return None
    etag = (backend.stat(key).etag or "").strip('"').lower()
    return etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None


def streamed_md5(backend: StorageBackend, key: str) -> str:
    """The MD5 of a file's content, read through once."""
    digest = hashlib.md5(usedforsecurity=False)
    with backend.open(key, "rb") as source:
        while chunk := source.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def same_content(src: StorageBackend, src_key: str, dst: StorageBackend, dst_key: str) -> bool:
    """Whether two files hold the same bytes: compared by MD5 ETags where both stores give one,
    else by streaming the sides that do not (an MD5 of each)."""
    src_md5, dst_md5 = md5_etag(src, src_key), md5_etag(dst, dst_key)
    src_md5 = src_md5 or streamed_md5(src, src_key)
    return src_md5 == (dst_md5 or streamed_md5(dst, dst_key))


def delete_files(job: _Job, actions: list[SyncAction]) -> list[Task]:
    """Tasks deleting the destination's files of ``actions`` in batches of
    :data:`DELETE_BATCH`, each one ``delete_many`` call (progress after each batch)."""
    batches = [actions[i : i + DELETE_BATCH] for i in range(0, len(actions), DELETE_BATCH)]
    return [functools.partial(job.delete, batch) for batch in batches]


def _drain(job: _Job, tasks: collections.deque[Task]) -> None:
    """Run tasks from the shared queue until it is empty or the sync was stopped (a file
    not started then never starts)."""
    while not job.stopped.is_set():
        try:
            task = tasks.popleft()  # atomic: each task runs once
        except IndexError:
            return
        task()


def _run(job: _Job, tasks: Sequence[Task], progress: ProgressFunction | None, pool: Any) -> None:
    """Run ``tasks`` on ``pool``'s threads, each thread taking the next task from one queue,
    and report progress on this thread as files finish until they end; anything raised here
    (by ``progress``, a ``KeyboardInterrupt``) stops the sync.

    A future per thread, not per file: waiting on thousands of futures costs this thread a
    pass over all of them at each file done (``concurrent.futures.wait``), GIL time the
    copying threads need."""
    queue = collections.deque(tasks)
    try:
        workers = [pool.submit(_drain, job, queue) for _ in range(min(job.jobs, len(tasks)))]
        for worker in workers:
            worker.add_done_callback(lambda _: job.changed.set())
        while True:
            if progress is not None and (now := job.progress()) != job.reported:
                progress(now)
                job.reported = now
            if all(worker.done() for worker in workers):
                break
            job.changed.wait(_POLL_SECONDS)
            job.changed.clear()
    except BaseException:
        job.stopped.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    for worker in workers:
        worker.result()  # a bug in the sync itself (a file's error is in result.failures)


def sync(
    src: StorageBackend,
    dst: StorageBackend,
    *,
    path: RemotePath = "",
    delete: bool = False,
    dry_run: bool = False,
    compare: Compare = "size-mtime",
    jobs: int = 8,
    progress: ProgressFunction | None = None,
    dst_path: RemotePath | None = None,
) -> SyncResult:
    """Make the directory ``path`` of ``dst`` (``dst_path`` when given) hold what ``path`` of
    ``src`` holds: copy what is missing or different, ``jobs`` files at once, each published
    whole; with ``delete``, then delete what ``src`` lacks. ``dry_run`` changes nothing and
    returns the plan in :attr:`SyncResult.actions`. ``compare``: ``'size-mtime'`` or
    ``'checksum'`` (see the module's documentation). ``progress`` receives a
    :class:`SyncProgress` on the calling thread as files finish and bytes move.

    Per-file failures are collected in :attr:`SyncResult.failures`; an error of a listing
    raises.
    """
    if compare not in COMPARE_MODES:
        raise ValueError(f"compare must be one of {', '.join(COMPARE_MODES)}, not {compare!r}")
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an int >= 1, not {jobs!r}")
    started = time.monotonic()
    src_prefix = directory_prefix(path, src)
    dst_prefix = directory_prefix(path if dst_path is None else dst_path, dst)
    result = SyncResult(dry_run=dry_run)
    job = _Job(src, dst, src_prefix, dst_prefix, dry_run, result, jobs, progress is not None)
    pairs = merge_listings(
        _listing(src, src_prefix), src_prefix, _listing(dst, dst_prefix), dst_prefix
    )
    plan = _make_plan(pairs, _Rules.of(src, dst, compare), delete)
    result.skipped = plan.skipped
    result.actions = [action for action, _ in plan.copies]
    job.files_total = len(plan.copies) + len(plan.checks) + len(plan.deletes)
    job.bytes_total = sum(action.size for action in result.actions)

    copies = copy_tasks(job, plan.copies)
    checks = [functools.partial(job.check, action, entry) for action, entry in plan.checks]
    tasks: list[Task] = [*copies, *checks]
    if tasks and not dry_run:
        for backend in {id(src): src, id(dst): dst}.values():
            backend._reserve_sessions(min(jobs, len(tasks)))
    with concurrent.futures.ThreadPoolExecutor(jobs, "keg-storage-sync") as pool:
        _run(job, tasks, progress, pool)
        result.actions.extend(plan.deletes)
        _run(job, delete_files(job, plan.deletes), progress, pool)
    result.actions.sort(key=lambda action: (action.kind != "copy", action.name))
    result.failures.sort(key=lambda failure: failure.name)
    result.seconds = time.monotonic() - started
    return result
