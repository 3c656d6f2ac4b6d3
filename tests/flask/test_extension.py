"""The Storage extension: profiles, defaults, errors, several apps, lazy building, closing."""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import flask
import pytest

from keg_storage import LocalFSStorage, MemoryStorage, Storage, StorageBackend


def app_with(profiles: Any = None, **config: Any) -> flask.Flask:
    app = flask.Flask(__name__)
    if profiles is not None:
        app.config["KEG_STORAGE_PROFILES"] = profiles
    app.config.update(config)
    return app


def test_profiles_first_is_default_and_named_ones_are_found(tmp_path: Path) -> None:
    app = app_with(
        [
            (MemoryStorage, {"name": "first"}),
            ("keg_storage.backends.filesystem:LocalFSStorage", {"name": "disk", "root": tmp_path}),
            ("keg_storage.backends.memory.MemoryStorage", {"name": "third"}),
        ]
    )
    storage = Storage(app)
    assert app.storage is storage  # type: ignore[attr-defined]
    with app.app_context():
        assert storage.interface == "first"
        assert storage.profile_names == ["first", "disk", "third"]
        default = storage.get_interface()
        assert isinstance(default, MemoryStorage)
        assert default.name == "first"
        assert storage.get_interface("first") is default
        disk = storage.get_interface("disk")
        assert isinstance(disk, LocalFSStorage)
        assert disk.root == tmp_path.resolve()
        assert storage.get_interface("third").name == "third"


def test_unknown_profile_lists_the_configured_names() -> None:
    app = app_with([(MemoryStorage, {"name": "a"}), (MemoryStorage, {"name": "b"})])
    storage = Storage(app)
    message = "^no profile 'nope' in KEG_STORAGE_PROFILES; configured: a, b$"
    with app.app_context(), pytest.raises(ValueError, match=message):
        storage.get_interface("nope")


def test_no_profiles_initialises_and_get_interface_explains() -> None:
    app = app_with()
    storage = Storage(app)
    with app.app_context():
        assert storage.interface is None
        with pytest.raises(
            ValueError, match=r"no storage profile is configured.*KEG_STORAGE_PROFILES"
        ):
            storage.get_interface()
    empty = app_with([])
    Storage(empty)
    with empty.app_context(), pytest.raises(ValueError, match="no storage profile"):
        empty.storage.get_interface()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("profiles", "message"),
    [
        (
            {"name": "x"},
            r"KEG_STORAGE_PROFILES must be a list of \(BackendClass, options\) pairs, not dict",
        ),
        ("MemoryStorage", "must be a list.*not str"),
        ([MemoryStorage], r"KEG_STORAGE_PROFILES\[0\] must be a \(BackendClass, options\) pair"),
        ([(MemoryStorage, {"name": "a"}), (MemoryStorage,)], r"KEG_STORAGE_PROFILES\[1\] must be"),
        (
            [(42, {"name": "a"})],
            r"KEG_STORAGE_PROFILES\[0\]: the backend must be a class or a dotted path",
        ),
        (
            [(MemoryStorage, ["name", "a"])],
            r"KEG_STORAGE_PROFILES\[0\]: the options must be a dict",
        ),
        ([(MemoryStorage, {})], r"KEG_STORAGE_PROFILES\[0\]: the options need a 'name'"),
        (
            [(MemoryStorage, {"name": "a"}), (MemoryStorage, {"name": "a"})],
            r"KEG_STORAGE_PROFILES\[1\]: the profile name 'a' is used twice",
        ),
    ],
)
def test_malformed_config_says_what_and_where(profiles: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Storage(app_with(profiles))


def test_backends_are_built_on_first_use_and_errors_name_the_profile(tmp_path: Path) -> None:
    app = app_with(
        [
            (MemoryStorage, {"name": "ok"}),
            (LocalFSStorage, {"name": "gone", "root": tmp_path / "missing"}),
            ("keg_storage.backends.nothing:Nope", {"name": "typo"}),
            (MemoryStorage, {"name": "bad-arg", "colour": "blue"}),
        ]
    )
    storage = Storage(app)  # nothing is built yet, so a broken profile does not stop the app
    with app.app_context():
        assert storage.get_interface("ok").name == "ok"
        with pytest.raises(Exception, match="does not exist"):
            storage.get_interface("gone")
        with pytest.raises(
            ValueError, match=r"KEG_STORAGE_PROFILES\[2\] \(profile 'typo'\).*cannot import"
        ):
            storage.get_interface("typo")
        with pytest.raises(ValueError) as raised:
            storage.get_interface("bad-arg")
        assert str(raised.value) == (
            "profile 'bad-arg': unknown option 'colour' (valid: name, linked_endpoint, secret_key)"
        )


def test_deprecated_storage_profiles_is_migrated() -> None:
    app = flask.Flask(__name__)
    app.config["STORAGE_PROFILES"] = [(MemoryStorage, {"name": "old"})]
    with pytest.warns(DeprecationWarning, match="STORAGE_PROFILES is deprecated"):
        storage = Storage(app)
    assert "STORAGE_PROFILES" not in app.config
    with app.app_context():
        assert storage.get_interface().name == "old"

    both = app_with([(MemoryStorage, {"name": "new"})])
    both.config["STORAGE_PROFILES"] = [(MemoryStorage, {"name": "old"})]
    with pytest.warns(DeprecationWarning, match="Found both KEG_STORAGE_PROFILES and deprecated"):
        Storage(both)
    with both.app_context():
        assert both.storage.get_interface().name == "new"  # type: ignore[attr-defined]


def test_one_storage_object_serves_several_apps() -> None:
    storage = Storage()
    one = app_with([(MemoryStorage, {"name": "one"})])
    two = app_with([(MemoryStorage, {"name": "two"}), (MemoryStorage, {"name": "extra"})])
    storage.init_app(one)
    storage.init_app(two)
    with one.app_context():
        assert storage.get_interface().name == "one"
        assert storage.profile_names == ["one"]
    with two.app_context():
        assert storage.get_interface().name == "two"
        assert storage.profile_names == ["two", "extra"]


def test_without_an_app_context_the_constructor_app_is_used() -> None:
    app = app_with([(MemoryStorage, {"name": "solo"})])
    storage = Storage(app)
    assert storage.get_interface().name == "solo"
    other = Storage()
    with pytest.raises(RuntimeError, match=r"app context|application context"):
        other.get_interface()


class Closing(MemoryStorage):
    closed: list[str] = []

    def close(self) -> None:
        self.closed.append(self.name)


def test_backends_are_closed_when_the_app_goes_away() -> None:
    Closing.closed.clear()
    app = app_with(
        [(Closing, {"name": "c1"}), (Closing, {"name": "c2"}), (Closing, {"name": "c3"})]
    )
    storage = Storage()
    storage.init_app(app)
    with app.app_context():
        storage.get_interface("c1")
        storage.get_interface("c2")
        storage.close()
        assert sorted(Closing.closed) == ["c1", "c2"]
        assert storage.get_interface("c1") is not None  # reopened on use
    del app
    gc.collect()
    assert sorted(Closing.closed) == ["c1", "c1", "c2"]


def test_builds_once_under_concurrency() -> None:
    import threading

    built: list[StorageBackend] = []

    def factory(**options: Any) -> StorageBackend:
        backend = MemoryStorage(**options)
        built.append(backend)
        return backend

    app = app_with([(factory, {"name": "shared"})])
    storage = Storage(app)
    seen: list[StorageBackend] = []

    def use() -> None:
        with app.app_context():
            seen.append(storage.get_interface())

    threads = [threading.Thread(target=use) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1
    assert all(backend is built[0] for backend in seen)


def test_without_flask_the_extension_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class NoFlask:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('flask', 'werkzeug'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, NoFlask())\n"
        "import keg_storage\n"
        "keg_storage.LocalFSStorage\n"
        "try:\n"
        "    keg_storage.Storage\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "MissingDependencyError keg_storage.Storage needs the 'flask' package: "
        'pip install "keg-storage[flask]"\n'
    )


class FailingClose(MemoryStorage):
    def close(self) -> None:
        raise OSError("socket already gone")


def test_a_failing_close_is_logged_and_the_others_still_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    Closing.closed.clear()
    app = app_with([(FailingClose, {"name": "bad"}), (Closing, {"name": "good"})])
    storage = Storage(app)
    with app.app_context():
        storage.get_interface("bad")
        storage.get_interface("good")
        storage.close()
    assert Closing.closed == ["good"]
    assert "closing the backend of storage profile 'bad' failed" in caplog.text
