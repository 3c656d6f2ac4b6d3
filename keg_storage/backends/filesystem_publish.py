"""How LocalFS publishes a file (CONTRACT §3, §9): under its directory's lock, as the write's
condition allows, by a link (a new file written unnamed) or a rename (:func:`place`).

Every publish, move and delete of a directory's entries holds that directory's lock
(:func:`directories_locked`), where the condition is decided: ``overwrite=False`` by a call
the kernel refuses atomically when the name exists (a link, or ``renameat2`` with
``RENAME_NOREPLACE``), ``if_match`` by comparing the target's ETag (:func:`etag_of`) first.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import io
import os
import stat as stat_module
from collections.abc import Callable, Iterator
from typing import IO, Any

from ..errors import FileExistsInStorageError, PreconditionFailedError, UnsupportedOperationError
from .base import FILE_EXISTS, PRECONDITION_FAILED
from .conditions import ALWAYS, WriteCondition
from .publish import TempFile

_RENAME_NOREPLACE = 1
BUFFER_SIZE = io.DEFAULT_BUFFER_SIZE
"""The buffer of files opened by LocalFS, given so that opening one skips the ``isatty`` check
(an ``ioctl``) with which :func:`open` picks a size."""
_NO_LOCKS = (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL)
"""``flock`` errors of file systems without it (NFS refuses it on a read-only descriptor)."""


def _load_renameat2() -> Any:
    """libc's ``renameat2`` (glibc 2.28+), or None: Python's ``os`` has no binding for it, and
    ``RENAME_NOREPLACE`` is the one call that publishes a finished file under its name only if
    the name is free, without a moment where the file has two names."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    int_, name = ctypes.c_int, ctypes.c_char_p
    function.argtypes = [int_, name, int_, name, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_renameat2 = _load_renameat2()


def rename_noreplace(src_dir_fd: int, src: str, dst_dir_fd: int, dst: str) -> None:
    """Rename ``src`` (in ``src_dir_fd``) to ``dst`` (in ``dst_dir_fd``) only if ``dst`` does
    not exist, decided atomically by the kernel: else FileExistsError. ``renameat2`` with
    ``RENAME_NOREPLACE``; where the kernel or the file system lacks it, a hard link (which
    fails with EEXIST just as atomically) then the removal of ``src``."""
    if _renameat2 is not None:
        names = os.fsencode(src), os.fsencode(dst)
        if _renameat2(src_dir_fd, names[0], dst_dir_fd, names[1], _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), dst)
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir_fd)


def etag_of(info: os.stat_result) -> str:
    """The ETag of a file (``stat().etag``): its modification time in nanoseconds and its size,
    quoted. :func:`place` keeps it from repeating among the versions of a path."""
    return f'"{info.st_mtime_ns:x}-{info.st_size:x}"'


@contextlib.contextmanager
def directories_locked(*dir_fds: int) -> Iterator[bool]:
    """Hold the publish lock of each directory (an exclusive ``flock`` of the directory
    itself), which every keg_storage writer of it takes around its publish or delete.

    Each lock is taken on the descriptor given, which must be the caller's own, opened for this
    operation (every LocalFS operation opens its directories afresh): ``flock`` locks belong to
    an open file description, so two threads of one process exclude each other because their
    descriptors are distinct descriptions. Two descriptors of one directory (a move within it)
    are locked once, and locks are taken in the order of the directories' identities, so that
    two moves never deadlock. Yields whether they are held: where the file system has no
    ``flock`` (NFS), writes go on unlocked. The locks are released on exit.
    """
    if len(dir_fds) == 1:
        ordered = list(dir_fds)
    else:
        held: dict[tuple[int, int], int] = {}
        for dir_fd in dir_fds:
            info = os.fstat(dir_fd)
            held.setdefault((info.st_dev, info.st_ino), dir_fd)
        ordered = [dir_fd for _, dir_fd in sorted(held.items())]
    locked: list[int] = []
    try:
        try:
            for dir_fd in ordered:
                fcntl.flock(dir_fd, fcntl.LOCK_EX)
                locked.append(dir_fd)
        except OSError as exc:
            if exc.errno not in _NO_LOCKS:
                raise
            yield False
        else:
            yield True
    finally:
        for dir_fd in reversed(locked):
            fcntl.flock(dir_fd, fcntl.LOCK_UN)


def entry_status(dir_fd: int, name: str) -> os.stat_result | None:
    """The status of the entry ``name`` of ``dir_fd`` (a symlink's own), or None."""
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def check_condition(
    current: os.stat_result | None, condition: WriteCondition, backend: Any, key: str
) -> None:
    """Raise what ``condition`` makes of the entry ``current`` at ``key`` (None: nothing):
    FileExistsInStorageError for a create-only write onto anything, PreconditionFailedError
    for a compare-and-swap write onto no file or another version."""
    if current is not None and not condition.overwrite:
        raise FileExistsInStorageError(FILE_EXISTS, backend=backend, path=key)
    if condition.if_match is not None and (
        current is None
        or not stat_module.S_ISREG(current.st_mode)
        or etag_of(current) != condition.if_match
    ):
        raise PreconditionFailedError(PRECONDITION_FAILED, backend=backend, path=key)


def place(
    source: tuple[int, str],
    target: tuple[int, str],
    condition: WriteCondition,
    *,
    backend: Any,
    key: str,
    new_version: bool = True,
) -> None:
    """Rename the file ``source`` (a directory descriptor and a name) to ``target`` if
    ``condition`` allows, where LocalFS publishes anything but a new file written unnamed
    (:func:`publish_temp` links that one); the caller holds the target
    directory's lock (:func:`directories_locked`).

    A create-only write renames with :func:`rename_noreplace`, so it is decided by the kernel
    even against a writer that bypasses keg_storage. A ``new_version`` (written content, not a
    moved file) that replaces a file gets a modification time later than that file's (one
    nanosecond later, where the clock's tick has not moved on): the ETag of a path then never
    repeats, and an ``if_match`` of an older version never matches a newer one.
    """
    (src_dir_fd, src), (dst_dir_fd, dst) = source, target
    current = entry_status(dst_dir_fd, dst)
    check_condition(current, condition, backend, key)
    if not condition.overwrite:
        try:
            rename_noreplace(src_dir_fd, src, dst_dir_fd, dst)
        except FileExistsError:
            raise FileExistsInStorageError(FILE_EXISTS, backend=backend, path=key) from None
        return
    if new_version and current is not None:
        written = os.stat(src, dir_fd=src_dir_fd, follow_symlinks=False)
        if written.st_mtime_ns <= current.st_mtime_ns:
            times = (written.st_atime_ns, current.st_mtime_ns + 1)
            os.utime(src, ns=times, dir_fd=src_dir_fd, follow_symlinks=False)
    os.replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def publish_temp(
    temp: TempFile,
    name: str,
    *,
    fsync: bool,
    condition: WriteCondition = ALWAYS,
    backend: Any = "LocalFSStorage",
    key: str = "",
    mtime_ns: int | None = None,
    reopen: Callable[[], int] | None = None,
) -> None:
    """Make a written temp file ready (:meth:`~.publish.TempFile.ready`: the permissions a new
    file gets, the modification time ``mtime_ns`` if given, kept as it is by :func:`place`) and
    publish it as ``name`` in its directory as ``condition`` allows, under the directory's lock:
    an unnamed file where nothing has that name and no ``if_match`` is asked is linked there
    (:meth:`~.publish.TempFile.link_as`, which never replaces anything), else it is renamed
    (:func:`place`); if ``condition`` refuses, the temp file stays for the caller to remove.

    ``reopen`` opens the directory again, made anew: where it was removed while an unnamed file
    was written, it is published there (:func:`_in_new_directory`)."""
    temp.ready(fsync=fsync, mtime_ns=mtime_ns)

    def publish() -> None:
        with directories_locked(temp.dir_fd) as locked:
            if condition.if_match is not None and not locked:
                raise UnsupportedOperationError(
                    "compare-and-swap writes (if_match) need flock, which this file system lacks",
                    backend=backend,
                    path=key,
                )
            if condition.if_match is not None or not temp.link_as(name):
                place(
                    (temp.dir_fd, temp.temp_name()),
                    (temp.dir_fd, name),
                    condition,
                    backend=backend,
                    key=key,
                    new_version=mtime_ns is None,
                )
        temp.file.close()
        if fsync:
            os.fsync(temp.dir_fd)

    try:
        publish()
    except FileNotFoundError:
        if reopen is None or temp.name is not None or os.fstat(temp.dir_fd).st_nlink:
            raise
        _in_new_directory(temp, reopen, publish)


def _in_new_directory(
    temp: TempFile, reopen: Callable[[], int], publish: Callable[[], None]
) -> None:
    """Run ``publish`` for the unnamed file ``temp`` in its directory made again (``reopen``).

    The directory it was written in was removed meanwhile: a delete of the directory's last
    named file pruned it as empty, since an unnamed file has no entry there. The file belongs to
    no directory until it is linked, so it is linked into the new one. If that fails, its temp
    name there, if it got one, is removed."""
    directory = temp.dir_fd
    temp.dir_fd = reopen()
    try:
        publish()
    except BaseException:
        temp.remove()
        raise
    finally:
        os.close(temp.dir_fd)
        temp.dir_fd = directory


@contextlib.contextmanager
def atomic_file(
    dir_fd: int,
    name: str,
    *,
    fsync: bool,
    condition: WriteCondition,
    backend: Any,
    key: str,
    reopen: Callable[[], int] | None = None,
) -> Iterator[IO[bytes]]:
    """Yield a new temp file in the directory ``dir_fd``; on success it is published as
    ``name`` there (as ``condition`` allows; ``reopen``: see :func:`publish_temp`), on failure
    it is removed and ``name`` is untouched."""
    temp = TempFile(dir_fd, BUFFER_SIZE)
    try:
        yield temp.file
        publish_temp(
            temp, name, fsync=fsync, condition=condition, backend=backend, key=key, reopen=reopen
        )
    except BaseException:
        temp.remove()
        raise
