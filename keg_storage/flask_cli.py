"""``flask storage``: the commands of the standalone ``keg-storage`` CLI on the app's profiles."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .cli import add_storage_commands, set_backend_factory


def make_group(name: str = "storage") -> click.Group:
    """A click group named ``name`` with the storage commands, working on the profile chosen by
    ``--location``, else ``KEG_STORAGE_DEFAULT_LOCATION``, else the app's first profile."""

    @click.group(name, cls=AppGroup)
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

        # The app's shared backend: the app closes it, not the command.
        set_backend_factory(ctx, state.profiles[chosen].get, close=False)

    return add_storage_commands(group)
