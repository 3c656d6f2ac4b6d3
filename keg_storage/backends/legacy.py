"""Support for backends written for keg-storage 0.5, which implement the public ``open``,
``list``, ``delete`` (and ``copy``) instead of today's primitives: the adapters that
``StorageBackend.__init_subclass__`` routes such a subclass's primitives to, so that every
operation derived from them uses its overrides.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

import arrow

from ..errors import FileNotFoundInStorageError
from ..paths import RemotePath, directory_prefix, path_text
from .files import FileMode, FileStat, ListEntry, RemoteFile

if TYPE_CHECKING:
    from .base import StorageBackend


def legacy_open(
    self: StorageBackend, key: str, mode: FileMode, extra_args: dict[str, Any]
) -> RemoteFile:
    """The primitive ``_open`` through a public ``open`` override (0.5's may lack extra_args)."""
    with typed_not_found(self, key):
        if extra_args:
            return cast(RemoteFile, self.open(key, mode, extra_args=extra_args))
        return cast(RemoteFile, self.open(key, mode))


@contextlib.contextmanager
def typed_not_found(backend: StorageBackend, key: str) -> Iterator[None]:
    """A plain ``FileNotFoundError`` from a 0.5 override as ``FileNotFoundInStorageError``."""
    try:
        yield
    except FileNotFoundInStorageError:
        raise
    except FileNotFoundError as exc:
        raise FileNotFoundInStorageError(backend, key) from exc


def legacy_list(self: StorageBackend, prefix: str, recursive: bool) -> Iterable[ListEntry]:
    """The primitive ``_list`` through a public ``list(path)`` override that returns the full
    keys of every file under ``path`` (as 0.5's LocalFS and S3 did)."""
    entries = [e for e in self.list(prefix) if e.name.lstrip("/").startswith(prefix)]
    if recursive:
        return entries
    children: dict[str, ListEntry] = {}
    for entry in entries:
        head, slash, _ = entry.name.lstrip("/")[len(prefix) :].partition("/")
        name = prefix + head + slash
        children.setdefault(name, ListEntry(name, None, 0) if slash else entry._replace(name=name))
    return children.values()


def legacy_stat(self: StorageBackend, key: str) -> FileStat:
    """``stat`` from the listing of the file's directory (0.5 backends have no ``stat``)."""
    parent = key.rpartition("/")[0]
    for entry in self._list(f"{parent}/" if parent else "", False):
        if entry.name == key and entry.last_modified is not None:
            return FileStat(size=entry.size, last_modified=arrow.get(entry.last_modified))
    raise FileNotFoundInStorageError(self, key)


def with_recursive(override: Callable[[Any, str], builtins.list[ListEntry]]) -> Any:
    """A 0.5 ``list(path)`` override that also takes today's ``recursive`` (and a default path):
    ``recursive=False`` folds its listing into direct children."""

    @functools.wraps(override)
    def list(
        self: StorageBackend, path: RemotePath = "", *, recursive: bool = True
    ) -> builtins.list[ListEntry]:
        if recursive:
            return override(self, path_text(path, self))
        prefix = directory_prefix(path, self)
        return sorted(legacy_list(self, prefix, False), key=lambda entry: entry.name)

    return list


def legacy_delete(self: StorageBackend, key: str) -> None:
    self.delete(key)


def legacy_copy(self: StorageBackend, key: str, new_key: str) -> None:
    with typed_not_found(self, key):
        self.copy(key, new_key)


LEGACY_PRIMITIVES: tuple[tuple[str, str, Any], ...] = (
    ("open", "_open", legacy_open),
    ("list", "_list", legacy_list),
    ("delete", "_delete", legacy_delete),
    ("copy", "_copy", legacy_copy),
)
