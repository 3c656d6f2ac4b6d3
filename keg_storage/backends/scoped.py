"""Scoped views (CONTRACT §10): ``storage.scoped('tenant-a')``, the same backend confined to
``tenant-a/``, for one store per tenant.

A view is a :class:`StorageBackend` whose primitives call its parent's with the prefix in front
of every key and map what comes back: listing names lose the prefix (lazily, entry by entry),
errors name the view and the path relative to it. The public methods, inherited unchanged,
check every path by the rules of :mod:`keg_storage.paths` before the prefix is added, so ``..``,
a leading ``/`` or a control character never reach the parent, and no key outside the prefix can
be formed. The view holds no connection of its own: it uses the parent's clients and pools, and
closing it leaves the parent open.

The view of a backend with internal links is a :class:`ScopedInternalLinksStorage`: the tokens
it signs carry its prefix as their ``scope`` claim, which the backend (and the link view serving
it) joins in front of the key, so a link signed by a view opens nothing outside it.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections.abc import Callable, Iterator
from typing import IO, Any

import arrow

from ..errors import (
    FileNotFoundInStorageError,
    InvalidPathError,
    LinkTokenError,
    StorageError,
    describe_backend,
)
from ..paths import RemotePath, directory_prefix
from ..progress import ByteCounter
from .base import (
    FileMode,
    FileStat,
    ListEntry,
    RemoteFile,
    ShareLinkOperation,
    StorageBackend,
)
from .links import InternalLinksStorageBackend, InternalLinkTokenData

__all__ = ["ScopedInternalLinksStorage", "ScopedStorage", "scoped_view"]

_PARENT_SETTINGS = (
    "capabilities",
    "supports_read_write",
    "supported_extra_args",
    "unsupported_path_characters",
    "max_segment_bytes",
    "transfer_chunk_size",
    "ordered_listing",
    "keeps_mtime",
    "listing_time_precision",
    "etag_is_md5",
)
"""What a view takes over from its parent as it is when the view is made."""


def scoped_view(parent: StorageBackend, prefix: RemotePath) -> ScopedStorage:
    """The view of ``parent`` confined to ``prefix`` (what :meth:`StorageBackend.scoped`
    returns): a :class:`ScopedInternalLinksStorage` for a backend with internal links."""
    root = parent.parent if isinstance(parent, ScopedStorage) else parent
    if isinstance(root, InternalLinksStorageBackend):
        return ScopedInternalLinksStorage(parent, prefix)
    return ScopedStorage(parent, prefix)


class ScopedStorage(StorageBackend):
    """``parent`` confined to the directory ``prefix``: keys, listings, copies, moves and links
    all stay inside it. A view of a view is a view of the first parent with the prefixes joined
    (``s.scoped('a').scoped('b') == s.scoped('a/b')``).

    ``prefix`` follows the path rules of the parent (no ``..``, ``.`` or control character; a
    leading or trailing ``/`` is ignored); an empty prefix raises :class:`InvalidPathError`.
    """

    parent: StorageBackend
    """The backend this view confines (never itself a view)."""
    prefix: str
    """The prefix every key of the view lives under, ending in ``/`` (``'tenant-a/'``)."""

    def __init__(self, parent: StorageBackend, prefix: RemotePath) -> None:
        own = directory_prefix(prefix, parent)
        if not own:
            raise InvalidPathError(
                "a scope prefix cannot be empty", backend=parent, path=str(prefix)
            )
        if isinstance(parent, ScopedStorage):
            own = parent.prefix + own
            parent = parent.parent
        self.parent = parent
        self.prefix = own
        # Not super(): the internal-links base would derive keys of its own; a view has none.
        StorageBackend.__init__(self, parent.name)
        for setting in _PARENT_SETTINGS:
            setattr(self, setting, getattr(parent, setting))
        if parent.max_key_bytes is not None:
            room = parent.max_key_bytes - len(own.encode("utf-8", "surrogatepass"))
            if room <= 0:
                raise InvalidPathError(
                    "a scope prefix leaves no room for keys in this backend",
                    backend=parent,
                    path=own,
                )
            self.max_key_bytes = room

    @property
    def backend_description(self) -> str:
        """How errors name this view: the parent and the prefix."""
        return f"{describe_backend(self.parent)} scoped to {self.prefix!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.parent!r}, prefix={self.prefix!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScopedStorage):
            return NotImplemented
        return self.parent is other.parent and self.prefix == other.prefix

    def __hash__(self) -> int:
        return hash((id(self.parent), self.prefix))

    def close(self) -> None:
        """Nothing to release: the parent's clients and pools stay open for its other users."""

    # -- keys and errors ---------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return self.prefix + key

    def _rescope(self, error: StorageError) -> None:
        """Make ``error``, raised by the parent about a full key, name this view and the key
        relative to it (in place: its class, chain and traceback stay). An error about no
        path names the view; one about a path outside it (none should be) is left as it is."""
        if error.backend != self.parent_description:
            return
        path = error.path
        if path is not None:
            if not (path + "/").startswith(self.prefix):
                return
            path = path[len(self.prefix) :]
        StorageError.__init__(error, error.reason, backend=self, path=path)
        if isinstance(error, FileNotFoundInStorageError):
            error.storage_type, error.filename = self, error.path or ""

    @property
    def parent_description(self) -> str:
        """How errors raised by the parent name it."""
        return describe_backend(self.parent)

    @contextlib.contextmanager
    def _rescoped(
        self, inner: Callable[[], contextlib.AbstractContextManager[None]] | None = None
    ) -> Iterator[None]:
        """Rescope (:meth:`_rescope`) the storage errors raised inside (and inside
        ``inner()``, a file's own translation, when given)."""
        try:
            if inner is None:
                yield
            else:
                with inner():
                    yield
        except StorageError as error:
            self._rescope(error)
            raise

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        translated = self.parent._translate_error(error, None if path is None else self._full(path))
        if translated is not None:
            self._rescope(translated)
        return translated

    # -- primitives: the parent's, with the prefix -------------------------------------------

    def _list(self, prefix: str, recursive: bool) -> Iterator[ListEntry]:
        """The parent's entries, names made relative one by one as they come (lazy, in the
        parent's order, which losing a common prefix keeps)."""
        start = len(self.prefix)
        with self._rescoped():
            for entry in self.parent._list(self._full(prefix), recursive):
                if entry.name.startswith(self.prefix):
                    yield entry._replace(name=entry.name[start:])

    def _open(
        self, key: str, mode: FileMode, extra_args: dict[str, Any], **conditional: Any
    ) -> RemoteFile:
        with self._rescoped():
            remote = self.parent._open(self._full(key), mode, extra_args, **conditional)
        if isinstance(remote, RemoteFile):  # the file's errors name the view too
            remote._translation = self._file_translation(remote)  # type: ignore[method-assign]
        return remote

    def _file_translation(
        self, remote: RemoteFile
    ) -> Callable[[], contextlib.AbstractContextManager[None]]:
        """``remote``'s own error translation followed by :meth:`_rescope`. It holds the file
        weakly: a file referring to itself would be freed only by the cycle collector, so
        an unclosed writer would be discarded late instead of when it is dropped."""
        own = type(remote)._translation
        file = weakref.ref(remote)

        def translation() -> contextlib.AbstractContextManager[None]:
            alive = file()
            return self._rescoped(None if alive is None else functools.partial(own, alive))

        return translation

    def _stat(self, key: str) -> FileStat:
        with self._rescoped():
            return self.parent._stat(self._full(key))

    def _exists(self, key: str) -> bool:
        with self._rescoped():
            return self.parent._exists(self._full(key))

    def _delete(self, key: str) -> None:
        with self._rescoped():
            self.parent._delete(self._full(key))

    def _delete_many(self, keys: list[str]) -> dict[str, Exception]:
        """The parent's batch delete (one request per batch on S3 and Azure), its errors
        naming this view and the relative keys."""
        with self._rescoped():
            failed = self.parent._delete_many([self._full(key) for key in keys])
        start = len(self.prefix)
        for error in failed.values():
            if isinstance(error, StorageError):
                self._rescope(error)
        return {key[start:]: error for key, error in failed.items()}

    def _copy(self, key: str, new_key: str, **conditional: Any) -> None:  # type: ignore[override]
        with self._rescoped():
            self.parent._copy(self._full(key), self._full(new_key), **conditional)

    def _move(self, key: str, new_key: str, **conditional: Any) -> None:  # type: ignore[override]
        with self._rescoped():
            self.parent._move(self._full(key), self._full(new_key), **conditional)

    def _download(self, key: str, file_obj: IO[bytes], count_bytes: ByteCounter) -> None:
        with self._rescoped():
            self.parent._download(self._full(key), file_obj, count_bytes)

    def _upload(  # type: ignore[override]
        self,
        file_obj: IO[bytes],
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        **conditional: Any,
    ) -> None:
        with self._rescoped():
            self.parent._upload(file_obj, self._full(key), extra_args, count_bytes, **conditional)

    def _upload_keeping_mtime(self, file_obj: IO[bytes], key: str, mtime: arrow.Arrow) -> None:
        with self._rescoped():
            self.parent._upload_keeping_mtime(file_obj, self._full(key), mtime)

    def _get(self, key: str, dest: str, count_bytes: ByteCounter) -> None:
        with self._rescoped():
            self.parent._get(self._full(key), dest, count_bytes)

    def _put(  # type: ignore[override]
        self,
        source: str,
        key: str,
        extra_args: dict[str, Any],
        count_bytes: ByteCounter,
        **conditional: Any,
    ) -> None:
        with self._rescoped():
            self.parent._put(source, self._full(key), extra_args, count_bytes, **conditional)

    def _link_to(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        **options: Any,
    ) -> str:
        """The parent's link for the full key: a service link (S3 presigned, Azure SAS) names
        the object itself, so it is confined by what it names."""
        with self._rescoped():
            return self.parent._link_to(
                self._full(key), operation, expires_at, output_path, content_type, **options
            )


class ScopedInternalLinksStorage(ScopedStorage, InternalLinksStorageBackend):
    """The view of a backend with internal links (LocalFS, SFTP, Memory): its tokens are signed
    with the parent's keys and carry the view's prefix as their ``scope`` claim; it verifies
    only tokens signed inside its scope. A link view can serve it (``LinkViewMixin``), as can
    one serving the parent, which resolves the path inside the token's scope."""

    parent: InternalLinksStorageBackend

    @property
    def linked_endpoint(self) -> str | None:
        """The parent's: the view's links are served where the parent's are."""
        return self.parent.linked_endpoint

    @linked_endpoint.setter
    def linked_endpoint(self, endpoint: str | None) -> None:
        self.parent.linked_endpoint = endpoint

    def get_token_signing_key(self) -> bytes:
        """The parent's signing key: a view signs and verifies as its parent does."""
        return self.parent.get_token_signing_key()

    def _sign_token(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        overwrite: bool = True,
        scope: str = "",
    ) -> str:
        """The parent's token for ``key`` inside this view (its prefix the token's scope)."""
        return self.parent._sign_token(
            key, operation, expires_at, output_path, content_type, overwrite, self.prefix + scope
        )

    def _link_to(
        self,
        key: str,
        operation: ShareLinkOperation,
        expires_at: arrow.Arrow,
        output_path: str | None,
        content_type: str | None,
        overwrite: bool = True,
        **options: Any,
    ) -> str:
        with self._rescoped():
            return self.parent._internal_link(
                self.prefix,
                key,
                operation,
                expires_at,
                output_path,
                content_type,
                overwrite,
                options,
            )

    def deserialize_link_token(self, token: str | bytes) -> InternalLinkTokenData:
        """Verify a token with the parent's keys; only one signed by this view or a view inside
        it is accepted (a token of the parent itself, or of another scope, raises
        :class:`LinkTokenError`). The path returned is relative to this view."""
        with self._rescoped():
            data = self.parent.deserialize_link_token(token)
        if not data.scope.startswith(self.prefix):
            raise LinkTokenError("link token was signed for another scope", backend=self)
        start = len(self.prefix)
        return data._replace(path=data.path[start:], scope=data.scope[start:])
