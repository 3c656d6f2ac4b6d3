"""The Flask integration split by job: ``keg_storage.plugin`` keeps its names, each module
imports on its own, ``flask storage`` reads the app's state without the extension, and the app's
state chooses profiles by the one rule."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import flask
import pytest

import keg_storage.plugin as plugin
from keg_storage import MemoryStorage, Storage, app_state, extension, link_view, operations
from keg_storage.app_state import StorageState
from keg_storage.profiles import ProfileError, UnknownProfileError

PLUGIN_NAMES = {
    "Storage": extension.Storage,
    "LinkViewMixin": link_view.LinkViewMixin,
    "StorageOperations": operations.StorageOperations,
    "describe_storage_error": link_view.describe_storage_error,
    "runs_in_browser": link_view.runs_in_browser,
    "default_max_transfers": link_view.default_max_transfers,
    "Location": operations.Location,
    "BackendSpec": app_state.BackendSpec,
    "log": app_state.log,
    "EXTENSION_KEY": "keg_storage",
    "PROFILES_KEY": "KEG_STORAGE_PROFILES",
    "DEPRECATED_PROFILES_KEY": "STORAGE_PROFILES",
    "DEFAULT_LOCATION_KEY": "KEG_STORAGE_DEFAULT_LOCATION",
    "LINK_MAX_TRANSFERS_KEY": "KEG_STORAGE_LINK_MAX_TRANSFERS",
    "LINK_IDLE_TIMEOUT_KEY": "KEG_STORAGE_LINK_IDLE_TIMEOUT",
    "DEFAULT_LINK_MAX_TRANSFERS": 16,
    "DEFAULT_LINK_IDLE_TIMEOUT": 30.0,
}
"""The names keg_storage.plugin defined before the split, and what each is now."""

IMPORTED_NAMES = [
    "ExpiredLinkTokenError",
    "FileMode",
    "FileNotFoundInStorageError",
    "FileWrapper",
    "InternalLinkTokenData",
    "InternalLinksStorageBackend",
    "InvalidPathError",
    "LinkTokenError",
    "MalformedLinkTokenError",
    "MissingDependencyError",
    "RequestEntityTooLarge",
    "ResponseReturnValue",
    "ShareLinkOperation",
    "StorageBackend",
    "StorageConnectionError",
    "StorageError",
    "StoragePermissionError",
    "UnsupportedOperationError",
    "content_disposition",
    "current_app",
    "do_filesizeformat",
    "flask",
    "parse_options_header",
    "request",
    "secure_filename",
]
"""The library names keg_storage.plugin imported before the split (code imports them from it)."""


@pytest.mark.parametrize("name", sorted(PLUGIN_NAMES))
def test_plugin_keeps_the_names_it_defined(name: str) -> None:
    assert getattr(plugin, name) == PLUGIN_NAMES[name]
    exec(f"from keg_storage.plugin import {name}", {})


@pytest.mark.parametrize("name", IMPORTED_NAMES)
def test_plugin_keeps_the_names_it_imported(name: str) -> None:
    exec(f"from keg_storage.plugin import {name}", {})


def test_plugin_star_import_is_unchanged() -> None:
    namespace: dict[str, object] = {}
    exec("from keg_storage.plugin import *", namespace)
    assert sorted(n for n in namespace if n != "__builtins__") == [
        "LinkViewMixin",
        "Storage",
        "StorageOperations",
        "describe_storage_error",
    ]


@pytest.mark.parametrize(
    "module",
    [
        "keg_storage.app_state",
        "keg_storage.extension",
        "keg_storage.link_view",
        "keg_storage.operations",
        "keg_storage.flask_cli",
        "keg_storage.plugin",
    ],
)
def test_each_module_imports_on_its_own(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_flask_storage_and_the_state_need_no_extension() -> None:
    code = textwrap.dedent(
        """
        import sys
        import keg_storage.flask_cli, keg_storage.app_state
        names = ("keg_storage.extension", "keg_storage.plugin")
        print(sorted(name for name in names if name in sys.modules))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.stdout, result.stderr) == ("[]\n", "")


def test_the_state_without_flask() -> None:
    code = "import sys; sys.modules['flask'] = None; import keg_storage.app_state; print('ok')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.stdout, result.stderr) == ("ok\n", "")


@pytest.mark.parametrize(
    "statement",
    ["import keg_storage.plugin", "from keg_storage import LinkViewMixin"],
)
def test_without_flask_the_error_names_the_extra(statement: str) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["flask"] = None
        from keg_storage.errors import MissingDependencyError
        try:
            {statement}
        except MissingDependencyError as exc:
            print(exc)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert (result.stdout, result.stderr) == (
        "keg_storage.Storage needs the 'flask' package: pip install \"keg-storage[flask]\"\n",
        "",
    )


def three_profile_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config["KEG_STORAGE_PROFILES"] = [
        (MemoryStorage, {"name": "a", "linked_endpoint": "one"}),
        (MemoryStorage, {"name": "b", "linked_endpoint": "two"}),
        (MemoryStorage, {"name": "c", "linked_endpoint": "one"}),
    ]
    Storage(app)
    return app


def test_state_of_an_app() -> None:
    app = three_profile_app()
    state = StorageState.of(app)
    assert state is app.extensions["keg_storage"]
    assert StorageState.of(flask.Flask(__name__)) is None


def test_state_chooses_the_name_else_the_default_else_the_first() -> None:
    state = StorageState.of(three_profile_app())
    assert state is not None
    assert state.choose("b").name == "b"
    assert state.choose("b", "c").name == "b"
    assert state.choose(None, "c").name == "c"
    assert state.choose("", "").name == "a"
    assert state.choose().name == "a"
    assert state.get("c") is state.choose("c").get()
    with pytest.raises(UnknownProfileError) as raised:
        state.choose(None, "gone")
    assert str(raised.value) == "no profile 'gone' in KEG_STORAGE_PROFILES; configured: a, b, c"


def test_a_profile_closed_while_it_builds_on_the_same_thread_does_not_hang() -> None:
    """Garbage collection may run a dead app's finalizer (``StorageState.close``) in the middle
    of building one of its profiles' backends, on the thread that builds it."""
    profile: app_state.ConfiguredProfile

    def build_collecting_the_app(name: str) -> MemoryStorage:
        profile.close()  # what the finalizer does when the collector runs it here
        return MemoryStorage(name=name)

    profile = app_state.ConfiguredProfile(0, build_collecting_the_app, {"name": "a"})
    built: list[object] = []
    thread = threading.Thread(target=lambda: built.append(profile.get()), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()
    assert built == [profile.get()]


def test_state_without_profiles() -> None:
    app = flask.Flask(__name__)
    Storage(app)
    state = StorageState.of(app)
    assert state is not None
    with pytest.raises(ProfileError) as raised:
        state.get()
    assert str(raised.value) == "no storage profile is configured in KEG_STORAGE_PROFILES"


def test_state_lists_the_profiles_linked_to_an_endpoint() -> None:
    state = StorageState.of(three_profile_app())
    assert state is not None
    assert [profile.name for profile in state.linked_to("one")] == ["a", "c"]
    assert [profile.name for profile in state.linked_to("two")] == ["b"]
    assert list(state.linked_to("three")) == []
    assert list(state.linked_to(None)) == []


def test_extension_get_state() -> None:
    app = three_profile_app()
    storage = app.storage  # type: ignore[attr-defined]
    assert storage.get_state(app) is app.extensions["keg_storage"]
    with app.app_context():
        assert storage.get_state() is app.extensions["keg_storage"]
    other = flask.Flask("other")
    with pytest.raises(RuntimeError, match=r"^Storage.init_app\(\) was not called for the app"):
        storage.get_state(other)


class PooledMemory(MemoryStorage):
    """A backend whose transfers draw on a connection pool, as SFTP's do: the link view reads
    the pool at ``transport.pool`` (its ``size`` and its identity)."""

    def __init__(self, pool_size: int) -> None:
        super().__init__(name="pooled")
        pool = type("Pool", (), {"size": pool_size})()
        self.transport = type("Transport", (), {"pool": pool})()


def test_the_link_transfer_cap_is_half_the_connection_pool() -> None:
    assert link_view.default_max_transfers(PooledMemory(8)) == 4
    assert link_view.default_max_transfers(PooledMemory(1)) == 1
    assert link_view.default_max_transfers(MemoryStorage()) == 16
