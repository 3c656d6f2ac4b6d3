"""The Flask extension ``Storage``: builds the backends an app lists in ``KEG_STORAGE_PROFILES``
(lazily, on first use) and adds the ``flask storage`` commands.

Its per-app state is a :class:`~keg_storage.app_state.StorageState` in
``app.extensions['keg_storage']``, which the CLI and the link view read without this module.
"""

from __future__ import annotations

import warnings
import weakref
from typing import cast

from .errors import MissingDependencyError

try:
    import flask
    from flask import current_app
except ImportError as exc:  # pragma: no cover - the test extra installs Flask
    raise MissingDependencyError("keg_storage.Storage", "flask", "flask") from exc

from .app_state import (
    DEPRECATED_PROFILES_KEY,
    EXTENSION_KEY,
    PROFILES_KEY,
    StorageState,
    parse_profiles,
)
from .backends.base import StorageBackend
from .flask_cli import make_group
from .link_view import install_csrf_exemption

__all__ = ["Storage"]


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
        state = StorageState(parse_profiles(app.config))
        app.extensions[EXTENSION_KEY] = state
        app.storage = self  # type: ignore[attr-defined]
        # Close the backends with the app (or at exit); the state holds no reference to the app.
        weakref.finalize(app, state.close)
        install_csrf_exemption()
        self.init_cli(app)

    def init_cli(self, app: flask.Flask) -> None:
        """Add ``flask <cli_group_name>`` (list, get, put, copy, move, delete, stat, link)."""
        if self.cli_group_name:
            app.cli.add_command(make_group(self.cli_group_name))

    def get_state(self, app: flask.Flask | None = None) -> StorageState:
        """The state of ``app``: by default the current app, else the app given to the
        constructor. RuntimeError when ``init_app`` was not called for it."""
        if app is None:
            app = (
                cast(flask.Flask, current_app._get_current_object())  # type: ignore[attr-defined]
                if flask.has_app_context() or self.app is None
                else self.app
            )
        state = StorageState.of(app)
        if state is None:
            raise RuntimeError(f"Storage.init_app() was not called for the app {app.name!r}")
        return state

    @property
    def interface(self) -> str | None:
        """The name of the default profile (the first one) of the current app."""
        return self.get_state().default

    @property
    def profile_names(self) -> list[str]:
        """The configured profile names of the current app, default first."""
        return list(self.get_state().profiles)

    def get_interface(self, interface: str | None = None) -> StorageBackend:
        """The backend of the named profile, or of the default (first) profile.

        Raises ValueError naming the configured profiles when the name is unknown or none is
        configured.
        """
        return self.get_state().get(interface)

    def close(self, app: flask.Flask | None = None) -> None:
        """Close the backends of ``app`` (default: the current app); next use reopens them."""
        self.get_state(app).close()


def _migrate_deprecated_config(config: flask.Config) -> None:
    """Read keg-storage 0.5's ``STORAGE_PROFILES`` as ``KEG_STORAGE_PROFILES``, with a warning."""
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
