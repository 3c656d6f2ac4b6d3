"""Copies between local file objects inside the kernel, for LocalFS's ``upload`` and
``download`` of a file object (:func:`upload_file_object`, :func:`download_file_object`), and
for ``get``, ``put`` and ``copy`` on files they open themselves (:func:`kernel_copy`).

A file object qualifies when it is a plain file of :func:`open` (``io.FileIO`` or a buffered
reader/writer of one, not a subclass or wrapper that may transform its bytes, as ``GzipFile``
does) whose descriptor is a regular file; a pipe, a socket or a ``BytesIO`` goes through the
generic read/write loop. The copy starts at the file object's position, not its descriptor's
(a buffered reader has read ahead), with explicit offsets, and leaves the file object where a
read/write loop would. It runs in chunks, reporting each to the byte counter (so progress moves
and a callback that raises stops it), through ``copy_file_range`` (what ``cp`` uses), else
``sendfile`` (what :func:`shutil.copyfile` uses), else, where the kernel refuses both before a
byte is copied (an ``O_APPEND`` target, an old kernel), a read/write loop.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import stat
from typing import IO, TYPE_CHECKING

from ..progress import ByteCounter

if TYPE_CHECKING:
    from .base import StorageBackend

CHUNK_SIZE = 8 * 1024 * 1024
"""Bytes per kernel call: progress is reported after each."""

_READERS = (io.FileIO, io.BufferedReader, io.BufferedRandom)
_WRITERS = (io.FileIO, io.BufferedWriter)
_NO_KERNEL_COPY = (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF)
"""Errors with which the kernel refuses a copy between two descriptors (before any byte)."""


def kernel_source(file_obj: IO[bytes]) -> bool:
    """Whether ``file_obj`` is a plain local file that the kernel can copy from."""
    return _plain_file(file_obj, _READERS)


def kernel_target(file_obj: IO[bytes]) -> bool:
    """Whether ``file_obj`` is a plain local file that the kernel can copy into."""
    return _plain_file(file_obj, _WRITERS)


def _plain_file(file_obj: IO[bytes], kinds: tuple[type, ...]) -> bool:
    if type(file_obj) not in kinds:
        return False
    try:
        return stat.S_ISREG(os.fstat(file_obj.fileno()).st_mode)
    except (OSError, ValueError):  # closed, or no descriptor after all
        return False


def copy_file_object(
    source: IO[bytes], target: IO[bytes], count_bytes: ByteCounter, chunk_size: int = CHUNK_SIZE
) -> int:
    """Copy the rest of ``source`` (:func:`kernel_source`) from its position into ``target``
    (:func:`kernel_target`) at its position; the number of bytes copied."""
    source.flush()  # a read/write file's pending writes are part of what is copied
    target.flush()
    source_start, target_start = source.tell(), target.tell()
    copied = _kernel_copy(
        (source.fileno(), source_start), (target.fileno(), target_start), count_bytes, chunk_size
    )
    if copied is None:
        source.seek(source_start)
        target.seek(target_start)
        copied = 0
        while chunk := source.read(chunk_size):
            target.write(chunk)
            copied += len(chunk)
            count_bytes(len(chunk))
        return copied
    source.seek(source_start + copied)
    target.seek(target_start + copied)
    return copied


def upload_file_object(
    file_obj: IO[bytes],
    temp: IO[bytes],
    count_bytes: ByteCounter,
    chunk_size: int,
    key: str,
    backend: StorageBackend,
) -> None:
    """Copy the rest of the caller's ``file_obj`` into the store's local file ``temp``: by the
    kernel from its position (:func:`kernel_source`), else in reads of ``chunk_size``. Only
    the writes are the store's side, their errors translated by ``backend`` for ``key``."""
    if kernel_source(file_obj):
        copy_file_object(file_obj, temp, count_bytes, chunk_size)
        return
    while chunk := file_obj.read(chunk_size):
        with backend.translating(key):
            temp.write(chunk)
        count_bytes(len(chunk))


def download_file_object(
    source: IO[bytes],
    file_obj: IO[bytes],
    count_bytes: ByteCounter,
    chunk_size: int,
    key: str,
    backend: StorageBackend,
) -> None:
    """Copy the rest of the store's local file ``source`` into the caller's ``file_obj``: by
    the kernel at its position (:func:`kernel_target`), else written to from reads of
    ``chunk_size``, whose errors only are translated (the store's side)."""
    if kernel_target(file_obj):
        copy_file_object(source, file_obj, count_bytes, chunk_size)
        return
    while True:
        with backend.translating(key):
            chunk = source.read(chunk_size)
        if not chunk:
            return
        file_obj.write(chunk)
        count_bytes(len(chunk))


def kernel_copy(source: IO[bytes], dst: IO[bytes]) -> int:
    """Copy the bytes of the open file ``source`` into the new, empty file ``dst`` inside the
    kernel: ``copy_file_range`` (what ``cp`` uses, and which lets filesystems share or offload
    the copy), else a plain copy loop. Returns the number of bytes copied."""
    try:
        copied = 0
        while count := os.copy_file_range(source.fileno(), dst.fileno(), 1 << 30):
            copied += count
        return copied
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    source.seek(0)
    dst.seek(0)
    dst.truncate()
    shutil.copyfileobj(source, dst)
    return dst.tell()


def _kernel_copy(
    source: tuple[int, int], target: tuple[int, int], count_bytes: ByteCounter, chunk_size: int
) -> int | None:
    """Copy from the descriptor and offset ``source`` to its end into ``target``: the bytes
    copied, or None when the kernel refused before copying any."""
    (source_fd, source_start), (target_fd, target_start) = source, target
    copied, ranged = 0, True
    while True:
        try:
            if ranged:
                count = os.copy_file_range(
                    source_fd, target_fd, chunk_size, source_start + copied, target_start + copied
                )
            else:  # writes at the target's position, which it moves on
                count = os.sendfile(target_fd, source_fd, source_start + copied, chunk_size)
        except OSError as exc:
            if copied or exc.errno not in _NO_KERNEL_COPY:
                raise
            if not ranged:
                return None
            ranged = False
            os.lseek(target_fd, target_start, os.SEEK_SET)
            continue
        if not count:
            return copied
        copied += count
        count_bytes(count)
