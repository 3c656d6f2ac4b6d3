"""Secrets that never show: a redacting holder, scrubbed exception chains and redacted SDK logs.

A password, key or token handed to a backend lives in a :class:`Secret` whose ``repr`` is
``Secret('***')``; the backend reveals it only inside the call expression of the SDK call that
needs it, so no frame of keg_storage holds it in plain form. An SDK frame that received it does:
:func:`scrub` cuts such frames off an exception chain before it leaves keg_storage. Every live
secret is also in a weak registry, and a log record factory redacts registered values and the
well-known credential headers (``Authorization``, ``x-amz-security-token``, SAS ``sig=``) from
the records of the SDK loggers.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Generic, NoReturn, TypeVar
from urllib.parse import quote, quote_plus

__all__ = ["Secret", "hold", "install_log_redaction", "redact", "reveal", "scrub", "scrubbed"]

T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

SDK_LOGGERS = frozenset(
    {"botocore", "boto3", "s3transfer", "urllib3", "requests", "azure", "paramiko", "keg_storage"}
)
"""Top-level logger names whose records are redacted (children included)."""
MIN_REDACTED_LENGTH = 4
"""Shorter values are not looked for in log lines (they would blank out ordinary words)."""
REDACTED = "***"

# Each keeps its first group (the name of the header or parameter) and redacts what follows.
_CREDENTIAL_PATTERNS = (
    r"""(\bauthorization['"]?\s*[:=]\s*(?:b?['"])?)[^'"\r\n]+""",
    r"""(x-amz-security-token['"]?\s*[:=]\s*(?:b?['"])?)[^'"&\s,;}<]+""",
    r"""(x-amz-signature=)[^&\s'"]+""",
    r"""(\bsignature[=:]\s*)[0-9a-f]{32,}""",
    r"""((?:^|[?&;\s'"])sig=)[^&\s'"]+""",
    r"""(SharedKey(?:Lite)?\s+[^:\s'"]+:)[^\s'"]+""",
)


class Secret(Generic[T]):
    """A credential that shows as ``Secret('***')`` in a repr, ``str()``, ``vars()`` or the
    locals of a traceback; :meth:`reveal` gives the value. It cannot be pickled (that would
    write it out in plain form); copies share it."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: T) -> None:
        self._value = value
        _register(self, _forms(value))

    def reveal(self) -> T:
        """The plain value: call it inside the expression that passes it to the SDK."""
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('{REDACTED}')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")

    def __copy__(self) -> Secret[T]:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret[T]:
        return self


def hold(value: T | Secret[T] | None) -> Secret[T] | None:
    """``value`` in a :class:`Secret` (None stays None, a Secret stays itself)."""
    if value is None or isinstance(value, Secret):
        return value
    return Secret(value)


def reveal(secret: Secret[T] | None) -> T | None:
    """The value of ``secret``, None for None (inside the call that needs it, as ever)."""
    return None if secret is None else secret.reveal()


def _forms(value: Any) -> tuple[str, ...]:
    """The spellings of ``value`` that a log line could hold (plain, URL-quoted, hex, base64)."""
    if isinstance(value, str):
        found = {value, quote(value, safe=""), quote_plus(value)}
    elif isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        found = {
            raw.hex(),
            repr(raw)[2:-1],
            base64.b64encode(raw).decode(),
            base64.urlsafe_b64encode(raw).decode(),
        }
        found |= {form.rstrip("=") for form in found}
        with contextlib.suppress(UnicodeDecodeError):
            found.add(raw.decode())
    elif isinstance(value, dict):
        return tuple(form for item in value.values() for form in _forms(item))
    elif isinstance(value, (list, tuple)):
        return tuple(form for item in value for form in _forms(item))
    else:
        return ()
    return tuple(form for form in found if len(form) >= MIN_REDACTED_LENGTH)


# -- the registry and redaction -----------------------------------------------------------------

_lock = threading.Lock()
_registry: dict[int, tuple[weakref.ref[Secret[Any]], tuple[str, ...]]] = {}
"""Every live secret's spellings (see _forms), by id, with a weak reference to the secret."""
_pattern_cache: list[re.Pattern[str]] = []


def _register(secret: Secret[Any], forms: tuple[str, ...]) -> None:
    if not forms:
        return
    key = id(secret)

    def forget(ref: weakref.ref[Secret[Any]]) -> None:
        # Runs in the garbage collector, maybe inside _pattern(): no lock, atomic dict steps.
        entry = _registry.get(key)
        if entry is not None and entry[0] is ref:
            _registry.pop(key, None)
        _pattern_cache.clear()

    with _lock:
        _registry[key] = (weakref.ref(secret, forget), forms)
        _pattern_cache.clear()
    install_log_redaction()


def _pattern() -> re.Pattern[str]:
    """One regex for the credential headers and every registered secret, rebuilt on change."""
    with _lock:
        if not _pattern_cache:
            forms: set[str] = set()
            for ref, spellings in list(_registry.values()):
                if ref() is not None:
                    forms.update(spellings)
            alternatives = list(_CREDENTIAL_PATTERNS)
            alternatives += [re.escape(form) for form in sorted(forms, key=len, reverse=True)]
            _pattern_cache.append(re.compile("|".join(alternatives), re.IGNORECASE))
        return _pattern_cache[0]


def _replace(match: re.Match[str]) -> str:
    index = match.lastindex
    return REDACTED if index is None else match.group(index) + REDACTED


def redact(text: str) -> str:
    """``text`` with registered secrets and credential header values replaced by ``***``."""
    return _pattern().sub(_replace, text)


# -- exceptions ---------------------------------------------------------------------------------


def _ours(frame: Any) -> bool:
    return str(frame.f_globals.get("__name__", "")).partition(".")[0] == "keg_storage"


def _cut(exc: BaseException) -> None:
    """Drop the frames from the first one outside keg_storage on (an SDK's, whose locals may
    hold a revealed secret). Done in place, so that a context manager that puts the original
    traceback back (``contextlib``) keeps the cut one."""
    previous = None
    tb = exc.__traceback__
    while tb is not None and _ours(tb.tb_frame):
        previous, tb = tb, tb.tb_next
    if tb is None:
        return
    if previous is None:
        exc.__traceback__ = None
    else:
        previous.tb_next = None


def scrub(exc: E) -> E:
    """Make ``exc`` and its whole ``__cause__``/``__context__`` chain safe to show: SDK frames
    cut off (see :func:`_cut`) and secrets redacted from the messages. Returns ``exc``."""
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        _cut(current)
        try:
            text = str(current)
        except Exception:  # a broken __str__ shows nothing
            text = ""
        clean = redact(text)
        if clean != text:
            current.args = (clean,)
        pending += [current.__cause__, current.__context__]
        pending += getattr(current, "exceptions", ())
    return exc


@contextlib.contextmanager
def scrubbed() -> Iterator[None]:
    """Scrub (see :func:`scrub`) any exception that leaves the block, type unchanged."""
    try:
        yield
    except BaseException as exc:
        scrub(exc)
        raise


# -- logging ------------------------------------------------------------------------------------

_previous_factory: list[Callable[..., logging.LogRecord]] = []


def _redact_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # the handler reports it; the report must not show args either
        message = f"{record.msg} {record.args!r}"
    clean = redact(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[1] is not None:
        record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory[0](*args, **kwargs)
    if record.name.partition(".")[0] in SDK_LOGGERS:
        _redact_record(record)
    return record


def install_log_redaction() -> None:
    """Redact the records of the SDK loggers (:data:`SDK_LOGGERS` and their children) from now
    on; idempotent. A log record factory wrapping the current one does it: a filter on the
    parent loggers would miss their children's records (``botocore.endpoint``...). Records of
    other loggers pass through untouched."""
    with _lock:
        if not _previous_factory:
            _previous_factory.append(logging.getLogRecordFactory())
            logging.setLogRecordFactory(_make_record)
