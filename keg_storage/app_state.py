"""What the Flask extension keeps per app: the profiles of ``KEG_STORAGE_PROFILES``, their backends
once built, and the choice of a profile.

:class:`StorageState` lives in ``app.extensions['keg_storage']`` (flask-sqlalchemy's pattern):
the extension puts it there, and ``flask storage``, the link view and ``StorageOperations`` read
it through :meth:`StorageState.of` and its public methods, so none of them imports the extension.
This module needs no Flask.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from .backends.base import StorageBackend
from .profiles import (
    ProfileError,
    check_profile_options,
    choose_profile,
    resolve_backend_class,
    url_profile,
)

__all__ = [
    "DEFAULT_LOCATION_KEY",
    "DEPRECATED_PROFILES_KEY",
    "EXTENSION_KEY",
    "LOGGER_NAME",
    "PROFILES_KEY",
    "BackendSpec",
    "ConfiguredProfile",
    "StorageState",
    "parse_profiles",
]

EXTENSION_KEY = "keg_storage"
PROFILES_KEY = "KEG_STORAGE_PROFILES"
DEPRECATED_PROFILES_KEY = "STORAGE_PROFILES"
DEFAULT_LOCATION_KEY = "KEG_STORAGE_DEFAULT_LOCATION"
LOGGER_NAME = "keg_storage.plugin"
"""The logger of the Flask integration; it keeps the name of the module that held it all
before, which apps' logging configurations name."""

log = logging.getLogger(LOGGER_NAME)

BackendSpec = type[StorageBackend] | Callable[..., StorageBackend] | str


class ConfiguredProfile:
    """One entry of ``KEG_STORAGE_PROFILES``: how to build a backend, and the backend once built."""

    def __init__(self, index: int, spec: BackendSpec, options: dict[str, Any]) -> None:
        self.index = index
        self.spec = spec
        self.options = options
        self.name: str = options["name"]
        self.backend: StorageBackend | None = None
        # Re-entrant: the app's finalizer (StorageState.close) may run from garbage collection
        # on the very thread that holds the lock while it builds the backend.
        self.lock = threading.RLock()

    def build(self) -> StorageBackend:
        """A new backend from this profile; a bad class or bad options name the profile (an
        unknown, missing or mistyped option in the same words as the CLI's TOML profiles)."""
        try:
            factory = resolve_backend_class(self.spec) if isinstance(self.spec, str) else self.spec
            options = check_profile_options(self.name, factory, self.options)
            return factory(**options)
        except ProfileError:
            raise  # already one line naming the profile, as the CLI says it
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{PROFILES_KEY}[{self.index}] (profile {self.name!r}): {exc}"
            ) from exc

    def get(self) -> StorageBackend:
        """The app's shared backend of this profile, built on first use (once, under a lock
        of its own, so a slow connection does not hold up the other profiles)."""
        with self.lock:
            if self.backend is None:
                self.backend = self.build()
            return self.backend

    def close(self) -> None:
        """Close the backend if it was built; it is built again on next use."""
        with self.lock:
            backend, self.backend = self.backend, None
        if backend is not None:
            try:
                backend.close()
            except Exception:  # one failing close must not keep the others open
                log.exception("closing the backend of storage profile %r failed", self.name)


class StorageState:
    """What :class:`~keg_storage.extension.Storage` keeps per app in
    ``app.extensions['keg_storage']``: the configured profiles, in their order."""

    def __init__(self, profiles: dict[str, ConfiguredProfile]) -> None:
        self.profiles = profiles
        self.default: str | None = next(iter(profiles), None)
        """The first profile: the extension's default (``KEG_STORAGE_DEFAULT_LOCATION`` is
        the default of ``flask storage`` only, read when a command runs)."""

    @classmethod
    def of(cls, app: Any) -> StorageState | None:
        """The state of a Flask ``app``; None when ``Storage.init_app`` was not called for it."""
        state = app.extensions.get(EXTENSION_KEY)
        return state if isinstance(state, cls) else None

    def choose(self, name: str | None = None, default: str | None = None) -> ConfiguredProfile:
        """The profile named ``name``, else ``default``, else the first (see
        :func:`keg_storage.profiles.choose_profile`, the rule of both CLIs); a
        :class:`~keg_storage.profiles.ProfileError` (a ``ValueError``) when the name is not
        configured or nothing is."""
        return self.profiles[choose_profile(self.profiles, name, default, PROFILES_KEY)]

    def get(self, name: str | None = None) -> StorageBackend:
        """The shared backend of the profile named ``name`` (default: the first), built on
        first use."""
        return self.choose(name).get()

    def linked_to(self, endpoint: str | None) -> Iterator[ConfiguredProfile]:
        """The profiles whose ``linked_endpoint`` is ``endpoint``, in their order."""
        for profile in self.profiles.values():
            if profile.options.get("linked_endpoint") == endpoint:
                yield profile

    def close(self) -> None:
        """Close every backend built so far; they are built again on next use."""
        for profile in self.profiles.values():
            profile.close()


def _url_entry(where: str, spec: Any, options: Any) -> tuple[Any, Any]:
    """A profile given as ``(name, url)`` or ``(name, {"url": url, **options})`` as the
    ``(backend, options)`` pair it stands for (the name in the options); any other entry as
    it is."""
    if isinstance(options, str):
        options = {"url": options}
    if not (isinstance(spec, str) and isinstance(options, Mapping) and "url" in options):
        return spec, options
    given = {key: value for key, value in options.items() if key != "url"}
    given.setdefault("name", spec)
    try:
        return url_profile(options["url"], given)
    except ValueError as exc:
        raise ValueError(f"{where} (profile {spec!r}): {exc}") from None


def parse_profiles(config: Mapping[str, Any]) -> dict[str, ConfiguredProfile]:
    """Check ``KEG_STORAGE_PROFILES`` and say what is wrong, and where, when it is malformed."""
    raw = config.get(PROFILES_KEY)
    if raw is None:
        return {}
    if isinstance(raw, (str, bytes, Mapping)) or not isinstance(raw, Sequence):
        raise ValueError(
            f"{PROFILES_KEY} must be a list of (BackendClass, options) pairs, "
            f"not {type(raw).__name__}"
        )
    profiles: dict[str, ConfiguredProfile] = {}
    for index, entry in enumerate(raw):
        where = f"{PROFILES_KEY}[{index}]"
        if isinstance(entry, (str, bytes)) or not isinstance(entry, Sequence) or len(entry) != 2:
            raise ValueError(f"{where} must be a (BackendClass, options) pair, not {entry!r}")
        spec, options = _url_entry(where, *entry)
        if not (isinstance(spec, str) or callable(spec)):
            raise ValueError(f"{where}: the backend must be a class or a dotted path, not {spec!r}")
        if not isinstance(options, Mapping):
            raise ValueError(f"{where}: the options must be a dict, not {type(options).__name__}")
        name = options.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: the options need a 'name' (a non-empty string)")
        if name in profiles:
            raise ValueError(f"{where}: the profile name {name!r} is used twice")
        profiles[name] = ConfiguredProfile(index, spec, dict(options))
    return profiles
