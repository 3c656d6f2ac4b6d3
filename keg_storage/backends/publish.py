"""Atomic publish through a temp file, for the backends that write files by name (LocalFS, SFTP).

A new file is written under a temp name in its target's directory and renamed over the target
only when it is complete (CONTRACT §3); listings hide temp names; a write that fails or is
aborted removes its temp file; ``delete`` and ``move`` prune the directories they leave empty, up
to the root, so that one-level listings look the same as on object stores. The backends keep the
operations themselves (descriptor-relative calls on LocalFS, SFTP requests); the names and the
order of the walk are decided here, once. On a local disk, :class:`TempFile` makes the temp file
(without a name until it is complete, where the file system allows), and :func:`atomic_replace`
does the same for a local file (the destination of ``get``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import posixpath
import secrets
from collections.abc import Callable, Iterator
from typing import IO

TEMP_PREFIX = ".keg-storage-"
TEMP_SUFFIX = ".tmp"
LEGACY_TEMP_SUFFIX = ".part"
"""The suffix SFTP temp files had before 1.0; listings still hide leftovers of it."""


def new_temp_name() -> str:
    """A fresh temp file name (``.keg-storage-<16 hex digits>.tmp``), unguessable and unique
    enough to be created with ``O_EXCL``."""
    return f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}"


def is_temp_name(name: str) -> bool:
    """Whether ``name`` (one path segment) is a temp file of an unfinished write, which
    listings hide."""
    return name.startswith(TEMP_PREFIX) and name.endswith((TEMP_SUFFIX, LEGACY_TEMP_SUFFIX))


def prune_empty_parents(key: str, remove_directory: Callable[[str], bool]) -> None:
    """Remove the directories above ``key`` that are left empty, deepest first, up to the root.

    ``remove_directory(directory_key)`` removes one directory if it is empty and says whether it
    did; the walk stops at the first one it did not remove (not empty, gone, or an error), so it
    is best effort and never removes a directory that still holds anything.
    """
    parent = posixpath.dirname(key)
    while parent:
        if not remove_directory(parent):
            return
        parent = posixpath.dirname(parent)


def _unnamed_flag() -> int:
    """``O_TMPFILE`` where the kernel has it and ``/proc/self/fd/N`` is this process's
    descriptor N (an unnamed file is linked through it; /proc may be missing, or mounted for
    another PID namespace); else 0."""
    flag: int = getattr(os, "O_TMPFILE", 0)
    try:
        fd = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return 0
    try:
        linked = os.path.samestat(os.stat(f"/proc/self/fd/{fd}"), os.fstat(fd))
    except OSError:
        linked = False
    finally:
        os.close(fd)
    return flag if linked else 0


_UNNAMED = _unnamed_flag()
_NO_UNNAMED = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})
"""What ``open(O_TMPFILE)`` fails with where the file system or the kernel has no unnamed files."""
_NAMED_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class TempFile:
    """A file written in the directory ``dir_fd`` (a descriptor the caller keeps open) and
    published when it is complete (CONTRACT §3).

    Where the kernel and the file system allow, it is created without a name (``O_TMPFILE``),
    with the mode any new file gets there (0666 less the umask, or the directory's default ACL):
    its bytes have no name, so no one can read them, and a crash leaves nothing behind. When it
    is complete, :meth:`link_as` links it at the target's name where nothing has that name;
    else :meth:`temp_name` links it under a temp name for the caller to rename over the target.
    Elsewhere it is created under a temp name with mode 0600 and given the new file's mode
    (0666 less the umask, read from /proc) by :meth:`ready`. A new file published by a link
    needs neither that read nor the ``chmod``, the temp name or the rename, which matters for
    many small files (14 us a 4 KiB file on tmpfs instead of 33).
    """

    def __init__(self, dir_fd: int, buffer_size: int = -1) -> None:
        self.dir_fd = dir_fd
        self.name: str | None = None
        """Its temp name in ``dir_fd``; None while it has none."""
        fd = self._open_unnamed() if _UNNAMED else None
        while fd is None:
            name = new_temp_name()
            try:
                fd = os.open(name, _NAMED_FLAGS, 0o600, dir_fd=dir_fd)
            except FileExistsError:
                continue
            self.name = name
        self.file: IO[bytes] = os.fdopen(fd, "wb", buffer_size)

    def _open_unnamed(self) -> int | None:
        try:
            return os.open(".", os.O_WRONLY | os.O_CLOEXEC | _UNNAMED, 0o666, dir_fd=self.dir_fd)
        except OSError as exc:
            if exc.errno in _NO_UNNAMED:
                return None
            raise

    def ready(self, *, fsync: bool, mtime_ns: int | None = None) -> None:
        """Flush the complete file, give it the mode a new file gets (a named one; an unnamed
        one has it), the modification time ``mtime_ns`` if given, and flush it to the disk if
        ``fsync``."""
        self.file.flush()
        fd = self.file.fileno()
        if self.name is not None:
            os.fchmod(fd, 0o666 & ~current_umask())
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        if fsync:
            os.fsync(fd)

    def link_as(self, name: str) -> bool:
        """Publish an unnamed file as ``name`` in its directory where nothing has that name: a
        link, atomic and never replacing anything, where a temp name and a rename would take
        two calls more. False where something has the name, or the file has a temp name."""
        if self.name is not None:
            return False
        try:
            os.link(self._by_descriptor(), name, dst_dir_fd=self.dir_fd)
        except FileExistsError:
            return False
        return True

    def _by_descriptor(self) -> str:
        """The file's path through its descriptor, which links an unnamed file."""
        return f"/proc/self/fd/{self.file.fileno()}"

    def temp_name(self) -> str:
        """The file's temp name in its directory, linked now if it has none, for the caller to
        rename over the target."""
        while self.name is None:
            name = new_temp_name()
            with contextlib.suppress(FileExistsError):
                os.link(self._by_descriptor(), name, dst_dir_fd=self.dir_fd)
                self.name = name
        return self.name

    def remove(self) -> None:
        """Close the file and remove its temp name, if it has one: it is never published."""
        with contextlib.suppress(OSError):
            self.file.close()
        if self.name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.name, dir_fd=self.dir_fd)
            self.name = None


@contextlib.contextmanager
def atomic_replace(target: str, *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Yield a new :class:`TempFile` beside ``target``, open for writing; on success it
    replaces ``target`` (with the permissions a new file gets), on failure it is removed and
    ``target`` is untouched.

    The temp file is written through the descriptor that created it: reopening it with
    ``O_TRUNC`` would make ext4 flush it on close (its replace-by-truncate heuristic), which
    halves the speed of a large copy.
    """
    directory, name = os.path.split(os.path.abspath(target))
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        temp = TempFile(dir_fd)
        try:
            yield temp.file
            temp.ready(fsync=fsync)
            if not temp.link_as(name):
                os.replace(temp.temp_name(), name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            temp.file.close()
        except BaseException:
            temp.remove()
            raise
        if fsync:
            os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def current_umask() -> int:
    """The process umask (read from /proc where possible: setting it is not thread-safe)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
