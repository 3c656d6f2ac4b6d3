"""The ``prefix=`` of S3Storage and AzureStorage: every key lives under it (CONTRACT §10).

What LocalFS's ``root`` and SFTP's ``base_path`` are to a disk, the prefix is to a bucket or a
container: the public API works on keys relative to it, and the backend maps a key to the
service's key only where it calls the SDK (:meth:`KeyPrefix.service`), and a listed name back
(:meth:`KeyPrefix.relative`). The prefix is normalised by the path rules
(:func:`keg_storage.paths.directory_prefix`): ``/app//files/`` is ``app/files``, and ``..``
or ``.`` segments are refused, so no key reaches outside it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..paths import directory_prefix
from .files import ListEntry

__all__ = ["KeyPrefix", "ServiceKey", "user_path"]


class ServiceKey(str):
    """A service key under a prefix that remembers the key the user gave: errors raised while
    working on it (in the file objects too) name ``user_key``, never the service's key."""

    user_key: str

    def __new__(cls, service_key: str, user_key: str) -> ServiceKey:
        key = super().__new__(cls, service_key)
        key.user_key = user_key
        return key


def user_path(path: str | None) -> str | None:
    """The path an error names: the user's key of a :class:`ServiceKey`, else ``path``."""
    return getattr(path, "user_key", path)


@dataclass(frozen=True)
class KeyPrefix:
    """A normalised prefix: ``''`` or ``'app/files/'``."""

    text: str = ""

    @classmethod
    def of(cls, prefix: Any, backend: Any) -> KeyPrefix:
        """``prefix`` (a str or path) normalised; ``InvalidPathError`` for ``..`` and the other
        paths refused everywhere."""
        return cls(directory_prefix(prefix, backend))

    @property
    def name(self) -> str:
        """The prefix as given back to users (``app/files``, no trailing ``/``)."""
        return self.text.rstrip("/")

    def service(self, key: str) -> str:
        """The service's key of ``key`` (a file key or a ``'a/'`` directory prefix)."""
        return ServiceKey(self.text + key, key) if self.text else key

    def relative(self, name: str) -> str:
        """A listed service name relative to the prefix (the listing asked under it)."""
        return name[len(self.text) :] if name.startswith(self.text) else name

    def listed(self, entries: Iterator[ListEntry]) -> Iterator[ListEntry]:
        """The entries of a listing the service made under the prefix, lazily, each named
        relative to the prefix (:meth:`relative`)."""
        if not self.text:
            return entries
        relative = self.relative
        return (ListEntry(relative(name), modified, size) for name, modified, size in entries)

    def key_bytes(self, limit: int) -> int:
        """What remains of the service's key length ``limit`` (bytes of UTF-8) for keys."""
        return limit - len(self.text.encode("utf-8", "surrogatepass"))
