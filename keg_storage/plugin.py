"""The Flask integration under its keg-storage 0.5 name: every name this module had before it was
split by job, imported from where it lives now.

- :mod:`keg_storage.extension`: the ``Storage`` extension;
- :mod:`keg_storage.app_state`: what it keeps per app (``app.extensions['keg_storage']``);
- :mod:`keg_storage.link_view`: ``LinkViewMixin`` and ``describe_storage_error``;
- :mod:`keg_storage.operations`: ``StorageOperations``.
"""

from __future__ import annotations

# ruff: noqa: F401 - this module re-exports: every import is a name users import from here
from .errors import MissingDependencyError

try:
    import flask
    from flask import current_app, request
    from flask.typing import ResponseReturnValue
    from jinja2.filters import do_filesizeformat
    from werkzeug.exceptions import RequestEntityTooLarge
    from werkzeug.http import parse_options_header
    from werkzeug.utils import secure_filename
    from werkzeug.wsgi import FileWrapper
except ImportError as exc:  # pragma: no cover - the test extra installs Flask
    raise MissingDependencyError("keg_storage.Storage", "flask", "flask") from exc

from .app_state import (
    DEFAULT_LOCATION_KEY,
    DEPRECATED_PROFILES_KEY,
    EXTENSION_KEY,
    PROFILES_KEY,
    BackendSpec,
    log,
)
from .backends.base import (
    FileMode,
    InternalLinksStorageBackend,
    InternalLinkTokenData,
    ShareLinkOperation,
    StorageBackend,
)
from .errors import (
    ExpiredLinkTokenError,
    FileNotFoundInStorageError,
    InvalidPathError,
    LinkTokenError,
    MalformedLinkTokenError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    UnsupportedOperationError,
)
from .extension import Storage
from .http import content_disposition
from .link_view import (
    DEFAULT_LINK_IDLE_TIMEOUT,
    DEFAULT_LINK_MAX_TRANSFERS,
    LINK_IDLE_TIMEOUT_KEY,
    LINK_MAX_TRANSFERS_KEY,
    LinkViewMixin,
    default_max_transfers,
    describe_storage_error,
    runs_in_browser,
)
from .operations import Location, StorageOperations

__all__ = ["LinkViewMixin", "Storage", "StorageOperations", "describe_storage_error"]
