"""What a backend can do, and when a write may publish (CONTRACT §9).

:class:`Capabilities` is the same set of fields on every backend (``storage.capabilities``), so
code can ask before it relies on an operation; an operation whose capability is False raises
:class:`~keg_storage.errors.UnsupportedOperationError` before any I/O. :class:`WriteCondition`
is what ``overwrite=False`` and ``if_match=etag`` become on their way from the public methods to
a backend's writer, which asks the service to decide it at the moment of publishing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import StorageError
from ..secrets import scrub

__all__ = ["ALWAYS", "Capabilities", "WriteCondition", "deciding"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; False means the operation raises ``UnsupportedOperationError``
    before any I/O (``metadata`` False: ``ContentType``/``Metadata`` are accepted and ignored;
    ``server_side_copy`` False: ``copy`` streams through this process)."""

    read_write: bool = False
    """``open(path, 'r+')``: change a file in place."""
    conditional_create: bool = False
    """``overwrite=False``: publish only if nothing exists at the path, decided atomically."""
    conditional_replace: bool = False
    """``if_match=etag``: publish only if the file's ETag is still ``etag``."""
    server_side_copy: bool = False
    """``copy``/``move`` stay on the service."""
    service_links: bool = False
    """``link_to`` gives the service's own URLs (S3 presigned, Azure SAS)."""
    internal_links: bool = False
    """``link_to`` gives links to the app's link view (``LinkViewMixin``)."""
    multi_operation_links: bool = False
    """One link may allow several operations (``'du'``)."""
    metadata: bool = False
    """``extra_args`` ``ContentType``, ``ContentEncoding`` and ``Metadata`` are stored."""


@dataclass(frozen=True)
class WriteCondition:
    """When a write may publish: always (the default), only where nothing exists
    (``overwrite=False``), or only over the file whose ETag is ``if_match``."""

    overwrite: bool = True
    if_match: str | None = None

    @property
    def unconditional(self) -> bool:
        return self.overwrite and self.if_match is None


ALWAYS = WriteCondition()
"""The condition of a plain write."""


Refusal = Callable[[BaseException, WriteCondition, Any, str], StorageError | None]
"""What a backend reads in its SDK's exception: the condition's error when the service refused
``condition`` for ``key`` (FileExistsInStorageError, PreconditionFailedError), else None."""


@contextlib.contextmanager
def deciding(condition: WriteCondition, backend: Any, key: str, refusal: Refusal) -> Iterator[None]:
    """Around the request that publishes under ``condition``: the service's refusal, as
    ``refusal`` recognises it, becomes that error (scrubbed of SDK frames, chained); anything
    else passes unchanged."""
    try:
        yield
    except Exception as error:
        failure = refusal(scrub(error), condition, backend, key)
        if failure is None:
            raise
        raise failure from error
