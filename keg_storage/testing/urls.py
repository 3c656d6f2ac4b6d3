"""CONTRACT §10: a backend rebuilt from its URL (``from_url(storage_url(b), **secrets)``) works
on the same data, and a URL with a path added is the same store confined to that path."""

from __future__ import annotations

from typing import Any

import pytest

from keg_storage.backends.base import StorageBackend
from keg_storage.errors import InvalidPathError
from keg_storage.urls import SCHEMES, from_url, storage_url

from .helpers import BackendCases, names, read, write


class UrlCases(BackendCases):
    """The URL cases, for the backends that :data:`keg_storage.urls.SCHEMES` covers (not part
    of :class:`~keg_storage.testing.ConformanceCases`: a backend of your own has no scheme).

    ``rebuild_options`` is what a URL never holds and the rebuilt backend needs (credentials,
    link secrets); a binding overrides the fixture. A ``memory://`` URL names a new, empty
    store: only its configuration is compared."""

    @pytest.fixture
    def rebuild_options(self) -> dict[str, Any]:
        return {}

    def _rebuild(self, storage: StorageBackend, url: str, options: dict[str, Any]) -> Any:
        return from_url(url, name=storage.name, **options)

    def test_repr_is_the_storage_url(self, storage: StorageBackend) -> None:
        url = storage_url(storage)
        assert url is not None and url.partition("://")[0] in SCHEMES
        assert repr(storage) == f"{type(storage).__name__}({url!r}, name={storage.name!r})"

    def test_rebuilt_from_url_works_on_the_same_data(
        self, storage: StorageBackend, rebuild_options: dict[str, Any]
    ) -> None:
        url = storage_url(storage)
        assert url is not None
        write(storage, "url/a.txt", b"written by the original")
        with self._rebuild(storage, url, rebuild_options) as rebuilt:
            assert type(rebuilt) is type(storage)
            assert storage_url(rebuilt) == url
            assert repr(rebuilt) == repr(storage)
            if url.startswith("memory://"):
                return
            assert read(rebuilt, "url/a.txt") == b"written by the original"
            write(rebuilt, "url/b.txt", b"written by the rebuilt")
            assert read(storage, "url/b.txt") == b"written by the rebuilt"
            assert names(rebuilt) == names(storage) == ["url/a.txt", "url/b.txt"]

    def test_secrets_stay_out_of_the_url(
        self, storage: StorageBackend, rebuild_options: dict[str, Any]
    ) -> None:
        shown = f"{storage_url(storage)} {storage!r}"
        for option, value in rebuild_options.items():
            if option != "aws_access_key_id" and isinstance(value, str) and len(value) >= 4:
                assert value not in shown, option

    def test_url_with_a_path_is_confined_to_it(
        self, storage: StorageBackend, rebuild_options: dict[str, Any]
    ) -> None:
        """``<url>/inner`` is the store under ``inner/``: LocalFS's root, SFTP's base_path and
        the S3/Azure prefix all confine it the same way."""
        url = storage_url(storage)
        assert url is not None
        if url.startswith("memory://"):
            pytest.skip("a memory:// URL has no path")
        base, _, query = url.partition("?")
        inner_url = f"{base.rstrip('/')}/inner" + (f"?{query}" if query else "")
        write(storage, "inner/seed.txt", b"seed")
        write(storage, "outside.txt", b"keep")
        with self._rebuild(storage, inner_url, rebuild_options) as inner:
            write(inner, "/a/b.txt", b"inside")
            assert read(storage, "inner/a/b.txt") == b"inside"
            assert names(inner) == ["a/b.txt", "seed.txt"]
            assert [entry.name for entry in inner.list("", recursive=False)] == [
                "a/",
                "seed.txt",
            ]
            inner.copy("a/b.txt", "c.txt")
            inner.move("c.txt", "a/d.txt")
            assert names(storage, "inner") == ["inner/a/b.txt", "inner/a/d.txt", "inner/seed.txt"]
            assert not inner.exists("outside.txt")
            for escape in ("../outside.txt", "a/../../outside.txt"):
                with pytest.raises(InvalidPathError):
                    inner.open(escape, "rb")
            with pytest.raises(FileNotFoundError) as missing:
                inner.open("nope.txt", "rb")
            assert "'nope.txt'" in str(missing.value)
        assert read(storage, "outside.txt") == b"keep"
