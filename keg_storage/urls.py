"""Storage by URL: ``from_url('s3://bucket/app?region=eu-west-1')`` and back (CONTRACT §10).

One table, :data:`SCHEMES`, says for every scheme which backend it builds, which constructor
option each part of the URL fills, which query names are spelled differently from the option
(``region`` for ``aws_region``), and which options are secrets (never read from a URL: URLs end
up in logs, shell histories and error reports). The rest of the query sets constructor options
of the same name, converted to the constructor's types by
:func:`keg_storage.profiles.check_profile_options` (the one place that checks options).

:func:`storage_url` is the inverse, without secrets: every backend's ``repr`` shows it
(:func:`backend_repr`). :func:`open_location` splits a URL naming a file or directory into a
store and a path, for the CLIs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from .backends.base import StorageBackend
from .profiles import check_profile_options, resolve_backend_class

__all__ = [
    "SCHEMES",
    "UrlScheme",
    "backend_repr",
    "from_url",
    "open_location",
    "storage_url",
    "url_options",
]


@dataclass(frozen=True)
class UrlScheme:
    """How one URL scheme maps onto a backend's constructor."""

    backend: str
    """The backend, as :data:`keg_storage.profiles.BACKEND_ALIASES` names it."""
    host: str | None = None
    """The option the URL's host fills (None: the URL has no host)."""
    path: str | None = None
    """The option the URL's path fills (None: the URL has no path)."""
    port: str | None = None
    username: str | None = None
    aliases: Mapping[str, str] = field(default_factory=dict)
    """Query names for options spelled otherwise (``region`` -> ``aws_region``)."""
    defaults: Mapping[str, Any] = field(default_factory=dict)
    """Options a URL leaves out that the constructor requires."""
    password_option: str = "password"
    """The option a password in the URL's user part belongs in instead."""
    secret_elsewhere: str = ""
    """Where else than options the scheme's secrets can come from (the refusal says it)."""
    unshown: frozenset[str] = frozenset()
    """Options whose stored value is derived from others (never shown in :func:`storage_url`)."""
    derived_defaults: Callable[[Any], Mapping[str, Any]] = lambda backend: {}
    """What a backend stores for options left at their default, where that is not the
    constructor's default (SFTP's ``retry=None`` is stored as 1)."""


SCHEMES: dict[str, UrlScheme] = {
    "file": UrlScheme("localfs", path="root"),
    "memory": UrlScheme("memory", host="name"),
    "s3": UrlScheme(
        "s3",
        host="bucket",
        path="prefix",
        aliases={"region": "aws_region", "profile": "aws_profile"},
        defaults={"aws_region": None},
        password_option="aws_secret_access_key",
        secret_elsewhere=(
            ", or leave it to boto3's credential chain (AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment, aws_profile, an instance role)"
        ),
        unshown=frozenset({"check_directories", "unsupported_path_characters"}),
    ),
    "az": UrlScheme(
        "azure",
        host="bucket",
        path="prefix",
        password_option="key",
        derived_defaults=lambda backend: {
            "account_url": f"https://{backend.account}.blob.core.windows.net"
        },
    ),
    "sftp": UrlScheme(
        "sftp",
        host="host",
        path="base_path",
        port="port",
        username="username",
        secret_elsewhere=", or use a key file (key_filename) or an SSH agent (allow_agent=true)",
        derived_defaults=lambda backend: {
            "retry": 1,
            "known_hosts_fpath": os.path.expanduser("~/.ssh/known_hosts"),
        },
    ),
}
"""Every scheme :func:`from_url` knows; the one table of what each part of a URL sets.

- ``file:///abs/root``: LocalFS rooted at ``/abs/root`` (host empty or ``localhost``).
- ``memory://[name]``: a new, empty MemoryStorage named ``name``.
- ``s3://bucket[/prefix]``: S3Storage of ``bucket``, ``prefix=``; ``?region=`` is ``aws_region``
  and ``?profile=`` ``aws_profile``.
- ``az://container[/prefix]``: AzureStorage of the container (``bucket``), ``prefix=``; the
  account is the ``?account=`` query (or the ``account`` option), ``?account_url=`` for an
  emulator; the key (or a SAS URL) is an option.
- ``sftp://[user@]host[:port][/base/path]``: SFTPStorage, ``base_path`` the URL's path.
"""

SECRET_OPTIONS: dict[str, str] = {
    "password": "password",
    "passphrase": "passphrase",
    "pkey": "pkey",
    "secret_key": "secret_key",
    "aws_secret_access_key": "aws_secret_access_key",
    "aws_session_token": "aws_session_token",
    "key": "key",
    "account_key": "key",
    "credential": "key",
    "sas_container_url": "sas_container_url",
    "sas_blob_url": "sas_blob_url",
    "sas_token": "sas_container_url",
    "sig": "sas_container_url",
}
"""Query names refused in any URL, each with the option to pass the secret as instead."""

OBJECT_OPTIONS = frozenset({"client_config", "connect_kwargs"})
"""Options that take an object (a botocore ``Config``, a dict), which a URL cannot hold."""


def _scheme_of(url: str) -> tuple[str, UrlScheme]:
    """The scheme of ``url`` and its entry; the error never shows the URL (it may hold a
    secret)."""
    known = ", ".join(f"{name}://" for name in SCHEMES)
    if "://" not in url:
        raise ValueError(f"not a storage URL: expected one of {known}")
    scheme = url.partition(":")[0].lower()
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported storage URL scheme {scheme!r}: expected one of {known}")
    return scheme, SCHEMES[scheme]


def _secret_refusal(scheme: str, what: str, option: str) -> ValueError:
    """The refusal of a URL carrying a secret: where to put it, never the secret itself."""
    return ValueError(
        f"{scheme}:// URL refused: {what} is a secret, and URLs end up in logs; pass it as an "
        f"option instead (from_url(url, {option}=...), or the profile's options, which may "
        "read it from the environment)"
        f"{SCHEMES[scheme].secret_elsewhere}"
    )


def url_options(url: str) -> tuple[str, dict[str, Any]]:
    """The backend alias and the constructor options (query values still text) a URL names.

    Raises ``ValueError`` for a URL that carries a secret (saying where to put it, never
    echoing it), names an unknown option (naming it and the valid ones), or has a part its
    scheme does not take.
    """
    scheme, spec = _scheme_of(url)
    parts = urlsplit(url)
    refusal = None
    if parts.password is not None:
        refusal = _secret_refusal(
            scheme, "the password in the URL's user part", SCHEMES[scheme].password_option
        )
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    secret_names = [name for name, _ in pairs if name.lower() in SECRET_OPTIONS]
    if refusal is None and secret_names:
        option = SECRET_OPTIONS[secret_names[0].lower()]
        refusal = _secret_refusal(scheme, f"the query parameter {secret_names[0]!r}", option)
    if refusal is not None:
        del url, parts, pairs  # no frame of the traceback holds the secret
        raise refusal
    options: dict[str, Any] = dict(spec.defaults)
    options.update(_located_options(scheme, spec, parts))
    valid = _query_names(spec)
    given: set[str] = set()
    for name, value in pairs:
        option = spec.aliases.get(name, name)
        if name not in valid:
            raise ValueError(
                f"{scheme}:// URL: unknown option {name!r} (valid: {', '.join(sorted(valid))})"
            )
        if option in given:
            raise ValueError(f"{scheme}:// URL: option {name!r} is given twice")
        given.add(option)
        options[option] = value
    return spec.backend, options


def _located_options(scheme: str, spec: UrlScheme, parts: Any) -> dict[str, Any]:
    """The options the URL's host, port, user and path fill (see :data:`SCHEMES`)."""
    if parts.fragment:
        raise ValueError(f"{scheme}:// URL: a '#' fragment means nothing here")
    options: dict[str, Any] = {}
    if scheme == "file" and (
        not parts.path.startswith("/") or parts.netloc not in ("", "localhost")
    ):
        raise ValueError("file:// URLs take an absolute path: file:///abs/root")
    netloc_parts = (("host", parts.hostname), ("username", parts.username))
    for part, value in (*netloc_parts, ("port", parts.port)):
        option = getattr(spec, part)
        if value is None or value == "" or (scheme == "file" and value == "localhost"):
            continue
        if scheme == "memory" and part == "host":
            value = parts.netloc  # a name keeps its case
        if option is None:
            raise ValueError(f"{scheme}:// URL: takes no {part} ({value!r})")
        options[option] = unquote(value) if isinstance(value, str) else value
    path = unquote(parts.path)
    if scheme == "file":
        options["root"] = path
    elif spec.path is not None and path.strip("/"):
        options[spec.path] = path if scheme == "sftp" else path.strip("/")
    elif path.strip("/"):
        raise ValueError(f"{scheme}:// URL: takes no path ({path!r})")
    if spec.host is not None and spec.host not in options and scheme != "memory":
        raise ValueError(f"{scheme}:// URL: names no {spec.host} ({scheme}://{spec.host}/...)")
    return options


def _query_names(spec: UrlScheme) -> set[str]:
    """The query names a scheme's URLs take: the constructor's options that are no secret and
    no part of the URL, plus the aliases."""
    factory = resolve_backend_class(spec.backend)
    located = {spec.host, spec.path, spec.port, spec.username}
    names = {
        name
        for name, parameter in inspect.signature(factory).parameters.items()
        if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
        and name not in SECRET_OPTIONS
        and name not in OBJECT_OPTIONS
        and name not in located
    }
    names -= set(spec.aliases.values())
    return names | set(spec.aliases)


def from_url(url: str, **options: Any) -> StorageBackend:
    """The backend a URL names (see :data:`SCHEMES`); ``options`` add to or override the URL's,
    and are where secrets go: ``from_url('sftp://me@host/srv', password=...)``.

    Query values are converted to the constructor's types (``?max_concurrency=8`` is an int).
    A URL carrying a secret, an unknown option or a value of the wrong type is a
    ``ValueError`` naming it.
    """
    try:
        alias, url_given = url_options(url)
    except ValueError as refused:
        del url  # the traceback's frames (and their locals) must not show a secret
        raise refused.with_traceback(None) from None
    factory = resolve_backend_class(alias)
    scheme = urlsplit(url).scheme.lower()
    merged = {**url_given, **options}
    checked = check_profile_options(scheme, factory, merged, label=f"{scheme}:// URL")
    return factory(**checked)


# -- from a backend back to its URL -----------------------------------------------------------


def _scheme_for(backend: StorageBackend) -> tuple[str, UrlScheme] | None:
    for scheme, spec in SCHEMES.items():
        if isinstance(backend, resolve_backend_class(spec.backend)):
            return scheme, spec
    return None


def _query_value(value: Any) -> str | None:
    """A value as the query shows it; None for one a URL cannot hold (a tuple, an object)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return quote(str(value), safe=":/@,")
    if isinstance(value, os.PathLike):
        return quote(os.fspath(value), safe=":/@,")
    return None


def _netloc(scheme: str, backend: StorageBackend) -> str:
    if scheme == "memory":
        return quote(backend.name, safe="")
    if scheme == "sftp":
        user = getattr(backend, "username", None)
        port = getattr(backend, "port", 22)
        userinfo = f"{quote(user, safe='')}@" if user else ""
        return f"{userinfo}{getattr(backend, 'host', '')}" + (f":{port}" if port != 22 else "")
    if scheme == "file":
        return ""
    return quote(_container(backend) or "", safe="")


def _container(backend: StorageBackend) -> str | None:
    """The bucket or container: Azure's SAS modes name it in the SAS URL only."""
    name = getattr(backend, "bucket", None)
    if name is None and hasattr(backend, "clients"):
        container = backend.clients().container
        name = container.container_name if container is not None else None
    return name


def _url_path(scheme: str, backend: StorageBackend) -> str:
    if scheme == "file":
        return quote(str(getattr(backend, "root", "")))
    if scheme == "sftp":
        base = getattr(backend, "base_path", "/")
        return quote(base) if base not in ("", "/") else ""
    prefix = getattr(backend, "prefix", "")
    return "/" + quote(prefix) if prefix else ""


def _query(scheme: str, spec: UrlScheme, backend: StorageBackend) -> str:
    """``?option=value&...`` of the options that differ from the constructor's defaults."""
    shown_as = {option: name for name, option in spec.aliases.items()}
    factory = resolve_backend_class(spec.backend)
    derived = spec.derived_defaults(backend)
    pairs = []
    for name, parameter in inspect.signature(factory).parameters.items():
        if name in SECRET_OPTIONS or name in OBJECT_OPTIONS or name in spec.unshown:
            continue
        if name == "name":
            continue
        if name in {spec.host, spec.path, spec.port, spec.username, "bucket"}:
            continue
        value = getattr(backend, name, parameter.default)
        if value is None or value in (parameter.default, derived.get(name, parameter.default)):
            continue
        text = _query_value(value)
        if text is not None:
            pairs.append(f"{shown_as.get(name, name)}={text}")
    return "?" + "&".join(pairs) if pairs else ""


def storage_url(backend: StorageBackend) -> str | None:
    """The URL :func:`from_url` rebuilds ``backend`` from, without secrets (pass those, and
    the ``name``, as options); None for a backend no scheme covers (a third-party one).

    Only options that differ from the constructor's defaults and that a URL can hold are shown
    (a ``timeout`` pair or a ``client_config`` object stays out: pass it as an option too).
    """
    found = _scheme_for(backend)
    if found is None:
        return None
    scheme, spec = found
    netloc = _netloc(scheme, backend)
    return f"{scheme}://{netloc}{_url_path(scheme, backend)}{_query(scheme, spec, backend)}"


def backend_repr(backend: StorageBackend) -> str:
    """``S3Storage('s3://bucket/app?region=eu-west-1', name='files')``: what every backend's
    ``repr`` shows. A backend without a URL (or one whose constructor failed half-way, as a
    traceback with locals shows it) shows ``Class(name=...)``."""
    name = getattr(backend, "name", None)
    try:
        url = storage_url(backend)
    except Exception:  # a repr never raises
        url = None
    if url is None:
        return f"{type(backend).__name__}(name={name!r})"
    return f"{type(backend).__name__}({url!r}, name={name!r})"


# -- locations: a store and a path ------------------------------------------------------------


def is_url(text: str) -> bool:
    """Whether ``text`` is a storage URL (``s3://...``) rather than a path."""
    return "://" in text and text.partition(":")[0].lower() in SCHEMES


def open_location(
    text: str, *, build: Callable[[str], StorageBackend] | None = None, **options: Any
) -> tuple[StorageBackend, str]:
    """The store and the path a URL names: the store is :func:`from_url` of the URL up to its
    last ``/`` (with its query), the path the rest, so ``s3://bucket/app/a.txt`` is
    ``(S3Storage of 'bucket' with prefix 'app', 'a.txt')`` and ``sftp://host/srv/`` is
    ``(SFTPStorage with base_path '/srv', '')`` (a directory). ``memory://name/a.txt`` is the
    store ``memory://name`` and the path ``a.txt``. For ``file://`` the store is the nearest
    directory of the URL that exists, so that a file can be written into new directories.

    ``build`` makes the backend from the store URL (default: ``from_url(url, **options)``).
    """
    store, paths = split_locations([text])
    backend = build(store) if build is not None else from_url(store, **options)
    return backend, paths[0]


def _existing_directory(path: str) -> str:
    """``path`` (of a ``file://`` URL) or its nearest ancestor that exists on this disk, so that
    ``put`` can write into directories that do not exist yet."""
    while path not in ("", "/") and not os.path.isdir(unquote(path)):
        path = path.rpartition("/")[0]
    return path or "/"


def split_locations(texts: list[str]) -> tuple[str, list[str]]:
    """One store URL for several URLs of the same store, and each one's path in it: the store
    is the deepest directory holding them all (the last ``/`` of one URL; for ``file://``, the
    nearest one of it that exists). URLs of different stores (scheme, host, port, user or
    query) raise ``ValueError``."""
    split = [urlsplit(text) for text in texts]
    for text in texts:
        _scheme_of(text)
    first = split[0]
    for other in split[1:]:
        if (other.scheme.lower(), other.netloc, other.query) != (
            first.scheme.lower(),
            first.netloc,
            first.query,
        ):
            raise ValueError(
                f"{texts[0].partition('?')[0]!r} and {texts[1].partition('?')[0]!r} are on "
                "different stores"
            )
    if first.scheme.lower() == "memory":
        directories = [""] * len(split)
    else:
        directories = [parts.path.rpartition("/")[0] for parts in split]
    common = os.path.commonpath(directories) if all(directories) else ""
    if first.scheme.lower() == "file":
        common = _existing_directory(common)
    relative = [parts.path[len(common) :].lstrip("/") for parts in split]
    store = f"{first.scheme}://{first.netloc}{common}" + (f"?{first.query}" if first.query else "")
    return store, [unquote(path) for path in relative]
