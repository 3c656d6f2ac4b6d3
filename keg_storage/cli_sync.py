"""``keg-storage sync SOURCE DESTINATION`` (and ``flask storage sync``): :func:`keg_storage.sync`
from the command line.

A location is ``PROFILE:PATH`` (a directory of a profile's store), ``PROFILE`` (its root) or
``:PATH`` (the command group's own store: ``--profile``'s, the default store, or under
``flask storage`` the ``--location`` profile). :func:`open_location` is the one place that turns
a location into a backend and a path.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import click

from .backends.base import StorageBackend
from .sync import SyncProgress, SyncResult, sync
from .urls import is_url

OPEN_LOCATIONS_KEY = "keg_storage.open_locations"
_REDRAW_SECONDS = 0.1


def open_location(spec: str) -> tuple[StorageBackend, str]:
    """The backend and the path of a location (``PROFILE:PATH``, ``PROFILE``, ``:PATH``, or a
    storage URL such as ``s3://bucket/backups``: :func:`keg_storage.cli.resolve_location`); a
    profile's backend is opened once per command, and closed after it when it is the
    command's."""
    from . import cli  # here: cli imports this module as it adds its commands

    ctx = click.get_current_context()
    if is_url(spec):
        return cli.resolve_location(spec)
    name, _, path = spec.partition(":")
    if cli.LOCATION_FACTORY_KEY not in ctx.meta:
        raise click.UsageError("no storage profiles are configured for this command group")
    factory, close = ctx.meta[cli.LOCATION_FACTORY_KEY]
    opened: dict[str, StorageBackend] = ctx.meta.setdefault(OPEN_LOCATIONS_KEY, {})
    if name not in opened:
        with cli._clean_errors():
            opened[name] = factory(name or None)
        if close:
            ctx.call_on_close(functools.partial(cli._close_quietly, opened[name]))
        cli._check_base_path(opened[name])
    return opened[name], path


@contextmanager
def _progress_line() -> Iterator[Callable[[SyncProgress], None] | None]:
    """A line on stderr, redrawn at most ten times a second, with files and bytes done, when
    stderr is a terminal; nothing otherwise."""
    from . import cli

    if not sys.stderr.isatty():
        yield None
        return
    drawn = 0.0

    def draw(progress: SyncProgress) -> None:
        nonlocal drawn
        finished = progress.files_done == progress.files_total
        if not finished and time.monotonic() - drawn < _REDRAW_SECONDS:
            return
        drawn = time.monotonic()
        line = (
            f"\rsync: {progress.files_done}/{progress.files_total} files, "
            f"{cli._human_size(progress.bytes_done)}/{cli._human_size(progress.bytes_total)}"
        )
        click.echo(line, err=True, nl=False)

    try:
        yield draw
    finally:
        if drawn:
            click.echo(err=True)


def _summary(source: str, destination: str, result: SyncResult) -> str:
    if result.dry_run:
        return f"Dry run of {source} to {destination}, nothing changed: {result}."
    return f"Synced {source} to {destination}: {result}."


@click.command("sync")
@click.argument("source")
@click.argument("destination")
@click.option("--delete", is_flag=True, help="Delete files of DESTINATION that SOURCE lacks.")
@click.option(
    "--dry-run", is_flag=True, help="Print the plan, one line per action; change nothing."
)
@click.option(
    "--checksum", is_flag=True, help="Compare content (MD5) of same-size files, not times."
)
@click.option(
    "--jobs", "-j", type=click.IntRange(min=1), default=8, show_default=True,
    help="Files transferred at once.",
)  # fmt: skip
@click.pass_context
def sync_command(
    ctx: click.Context,
    source: str,
    destination: str,
    delete: bool,
    dry_run: bool,
    checksum: bool,
    jobs: int,
) -> None:
    """Make DESTINATION hold what SOURCE holds: copy what is missing or different (each file
    published whole), and with --delete remove what SOURCE lacks.

    SOURCE and DESTINATION are PROFILE:PATH, PROFILE (its root) or :PATH (the store of
    --profile, or the default store).
    """
    from . import cli

    src, src_path = open_location(source)
    dst, dst_path = open_location(destination)
    with cli._clean_errors(), _progress_line() as progress:
        result = sync(
            src,
            dst,
            path=src_path,
            dst_path=dst_path,
            delete=delete,
            dry_run=dry_run,
            compare="checksum" if checksum else "size-mtime",
            jobs=jobs,
            progress=progress,
        )
    if dry_run:
        for action in result.actions:
            click.echo(str(action))
    for failure in result.failures:
        reason = cli._describe_error(failure.error)
        click.echo(f"keg-storage: {failure.action} {failure.name} failed: {reason}", err=True)
    click.echo(_summary(source, destination, result), err=True)
    if result.failures:
        ctx.exit(1)
