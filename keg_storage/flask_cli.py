"""``flask storage``: the commands of the standalone ``keg-storage`` CLI on the app's profiles."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .cli import add_storage_commands, set_backend_factory


def make_group(name: str = "storage") -> click.Group:
    """A click group named ``name`` with the storage commands, working on the profile chosen by
    ``--location``, else ``KEG_STORAGE_DEFAULT_LOCATION``, else the app's first profile."""

    @click.group(name, cls=_StorageGroup)
    @click.option(
        "--location",
        help="Storage profile to use (default: KEG_STORAGE_DEFAULT_LOCATION, else the first).",
    )
    @with_appcontext
    @click.pass_context
    def group(ctx: click.Context, location: str | None) -> None:
        """Store, fetch and share files on the app's storage profiles."""
        from .plugin import DEFAULT_LOCATION_KEY, EXTENSION_KEY

        app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = app.extensions.get(EXTENSION_KEY)
        if state is None:
            raise click.UsageError("keg_storage.Storage is not initialised on this app")
        chosen = location or app.config.get(DEFAULT_LOCATION_KEY) or state.default
        if chosen is None:
            raise click.UsageError("no storage profile is configured (KEG_STORAGE_PROFILES)")
        if chosen not in state.profiles:
            configured = ", ".join(state.profiles) or "none"
            raise click.UsageError(
                f"The location {chosen!r} does not exist; configured: {configured}."
            )

        # A backend of its own, which the command closes when done; the app's shared one stays.
        set_backend_factory(ctx, state.profiles[chosen].build)

    return add_storage_commands(group)


class _StorageGroup(AppGroup):
    """Turns Flask's "cannot build URLs outside a request" into a one-line error for ``link``."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RuntimeError as exc:
            if "SERVER_NAME" not in str(exc):
                raise
            raise click.ClickException(
                "links outside a request need the app's SERVER_NAME (and PREFERRED_URL_SCHEME) "
                "configured, e.g. SERVER_NAME = 'files.example.com'"
            ) from exc
