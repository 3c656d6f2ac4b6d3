"""The link view: ``LinkViewMixin`` serves the internal links of LocalFS, SFTP and Memory.

Around it: the cap on concurrent link transfers per backend, the idle timeout of an upload
body, the security headers of every answer, the exemption from Flask-WTF's CSRF check, and
:func:`describe_storage_error`, the words a person is told when storage fails.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import logging
import queue
import re
import socket
import threading
import weakref
from collections.abc import Callable, Sequence
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
    from werkzeug.wsgi import FileWrapper
except ImportError as exc:  # pragma: no cover - the test extra installs Flask
    raise MissingDependencyError("keg_storage.LinkViewMixin", "flask", "flask") from exc

from .app_state import LOGGER_NAME, StorageState
from .backends.base import (
    FileMode,
    InternalLinksStorageBackend,
    InternalLinkTokenData,
    ShareLinkOperation,
    StorageBackend,
)
from .backends.scoped import ScopedStorage
from .errors import (
    ExpiredLinkTokenError,
    FileNotFoundInStorageError,
    InvalidPathError,
    LinkTokenError,
    MalformedLinkTokenError,
    PreconditionFailedError,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
    UnsupportedOperationError,
)

__all__ = [
    "DEFAULT_LINK_IDLE_TIMEOUT",
    "DEFAULT_LINK_MAX_TRANSFERS",
    "LINK_IDLE_TIMEOUT_KEY",
    "LINK_MAX_TRANSFERS_KEY",
    "LinkViewMixin",
    "default_max_transfers",
    "describe_storage_error",
    "install_csrf_exemption",
    "runs_in_browser",
]

log = logging.getLogger(LOGGER_NAME)

LINK_MAX_TRANSFERS_KEY = "KEG_STORAGE_LINK_MAX_TRANSFERS"
LINK_IDLE_TIMEOUT_KEY = "KEG_STORAGE_LINK_IDLE_TIMEOUT"
DEFAULT_LINK_MAX_TRANSFERS = 16
"""Concurrent link transfers per backend that has no connection pool (LocalFS, Memory)."""
DEFAULT_LINK_IDLE_TIMEOUT = 30.0
"""Seconds an upload body may stop arriving before the upload is aborted (408)."""

# The attributes marking the view functions LinkViewMixin.as_view makes and the CSRF wrapper.
_LINK_VIEW_MARK = "keg_storage_link_view"
_CSRF_WRAPPER_MARK = "keg_storage_skips_link_views"
_csrf_lock = threading.Lock()


def _is_link_view_request() -> bool:
    """Whether the current request is routed to a view function made by
    :meth:`LinkViewMixin.as_view` (that very object, not one with the same name)."""
    if request.endpoint is None:
        return False
    view = current_app.view_functions.get(request.endpoint)
    return getattr(view, _LINK_VIEW_MARK, False) is True


def install_csrf_exemption() -> None:
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


def _shared_backend(backend: StorageBackend) -> StorageBackend:
    """The backend whose clients ``backend`` uses: the parent of a scoped view, else itself."""
    return backend.parent if isinstance(backend, ScopedStorage) else backend


def _connection_pool(backend: StorageBackend) -> Any | None:
    """The connection pool a backend's transfers draw on (SFTP's ``transport.pool``, this
    process's; a scoped view's parent's), or None for a backend without one."""
    return getattr(getattr(_shared_backend(backend), "transport", None), "pool", None)


def _slots_of(backend: StorageBackend) -> _TransferSlots:
    """One count per connection pool (backends sharing a pool share it; a forked child has
    its own), else per backend (a scoped view counts with its parent: views made per request
    never add transfers beyond the cap)."""
    pool = _connection_pool(backend)
    owner = _shared_backend(backend) if pool is None else pool
    with _transfer_slots_lock:
        slots = _transfer_slots.get(owner)
        if slots is None:
            slots = _transfer_slots[owner] = _TransferSlots()
        return slots


def default_max_transfers(backend: StorageBackend) -> int:
    """The default cap on concurrent link transfers of ``backend``: half its connection pool
    (SFTP's ``pool_size``), so link holders can never take every connection; else
    :data:`DEFAULT_LINK_MAX_TRANSFERS`."""
    size = getattr(_connection_pool(backend), "size", None)
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
    folder is in the way), a missing file 404, an existing one 409, one changed since it was
    read 412, access refused 403, an
    operation the storage cannot do 400, a bad link 400/403. The server is at fault (5xx): the
    storage cannot be reached 503, anything else 500."""
    if isinstance(error, InvalidPathError):
        return _invalid_path_message(error)
    if isinstance(error, FileNotFoundInStorageError):
        return 404, "This file does not exist: it may have been moved or deleted."
    if isinstance(error, FileExistsError):  # FileExistsInStorageError (overwrite=False)
        return 409, "A file with this name already exists."
    if isinstance(error, PreconditionFailedError):  # if_match
        return 412, "The file was changed by someone else: reload it and try again."
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
    otherwise. It serves the links of the backend's scoped views too (``storage.scoped(prefix)``:
    a token carries its view's scope, and its path is resolved inside it). Override
    :meth:`get_storage_scope` to confine a request to a scope (the tenant of the request): a
    link signed outside that scope then answers 403.
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
        install_csrf_exemption()
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
        state = StorageState.of(current_app)
        if state is None:
            raise NotImplementedError(
                f"{type(self).__name__}: override get_storage_backend() or initialise "
                "keg_storage.Storage on the app"
            )
        if self.storage_profile is not None:
            return _internal_links(state.get(self.storage_profile))
        candidates = [
            _internal_links(profile.get()) for profile in state.linked_to(request.endpoint)
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

    def get_storage_scope(self) -> str | None:
        """The scope (a prefix, such as the request's tenant) this request is confined to, or
        None (the default) for the whole backend. With a scope the view serves
        ``get_storage_backend().scoped(scope)``: only links signed by that view (or a view
        inside it) work, any other answers 403."""
        return None

    def get_request_storage(self) -> InternalLinksStorageBackend:
        """The backend this request is served from: :meth:`get_storage_backend`, confined to
        :meth:`get_storage_scope` when that gives a scope."""
        storage = self.get_storage_backend()
        scope = self.get_storage_scope()
        if scope is None:
            return storage
        return _internal_links(storage.scoped(scope))

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

    def get(self, **view_args: Any) -> ResponseReturnValue:
        """Stream the file (GET/HEAD), answering conditional and ``Range`` requests.

        ``view_args``, the route's variables (a tenant in ``/t/<tenant>/link``), are for the
        hooks, which read them from ``request.view_args``; the other methods take them too."""
        storage = self.get_request_storage()
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

    def put(self, **view_args: Any) -> ResponseReturnValue:
        """Store the raw request body at the link's path, streamed, atomically."""
        storage = self.get_request_storage()
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
            storage.upload(
                cast(IO[bytes], body), data.path, extra_args=extra_args, overwrite=data.overwrite
            )
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

    def post(self, **view_args: Any) -> ResponseReturnValue:
        """Same as PUT (the raw body, not a multipart form)."""
        return self.put(**view_args)

    def delete(self, **view_args: Any) -> ResponseReturnValue:
        """Remove the file at the link's path (a missing file is not an error)."""
        storage = self.get_request_storage()
        data = self.get_token_data(storage, ShareLinkOperation.remove)
        storage.delete(data.path)
        return self.on_delete_success(data)
