"""Many small uploads and downloads of :class:`~keg_storage.backends.sftp.SFTPStorage` in one
stream of pipelined requests (its ``_put_batch`` and ``_get_batch``, for
:meth:`~.StorageBackend.upload_many` and :meth:`~.StorageBackend.download_many`).

A small file uploaded alone costs three round trips (LSTAT and OPEN of the temp file; WRITE and
CLOSE; the rename that publishes it), each a few SSH packets that this process and the server
encrypt, send and wake up for. From several threads at once the Python side grows dearer still
(8 threads and their 8 connection threads share one GIL): measured here, 0.65-0.9 ms of CPU per
file against 0.4 ms one at a time, so 8 jobs were no faster than plain sequential paramiko.
A batch sends the same requests for all its files at once instead, stage by stage on one
session: every LSTAT and OPEN in one packet, then every WRITE and CLOSE, then every rename,
reading the answers as they come. Three round trips and a few packets per batch, not per file
(0.16-0.18 ms of CPU per file). Each file keeps its own temp file and atomic publish, as
:class:`~keg_storage.backends.sftp_file.SFTPRemoteFile` does, and its own result. Downloads
likewise: every LSTAT and OPEN, then every READ and CLOSE.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import posixpath
import stat as stat_module
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StorageConnectionError, StorageError
from ..progress import ForwardProgress, TransferCancelledError
from .publish import atomic_replace
from .sftp_fastpath import OPEN_READ, POSIX_RENAME, Pipeline, remove_many
from .sftp_file import TEMP_FLAGS
from .sftp_transport import Session, is_connection_failure, refusals_ignored

if TYPE_CHECKING:
    from .bulk import BatchItem, Report
    from .sftp import SFTPStorage


@dataclasses.dataclass
class _File:
    """One file of a batch and how far it got."""

    item: BatchItem
    remote: str
    progress: ForwardProgress
    data: bytes = b""
    temp: str | None = None
    handle: bytes | None = None
    error: Exception | None = None
    done: bool = False
    size: int = 0
    alone: bool = False
    """To be transferred alone, after the batch (a download found too large for it)."""

    @property
    def going(self) -> bool:
        return not (self.done or self.alone) and self.error is None


def put_batch(storage: SFTPStorage, items: list[BatchItem], report: Report) -> dict[int, Exception]:
    """Upload ``items`` (small local files, overwriting) pipelined on one leased session; on a
    dropped connection the files not yet published go again on a new one, ``retry`` times
    (idempotent: each is a new temp file renamed over its key). A server that cannot be reached
    gives each file that connection error, naming its path."""
    files = _files(storage, items, report)
    orphans: list[str] = []
    _attempts(storage, files, "upload_many", lambda s, f: _BatchPut(storage, s, f, orphans).run())
    if orphans:
        _remove_orphans(storage, orphans)
    return {file.item.index: file.error for file in files if file.error is not None}


def get_batch(storage: SFTPStorage, items: list[BatchItem], report: Report) -> dict[int, Exception]:
    """Download ``items`` pipelined on one leased session, each local file replaced whole; a
    file found larger than one read request (or a symlink, or growing) is downloaded alone,
    as ``get`` does. Retries and errors as :func:`put_batch`."""
    files = _files(storage, items, report)
    _attempts(storage, files, "download_many", lambda s, f: _BatchGet(storage, s, f).run())
    for file in files:
        if file.alone and file.error is None:
            try:
                storage._get(file.item.key, file.item.local, file.progress.advance)
            except TransferCancelledError:
                raise  # the bulk transfer stops: the rest never start
            except Exception as exc:
                file.error = exc
    return {file.item.index: file.error for file in files if file.error is not None}


def _files(storage: SFTPStorage, items: list[BatchItem], report: Report) -> list[_File]:
    return [
        _File(item, storage.paths.remote(item.key), ForwardProgress(_reporter(report, item.index)))
        for item in items
    ]


def _attempts(
    storage: SFTPStorage,
    files: list[_File],
    action: str,
    attempt: Callable[[Session, list[_File]], BaseException | None],
) -> None:
    """Run ``attempt`` on a leased session for the files still to do, again on a new session
    while the connection drops (``retry`` times); then each file left has the last failure."""
    attempts = storage.retry + 1
    for number in range(1, attempts + 1):
        going = [file for file in files if file.going]
        if not going:
            return
        try:
            session = storage.transport.lease(going[0].item.key)
        except StorageError as exc:
            _fail_all(storage, going, exc)
            return
        dropped = attempt(session, going)
        if dropped is None or not any(file.going for file in files):
            return
        if number == attempts:
            for file in going:
                if file.going:
                    file.error = storage.transport.error(dropped, file.item.key, dropped=True)
                    file.error.__cause__ = dropped
            return
        storage.transport.log_retry(action, dropped, number + 1, attempts)
        for file in going:
            file.progress.reach(0)  # counted again only past what was reported


def _remove_orphans(storage: SFTPStorage, temps: list[str]) -> None:
    """Remove, through a new session, the temp files a dropped connection left (if it can)."""
    with contextlib.suppress(StorageError):
        storage.transport.call(None, lambda session: remove_many(session.sftp, temps))


def _reporter(report: Report, index: int) -> Any:
    return lambda amount: report(index, amount)


def _fail_all(storage: SFTPStorage, files: list[_File], exc: StorageError) -> None:
    """Each file fails with ``exc`` (no session could be leased), an error naming its path."""
    for file in files:
        error = exc
        if isinstance(exc, StorageConnectionError) and exc.path != file.item.key:
            error = StorageConnectionError(exc.reason, backend=storage, path=file.item.key)
            error.cause = exc.cause
            error.__cause__ = exc
        file.error = error


class _Attempt:
    """One attempt at a batch on one leased session."""

    def __init__(self, storage: SFTPStorage, session: Session, files: list[_File]) -> None:
        self.storage = storage
        self.session = session
        self.sftp = session.sftp
        self.pipeline = Pipeline(session.sftp)
        self.files = files

    def _going(self) -> list[_File]:
        return [file for file in self.files if file.going]

    def _refused(self, file: _File, exc: Exception) -> None:
        """``file`` fails with the server's refusal ``exc``; a failed connection goes up."""
        if isinstance(exc, StorageError):
            file.error = exc
            return
        if not isinstance(exc, OSError) or is_connection_failure(exc):
            raise exc
        file.error = self.storage.transport.error(exc, file.item.key)
        file.error.__cause__ = exc

    def _check_dirs(self) -> None:
        """Confinement (:meth:`RemotePaths.check_dir`): once per directory of the batch, and
        where it is refused, for each of its files (whose error names its own path)."""
        by_dir: dict[str, list[_File]] = defaultdict(list)
        for file in self._going():
            by_dir[posixpath.dirname(file.remote)].append(file)
        for directory, files in by_dir.items():
            for file in files:
                try:
                    self.storage.paths.check_dir(self.sftp, directory, file.item.key)
                except Exception as exc:
                    self._refused(file, exc)
                else:
                    break  # remembered as checked: the others pass without a request


class _BatchPut(_Attempt):
    """Uploads: open every temp file, write and close them, and rename them over their keys,
    each stage pipelined; a file that fails is dropped from the next stages and its temp file
    removed."""

    def __init__(
        self, storage: SFTPStorage, session: Session, files: list[_File], orphans: list[str]
    ) -> None:
        super().__init__(storage, session, files)
        self.orphans = orphans
        """Temp files of earlier attempts whose connection dropped: removed on this session."""

    def run(self) -> BaseException | None:
        """Run the attempt; the connection failure that stopped it, or None. The session goes
        back to the pool (broken if it failed); the temp files of the files not published are
        removed (or left in ``orphans`` when the connection failed)."""
        try:
            self._clean_orphans()
            self._read_local()
            self._check_dirs()
            self._open()
            self._write()
            self._publish()
        except Exception as exc:
            if self.storage.transport.dropped(exc, self.session):
                self._lost()
                return exc
            self._discard()
            raise
        except BaseException:
            if self.session.usable():  # interrupted between requests (the progress callback)
                self._discard()
            else:  # in the middle of one: out of step
                self._lost()
            raise
        else:
            self._discard()
        finally:
            broken = not self.session.usable()
            self.storage.transport.release(self.session, broken=broken)
        return None

    def _lost(self) -> None:
        """The session is out of step: never reused; its files' temp files are orphans."""
        self.session.fail()
        self.orphans += [file.temp for file in self.files if file.temp and not file.done]
        for file in self.files:
            file.handle = file.temp = None

    def _clean_orphans(self) -> None:
        orphans, self.orphans[:] = list(self.orphans), []
        if orphans:
            remove_many(self.sftp, orphans)

    def _read_local(self) -> None:
        """Each file's bytes: given with the item, else read from its local file (small, see
        ``bulk_put_small``); a file that cannot be read fails with the OS's error, naming it,
        as ``put`` does."""
        for file in self._going():
            try:
                data = file.item.data
                file.data = Path(file.item.local).read_bytes() if data is None else data
            except OSError as exc:
                file.error = exc

    def _open(self) -> None:
        """LSTAT every target (a symlink must stay inside ``base_path``) and OPEN every temp
        file, in one packet; where a directory is missing, create it and open again."""
        paths, pipeline = self.storage.paths, self.pipeline
        files = self._going()
        with pipeline.batched():
            stats = [pipeline.send_lstat(file.remote) for file in files]
            opens = self._send_opens(files)
        missing = self._opened(files, opens)
        for file, num in zip(files, stats, strict=True):
            try:
                attr = pipeline.wait_attr(num)
                if stat_module.S_ISLNK(attr.st_mode or 0) and file.going:
                    paths.check_link(self.sftp, file.remote, file.item.key)
            except Exception as exc:
                if file.going and not (isinstance(exc, OSError) and exc.errno == errno.ENOENT):
                    self._refused(file, exc)
        missing = [file for file in missing if file.going]
        for directory in {posixpath.dirname(file.remote) for file in missing}:
            try:
                paths.makedirs(self.sftp, directory)
            except Exception as exc:
                for file in missing:
                    if posixpath.dirname(file.remote) == directory:
                        self._refused(file, exc)
        missing = [file for file in missing if file.going]
        with pipeline.batched():
            opens = self._send_opens(missing)
        for file in self._opened(missing, opens):
            self._refused(file, OSError(errno.ENOENT, f"no directory for {file.remote}"))

    def _send_opens(self, files: list[_File]) -> list[int]:
        """OPEN a new temp file for each of ``files`` (named first: if the answer never comes,
        the file is still known, to be removed)."""
        nums = []
        for file in files:
            file.temp = self.storage.paths.temp_path(posixpath.dirname(file.remote))
            nums.append(self.pipeline.send_open(file.temp, TEMP_FLAGS))
        return nums

    def _opened(self, files: list[_File], opens: list[int]) -> list[_File]:
        """The handles answered to ``opens``; the files whose directory is missing."""
        missing = []
        for file, num in zip(files, opens, strict=True):
            try:
                file.handle = self.pipeline.wait_handle(num)
            except Exception as exc:
                if isinstance(exc, OSError) and exc.errno == errno.ENOENT:
                    file.temp = None
                    missing.append(file)
                else:
                    self._refused(file, exc)
                    file.temp = None  # refused: not created
        return missing

    def _write(self) -> None:
        """WRITE each file's bytes, FSETSTAT its time where the item gives one, and CLOSE its
        handle, all in one stream (the server takes a session's requests in order: the time
        is set after the writes); then report them."""
        pipeline, size = self.pipeline, self.session.write_size
        files = [file for file in self._going() if file.handle is not None]
        sent: list[tuple[_File, list[int]]] = []
        with pipeline.batched():
            for file in files:
                handle, file.handle = file.handle, None
                assert handle is not None
                view = memoryview(file.data)
                nums = [
                    pipeline.send_write(handle, offset, view[offset : offset + size])
                    for offset in range(0, len(view), size)
                ]
                if file.item.mtime is not None:
                    nums.append(pipeline.send_set_times(handle, int(file.item.mtime)))
                sent.append((file, [*nums, pipeline.send_close(handle)]))
        for file, nums in sent:
            for num in nums:
                try:
                    pipeline.wait_status(num)
                except Exception as exc:
                    if file.going:
                        self._refused(file, exc)
        for file, _ in sent:
            if file.going:
                file.progress.advance(len(file.data))

    def _publish(self) -> None:
        """Rename each written temp file over its key (``posix-rename``, which replaces it
        atomically), in one stream; where the server lacks it, as a single upload does."""
        pipeline = self.pipeline
        temps = [(file, file.temp) for file in self._going() if file.temp is not None]
        files = [file for file, _ in temps]
        if POSIX_RENAME not in self.session.extensions:
            for file in files:
                self._publish_one(file)
        else:
            with pipeline.batched():
                renames = [pipeline.send_posix_rename(temp, file.remote) for file, temp in temps]
            for file, num in zip(files, renames, strict=True):
                try:
                    pipeline.wait_status(num)
                except Exception as exc:
                    self._refused(file, exc)
                else:
                    file.temp, file.done = None, True
        for file in files:
            file.data = b""

    def _publish_one(self, file: _File) -> None:
        assert file.temp is not None
        try:
            self.storage.paths.publish(self.session, file.temp, file.remote)
        except Exception as exc:
            self._refused(file, exc)
        else:
            file.temp, file.done = None, True

    def _discard(self) -> None:
        """Close the handles and remove the temp files of the files that failed, in one
        stream, refusals ignored; if the connection fails meanwhile, they are orphans."""
        handles = [file.handle for file in self.files if file.handle is not None]
        temps = [file.temp for file in self.files if file.temp is not None and not file.done]
        if not (handles or temps):
            return
        pipeline = self.pipeline
        try:
            with pipeline.batched():
                closes = [pipeline.send_close(handle) for handle in handles]
            for file in self.files:
                file.handle = None
            for num in closes:
                with refusals_ignored():
                    pipeline.wait_status(num)
            remove_many(self.sftp, temps)
        except Exception as exc:
            if not self.storage.transport.dropped(exc, self.session):
                raise
            self._lost()
            return
        for file in self.files:
            file.temp = None


class _BatchGet(_Attempt):
    """Downloads: LSTAT and OPEN every file, then READ each whole in one request (its size and
    a byte more: a shorter answer is the end of the file) and CLOSE it, each stage pipelined;
    then, the session given back, each local file is replaced whole."""

    def run(self) -> BaseException | None:
        """Run the attempt; the connection failure that stopped it, or None."""
        transport = self.storage.transport
        try:
            self._check_dirs()
            self._read(self._open())
        except BaseException as exc:
            self.session.fail()  # handles may be left open on it: never reused
            transport.release(self.session, broken=True)
            if isinstance(exc, Exception) and transport.dropped(exc, self.session):
                return exc
            raise
        transport.release(self.session)
        self._save()
        return None

    def _open(self) -> dict[int, bytes]:
        """The handles of the files that go on in the batch, by index; the others fail, or
        go alone: a symlink (its target checked by ``get``), or too large for one request."""
        pipeline = self.pipeline
        files = self._going()
        with pipeline.batched():
            sent = [
                (file, pipeline.send_lstat(file.remote), pipeline.send_open(file.remote, OPEN_READ))
                for file in files
            ]
        largest = min(self.session.read_size - 1, self.storage.bulk_small_file_bytes)
        handles: dict[int, bytes] = {}
        for file, stat_num, open_num in sent:
            outcome: list[Any] = []
            for wait, num in ((pipeline.wait_attr, stat_num), (pipeline.wait_handle, open_num)):
                try:
                    outcome.append(wait(num))
                except Exception as exc:
                    if not isinstance(exc, OSError) or is_connection_failure(exc):
                        raise
                    outcome.append(exc)
            attr, handle = outcome
            if isinstance(handle, bytes):
                handles[file.item.index] = handle
            if isinstance(attr, OSError):
                self._refused(file, attr)
            elif stat_module.S_ISDIR(attr.st_mode or 0):
                self._refused(file, OSError(errno.ENOENT, "is a directory"))
            elif stat_module.S_ISLNK(attr.st_mode or 0) or (attr.st_size or 0) > largest:
                file.alone = True
            elif isinstance(handle, OSError):
                self._refused(file, handle)
            else:
                file.data = b""
                file.size = attr.st_size or 0
        return handles

    def _read(self, handles: dict[int, bytes]) -> None:
        """READ each file whole and CLOSE every handle, in one stream."""
        pipeline = self.pipeline
        reads: list[tuple[_File, int]] = []
        with pipeline.batched():
            for file in self.files:
                handle = handles.get(file.item.index)
                if handle is not None and file.going:
                    reads.append((file, pipeline.send_read(handle, 0, file.size + 1)))
            closes = [pipeline.send_close(handle) for handle in handles.values()]
        for file, num in reads:
            try:
                file.data = pipeline.wait_data(num) or b""
            except Exception as exc:
                self._refused(file, exc)
            if len(file.data) > file.size:  # it grew since the LSTAT: alone, to its end
                file.data, file.alone = b"", True
        for num in closes:
            with refusals_ignored():
                pipeline.wait_status(num)

    def _save(self) -> None:
        """Replace each local file whole with what was read (a local failure is its error)."""
        for file in self._going():
            try:
                with atomic_replace(file.item.local) as local:
                    local.write(file.data)
                    file.progress.advance(len(file.data))
            except OSError as exc:
                file.error = exc
            else:
                file.done = True
            file.data = b""
