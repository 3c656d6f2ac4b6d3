"""The ``keg-storage`` command line: list, get, put, copy, move, delete, stat and link.

With no configuration it works on a LocalFS store in ``./storage`` (or ``$KEG_STORAGE_ROOT``).
``--config FILE`` (or ``$KEG_STORAGE_CONFIG``) names profiles for any backend in TOML::

    default = "files"            # optional: the first profile otherwise

    [profiles.files]
    backend = "localfs"          # localfs, memory, s3, azure, sftp, or "package.module:Class"
    root = "/srv/files"

    [profiles.archive]
    backend = "s3"
    bucket = "archive"
    aws_region = "eu-west-1"

The commands are added to any click group by :func:`add_storage_commands`; they find their
backend through :func:`set_backend_factory`, which is how ``flask storage`` reuses them on the
app's profiles.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from .backends.base import ShareLinkOperation, StorageBackend
from .errors import FileNotFoundInStorageError, StorageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

BACKEND_FACTORY_KEY = "keg_storage.backend_factory"

BACKEND_ALIASES = {
    "localfs": "keg_storage.backends.filesystem:LocalFSStorage",
    "filesystem": "keg_storage.backends.filesystem:LocalFSStorage",
    "memory": "keg_storage.backends.memory:MemoryStorage",
    "s3": "keg_storage.backends.s3:S3Storage",
    "azure": "keg_storage.backends.azure:AzureStorage",
    "sftp": "keg_storage.backends.sftp:SFTPStorage",
}


def resolve_backend_class(spec: str | type[StorageBackend]) -> type[StorageBackend]:
    """A backend class from a class, an alias (``s3``) or ``package.module:Class`` /
    ``package.module.Class``."""
    if isinstance(spec, type):
        return spec
    target = BACKEND_ALIASES.get(spec.lower(), spec)
    module_name, _, class_name = target.replace(":", ".").rpartition(".")
    if not module_name:
        raise ValueError(f"unknown backend {spec!r}: use one of {', '.join(BACKEND_ALIASES)}")
    try:
        backend_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"cannot import backend {spec!r}: {exc}") from exc
    if not (isinstance(backend_class, type) and issubclass(backend_class, StorageBackend)):
        raise ValueError(f"{spec!r} is not a StorageBackend class")
    return backend_class


def backend_from_profile(name: str, profile: Mapping[str, Any]) -> StorageBackend:
    """Build the backend a TOML profile describes; its ``name`` defaults to the profile's."""
    options = dict(profile)
    spec = options.pop("backend", None)
    if not spec:
        raise ValueError(f"profile {name!r} has no 'backend' key")
    options.setdefault("name", name)
    return resolve_backend_class(spec)(**options)


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
    return profiles, config.get("default")


def default_backend() -> StorageBackend:
    """LocalFS in ``$KEG_STORAGE_ROOT`` or ``./storage``, created on first use."""
    from .backends.filesystem import LocalFSStorage

    root = Path(os.environ.get("KEG_STORAGE_ROOT") or "storage")
    root.mkdir(parents=True, exist_ok=True)
    return LocalFSStorage(root)


def set_backend_factory(
    ctx: click.Context, factory: Callable[[], StorageBackend], *, close: bool = True
) -> None:
    """Tell the storage commands below ``ctx`` how to get their backend; ``close=False`` when
    the backend belongs to someone else (an app) and must stay open after the command."""
    ctx.meta[BACKEND_FACTORY_KEY] = (factory, close)


def _backend() -> StorageBackend:
    ctx = click.get_current_context()
    if BACKEND_FACTORY_KEY not in ctx.meta:
        raise click.UsageError("no storage backend is configured for this command group")
    factory, close = ctx.meta[BACKEND_FACTORY_KEY]
    with _clean_errors():
        backend = factory()
    if close:
        ctx.call_on_close(backend.close)
    return backend


@contextlib.contextmanager
def _clean_errors() -> Iterator[None]:
    """One line on stderr and exit code 1 instead of a traceback."""
    try:
        yield
    except (StorageError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


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
    for command in (
        list_command,
        get_command,
        put_command,
        copy_command,
        move_command,
        delete_command,
        stat_command,
        link_command,
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
    """List the files under PATH (everything by default)."""
    backend = _backend()
    with _clean_errors():
        entries = backend.list(path, recursive=recursive)
    for entry in entries:
        if simple:
            click.echo(entry.name)
        else:
            modified = (
                entry.last_modified.format("YYYY-MM-DD HH:mm") if entry.last_modified else "-"
            )
            click.echo(f"{modified}\t{_human_size(entry.size)}\t{entry.name}")


@click.command("get")
@click.argument("path")
@click.argument("file", required=False, type=click.Path(dir_okay=False, allow_dash=True))
def get_command(path: str, file: str | None) -> None:
    """Download PATH to FILE (default: its name in this directory; '-' for stdout)."""
    backend = _backend()
    target = file or path.rstrip("/").rsplit("/", 1)[-1]
    with _clean_errors():
        if target == "-":
            with click.open_file("-", "wb") as stdout:
                backend.download(path, stdout)
            return
        with _progress(lambda: backend.stat(path).size, f"get {path}") as progress:
            backend.get(path, target, progress_callback=progress)
    click.echo(f"Downloaded {path} to {target}.", err=True)


@click.command("put")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.argument("key")
@click.option("--content-type", help="Content type stored with the file, where supported.")
def put_command(file: str, key: str, content_type: str | None) -> None:
    """Upload FILE ('-' for stdin) to KEY."""
    backend = _backend()
    extra_args = {"ContentType": content_type} if content_type else None
    with _clean_errors():
        if file == "-":
            with click.open_file("-", "rb") as stdin:
                backend.upload(stdin, key, extra_args=extra_args)
        else:
            with _progress(lambda: os.path.getsize(file), f"put {key}") as progress:
                backend.put(file, key, progress_callback=progress, extra_args=extra_args)
    click.echo(f"Uploaded {file} to {key}.", err=True)


@click.command("copy")
@click.argument("source")
@click.argument("destination")
def copy_command(source: str, destination: str) -> None:
    """Copy SOURCE to DESTINATION (replacing it)."""
    backend = _backend()
    with _clean_errors():
        backend.copy(source, destination)
    click.echo(f"Copied {source} to {destination}.", err=True)


@click.command("move")
@click.argument("source")
@click.argument("destination")
def move_command(source: str, destination: str) -> None:
    """Move SOURCE to DESTINATION (replacing it)."""
    backend = _backend()
    with _clean_errors():
        backend.move(source, destination)
    click.echo(f"Moved {source} to {destination}.", err=True)


@click.command("delete")
@click.argument("path")
def delete_command(path: str) -> None:
    """Delete PATH (a missing file is not an error)."""
    backend = _backend()
    with _clean_errors():
        backend.delete(path)
    click.echo(f"Deleted {path}.", err=True)


@click.command("stat")
@click.argument("path")
def stat_command(path: str) -> None:
    """Show size, last modification, ETag and content type of PATH."""
    backend = _backend()
    with _clean_errors():
        info = backend.stat(path)
    click.echo(f"path: {path}")
    click.echo(f"size: {info.size}")
    click.echo(f"last_modified: {info.last_modified.isoformat()}")
    click.echo(f"etag: {info.etag or '-'}")
    click.echo(f"content_type: {info.content_type or '-'}")


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
def link_command(
    path: str,
    expiration: int,
    download: bool | None,
    upload: bool,
    delete: bool,
    output_path: str | None,
    content_type: str | None,
) -> None:
    """Print a link allowing the chosen operations on PATH."""
    backend = _backend()
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
        url = backend.link_to(
            path,
            operation,
            timedelta(seconds=expiration),
            output_path=output_path,
            content_type=content_type,
        )
    click.echo(url)


@click.group("keg-storage")
@click.option(
    "--config",
    "config_path",
    envvar="KEG_STORAGE_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML file of profiles (default: LocalFS in $KEG_STORAGE_ROOT or ./storage).",
)
@click.option("--profile", "-p", help="Profile of the config file to use (default: its default).")
@click.version_option(package_name="keg-storage")
@click.pass_context
def main(ctx: click.Context, config_path: str | None, profile: str | None) -> None:
    """Store, fetch and share files on LocalFS, S3, Azure or SFTP."""

    def factory() -> StorageBackend:
        if config_path is None:
            if profile:
                raise ValueError("--profile needs --config")
            return default_backend()
        profiles, default = load_config(config_path)
        chosen = profile or default or next(iter(profiles))
        if chosen not in profiles:
            raise ValueError(
                f"no profile {chosen!r} in {config_path}; configured: {', '.join(profiles)}"
            )
        return backend_from_profile(chosen, profiles[chosen])

    set_backend_factory(ctx, factory)


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
