"""The ``keg-storage`` command line: list, get, put, copy, move, delete, stat and link.

With no configuration it works on a LocalFS store in ``./storage`` (or ``$KEG_STORAGE_ROOT``);
``--config FILE`` names TOML profiles for any backend. docs/cli.rst describes the commands, the
profile format, timeouts and exit codes.

The commands are added to any click group by :func:`add_storage_commands`; they find their
backend through :func:`set_backend_factory`, which is how ``flask storage`` reuses them on the
app's profiles.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import click

from .backends.base import InternalLinksStorageBackend, ShareLinkOperation, StorageBackend
from .errors import FileExistsInStorageError, FileNotFoundInStorageError, StorageError
from .paths import file_key
from .profiles import (
    BACKEND_ALIASES,
    check_profile_options,
    choose_profile,
    resolve_backend_class,
    url_profile,
)
from .urls import is_url, split_locations

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BACKEND_FACTORY_KEY = "keg_storage.backend_factory"
LOCATION_FACTORY_KEY = "keg_storage.location_factory"
LINK_BASE_URL_KEY = "keg_storage.link_base_url"
LINK_CONTEXT_KEY = "keg_storage.link_context"
DEFAULT_STORE_KEY = "keg_storage.default_store"
TIMEOUT_KEY = "keg_storage.timeout"
RETRY_LOGGER = "keg_storage.retry"
"""The logger on which backends report each retry (one WARNING line per retry)."""
CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["--help", "-h"]}

LinkContext = Callable[[StorageBackend, "str | None"], contextlib.AbstractContextManager[None]]
"""What ``flask storage`` puts in ``ctx.meta[LINK_CONTEXT_KEY]``: the context in which
``link_to`` runs for a backend and the ``--base-url`` given (None without)."""


CLI_NETWORK_DEFAULTS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    BACKEND_ALIASES["s3"]: (
        {"connect_timeout": 5, "read_timeout": 10, "max_attempts": 3},
        ("connect_timeout", "read_timeout"),
    ),
    BACKEND_ALIASES["azure"]: ({"timeout": (5, 10), "retry": 2}, ("timeout",)),
    BACKEND_ALIASES["sftp"]: ({"timeout": 5, "retry": 1}, ("timeout",)),
}
"""Per network backend: the options the CLI sets when a profile does not (short, so a dead
server fails in seconds, not minutes; Azure's ``retry=2`` waits about 2 and 4 s, where the
SDK's default policy waits 18, 24 and 42 s), and the ones ``--timeout`` sets."""

PROFILE_ONLY_KEYS = ("backend", "url", "link_base_url")
"""Keys of a TOML profile that are the CLI's, not constructor options."""

_ENV_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _class_names(backend_class: type) -> set[str]:
    """``module:Class`` of the class and its bases (compared without importing any SDK)."""
    return {f"{klass.__module__}:{klass.__qualname__}" for klass in backend_class.__mro__}


def expand_environment(profile: str, value: Any) -> Any:
    """``value`` with every ``${NAME}`` in its strings replaced by the environment variable
    ``NAME`` (``$${NAME}`` stays a literal ``${NAME}``); a variable that is not set is a
    ``ValueError`` naming it and the profile."""
    if isinstance(value, list):
        return [expand_environment(profile, item) for item in value]
    if isinstance(value, dict):
        return {key: expand_environment(profile, item) for key, item in value.items()}
    if not isinstance(value, str):
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if name not in os.environ:
            raise ValueError(f"profile {profile!r}: environment variable {name!r} is not set")
        return os.environ[name]

    return _ENV_REFERENCE.sub(replace, value)


def backend_from_profile(
    name: str,
    profile: Mapping[str, Any],
    *,
    timeout: float | None = None,
    label: str | None = None,
) -> StorageBackend:
    """Build the backend a TOML profile describes: ``${NAME}`` expanded from the environment,
    options checked against the backend's constructor, ``name`` defaulting to the profile's.

    A profile names its backend with ``backend`` and its options, or with a ``url``
    (``s3://bucket/app?region=eu-west-1``, see :func:`keg_storage.from_url`) whose options
    the others add to or override (secrets go there, never in the URL).

    Network backends get the CLI's short timeouts (:data:`CLI_NETWORK_DEFAULTS`) where the
    profile sets none; ``timeout`` (``--timeout``) overrides both. ``label`` replaces
    ``profile 'NAME'`` in the messages.
    """
    options = {
        key: expand_environment(name, value)
        for key, value in profile.items()
        if key not in PROFILE_ONLY_KEYS
    }
    spec = profile.get("backend")
    if "url" in profile:
        if spec:
            raise ValueError(f"profile {name!r}: give 'backend' or 'url', not both")
        try:
            spec, options = url_profile(expand_environment(name, profile["url"]), options)
        except ValueError as exc:
            raise ValueError(f"{label or f'profile {name!r}'}: {exc}") from None
    if not spec:
        raise ValueError(f"profile {name!r} has no 'backend' key (or 'url')")
    if not isinstance(spec, str):
        raise ValueError(f"profile {name!r}: 'backend' must be a str, not {type(spec).__name__}")
    backend_class = resolve_backend_class(spec)
    options.setdefault("name", name)
    for class_name in _class_names(backend_class) & CLI_NETWORK_DEFAULTS.keys():
        defaults, timeout_keys = CLI_NETWORK_DEFAULTS[class_name]
        for key, value in defaults.items():
            if key not in options:
                options[key] = value
        if timeout is not None:
            options.update(dict.fromkeys(timeout_keys, timeout))
    checked = check_profile_options(name, backend_class, options, label=label)
    return backend_class(**checked)


def load_config(path: str | os.PathLike[str]) -> tuple[dict[str, dict[str, Any]], str | None]:
    """The profiles of a TOML config file and its default profile name."""
    try:
        with open(path, "rb") as config_file:
            config = tomllib.load(config_file)
    except OSError as exc:
        raise ValueError(f"cannot read config {os.fspath(path)!r}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"config {os.fspath(path)!r} is not valid TOML: {exc}") from exc
    profiles = config.get("profiles")
    if not isinstance(profiles, dict) or not profiles:
        raise ValueError(f"config {os.fspath(path)!r} has no [profiles.NAME] tables")
    for name, profile in profiles.items():
        if not isinstance(profile, dict):
            raise ValueError(f"config {os.fspath(path)!r}: profiles.{name} must be a table")
    return profiles, config.get("default")


def default_backend() -> StorageBackend:
    """LocalFS in ``$KEG_STORAGE_ROOT`` or ``./storage``, created on first use; its links are
    signed with ``$KEG_STORAGE_SECRET_KEY`` when set."""
    from .backends.filesystem import LocalFSStorage

    root = Path(os.environ.get("KEG_STORAGE_ROOT") or "storage")
    root.mkdir(parents=True, exist_ok=True)
    return LocalFSStorage(root, secret_key=os.environ.get("KEG_STORAGE_SECRET_KEY") or None)


def set_backend_factory(
    ctx: click.Context, factory: Callable[[], StorageBackend], *, close: bool = True
) -> None:
    """Tell the storage commands below ``ctx`` how to get their backend; ``close=False`` when
    the backend belongs to someone else (an app) and must stay open after the command."""
    ctx.meta[BACKEND_FACTORY_KEY] = (factory, close)


def set_location_factory(
    ctx: click.Context, factory: Callable[[str | None], StorageBackend], *, close: bool = True
) -> None:
    """Tell ``sync`` how to open the store of a location's profile name (None: the group's own
    store); ``close=False`` when the backends belong to someone else (an app)."""
    ctx.meta[LOCATION_FACTORY_KEY] = (factory, close)


class _RetryEcho(logging.Handler):
    """Prints the backends' retry reports as ``keg-storage: <message>`` on (the current)
    stderr, so a user waiting on a slow server sees why."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(f"keg-storage: {record.getMessage()}", err=True)
        except Exception:
            self.handleError(record)


def echo_retries(ctx: click.Context) -> None:
    """Show the ``keg_storage.retry`` log on stderr while ``ctx`` runs."""
    logger = logging.getLogger(RETRY_LOGGER)
    handler = _RetryEcho(logging.WARNING)
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.WARNING:
        logger.setLevel(logging.WARNING)
    ctx.call_on_close(lambda: logger.removeHandler(handler))


def _backend() -> StorageBackend:
    ctx = click.get_current_context()
    if BACKEND_FACTORY_KEY not in ctx.meta:
        raise click.UsageError("no storage backend is configured for this command group")
    factory, close = ctx.meta[BACKEND_FACTORY_KEY]
    with _clean_errors():
        backend = factory()
    if close:
        ctx.call_on_close(functools.partial(_close_quietly, backend))
    return backend


def resolve_locations(*texts: str) -> tuple[StorageBackend, list[str]]:
    """The store and the paths that a command's locations name: paths on the configured store
    (the profile, the default store, or the app's under ``flask storage``), or storage URLs
    (``s3://bucket/app/a.txt``) of one store. A URL's store is the URL up to its last ``/``
    (the deepest directory holding every URL given), its path the rest: see
    :func:`keg_storage.urls.split_locations`. The store of URLs is built like a TOML profile
    ``url`` (the CLI's short network timeouts, ``--timeout``) and closed after the command.
    Mixing URLs and paths is a usage error."""
    urls = [is_url(text) for text in texts]
    if not any(urls):
        return _backend(), list(texts)
    if not all(urls):
        raise click.UsageError("give every location as a storage URL, or none")
    ctx = click.get_current_context()
    with _clean_errors():
        store, paths = split_locations(list(texts))
        scheme = store.partition(":")[0].lower()
        timeout = ctx.meta.get(TIMEOUT_KEY)
        alias, options = url_profile(store, {})
        profile = {"backend": alias, **options}
        backend = backend_from_profile(scheme, profile, timeout=timeout, label=f"{scheme}:// URL")
    ctx.call_on_close(functools.partial(_close_quietly, backend))
    return backend, paths


def resolve_location(text: str) -> tuple[StorageBackend, str]:
    """The store and the path one location names (see :func:`resolve_locations`):
    ``resolve_location('sftp://host/srv/a.txt')`` is (SFTPStorage of ``/srv``, ``'a.txt'``)."""
    backend, paths = resolve_locations(text)
    return backend, paths[0]


def _close_quietly(backend: StorageBackend) -> None:
    """Release the backend after the command; the command's outcome is already told, so a
    failing goodbye to a server (a dropped connection) must not add a traceback."""
    with contextlib.suppress(Exception):
        backend.close()


def _describe_error(exc: BaseException) -> str:
    """One line for the user: a local file's error names the file, without the errno."""
    if isinstance(exc, OSError) and not isinstance(exc, StorageError) and exc.filename:
        return f"local file {os.fsdecode(exc.filename)!r}: {exc.strerror or exc}"
    if isinstance(exc, (StorageError, OSError, ValueError)):
        return str(exc)
    return f"{exc} ({type(exc).__name__})"


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    """One line on stderr and exit code 1 instead of a traceback, whatever the backend or its
    SDK raises (a server failure is the user's problem to fix, not a bug to debug)."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(_describe_error(exc)) from exc


NO_CLOBBER_HELP = (
    "Refuse to replace an existing {}: the service decides as it publishes, so no other "
    "writer slips in between a check and the write."
)


def _overwrite(backend: StorageBackend, no_clobber: bool) -> bool:
    """The write's ``overwrite``: False with ``--no-clobber``, refused before any transfer
    where the backend cannot write create-only."""
    if no_clobber and not backend.capabilities.conditional_create:
        raise click.ClickException(
            f"--no-clobber needs create-only writes, which {describe(backend)} cannot do"
        )
    return not no_clobber


@contextlib.contextmanager
def _not_clobbered(backend: StorageBackend) -> Iterator[None]:
    """The one line for a create-only write that found a file at its path (as ``get
    --no-clobber`` says it of a local file)."""
    try:
        yield
    except FileExistsInStorageError as exc:
        raise click.ClickException(
            f"{exc.path!r} exists on {describe(backend)}; not replaced (--no-clobber)"
        ) from exc


def _is_backend(backend: StorageBackend, *aliases: str) -> bool:
    return bool(_class_names(type(backend)) & {BACKEND_ALIASES[alias] for alias in aliases})


def _check_base_path(backend: StorageBackend) -> None:
    """SFTP: refuse to work under a ``base_path`` that does not exist (listing it would say
    "nothing here", and uploading would create it where the user did not mean)."""
    if not _is_backend(backend, "sftp"):
        return
    base_path = cast(str, getattr(backend, "base_path", "/"))
    with _clean_errors(), backend.connection() as sftp:  # type: ignore[attr-defined]
        try:
            sftp.stat(base_path or ".")
        except FileNotFoundError:
            raise click.ClickException(
                f"base_path {base_path!r} does not exist on {describe(backend)}"
            ) from None


def describe(backend: StorageBackend) -> str:
    """``SFTPStorage 'name'`` for messages."""
    return f"{type(backend).__name__} {backend.name!r}"


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _progress(total: Callable[[], int], label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr when it is a terminal; nothing otherwise (and then ``total``,
    which may cost a request, is not asked for)."""
    if not sys.stderr.isatty():
        yield None
        return
    with click.progressbar(length=total(), label=label, file=sys.stderr) as bar:
        done = 0

        def update(count: int) -> None:
            nonlocal done
            bar.update(count - done)
            done = count

        yield update


def add_storage_commands(group: click.Group) -> click.Group:
    """Add the storage commands to ``group`` and return it."""
    from .cli_sync import sync_command  # in a module of its own, which imports this one

    for command in (
        list_command,
        get_command,
        put_command,
        copy_command,
        move_command,
        delete_command,
        stat_command,
        link_command,
        sync_command,
    ):
        group.add_command(command)
    return group


@click.command("list")
@click.argument("path", default="")
@click.option("--simple", is_flag=True, help="Print bare names only.")
@click.option(
    "--recursive/--no-recursive", default=True, help="Descend into sub-directories (default)."
)
def list_command(path: str, simple: bool, recursive: bool) -> None:
    """List the files under PATH (everything by default).

    Each line: last modification (UTC), size and name, separated by tabs; a sub-directory
    (with --no-recursive) shows DIR and a name ending in '/'. Lines are printed as the listing
    arrives, a page at a time.
    """
    backend, path = resolve_location(path)
    _check_base_path(backend)
    with _clean_errors():
        entries = backend.iter_list(path, recursive=recursive)
    while True:
        with _clean_errors():  # errors of the listing only, not of printing (a closed pipe)
            entry = next(entries, None)
        if entry is None:
            break
        if simple:
            click.echo(entry.name)
        elif entry.name.endswith("/"):
            click.echo(f"{'DIR':<16}\t\t{entry.name}")
        else:
            modified = (
                entry.last_modified.format("YYYY-MM-DD HH:mm") if entry.last_modified else "-"
            )
            click.echo(f"{modified}\t{_human_size(entry.size)}\t{entry.name}")


def _local_target(path: str, file: str | None) -> str:
    """Where ``get`` writes: FILE, or PATH's name inside FILE when FILE is a directory (or in
    the current directory without FILE); a missing local directory is an error naming it."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if file is None:
        return name
    if os.path.isdir(file):
        return os.path.join(file, name)
    if file.endswith(("/", os.sep)):
        raise click.ClickException(f"local directory {file!r} does not exist")
    parent = os.path.dirname(file)
    if parent and not os.path.isdir(parent):
        raise click.ClickException(f"local directory {parent!r} does not exist")
    return file


@click.command("get")
@click.argument("path")
@click.argument("file", required=False, type=click.Path(allow_dash=True))
@click.option("--no-clobber", "-n", is_flag=True, help="Refuse to replace an existing FILE.")
def get_command(path: str, file: str | None, no_clobber: bool) -> None:
    """Download PATH to FILE (default: its name in this directory; a directory: its name in
    there; '-' for stdout). An existing FILE is replaced, unless --no-clobber."""
    backend, path = resolve_location(path)
    if file == "-":
        with _clean_errors(), click.open_file("-", "wb") as stdout:
            backend.download(path, stdout)
        return
    target = _local_target(path, file)
    replaced = os.path.exists(target)
    if replaced and no_clobber:
        raise click.ClickException(f"local file {target!r} exists; not replaced (--no-clobber)")
    with _clean_errors(), _progress(lambda: backend.stat(path).size, f"get {path}") as progress:
        backend.get(path, target, progress_callback=progress)
    note = f" (replaced the existing {target})" if replaced else ""
    click.echo(f"Downloaded {path} to {target}{note}.", err=True)


@click.command("put")
@click.argument("file", type=click.Path(allow_dash=True))
@click.argument("path")
@click.option("--content-type", help="Content type stored with the file (S3, Azure, Memory).")
@click.option("--no-clobber", "-n", is_flag=True, help=NO_CLOBBER_HELP.format("PATH"))
def put_command(file: str, path: str, content_type: str | None, no_clobber: bool) -> None:
    """Upload the local FILE ('-' for stdin) to PATH, replacing it unless --no-clobber."""
    backend, path = resolve_location(path)
    with _clean_errors():
        key = file_key(path, backend)
    overwrite = _overwrite(backend, no_clobber)
    if content_type and _is_backend(backend, "localfs", "sftp"):
        click.echo(
            f"keg-storage: warning: {describe(backend)} stores no content type; "
            "--content-type is ignored",
            err=True,
        )
    _check_base_path(backend)
    extra_args = {"ContentType": content_type} if content_type else None
    with _clean_errors(), _not_clobbered(backend):
        if file == "-":
            with click.open_file("-", "rb") as stdin:
                backend.upload(stdin, key, extra_args=extra_args, overwrite=overwrite)
        else:
            with _progress(lambda: os.path.getsize(file), f"put {key}") as progress:
                backend.put(
                    file,
                    key,
                    progress_callback=progress,
                    extra_args=extra_args,
                    overwrite=overwrite,
                )
    click.echo(f"Uploaded {'stdin' if file == '-' else file} to {key}.", err=True)


@click.command("copy")
@click.argument("source")
@click.argument("destination")
@click.option("--no-clobber", "-n", is_flag=True, help=NO_CLOBBER_HELP.format("DESTINATION"))
def copy_command(source: str, destination: str, no_clobber: bool) -> None:
    """Copy SOURCE to DESTINATION (replacing it unless --no-clobber)."""
    backend, (source, destination) = resolve_locations(source, destination)
    overwrite = _overwrite(backend, no_clobber)
    with _clean_errors(), _not_clobbered(backend):
        backend.copy(source, destination, overwrite=overwrite)
    click.echo(f"Copied {source} to {destination}.", err=True)


@click.command("move")
@click.argument("source")
@click.argument("destination")
@click.option("--no-clobber", "-n", is_flag=True, help=NO_CLOBBER_HELP.format("DESTINATION"))
def move_command(source: str, destination: str, no_clobber: bool) -> None:
    """Move SOURCE to DESTINATION (replacing it unless --no-clobber; SOURCE then stays)."""
    backend, (source, destination) = resolve_locations(source, destination)
    overwrite = _overwrite(backend, no_clobber)
    with _clean_errors(), _not_clobbered(backend):
        backend.move(source, destination, overwrite=overwrite)
    click.echo(f"Moved {source} to {destination}.", err=True)


@click.command("delete")
@click.argument("path")
def delete_command(path: str) -> None:
    """Delete PATH (a missing file is not an error: exit code 0)."""
    backend, path = resolve_location(path)
    with _clean_errors():
        existed = backend.exists(path)
        backend.delete(path)
    if existed:
        click.echo(f"Deleted {path}.", err=True)
    else:
        click.echo(f"Nothing to delete: {path} does not exist.", err=True)


@click.command("stat")
@click.argument("path")
def stat_command(path: str) -> None:
    """Show size, last modification, ETag and content type of PATH."""
    backend, path = resolve_location(path)
    with _clean_errors():
        info = backend.stat(path)
    click.echo(f"path: {path}")
    click.echo(f"size: {info.size}")
    click.echo(f"last_modified: {info.last_modified.isoformat()}")
    click.echo(f"etag: {info.etag or '-'}")
    click.echo(f"content_type: {info.content_type or '-'}")


def check_base_url(base_url: str) -> str:
    """``base_url`` if it is an absolute http(s) URL; a usage error otherwise."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{base_url!r} is not an http(s) URL", param_hint="'--base-url'")
    return base_url


def _with_token(base_url: str, token: str) -> str:
    """``base_url`` with ``token=...`` added to its query."""
    parts = urlsplit(check_base_url(base_url))
    query = f"{parts.query}&token={token}" if parts.query else f"token={token}"
    return urlunsplit(parts._replace(query=query))


def _upload_hint(
    backend: StorageBackend, url: str, content_type: str | None, *, create_only: bool = False
) -> str:
    """A curl command that uploads to ``url`` with the headers the service requires: the
    Content-Type S3 signed (and ``If-None-Match: *`` for a create-only link), Azure's blob
    type."""
    headers: list[str] = []
    if _is_backend(backend, "s3"):
        headers.append(f"Content-Type: {content_type or 'application/octet-stream'}")
        if create_only:
            headers.append("If-None-Match: *")
    elif _is_backend(backend, "azure"):
        headers.append("x-ms-blob-type: BlockBlob")
    words = ["curl", "-X", "PUT"]
    for header in headers:
        words += ["-H", header]
    words += ["--upload-file", "FILE", url]
    return "upload with: " + " ".join(shlex.quote(word) for word in words)


@click.command("link")
@click.argument("path")
@click.option(
    "-e", "--expiration", default=3600, show_default=True, help="Seconds the link stays valid."
)
@click.option(
    "--download/--no-download",
    default=None,
    help="Allow downloads [default: on unless --upload or --delete is given].",
)
@click.option("--upload/--no-upload", default=False, show_default=True)
@click.option("--delete/--no-delete", default=False, show_default=True)
@click.option("--output-path", help="File name a browser saves the download as.")
@click.option("--content-type", help="Content type served (download) or required (S3 upload).")
@click.option(
    "--base-url",
    metavar="URL",
    help="Where the app that serves LocalFS/SFTP/Memory links is (see docs/cli.rst).",
)
@click.option(
    "--no-clobber",
    "-n",
    is_flag=True,
    help="Sign a create-only upload link: its upload never replaces an existing file.",
)
def link_command(
    path: str,
    expiration: int,
    download: bool | None,
    upload: bool,
    delete: bool,
    output_path: str | None,
    content_type: str | None,
    base_url: str | None,
    no_clobber: bool,
) -> None:
    """Print a link allowing the chosen operations on PATH (the bare URL on stdout; for an
    upload link, the curl command that uses it on stderr)."""
    if no_clobber and not upload:
        raise click.UsageError("--no-clobber applies to upload links: add --upload")
    backend, path = resolve_location(path)
    if download is None:
        download = not (upload or delete)
    operation = ShareLinkOperation(0)
    for wanted, flag in (
        (download, ShareLinkOperation.download),
        (upload, ShareLinkOperation.upload),
        (delete, ShareLinkOperation.remove),
    ):
        if wanted:
            operation |= flag
    with _clean_errors():
        url = _make_link(
            backend,
            path,
            operation,
            timedelta(seconds=expiration),
            output_path=output_path,
            content_type=content_type,
            base_url=base_url,
            create_only=no_clobber,
        )
    click.echo(url)
    if upload:
        click.echo(_upload_hint(backend, url, content_type, create_only=no_clobber), err=True)


def _make_link(
    backend: StorageBackend,
    path: str,
    operation: ShareLinkOperation,
    expire: timedelta,
    *,
    output_path: str | None,
    content_type: str | None,
    base_url: str | None,
    create_only: bool,
) -> str:
    """The link ``link`` prints: built by the app under ``flask storage``; for LocalFS, SFTP
    and Memory a token on ``--base-url`` (the app's link view); else the service's own URL.
    ``create_only``: signed with ``overwrite=False`` (passed only then)."""
    options: dict[str, Any] = {"output_path": output_path, "content_type": content_type}
    if create_only:
        options["overwrite"] = False
    ctx = click.get_current_context()
    link_context = ctx.meta.get(LINK_CONTEXT_KEY)
    if link_context is not None:  # flask storage: the app builds the URL
        with link_context(backend, base_url):
            return backend.link_to(path, operation, expire, **options)
    if not isinstance(backend, InternalLinksStorageBackend):
        return backend.link_to(path, operation, expire, **options)
    base_url = base_url or ctx.meta.get(LINK_BASE_URL_KEY)
    if ctx.meta.get(DEFAULT_STORE_KEY) and not os.environ.get("KEG_STORAGE_SECRET_KEY"):
        raise click.ClickException(
            "links of the default store are signed with $KEG_STORAGE_SECRET_KEY, the "
            "secret_key of the app that serves them: set it"
        )
    if not base_url:
        raise click.ClickException(
            f"links of {describe(backend)} are served by your app's link view: pass "
            "--base-url with its URL (or set link_base_url in the profile, or "
            "KEG_STORAGE_LINK_BASE_URL for the default store)"
        )
    token = backend.create_link_token(path=path, operation=operation, expire=expire, **options)
    return _with_token(base_url, token)


@click.group("keg-storage", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--config",
    "config_path",
    envvar="KEG_STORAGE_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML file of profiles (default: LocalFS in $KEG_STORAGE_ROOT or ./storage).",
)
@click.option("--profile", "-p", help="Profile of the config file to use (default: its default).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Network timeout for S3, Azure and SFTP (default: the profile's, else 5 to connect "
    "and 10 to read).",
)
@click.version_option(package_name="keg-storage")
@click.pass_context
def main(
    ctx: click.Context, config_path: str | None, profile: str | None, timeout: float | None
) -> None:
    """Store, fetch and share files on LocalFS, S3, Azure or SFTP.

    A PATH, SOURCE or DESTINATION may be a storage URL instead (s3://bucket/prefix/a.txt,
    az://container/a.txt?account=NAME, sftp://user@host/srv/a.txt, file:///srv/files/a.txt):
    the store is the URL up to its last '/', the path the rest.
    """
    # The CLI is the application: it decides what reaches the terminal. Without a handler,
    # Python would print SDK warnings (paramiko's, botocore's) through its last-resort handler.
    root_logger = logging.getLogger()
    if not root_logger.handlers:
        silence = logging.NullHandler()
        root_logger.addHandler(silence)
        ctx.call_on_close(lambda: root_logger.removeHandler(silence))
    echo_retries(ctx)
    ctx.meta[TIMEOUT_KEY] = timeout

    def factory(name: str | None = None) -> StorageBackend:
        """The store of the profile ``name`` (a location's), else of ``--profile``."""
        if config_path is None:
            if profile or name:
                raise ValueError(f"{f'profile {name!r}' if name else '--profile'} needs --config")
            ctx.meta[LINK_BASE_URL_KEY] = os.environ.get("KEG_STORAGE_LINK_BASE_URL")
            ctx.meta[DEFAULT_STORE_KEY] = True
            return default_backend()
        profiles, default = load_config(config_path)
        chosen = choose_profile(profiles, name or profile, default, config_path)
        ctx.meta[LINK_BASE_URL_KEY] = expand_environment(
            chosen, profiles[chosen].get("link_base_url")
        )
        return backend_from_profile(chosen, profiles[chosen], timeout=timeout)

    set_backend_factory(ctx, factory)
    set_location_factory(ctx, factory)


add_storage_commands(main)


# -- keg-storage 0.5's names ----------------------------------------------------------------

storage_list = list_command
storage_get = get_command
storage_put = put_command
storage_copy = copy_command
storage_delete = delete_command
storage_link_for = link_command

F = TypeVar("F", bound=Callable[..., Any])


def handle_not_found(func: F) -> F:
    """Turn :class:`FileNotFoundInStorageError` into click's ``FileError`` (0.5's decorator)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except FileNotFoundInStorageError as exc:
            raise click.FileError(exc.filename, hint=f"Not found in {exc.storage_type}.") from exc

    return cast(F, wrapper)


def add_cli_to_app(app: Any, cli_group_name: str) -> None:
    """Add the ``flask storage`` commands to a Flask app as ``cli_group_name`` (0.5's helper;
    ``Storage.init_app`` adds them as ``storage`` already)."""
    from .flask_cli import make_group

    app.cli.add_command(make_group(cli_group_name))


def __getattr__(name: str) -> Any:
    """``storage``: 0.5's click group of the Flask commands, built on first use (it needs
    Flask, which the standalone command does not)."""
    if name != "storage":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .flask_cli import make_group

    group = globals()["storage"] = make_group("_storage")
    return group
