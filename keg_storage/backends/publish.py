"""Atomic publish through a temp file, for the backends that write files by name (LocalFS, SFTP).

A new file is written under a temp name in its target's directory and renamed over the target
only when it is complete (CONTRACT §3); listings hide temp names; a write that fails or is
aborted removes its temp file; ``delete`` and ``move`` prune the directories they leave empty, up
to the root, so that one-level listings look the same as on object stores. The backends keep the
operations themselves (descriptor-relative calls on LocalFS, SFTP requests); the names and the
order of the walk are decided here, once. :func:`atomic_replace` does the same for a local file
(the destination of ``get``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import secrets
import tempfile
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


@contextlib.contextmanager
def atomic_replace(target: str, *, fsync: bool = False) -> Iterator[IO[bytes]]:
    """Yield a new temp file beside ``target``, open for writing; on success it replaces
    ``target`` (with the permissions a new file would get), on failure it is removed and
    ``target`` is untouched.

    The temp file is written through the descriptor that created it: reopening it with
    ``O_TRUNC`` would make ext4 flush it on close (its replace-by-truncate heuristic), which
    halves the speed of a large copy.
    """
    fd, temp_path = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(target)), prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "wb") as temp_file:
            yield temp_file
        publish_temp_file(temp_path, target, fsync=fsync)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_path)
        raise


def publish_temp_file(temp_path: str, target: str, *, fsync: bool) -> None:
    """Give a finished temp file normal permissions and rename it over ``target``."""
    os.chmod(temp_path, 0o666 & ~current_umask())
    if fsync:
        with open(temp_path, "rb") as written:
            os.fsync(written.fileno())
    os.replace(temp_path, target)


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
