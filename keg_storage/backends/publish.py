"""Atomic publish through a temp file, for the backends that write files by name (LocalFS, SFTP).

A new file is written under a temp name in its target's directory and renamed over the target
only when it is complete (CONTRACT §3); listings hide temp names; a write that fails or is
aborted removes its temp file; ``delete`` and ``move`` prune the directories they leave empty, up
to the root, so that one-level listings look the same as on object stores. The backends keep the
operations themselves (descriptor-relative calls on LocalFS, SFTP requests); the names and the
order of the walk are decided here, once.
"""

from __future__ import annotations

import posixpath
import secrets
from collections.abc import Callable

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
