"""``flask storage``: the commands of the standalone ``keg-storage`` CLI on the app's profiles.

The commands read the app's :class:`~keg_storage.app_state.StorageState` (which the extension put
in ``app.extensions['keg_storage']``) through its public methods; this module never imports the
extension.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import click
import flask
from flask import current_app
from flask.cli import AppGroup, with_appcontext

from .app_state import DEFAULT_LOCATION_KEY, StorageState
from .backends.base import InternalLinksStorageBackend, StorageBackend
from .cli import (
    CONTEXT_SETTINGS,
    LINK_CONTEXT_KEY,
    LinkContext,
    add_storage_commands,
    check_base_url,
    describe,
    echo_retries,
    set_backend_factory,
    set_location_factory,
)
from .profiles import ProfileError

LINK_BASE_URL_KEY = "KEG_STORAGE_LINK_BASE_URL"
"""App config: the URL the app is served at, for ``flask storage link`` (no request there)."""


def make_group(name: str = "storage") -> click.Group:
    """A click group named ``name`` with the storage commands, working on the profile chosen by
    ``--location``, else ``KEG_STORAGE_DEFAULT_LOCATION``, else the app's first profile."""

    @click.group(name, cls=AppGroup, context_settings=CONTEXT_SETTINGS)
    @click.option(
        "--location",
        help="Storage profile to use (default: KEG_STORAGE_DEFAULT_LOCATION, else the first).",
    )
    @with_appcontext
    @click.pass_context
    def group(ctx: click.Context, location: str | None) -> None:
        """Store, fetch and share files on the app's storage profiles."""
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        state = StorageState.of(app)
        if state is None:
            raise click.UsageError("keg_storage.Storage is not initialised on this app")
        try:
            profile = state.choose(location, app.config.get(DEFAULT_LOCATION_KEY))
        except ProfileError as exc:
            raise click.UsageError(str(exc)) from None

        echo_retries(ctx)
        # The app's shared backend: the app closes it, not the command.
        set_backend_factory(ctx, profile.get, close=False)
        set_location_factory(
            ctx, lambda name: state.choose(name).get() if name else profile.get(), close=False
        )
        ctx.meta[LINK_CONTEXT_KEY] = _link_context(app)

    return add_storage_commands(group)


def _link_context(app: flask.Flask) -> LinkContext:
    """How ``link`` builds an internal link's URL outside a request: inside a request made up
    for ``--base-url`` or ``KEG_STORAGE_LINK_BASE_URL`` (the URL the app is served at), else
    with the app's ``SERVER_NAME``; S3 and Azure links need neither."""

    @contextlib.contextmanager
    def link_context(backend: StorageBackend, base_url: str | None) -> Iterator[None]:
        base_url = base_url or app.config.get(LINK_BASE_URL_KEY)
        if not isinstance(backend, InternalLinksStorageBackend):
            yield
        elif base_url:
            with app.test_request_context(base_url=check_base_url(base_url)):
                yield
        elif app.config.get("SERVER_NAME"):
            yield
        else:
            raise click.ClickException(
                f"links of {describe(backend)} are served by this app: pass --base-url with the "
                f"URL the app is served at (e.g. http://127.0.0.1:5000), or set "
                f"{LINK_BASE_URL_KEY} (or SERVER_NAME) in its config"
            )

    return link_context
