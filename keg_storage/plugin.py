"""The Flask integration: the ``Storage`` extension, ``LinkViewMixin`` and ``StorageOperations``.

``Storage`` builds the backends an app lists in ``KEG_STORAGE_PROFILES`` (lazily, on first use)
and adds the ``flask storage`` commands. ``LinkViewMixin`` turns a ``MethodView`` into the
endpoint that serves the internal links of LocalFS, SFTP and Memory. ``StorageOperations`` is the
keg-storage 0.5 helper for service classes that store uploads.
"""

from __future__ import annotations

import ast
import contextlib
import enum
import functools
import io
import logging
import queue
import re
import socket
import threading
import uuid
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import IO, Any, NoReturn, cast

from .errors import MissingDependencyError
from .http import content_disposition

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

__all__ = ["LinkViewMixin", "Storage", "StorageOperations", "describe_storage_error"]

log = logging.getLogger(__name__)

EXTENSION_KEY = "keg_storage"
PROFILES_KEY = "KEG_STORAGE_PROFILES"
DEPRECATED_PROFILES_KEY = "STORAGE_PROFILES"
DEFAULT_LOCATION_KEY = "KEG_STORAGE_DEFAULT_LOCATION"
LINK_MAX_TRANSFERS_KEY = "KEG_STORAGE_LINK_MAX_TRANSFERS"
LINK_IDLE_TIMEOUT_KEY = "KEG_STORAGE_LINK_IDLE_TIMEOUT"
DEFAULT_LINK_MAX_TRANSFERS = 16
"""Concurrent link transfers per backend that has no connection pool (LocalFS, Memory)."""
DEFAULT_LINK_IDLE_TIMEOUT = 30.0
"""Seconds an upload body may stop arriving before the upload is aborted (408)."""

BackendSpec = type[StorageBackend] | Callable[..., StorageBackend] | str


class _Profile:
    """One entry of ``KEG_STORAGE_PROFILES``: how to build a backend, and the backend once built."""

    def __init__(self, index: int, spec: BackendSpec, options: dict[str, Any]) -> None:
        self.index = index
        self.spec = spec
        self.options = options
        self.name: str = options["name"]
        self.backend: StorageBackend | None = None
        self.lock = threading.Lock()

    def build(self) -> StorageBackend:
        """A new backend from this profile; a bad class or bad options name the profile (an
        unknown, missing or mistyped option in the same words as the CLI's TOML profiles)."""
        from .cli import resolve_backend_class
        from .profiles import ProfileError, check_profile_options

        try:
            factory = resolve_backend_class(self.spec) if isinstance(self.spec, str) else self.spec
            options = check_profile_options(self.name, factory, self.options)
            return factory(**options)
        except ProfileError:
            raise  # already one line naming the profile, as the CLI says it
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{PROFILES_KEY}[{self.index}] (profile {self.name!r}): {exc}"
            ) from exc

    def get(self) -> StorageBackend:
        """The app's shared backend of this profile, built on first use (once, under a lock
        of its own, so a slow connection does not hold up the other profiles)."""
        with self.lock:
            if self.backend is None:
                self.backend = self.build()
            return self.backend

    def close(self) -> None:
        with self.lock:
            backend, self.backend = self.backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:  # one failing close must not keep the others open
                log.exception("closing the backend of storage profile %r failed", self.name)


class _AppState:
    """What :class:`Storage` keeps per app in ``app.extensions['keg_storage']``."""

    def __init__(self, profiles: dict[str, _Profile]) -> None:
        self.profiles = profiles
        self.default: str | None = next(iter(profiles), None)

    def get(self, name: str | None = None) -> StorageBackend:
        chosen = name or self.default
        if chosen is None:
            raise ValueError(
                f"no storage profile is configured: set {PROFILES_KEY} = [(BackendClass, "
                "{'name': ..., ...}), ...] in the app's config"
            )
        profile = self.profiles.get(chosen)
        if profile is None:
            raise ValueError(
                f"unknown storage profile {chosen!r}; configured: "
                f"{', '.join(repr(n) for n in self.profiles)}"
            )
        return profile.get()

    def close(self) -> None:
        """Close every backend built so far; they are built again on next use."""
        for profile in self.profiles.values():
            profile.close()


def _parse_profiles(config: Mapping[str, Any]) -> dict[str, _Profile]:
    """Check ``KEG_STORAGE_PROFILES`` and say what is wrong, and where, when it is malformed."""
    raw = config.get(PROFILES_KEY)
    if raw is None:
        return {}
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise ValueError(
            f"{PROFILES_KEY} must be a list of (BackendClass, options) pairs, "
            f"not {type(raw).__name__}"
        )
    profiles: dict[str, _Profile] = {}
    for index, entry in enumerate(raw):
        where = f"{PROFILES_KEY}[{index}]"
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise ValueError(f"{where} must be a (BackendClass, options) pair, not {entry!r}")
        spec, options = entry
        if not (isinstance(spec, str) or callable(spec)):
            raise ValueError(f"{where}: the backend must be a class or a dotted path, not {spec!r}")
        if not isinstance(options, Mapping):
            raise ValueError(f"{where}: the options must be a dict, not {type(options).__name__}")
        name = options.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: the options need a 'name' (a non-empty string)")
        if name in profiles:
            raise ValueError(f"{where}: the profile name {name!r} is used twice")
        profiles[name] = _Profile(index, spec, dict(options))
    return profiles


class Storage:
    """The Flask extension: ``Storage(app)`` or ``storage = Storage(); storage.init_app(app)``.

    One ``Storage`` object can serve several apps; each app keeps its own backends in
    ``app.extensions['keg_storage']``. ``app.storage`` is set to this object too (keg-storage 0.5
    compatibility). Backends are built on first use and closed when the app is garbage-collected
    or the process exits (or explicitly with :meth:`close`).
    """

    def __init__(self, app: flask.Flask | None = None, cli_group_name: str = "storage") -> None:
        self.cli_group_name = cli_group_name
        self.app = app
        if app is not None:
            self.init_app(app)

    def init_app(self, app: flask.Flask) -> None:
        """Read the app's profiles (without connecting anywhere) and add the CLI group."""
        _migrate_deprecated_config(app.config)
        state = _AppState(_parse_profiles(app.config))
        app.extensions[EXTENSION_KEY] = state
        app.storage = self  # type: ignore[attr-defined]
        # Close the backends with the app (or at exit); the state holds no reference to the app.
        weakref.finalize(app, state.close)
        _install_csrf_exemption()
        self.init_cli(app)

    def init_cli(self, app: flask.Flask) -> None:
        """Add ``flask <cli_group_name>`` (list, get, put, copy, move, delete, stat, link)."""
        if self.cli_group_name:
            from .flask_cli import make_group

            app.cli.add_command(make_group(self.cli_group_name))

    def _state(self, app: flask.Flask | None = None) -> _AppState:
        if app is None:
            app = (
                cast(flask.Flask, current_app._get_current_object())  # type: ignore[attr-defined]
                if flask.has_app_context() or self.app is None
                else self.app
            )
        state = app.extensions.get(EXTENSION_KEY)
        if state is None:
            raise RuntimeError(f"Storage.init_app() was not called for the app {app.name!r}")
        return cast(_AppState, state)

    @property
    def interface(self) -> str | None:
        """The name of the default profile (the first one) of the current app."""
        return self._state().default

    @property
    def profile_names(self) -> list[str]:
        """The configured profile names of the current app, default first."""
        return list(self._state().profiles)

    def get_interface(self, interface: str | None = None) -> StorageBackend:
        """The backend of the named profile, or of the default (first) profile.

        Raises ValueError naming the configured profiles when the name is unknown or none is
        configured.
        """
        return self._state().get(interface)

    def close(self, app: flask.Flask | None = None) -> None:
        """Close the backends of ``app`` (default: the current app); next use reopens them."""
        self._state(app).close()


def _migrate_deprecated_config(config: flask.Config) -> None:
    if DEPRECATED_PROFILES_KEY not in config:
        return
    if PROFILES_KEY in config:
        warnings.warn(
            f"Found both {PROFILES_KEY} and deprecated {DEPRECATED_PROFILES_KEY}. "
            "Please remove the obsolete configuration.",
            DeprecationWarning,
            stacklevel=3,
        )
        return
    warnings.warn(
        f"{DEPRECATED_PROFILES_KEY} is deprecated. Please use {PROFILES_KEY} instead.",
        DeprecationWarning,
        stacklevel=3,
    )
    config[PROFILES_KEY] = config.pop(DEPRECATED_PROFILES_KEY)


# -- link view ------------------------------------------------------------------------------

_LINK_VIEW_MARK = "_keg_storage_link_view"
_CSRF_WRAPPER_MARK = "_keg_storage_skips_link_views"
_csrf_lock = threading.Lock()


def _is_link_view_request() -> bool:
    """Whether the current request is routed to a view function made by
    :meth:`LinkViewMixin.as_view` (that very object, not one with the same name)."""
    if request.endpoint is None:
        return False
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, _LINK_VIEW_MARK, False) is True


def _install_csrf_exemption() -> None:
    """Make Flask-WTF's ``CSRFProtect.protect`` (its ``before_request`` check, and any call an
    app makes itself) skip requests routed to a link view: the link's signed token is what
    authorises them.

    Flask-WTF's own ``exempt`` records ``module.function`` and would also exempt every other
    view of that module and name; this checks the view object itself, for every app, with or
    without :class:`Storage`. Idempotent; nothing happens when Flask-WTF is not installed."""
    try:
        from flask_wtf.csrf import CSRFProtect
    except ImportError:
        return
    with _csrf_lock:
        protect = CSRFProtect.protect
        if getattr(protect, _CSRF_WRAPPER_MARK, False):
            return

        @functools.wraps(protect)
        def protect_unless_link_view(self: Any, *args: Any, **kwargs: Any) -> Any:
            if _is_link_view_request():
                return None
            return protect(self, *args, **kwargs)

        setattr(protect_unless_link_view, _CSRF_WRAPPER_MARK, True)
        CSRFProtect.protect = protect_unless_link_view


_ACTIVE_SUBTYPE_PARTS = ("html", "xml", "script", "xsl")
_ACTIVE_TYPES = frozenset(
    {"application/x-shockwave-flash", "multipart/x-mixed-replace", "text/vnd.wap.wml"}
)


def runs_in_browser(content_type: str) -> bool:
    """Whether a browser may run content of this type: HTML, XHTML, SVG, XML (and every
    ``+xml`` type), XSLT, JavaScript/ECMAScript and other ``*script`` types, Flash and
    ``multipart/x-mixed-replace``. The link view serves these only as attachments."""
    essence = parse_options_header(content_type)[0].strip().lower()
    subtype = essence.partition("/")[2]
    return essence in _ACTIVE_TYPES or any(part in subtype for part in _ACTIVE_SUBTYPE_PARTS)


def _secure_link_response(response: flask.Response) -> flask.Response:
    """Headers on every link-view response (errors too): no type sniffing, no Referer (the
    page's URL holds the token), and a sandbox for anything a browser renders."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


class _TransferSlots:
    """The link transfers a backend (or the connection pool it shares) serves right now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = 0

    def take(self, limit: int) -> Callable[[], None] | None:
        """A slot (its release function, which may be called more than once), or None when
        ``limit`` transfers are running."""
        with self.lock:
            if self.active >= limit:
                return None
            self.active += 1
        released = threading.Event()

        def release() -> None:
            with self.lock:
                if not released.is_set():
                    released.set()
                    self.active -= 1

        return release


_transfer_slots: weakref.WeakKeyDictionary[Any, _TransferSlots] = weakref.WeakKeyDictionary()
_transfer_slots_lock = threading.Lock()


def _slots_of(backend: StorageBackend) -> _TransferSlots:
    """One count per connection pool (backends sharing a pool share it), else per backend."""
    pool = getattr(backend, "_pool", None)
    owner = backend if pool is None else pool
    with _transfer_slots_lock:
        slots = _transfer_slots.get(owner)
        if slots is None:
            slots = _transfer_slots[owner] = _TransferSlots()
        return slots


def default_max_transfers(backend: StorageBackend) -> int:
    """The default cap on concurrent link transfers of ``backend``: half its connection pool
    (SFTP's ``pool_size``), so link holders can never take every connection; else
    :data:`DEFAULT_LINK_MAX_TRANSFERS`."""
    size = getattr(getattr(backend, "_pool", None), "size", None)
    if isinstance(size, int) and size > 0:
        return max(1, size // 2)
    return DEFAULT_LINK_MAX_TRANSFERS


class _LinkFileWrapper(FileWrapper):
    """werkzeug's file wrapper (not the server's ``wsgi.file_wrapper``: it seeks for Range)
    whose ``close``, which every server calls when the response ends or the client goes
    away, also frees the transfer slot."""

    def __init__(self, file: IO[bytes], buffer_size: int, release: Callable[[], None]) -> None:
        super().__init__(file, buffer_size)
        self._release = release

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


class _IdleBodyTimeout(TimeoutError):
    pass


class _IdleTimeoutBody(io.RawIOBase):
    """A request body that raises :class:`TimeoutError` when no data arrives for
    ``idle_timeout`` seconds, on any WSGI server.

    A helper thread reads the server's input stream (a blocking read with no timeout of its own)
    and hands over chunks through a one-slot queue, so at most three chunks are held; the
    request thread waits for each with the timeout. On a timeout the read side of the
    connection is shut down where the server exposes its socket (werkzeug's
    ``werkzeug.socket``, gunicorn's ``gunicorn.socket``), which ends the helper's read;
    elsewhere the helper ends when the client sends more or disconnects."""

    def __init__(
        self,
        stream: IO[bytes],
        idle_timeout: float,
        chunk_size: int,
        connection: socket.socket | None,
    ) -> None:
        super().__init__()
        self._stream = stream
        self._idle_timeout = idle_timeout
        self._chunk_size = chunk_size
        self._connection = connection
        self._chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=1)
        self._stopped = threading.Event()
        self._pending = memoryview(b"")
        self._ended = False
        self.timed_out = False
        threading.Thread(target=self._pump, name="keg-storage-link-body", daemon=True).start()

    def _pump(self) -> None:
        while not self._stopped.is_set():
            item: bytes | BaseException
            try:
                item = self._stream.read(self._chunk_size)
            except BaseException as exc:  # handed to the request thread, which raises it
                item = exc
            self._chunks.put(item)
            if not isinstance(item, bytes) or not item:
                return

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending:
            if self._ended:
                return 0
            try:
                item = self._chunks.get(timeout=self._idle_timeout)
            except queue.Empty:
                self._time_out()
            if isinstance(item, BaseException):
                self._ended = True
                raise item
            if not item:
                self._ended = True
                return 0
            self._pending = memoryview(item)
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _time_out(self) -> NoReturn:
        self.timed_out = self._ended = True
        if self._connection is not None:
            with contextlib.suppress(OSError):
                self._connection.shutdown(socket.SHUT_RD)
        raise _IdleBodyTimeout(f"no request body arrived for {self._idle_timeout} s")

    def close(self) -> None:
        """Stop the helper: it ends after its current read (never blocked on the queue)."""
        self._stopped.set()
        with contextlib.suppress(queue.Empty):
            self._chunks.get_nowait()
        super().close()


def _strong_etag(value: str | None) -> str | None:
    if not value:
        return None
    return value.removeprefix("W/").strip('"') or None


_VERBS = {
    ShareLinkOperation.download: "downloading",
    ShareLinkOperation.upload: "uploading",
    ShareLinkOperation.remove: "deleting",
}


def _verb(operation: ShareLinkOperation) -> str:
    return _VERBS.get(operation) or f"the operation {operation.name}"


def _plain_error(status: int, message: str) -> flask.Response:
    """An error answered as one line of plain text (what a script, ``curl`` or the page's
    JavaScript can show as it is)."""
    return current_app.response_class(message, status, mimetype="text/plain")


def _internal_links(backend: StorageBackend) -> InternalLinksStorageBackend:
    if not isinstance(backend, InternalLinksStorageBackend):
        raise TypeError(f"{backend!r} does not use internal links: it cannot serve a link view")
    return backend


# -- what a person is told when storage fails -----------------------------------------------

_PATH_REASONS: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(r"control character"),
        lambda _: "it contains a control character (such as a line break or a tab)",
    ),
    (re.compile(r"'\.' and '\.\.'"), lambda _: '"." and ".." cannot be used as names'),
    (
        re.compile(r"segment is longer than this backend allows \((\d+) bytes"),
        lambda match: f"it is too long (a name can have at most {match[1]} bytes)",
    ),
    (
        re.compile(r"the path is (\d+) bytes .* allows \((\d+)\)"),
        lambda match: f"it is too long ({match[1]} bytes; this storage keeps at most {match[2]})",
    ),
    (re.compile(r"too long|this long"), lambda _: "it is too long"),
    (
        re.compile(r"^('.+') cannot be kept in a name"),
        lambda match: (
            f'this storage cannot keep the character "{ast.literal_eval(match[1])}" in a name'
        ),
    ),
    (re.compile(r"cannot end with '/'"), lambda _: 'it ends with "/", which names a folder'),
    (re.compile(r"cannot be empty"), lambda _: "it is empty"),
    (
        re.compile(r"symlink"),
        lambda _: "it leads through a symbolic link, which this storage does not follow",
    ),
)
"""The reasons of :class:`InvalidPathError` (see keg_storage.paths and the backends), in plain
words; a reason not listed here is shown as the library words it."""

_PATH_CONFLICTS = {
    "a directory exists at this path": "A folder already has this name.",
    "a file exists where the path needs a directory": (
        "A file already has the name of a folder in this path."
    ),
}
"""InvalidPathErrors that are conflicts with what is stored (409), not bad names."""


def _invalid_path_message(error: InvalidPathError) -> tuple[int, str]:
    reason = error.reason
    conflict = _PATH_CONFLICTS.get(reason)
    if conflict is not None:
        return 409, conflict
    for pattern, explain in _PATH_REASONS:
        match = pattern.search(reason)
        if match:
            reason = explain(match)
            break
    return 400, f"This file name is not allowed: {reason}."


def describe_storage_error(error: StorageError) -> tuple[int, str]:
    """The HTTP status for ``error`` and one sentence a person understands, free of class names,
    backend names and tracebacks (the link view's and the demo's error responses).

    What the request asked for is at fault (4xx): a name the storage refuses 400 (409 when a
    folder is in the way), a missing file 404, an existing one 409, access refused 403, an
    operation the storage cannot do 400, a bad link 400/403. The server is at fault (5xx): the
    storage cannot be reached 503, anything else 500."""
    if isinstance(error, InvalidPathError):
        return _invalid_path_message(error)
    if isinstance(error, FileNotFoundInStorageError):
        return 404, "This file does not exist: it may have been moved or deleted."
    if isinstance(error, FileExistsError):  # FileExistsInStorageError (overwrite=False)
        return 409, "A file with this name already exists."
    if isinstance(error, StoragePermissionError):
        return 403, "The storage refused access to this file."
    if isinstance(error, UnsupportedOperationError):
        return 400, "This storage cannot do that with this file."
    if isinstance(error, ExpiredLinkTokenError):
        return 403, "This link has expired: ask for a new one."
    if isinstance(error, MalformedLinkTokenError):
        return 400, "This link is damaged: check that it was copied whole."
    if isinstance(error, LinkTokenError):
        return 403, "This link is not valid."
    if isinstance(error, StorageConnectionError):
        return 503, "The storage cannot be reached right now. Please try again in a minute."
    return 500, "The storage failed to complete this request. Please try again later."


class LinkViewMixin:
    """Serves the internal links of LocalFS, SFTP and Memory; mix it into a ``MethodView``,
    before it: ``class LinkView(LinkViewMixin, MethodView)``.

    GET/HEAD download (with ETag, Last-Modified, conditional requests and ``Range``), PUT/POST
    upload the raw request body (streamed, within ``MAX_CONTENT_LENGTH``), DELETE removes. Status
    codes: no token 404, malformed token 400, bad signature/expired/wrong operation 403, missing
    file 404, too many transfers at once 503 (with ``Retry-After``), an upload body that stopped
    arriving 408. Every :class:`~keg_storage.errors.StorageError` becomes the status and the
    sentence of :func:`describe_storage_error` (a name the storage refuses 400, a folder in the
    way 409, access refused 403, the storage unreachable 503 with ``Retry-After``); errors are
    answered as one line of plain text, never a traceback page.

    Every response carries ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``
    and ``Content-Security-Policy: sandbox``; a type a browser would run (:func:`runs_in_browser`)
    is always served as an attachment. The view is exempt from Flask-WTF's CSRF check (the
    token authorises the request), that view object only.

    By default the backend is the app's profile whose ``linked_endpoint`` is this view's endpoint
    (or the profile named by ``storage_profile``); override :meth:`get_storage_backend` to choose
    otherwise.
    """

    decorators: Sequence[Callable[..., Any]] = ()
    storage_profile: str | None = None
    """The profile whose links this view serves; None: the one whose ``linked_endpoint`` is
    this view's endpoint."""
    download_chunk_size = 256 * 1024
    """Bytes per chunk of a streamed download (and of an upload body handed over)."""
    max_transfers: int | None = None
    """Concurrent downloads and uploads per backend; None: the app's
    ``KEG_STORAGE_LINK_MAX_TRANSFERS``, else :func:`default_max_transfers` (half of SFTP's
    ``pool_size``, 16 for backends without a pool). Beyond it: 503 with ``Retry-After``."""
    idle_timeout: float | None = None
    """Seconds an upload body may stop arriving before the upload is aborted (nothing is
    published, 408); None: the app's ``KEG_STORAGE_LINK_IDLE_TIMEOUT``, else 30."""
    retry_after = 5
    """The ``Retry-After`` seconds of a 503."""

    @classmethod
    def as_view(cls, name: str, *class_args: Any, **class_kwargs: Any) -> Callable[..., Any]:
        """The view function, marked so that exactly it is exempt from Flask-WTF's CSRF
        check (whatever ``decorators`` a subclass sets)."""
        view = cast(Any, super()).as_view(name, *class_args, **class_kwargs)
        setattr(view, _LINK_VIEW_MARK, True)
        _install_csrf_exemption()
        return cast(Callable[..., Any], view)

    def dispatch_request(self, **kwargs: Any) -> ResponseReturnValue:
        """Dispatch by method; every response, errors included, gets the link headers, and a
        :class:`~keg_storage.errors.StorageError` becomes :meth:`storage_error_response`."""
        flask.after_this_request(_secure_link_response)
        try:
            return cast(ResponseReturnValue, cast(Any, super()).dispatch_request(**kwargs))
        except StorageError as error:
            return self.storage_error_response(error)
        except RequestEntityTooLarge:
            limit = request.max_content_length
            most = f" (at most {do_filesizeformat(limit)})" if limit is not None else ""
            return _plain_error(413, f"This file is larger than the server accepts{most}.")

    # -- hooks ---------------------------------------------------------------------------

    def get_storage_backend(self) -> InternalLinksStorageBackend:
        """The backend whose tokens this view serves: the profile named by ``storage_profile``,
        else the profile whose ``linked_endpoint`` is this endpoint (when several are, the one
        whose key verifies the request's token)."""
        state = current_app.extensions.get(EXTENSION_KEY)
        if state is None:
            raise NotImplementedError(
                f"{type(self).__name__}: override get_storage_backend() or initialise "
                "keg_storage.Storage on the app"
            )
        state = cast(_AppState, state)
        if self.storage_profile is not None:
            return _internal_links(state.get(self.storage_profile))
        candidates = [
            _internal_links(state.get(profile.name))
            for profile in state.profiles.values()
            if profile.options.get("linked_endpoint") == request.endpoint
        ]
        if not candidates:
            raise NotImplementedError(
                f"{type(self).__name__}: no storage profile has linked_endpoint="
                f"{request.endpoint!r}; set storage_profile or override get_storage_backend()"
            )
        token = self.get_request_token()
        if len(candidates) > 1 and token:
            for backend in candidates:
                try:
                    backend.deserialize_link_token(token)
                except LinkTokenError:
                    continue
                return backend
        return candidates[0]

    def get_request_token(self) -> str | None:
        """The link token of the request (the ``token`` query argument)."""
        return request.args.get("token")

    def on_upload_success(self, token_data: InternalLinkTokenData) -> ResponseReturnValue:
        """The response to a successful upload (default: ``OK``, 200); override to record the
        file or answer JSON."""
        return "OK"

    def on_delete_success(self, token_data: InternalLinkTokenData) -> ResponseReturnValue:
        """The response to a successful delete (default: ``OK``, 200)."""
        return "OK"

    def storage_error_response(self, error: StorageError) -> flask.Response:
        """The answer to a failed storage operation: the status and sentence of
        :func:`describe_storage_error` as plain text (``Retry-After`` on a 503). Server-side
        failures are logged with their traceback for the operator."""
        status, message = describe_storage_error(error)
        if status >= 500:
            log.error("link view: %s failed: %s", request.method, error, exc_info=error)
        response = _plain_error(status, message)
        if status == 503:
            response.headers["Retry-After"] = str(self.retry_after)
        return response

    # -- machinery -----------------------------------------------------------------------

    def take_transfer_slot(self, storage: InternalLinksStorageBackend) -> Callable[[], None]:
        """A slot for one transfer (its release function), or abort with 503 and
        ``Retry-After`` when the backend already serves its cap of link transfers."""
        limit = self.max_transfers
        if limit is None:
            limit = current_app.config.get(LINK_MAX_TRANSFERS_KEY)
        if limit is None:
            limit = default_max_transfers(storage)
        release = _slots_of(storage).take(int(limit))
        if release is None:
            response = _plain_error(503, "Too many transfers at once; retry later.")
            response.headers["Retry-After"] = str(self.retry_after)
            response.headers["Connection"] = "close"  # the request body is left unread
            flask.abort(response)
        return release

    def get_idle_timeout(self) -> float:
        """Seconds an upload body may stop arriving (``idle_timeout``, else the app's
        ``KEG_STORAGE_LINK_IDLE_TIMEOUT``, else 30)."""
        timeout = self.idle_timeout
        if timeout is None:
            timeout = current_app.config.get(LINK_IDLE_TIMEOUT_KEY, DEFAULT_LINK_IDLE_TIMEOUT)
        return float(timeout)

    def get_token_data(
        self, storage: InternalLinksStorageBackend, operation: ShareLinkOperation | None = None
    ) -> InternalLinkTokenData:
        """Verify the request's token (and that it allows ``operation``), or abort."""
        token = self.get_request_token()
        if not token:
            flask.abort(_plain_error(404, "This link is incomplete: it has no token."))
        try:
            data = storage.deserialize_link_token(token)
        except LinkTokenError as error:
            flask.abort(_plain_error(*describe_storage_error(error)))
        if operation is not None and operation not in data.operations:
            flask.abort(_plain_error(403, f"This link does not allow {_verb(operation)}."))
        return data

    def get(self) -> ResponseReturnValue:
        """Stream the file (GET/HEAD), answering conditional and ``Range`` requests."""
        storage = self.get_storage_backend()
        data = self.get_token_data(storage, ShareLinkOperation.download)
        release = self.take_transfer_slot(storage)
        try:
            info = storage.stat(data.path)
            remote = storage.open(data.path, FileMode.read)
            try:
                mimetype = data.content_type or "application/octet-stream"
                response = current_app.response_class(
                    _LinkFileWrapper(cast(IO[bytes], remote), self.download_chunk_size, release),
                    mimetype=mimetype,
                    direct_passthrough=True,
                )
                response.content_length = info.size
                response.last_modified = info.last_modified.datetime
                etag = (
                    _strong_etag(info.etag) or f"{info.size:x}-{info.last_modified.int_timestamp:x}"
                )
                response.set_etag(etag)
                filename = data.output_path
                if not filename and runs_in_browser(mimetype):
                    filename = data.path  # its last segment
                if filename:
                    response.headers["Content-Disposition"] = content_disposition(filename)
                response.cache_control.private = True
                response.cache_control.no_cache = True
                return response.make_conditional(
                    request.environ, accept_ranges=True, complete_length=info.size
                )
            except BaseException:
                remote.close()
                raise
        except BaseException:
            release()
            raise

    def put(self) -> ResponseReturnValue:
        """Store the raw request body at the link's path, streamed, atomically."""
        storage = self.get_storage_backend()
        data = self.get_token_data(storage, ShareLinkOperation.upload)
        content_type = data.content_type or request.mimetype or None
        extra_args = {"ContentType": content_type} if content_type else None
        release = self.take_transfer_slot(storage)
        connection = request.environ.get("werkzeug.socket") or request.environ.get(
            "gunicorn.socket"
        )
        body = _IdleTimeoutBody(
            request.stream,
            self.get_idle_timeout(),
            self.download_chunk_size,
            connection if isinstance(connection, socket.socket) else None,
        )
        try:
            storage.upload(cast(IO[bytes], body), data.path, extra_args=extra_args)
        except Exception:
            if body.timed_out:  # whatever the backend made of the TimeoutError
                response = _plain_error(408, "The request body stopped arriving.")
                response.headers["Connection"] = "close"
                flask.abort(response)
            raise
        finally:
            body.close()
            release()
        return self.on_upload_success(data)

    def post(self) -> ResponseReturnValue:
        """Same as PUT (the raw body, not a multipart form)."""
        return self.put()

    def delete(self) -> ResponseReturnValue:
        """Remove the file at the link's path (a missing file is not an error)."""
        storage = self.get_storage_backend()
        data = self.get_token_data(storage, ShareLinkOperation.remove)
        storage.delete(data.path)
        return self.on_delete_success(data)


# -- StorageOperations ----------------------------------------------------------------------


class _Unset(enum.Enum):
    token = 0


_UNSET = _Unset.token
Location = enum.Enum | str | None


class StorageOperations:
    """Storage helpers for service classes (keg-storage 0.5): every operation is a classmethod
    that works in ``storage_location`` (an Enum whose value is a folder) on ``storage_profile``
    (a profile name; the app's default when None), unless given other ones as arguments."""

    storage_location: enum.Enum | None = None
    storage_profile: str | None = None

    @classmethod
    def _location(cls, storage_location: Location | _Unset) -> Location:
        return cls.storage_location if storage_location is _UNSET else storage_location

    @classmethod
    def _path(cls, storage_location: Location | _Unset, filename: str) -> str:
        return cls.storage_prefix_path(cls._location(storage_location), filename)

    @classmethod
    def storage_get_profile(cls, storage_profile: str | None = None) -> StorageBackend:
        """The backend of ``storage_profile``, else the class's profile, else the app's default."""
        state = current_app.extensions.get(EXTENSION_KEY)
        if state is None:
            raise RuntimeError("keg_storage.Storage is not initialised on this app")
        return cast(_AppState, state).get(storage_profile or cls.storage_profile)

    @staticmethod
    def storage_prefix_path(location: Location, filename: str) -> str:
        """``<location.value>/<filename>`` (one leading ``.`` of filename dropped)."""
        filename = filename.removeprefix(".")
        if not location:
            return filename
        folder = location.value if isinstance(location, enum.Enum) else location
        return f"{folder}/{filename}"

    @staticmethod
    def storage_generate_filename(filename: str) -> str:
        """A new random name keeping the (sanitised) extension of ``filename``: ``<uuid4>.ext``."""
        name = str(uuid.uuid4())
        _, dot, extension = filename.rpartition(".")
        extension = secure_filename(extension) if dot else ""
        return f"{name}.{extension}" if extension else name

    @classmethod
    def storage_upload_file(
        cls,
        file_object: IO[bytes],
        filename: str,
        preserve_filename: bool = False,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> str:
        """Store ``file_object`` and return the name it was stored under (without location):
        a random name keeping the extension, or the ``secure_filename`` of ``filename`` when
        ``preserve_filename`` (a random one when nothing safe is left of it)."""
        safe_name = secure_filename(filename)
        if not preserve_filename or not safe_name:
            safe_name = cls.storage_generate_filename(safe_name or filename)
        extra_args: dict[str, Any] = {}
        if content_type:
            extra_args["ContentType"] = content_type
        if content_encoding:
            extra_args["ContentEncoding"] = content_encoding
        backend = cls.storage_get_profile(storage_profile)
        backend.upload(file_object, cls._path(storage_location, safe_name), extra_args=extra_args)
        return safe_name

    @classmethod
    def storage_upload_form_file(
        cls,
        form_field: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> str:
        """Store the uploaded file of the form field ``form_field``; returns its stored name."""
        uploaded = request.files[form_field]
        return cls.storage_upload_file(
            uploaded.stream,
            uploaded.filename or "",
            storage_location=storage_location,
            storage_profile=storage_profile,
            content_type=uploaded.mimetype or None,
        )

    @classmethod
    def storage_download_file(
        cls,
        filename: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> io.BytesIO:
        """The whole file in a ``BytesIO``, rewound."""
        buffer = io.BytesIO()
        cls.storage_get_profile(storage_profile).download(
            cls._path(storage_location, filename), buffer
        )
        buffer.seek(0)
        return buffer

    @classmethod
    def storage_delete_file(
        cls,
        filename: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> bool:
        """Delete the file (a missing file is not an error); returns True."""
        cls.storage_get_profile(storage_profile).delete(cls._path(storage_location, filename))
        return True

    @classmethod
    def storage_duplicate_file(
        cls,
        filename: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> str:
        """Copy the file to a new random name (same extension, same location); returns it."""
        new_name = cls.storage_generate_filename(filename)
        cls.storage_get_profile(storage_profile).copy(
            cls._path(storage_location, filename), cls._path(storage_location, new_name)
        )
        return new_name

    @classmethod
    def storage_get_download_link(
        cls,
        filename: str,
        expire_minutes: int | float,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
        **kwargs: Any,
    ) -> str:
        """A download link valid for ``expire_minutes``; ``kwargs`` go to ``link_to``
        (``output_path``, ``content_type``, ...)."""
        return cls.storage_get_profile(storage_profile).link_to(
            cls._path(storage_location, filename),
            ShareLinkOperation.download,
            timedelta(minutes=expire_minutes),
            **kwargs,
        )

    @classmethod
    def storage_get_upload_link(
        cls,
        filename: str,
        expire_minutes: int | float,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
        **kwargs: Any,
    ) -> tuple[str, str]:
        """An upload link for a new random name keeping the extension of ``filename``;
        returns ``(url, stored_name)``."""
        new_name = cls.storage_generate_filename(filename)
        url = cls.storage_get_profile(storage_profile).link_to(
            cls._path(storage_location, new_name),
            ShareLinkOperation.upload,
            timedelta(minutes=expire_minutes),
            **kwargs,
        )
        return url, new_name
