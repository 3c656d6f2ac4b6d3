"""Remote paths of an SFTP storage: keys under ``base_path``, confinement to it on the server
(symlinks included), directories created and pruned, and the atomic publish of a temp file
(names and pruning order from :mod:`keg_storage.backends.publish`)."""

from __future__ import annotations

import contextlib
import errno
import posixpath
import stat as stat_module
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..errors import FileExistsInStorageError, InvalidPathError, UnsupportedOperationError
from .base import FILE_EXISTS
from .publish import new_temp_name, prune_empty_parents
from .sftp_fastpath import (
    HARDLINK,
    OPEN_CREATE,
    OPEN_EXCL,
    OPEN_WRITE,
    hardlink,
    hardlink_then_remove,
    open_handle,
)

if TYPE_CHECKING:
    from .base import StorageBackend
    from .sftp_transport import Session

DIR_CHECK_TTL = 5.0
"""Seconds a directory found to resolve inside ``base_path`` is trusted without asking again."""
DIR_CHECK_ENTRIES = 1024
"""The most directories remembered as checked (the memory is cleared when it is full)."""


def normalise_base(base_path: str) -> str:
    """``'/'`` stays ``'/'``; ``'/a/b/'`` becomes ``'/a/b'``; a relative path (from the login
    directory) loses its trailing slash; ``''`` means the login directory."""
    if base_path.startswith("/"):
        return "/" + "/".join(p for p in base_path.split("/") if p) if base_path.strip("/") else "/"
    return "/".join(p for p in base_path.split("/") if p)


class RemotePaths:
    """The remote side of keys for one storage (its ``base_path``), shared by the storage and
    its files. The directories found to resolve inside ``base_path`` are remembered for
    ``DIR_CHECK_TTL`` seconds (a plain dict, whose single operations need no lock)."""

    def __init__(self, backend: StorageBackend, base_path: str) -> None:
        self.backend_ref = weakref.ref(backend)
        self.base_path = normalise_base(base_path)
        self._base_real: str | None = None  # base_path as the server resolves it
        self._checked_dirs: dict[str, float] = {}

    @property
    def backend(self) -> StorageBackend | None:
        return self.backend_ref()

    def temp_path(self, remote_dir: str) -> str:
        """A new temp file path in ``remote_dir`` (listings hide it, see
        :func:`~keg_storage.backends.publish.is_temp_name`)."""
        return posixpath.join(remote_dir, new_temp_name())

    def remote(self, key: str) -> str:
        """The remote path of a key (or of a directory prefix ``a/b/``)."""
        key = key.strip("/")
        if not key:
            return self.base_path or "."
        if not self.base_path:
            return key
        return posixpath.join(self.base_path, key)

    # -- confinement: symlinks on the server ------------------------------------------------

    def outside(self, key: str | None) -> InvalidPathError:
        return InvalidPathError(
            f"the path resolves outside base_path {self.base_path or '.'!r} on the server "
            "(a symlink)",
            backend=self.backend,
            path=key,
        )

    def inside(self, sftp: Any, real: str) -> bool:
        """Whether the resolved remote path ``real`` is ``base_path`` or below it."""
        base = self._base_real
        if base is None:
            try:
                base = self._base_real = sftp.normalize(self.base_path or ".")
            except OSError as exc:  # base_path and its parent are missing: compare as written
                if exc.errno != errno.ENOENT:
                    raise
                base = posixpath.join(sftp.normalize("."), self.base_path)
        return real == base or real.startswith(base.rstrip("/") + "/")

    def check_dir(self, sftp: Any, remote_dir: str, key: str | None) -> None:
        """Refuse ``key`` if ``remote_dir`` resolves outside ``base_path`` on the server.

        One REALPATH round trip (the server resolves every symlink), remembered for
        ``DIR_CHECK_TTL`` seconds. A directory missing with its parent is judged by its nearest
        ancestor that resolves: whatever is created below it is a real directory.
        """
        if self._checked_dirs.get(remote_dir, 0.0) > time.monotonic():
            return
        try:
            real = sftp.normalize(remote_dir or ".")
        except OSError as exc:
            parent = posixpath.dirname(remote_dir)
            if exc.errno != errno.ENOENT or parent == remote_dir:
                raise
            self.check_dir(sftp, parent, key)
            return
        if not self.inside(sftp, real):
            raise self.outside(key)
        if len(self._checked_dirs) >= DIR_CHECK_ENTRIES:
            self._checked_dirs.clear()
        self._checked_dirs[remote_dir] = time.monotonic() + DIR_CHECK_TTL

    def check_link(self, sftp: Any, remote: str, key: str) -> None:
        """Refuse ``key``, a symlink on the server, if it resolves outside ``base_path``."""
        if not self.inside(sftp, sftp.normalize(remote)):
            raise self.outside(key)

    def checked_attr(self, sftp: Any, key: str) -> Any:
        """The attributes of ``key`` (``OSError`` ENOENT when missing), refusing a path that
        leaves ``base_path``; a symlink that stays inside gives its target's attributes."""
        remote = self.remote(key)
        self.check_dir(sftp, posixpath.dirname(remote), key)
        attr = sftp.lstat(remote)
        if stat_module.S_ISLNK(attr.st_mode or 0):
            self.check_link(sftp, remote, key)
            attr = sftp.stat(remote)
        return attr

    def check_target(self, sftp: Any, key: str) -> None:
        """Refuse writing ``key`` through a directory or over a symlink that leaves
        ``base_path`` (a missing target is fine)."""
        remote = self.remote(key)
        self.check_dir(sftp, posixpath.dirname(remote), key)
        try:
            attr = sftp.lstat(remote)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return
            raise
        if stat_module.S_ISLNK(attr.st_mode or 0):
            self.check_link(sftp, remote, key)

    def makedirs(self, sftp: Any, remote_dir: str) -> None:
        """Create ``remote_dir`` and its missing parents (tolerating concurrent creation)."""
        if remote_dir in ("", "/", "."):
            return
        try:
            sftp.mkdir(remote_dir)
            return
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                self.makedirs(sftp, posixpath.dirname(remote_dir))
            elif exc.errno in (errno.EACCES, errno.EPERM):
                raise
            else:  # already there (OpenSSH answers a generic failure)
                if stat_module.S_ISDIR(sftp.stat(remote_dir).st_mode or 0):
                    return
                raise
        try:
            sftp.mkdir(remote_dir)
        except OSError:
            if not stat_module.S_ISDIR(sftp.stat(remote_dir).st_mode or 0):
                raise

    def prune(self, sftp: Any, key: str) -> None:
        """Remove the directories ``key`` leaves empty, up to the root (as object stores do)."""

        def remove_directory(directory: str) -> bool:
            remote = self.remote(directory)
            try:
                sftp.rmdir(remote)
            except OSError:
                return False
            self._checked_dirs.pop(remote, None)  # whatever appears there next is checked anew
            return True

        prune_empty_parents(key, remove_directory)

    def open_temp(
        self, sftp: Any, remote_dir: str, temp: str | None = None, *, dir_missing: bool = False
    ) -> tuple[str, bytes]:
        """Create an empty temp file in ``remote_dir`` (creating the directory, first when the
        caller knows it is ``dir_missing``); its handle. ``temp`` names it (from
        :meth:`temp_path`) for a caller that must know the name even when the server's answer
        never comes."""
        temp = temp or self.temp_path(remote_dir)
        if dir_missing:
            self.makedirs(sftp, remote_dir)
        for attempt in range(3):
            try:
                return temp, open_handle(sftp, temp, OPEN_WRITE | OPEN_CREATE | OPEN_EXCL)
            except OSError as exc:
                if exc.errno != errno.ENOENT or attempt == 2:
                    raise
                self.makedirs(sftp, remote_dir)
        raise AssertionError("unreachable")

    def require_create_only(self, session: Session, key: str) -> None:
        """Refuse a create-only write before any byte is sent when the server lacks
        ``hardlink@openssh.com`` (known from its version reply: no round trip)."""
        if HARDLINK not in session.extensions:
            raise UnsupportedOperationError(
                "create-only writes (overwrite=False) need the server's hardlink@openssh.com "
                "extension, which it does not offer",
                backend=self.backend,
                path=key,
            )

    def publish(
        self, session: Session, temp: str, target: str, *, overwrite: bool = True, key: str = ""
    ) -> None:
        """Rename ``temp`` over ``target`` atomically (posix-rename), else remove + rename.
        ``overwrite=False``: :meth:`publish_new` (``key`` names the target in its error)."""
        if not overwrite:
            self.publish_new(session, temp, target, key)
            return
        sftp = session.sftp
        if "posix-rename@openssh.com" in session.extensions:
            sftp.posix_rename(temp, target)
            return
        try:
            sftp.rename(temp, target)
        except OSError:
            with contextlib.suppress(OSError):
                sftp.remove(target)
            sftp.rename(temp, target)

    def link_new(self, session: Session, source: str, target: str, key: str) -> None:
        """Give ``source`` the name ``target`` only if nothing is there, decided by the server
        (``hardlink@openssh.com`` fails on an existing name): :class:`FileExistsInStorageError`
        when something is. Any other refusal is raised as the server gave it."""
        self.require_create_only(session, key)
        with self.file_exists_error(session, target, key):
            hardlink(session.sftp, source, target)

    def publish_new(self, session: Session, temp: str, target: str, key: str) -> None:
        """Publish ``temp`` at ``target`` only if nothing is there, as :meth:`link_new`, and
        drop the temp name in the same round trip. After a dropped connection the temp file
        may stay, for the caller to remove through another session."""
        self.require_create_only(session, key)
        with self.file_exists_error(session, target, key):
            hardlink_then_remove(session.sftp, temp, target)

    @contextlib.contextmanager
    def file_exists_error(self, session: Session, target: str, key: str) -> Iterator[None]:
        """:class:`FileExistsInStorageError` for a link refused because ``target`` exists
        (OpenSSH answers a generic failure: checked by LSTAT, only on failure)."""
        try:
            yield
        except OSError as exc:
            if exc.errno is not None or not self.exists(session.sftp, target):
                raise  # missing directory, permission, a dropped connection: not "exists"
            raise FileExistsInStorageError(FILE_EXISTS, backend=self.backend, path=key) from None

    @staticmethod
    def exists(sftp: Any, remote: str) -> bool:
        """Whether anything (a symlink included) is at ``remote``."""
        try:
            sftp.lstat(remote)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise
        return True

    # -- primitives ---------------------------------------------------------------------------
