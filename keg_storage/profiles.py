"""Checking a profile's options against its backend's constructor, before building it.

One place for the CLI's TOML profiles and Flask's ``KEG_STORAGE_PROFILES``, so a typo, a missing
required option or a value of the wrong type gives the same one-line message in both:
``profile 'files': unknown option 'rooot' (valid: root, linked_endpoint, ...)``. The rules come
from the constructor's signature and type hints (:mod:`inspect`, :mod:`typing`), so a new backend
option is checked without a table to keep up to date.

The other rules both share live here too: which backend class a profile names
(:func:`resolve_backend_class`) and which profile a command or ``get_interface`` uses
(:func:`choose_profile`: the one named, else the configured default, else the first).
"""

from __future__ import annotations

import collections.abc
import importlib
import inspect
import os
import sys
import types
import typing
from collections.abc import Callable, Collection, Mapping
from typing import Any

from .backends.base import StorageBackend

__all__ = [
    "BACKEND_ALIASES",
    "ProfileError",
    "UnknownProfileError",
    "check_profile_options",
    "choose_profile",
    "resolve_backend_class",
    "url_profile",
]

BACKEND_ALIASES = {
    "localfs": "keg_storage.backends.filesystem:LocalFSStorage",
    "filesystem": "keg_storage.backends.filesystem:LocalFSStorage",
    "memory": "keg_storage.backends.memory:MemoryStorage",
    "s3": "keg_storage.backends.s3:S3Storage",
    "azure": "keg_storage.backends.azure:AzureStorage",
    "sftp": "keg_storage.backends.sftp:SFTPStorage",
}
"""The short backend names a profile may use instead of ``package.module:Class``."""


class ProfileError(ValueError):
    """A profile whose options do not fit its backend's constructor, or a profile that cannot
    be chosen."""


class UnknownProfileError(ProfileError):
    """A profile name (asked for, or given as the default) that is not configured."""


def choose_profile(
    configured: Collection[str], name: str | None, default: str | None, source: str
) -> str:
    """The profile to use: ``name``, else ``default`` (``KEG_STORAGE_DEFAULT_LOCATION``, the
    TOML ``default``), else the first of ``configured``.

    The one rule of the standalone CLI, ``flask storage`` and ``Storage.get_interface``. An
    unknown name is an :class:`UnknownProfileError` worded the same in all three, naming
    ``source`` (the config file, ``KEG_STORAGE_PROFILES``) and the configured names:
    ``no profile 'nope' in storage.toml; configured: files, archive``. Nothing configured is a
    :class:`ProfileError` naming ``source``.
    """
    chosen = name or default or next(iter(configured), None)
    if chosen is None:
        raise ProfileError(f"no storage profile is configured in {source}")
    if chosen not in configured:
        raise UnknownProfileError(
            f"no profile {chosen!r} in {source}; configured: {', '.join(configured)}"
        )
    return chosen


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


def url_profile(url: Any, options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The backend alias and the options of a profile given as a URL (``s3://bucket/app``, see
    :func:`keg_storage.from_url`): the URL's, with ``options`` (the secrets) added or
    overriding. The URL's refusals (a secret in it, an unknown option) are ``ValueError``."""
    from .urls import url_options

    if not isinstance(url, str):
        raise ValueError(f"a profile's url must be a str, not {type(url).__name__}")
    alias, given = url_options(url)
    return alias, {**given, **options}


_TYPE_NAMES: dict[Any, str] = {
    str: "str",
    bytes: "bytes",
    int: "int",
    float: "number",
    bool: "bool",
    os.PathLike: "path",
    collections.abc.Sequence: "list",
    list: "list",
    tuple: "list",
    collections.abc.Mapping: "dict",
    dict: "dict",
}


def check_profile_options(
    profile: str,
    factory: Callable[..., Any],
    options: Mapping[str, Any],
    *,
    label: str | None = None,
) -> dict[str, Any]:
    """The options to call ``factory`` with, checked against its signature.

    Raises :class:`ProfileError` (a ``ValueError``) naming the profile and the option for an
    unknown option (listing the valid ones), a missing required option, or a value whose type
    the constructor's hints refuse. A path-like value is accepted where a str is, and a list
    where a tuple is expected (TOML has no tuples) becomes a tuple, and a str becomes the int,
    number or bool an option that takes no str wants (configuration read from the environment
    is text: ``${PORT}``, ``os.environ['PORT']``, a URL's query), also where the option takes
    any object besides (``int | Any``). A factory whose signature cannot be read is called
    unchecked. ``label`` replaces ``profile 'NAME'`` in the messages (``s3:// URL``).
    """
    where = label or f"profile {profile!r}"
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return dict(options)
    parameters = [
        parameter
        for parameter in signature.parameters.values()
        if parameter.kind
        in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    ]
    takes_any = any(
        parameter.kind is inspect.Parameter.VAR_KEYWORD
        for parameter in signature.parameters.values()
    )
    known = [parameter.name for parameter in parameters]
    for option in options:
        if option not in known and not takes_any:
            raise ProfileError(f"{where}: unknown option {option!r} (valid: {', '.join(known)})")
    for parameter in parameters:
        if parameter.default is inspect.Parameter.empty and parameter.name not in options:
            raise ProfileError(f"{where}: missing required option {parameter.name!r}")
    hints = _type_hints(factory)
    return {
        option: _checked_value(where, option, value, hints.get(option))
        for option, value in options.items()
    }


def _checked_value(where: str, option: str, value: Any, hint: Any) -> Any:
    """``value`` as the option typed ``hint`` takes it: as it is, or converted from a str or a
    list (:func:`check_profile_options`); a :class:`ProfileError` where it cannot be."""
    if hint is None:
        return value
    number = _from_string(value, hint) if not _names_text(hint) else None
    if number is not None:
        return number
    if _matches(value, hint):
        return value
    if isinstance(value, list) and _matches(tuple(value), hint):
        return tuple(value)
    converted = _from_string(value, hint)
    if converted is not None:
        return converted
    raise ProfileError(
        f"{where}: option {option!r} must be {_describe(hint)}, not {type(value).__name__}"
    )


def _type_hints(factory: Callable[..., Any]) -> dict[str, Any]:
    """The constructor's (or function's) hints, each evaluated on its own so that one hint
    naming a type only imported for type checkers does not hide the others."""
    function = factory.__init__ if isinstance(factory, type) else factory  # type: ignore[misc]
    annotations = getattr(function, "__annotations__", {})
    module = sys.modules.get(getattr(function, "__module__", ""), None)
    namespace = dict(vars(module)) if module else {}
    hints: dict[str, Any] = {}
    for name, annotation in annotations.items():
        if not isinstance(annotation, str):
            hints[name] = annotation
            continue
        try:
            hints[name] = eval(annotation, namespace)  # the module's own annotation, as typing does
        except Exception:  # a hint we cannot evaluate is not checked
            continue
    return hints


def _alternatives(hint: Any) -> tuple[Any, ...]:
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        return tuple(
            alternative for arg in typing.get_args(hint) for alternative in _alternatives(arg)
        )
    return (hint,)


_BOOLEANS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def _names_text(hint: Any) -> bool:
    """Whether ``hint`` lists ``str`` (or a path) itself: text given for it stays text."""
    return any(
        (typing.get_origin(alternative) or alternative) in (str, os.PathLike)
        for alternative in _alternatives(hint)
    )


def _from_string(value: Any, hint: Any) -> int | float | bool | None:
    """``value``, a str, as the first of bool, int or float that ``hint`` takes (None when it
    takes none of them or the text is not one)."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    listed = {typing.get_origin(alternative) or alternative for alternative in _alternatives(hint)}
    for kind in (bool, int, float):
        if kind not in listed and not (kind is int and float in listed):
            continue
        if kind is bool:
            if text.lower() in _BOOLEANS:
                return _BOOLEANS[text.lower()]
            continue
        try:
            return kind(text)
        except ValueError:
            continue
    return None


def _matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits ``hint``; a hint this cannot judge (a protocol, a class of the
    SDK given as ``Any``) accepts everything."""
    for alternative in _alternatives(hint):
        if alternative is Any:
            return True
        if alternative is type(None) or alternative is None:
            if value is None:
                return True
            continue
        kind = typing.get_origin(alternative) or alternative
        if kind in (int, float) and isinstance(value, bool):
            continue
        if kind is float and isinstance(value, int):
            return True
        if kind is str and isinstance(value, os.PathLike):
            return True
        if not isinstance(kind, type):
            return True
        try:
            if isinstance(value, kind):
                return True
        except TypeError:
            return True
    return False


def _describe(hint: Any) -> str:
    """``a str or path`` for ``str | os.PathLike[str] | None``."""
    names: list[str] = []
    for alternative in _alternatives(hint):
        if alternative is type(None) or alternative is None:
            continue
        kind = typing.get_origin(alternative) or alternative
        name = _TYPE_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
        if name not in names:
            names.append(name)
    article = "an" if names and names[0][0] in "aeiou" else "a"
    return f"{article} {' or '.join(names)}"
