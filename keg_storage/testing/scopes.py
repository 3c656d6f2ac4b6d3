"""CONTRACT §10: scoped views, ``storage.scoped(prefix)``: one confined store per tenant.

The ``storage`` fixture is the backend itself; every case makes its views. Each shows, through
the parent's own listing and reads, that what the view writes lands under its prefix, that
nothing outside it is reachable, that its names and errors are relative to it, and that the
internal links it signs open nothing outside it (the link cases need Flask, as
:class:`~keg_storage.testing.LinkSigningCases` do).
"""

from __future__ import annotations

import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import jwt
import pytest

from keg_storage import (
    FileExistsInStorageError,
    FileNotFoundInStorageError,
    InternalLinksStorageBackend,
    InvalidPathError,
    LinkTokenError,
    PreconditionFailedError,
    StorageBackend,
    UnsupportedOperationError,
)
from keg_storage.backends.base import FileMode

from .helpers import BackendCases, names, read, write
from .links import sign

TENANT = "tenant-a"
ESCAPES = ["../x.txt", "a/../../x.txt", "..", "./x.txt", "a/./x.txt", "x\x00.txt", "dir/"]
"""Paths a view refuses, as every backend does, before anything reaches the parent."""
LITERALS = {
    "/abs.txt": "abs.txt",
    "//abs2.txt": "abs2.txt",
    "/../": None,
    "%2e%2e/enc.txt": "%2e%2e/enc.txt",
    "..%2fenc2.txt": "..%2fenc2.txt",
    "...": "...",
    "..x/y.txt": "..x/y.txt",
}
"""Paths that look like escapes but are names inside the view (a leading ``/`` is dropped, a
percent-encoding is kept as it is written), with the key each becomes; None: refused."""


def token_of(url: str) -> str:
    """The ``token`` query argument of an internal link."""
    return parse_qs(urlsplit(url).query)["token"][0]


def forged(token: str, storage: InternalLinksStorageBackend, **claims: Any) -> str:
    """``token`` with ``claims`` changed and signed again with the backend's own key: what a
    bug in the signing side would produce, which verification must still confine."""
    data = jwt.decode(token, options={"verify_signature": False})
    data.update(claims)
    return jwt.encode(data, storage.get_token_signing_key(), algorithm="HS512")


def tampered(token: str, **claims: Any) -> str:
    """``token`` with ``claims`` changed and its signature kept: what a link holder can do."""
    header, _, signature = token.split(".")
    data = jwt.decode(token, options={"verify_signature": False})
    data.update(claims)
    body = jwt.utils.base64url_encode(json.dumps(data).encode()).decode()
    return f"{header}.{body}.{signature}"


class ScopedCases(BackendCases):
    """CONTRACT §10: ``storage.scoped(prefix)`` confines every operation to ``prefix/``."""

    def test_writes_land_under_the_prefix(self, storage: StorageBackend, tmp_path: Path) -> None:
        view = storage.scoped(TENANT)
        local = tmp_path / "local.bin"
        local.write_bytes(b"put")
        write(view, "open.txt", b"open")
        view.upload(io.BytesIO(b"upload"), "dir/upload.txt")
        view.put(local, "put.bin")
        view.copy("open.txt", "copy.txt")
        view.move("put.bin", "dir/moved.bin")
        assert names(storage) == [
            f"{TENANT}/copy.txt",
            f"{TENANT}/dir/moved.bin",
            f"{TENANT}/dir/upload.txt",
            f"{TENANT}/open.txt",
        ]
        assert read(storage, f"{TENANT}/dir/moved.bin") == b"put"
        assert read(storage, f"{TENANT}/copy.txt") == b"open"
        view.delete("copy.txt")
        assert not storage.exists(f"{TENANT}/copy.txt")

    def test_delete_many_stays_inside(self, storage: StorageBackend) -> None:
        view = storage.scoped(TENANT)
        for path in ("a.txt", "sub/b.txt"):
            write(view, path, b"inside")
        write(storage, "a.txt", b"outside")
        results = view.delete_many(["a.txt", "sub/b.txt", "missing.txt", "../a.txt"])
        assert [(result.path, result.ok) for result in results] == [
            ("a.txt", True),
            ("sub/b.txt", True),
            ("missing.txt", True),
            ("../a.txt", False),
        ]
        refusal = results[3].error
        assert isinstance(refusal, InvalidPathError)
        assert refusal.path == "../a.txt"
        assert names(view) == []
        assert names(storage) == ["a.txt"]

    def test_names_are_relative_to_the_view(self, storage: StorageBackend) -> None:
        view = storage.scoped(TENANT)
        for path in ("a.txt", "sub/b.txt", "sub/deep/c.txt"):
            write(view, path, path.encode())
        write(storage, f"{TENANT}-b/sibling.txt", b"another tenant's")
        write(storage, "root.txt", b"outside")
        assert names(view) == ["a.txt", "sub/b.txt", "sub/deep/c.txt"]
        assert names(view, recursive=False) == ["a.txt", "sub/"]
        assert names(view, "sub") == ["sub/b.txt", "sub/deep/c.txt"]
        assert names(view, "/sub/", recursive=False) == ["sub/b.txt", "sub/deep/"]
        assert [entry.name for entry in view.glob("**/*.txt")] == names(view)
        assert names(view, "missing") == []
        entry = view.list("sub", recursive=False)[0]
        assert entry.size == len(b"sub/b.txt")
        assert view.stat("sub/b.txt").size == len(b"sub/b.txt")

    @pytest.mark.parametrize("path", ESCAPES)
    def test_escaping_paths_are_refused(self, storage: StorageBackend, path: str) -> None:
        write(storage, "x.txt", b"outside")
        view = storage.scoped(TENANT)
        for attempt in (
            lambda: view.open(path, "wb"),
            lambda: view.open(path, "rb"),
            lambda: view.upload(io.BytesIO(b"evil"), path),
            lambda: view.exists(path),
            lambda: view.stat(path),
            lambda: view.delete(path),
            lambda: view.copy(path, "in.txt"),
            lambda: view.move("in.txt", path),
        ):
            with pytest.raises(InvalidPathError) as refused:
                attempt()
            assert refused.value.path == path
            assert f"scoped to '{TENANT}/'" in str(refused.value)
        assert names(storage) == ["x.txt"]
        assert read(storage, "x.txt") == b"outside"

    @pytest.mark.parametrize(("path", "key"), LITERALS.items())
    def test_what_looks_like_an_escape_stays_inside(
        self, storage: StorageBackend, path: str, key: str | None
    ) -> None:
        view = storage.scoped(TENANT)
        if key is None:
            with pytest.raises(InvalidPathError):
                write(view, path, b"data")
        else:
            write(view, path, b"data")
            assert names(view) == [key]
            assert names(storage) == [f"{TENANT}/{key}"]

    def test_backend_characters_and_lengths_are_the_parents(self, storage: StorageBackend) -> None:
        view = storage.scoped(TENANT)
        for char in storage.unsupported_path_characters:  # Azure and S3: "\\"
            with pytest.raises(InvalidPathError):
                write(view, f"..{char}x.txt", b"data")
        if storage.max_key_bytes is not None:
            assert view.max_key_bytes == storage.max_key_bytes - len(f"{TENANT}/")
            too_long = "k" * (view.max_key_bytes + 1)
            with pytest.raises(InvalidPathError):
                write(view, too_long, b"data")
        assert names(storage) == []

    def test_outside_files_are_unreachable(self, storage: StorageBackend) -> None:
        write(storage, "secret.txt", b"outside")
        write(storage, f"{TENANT}x/secret.txt", b"a sibling prefix")
        view = storage.scoped(TENANT)
        assert not view.exists("secret.txt")
        assert names(view) == []
        with pytest.raises(FileNotFoundInStorageError):
            read(view, "secret.txt")
        view.delete("secret.txt")
        assert names(storage) == ["secret.txt", f"{TENANT}x/secret.txt"]

    @pytest.mark.parametrize("prefix", ["", "/", "//", "..", "a/../b", "a/./b", "a\x00b", "a\nb"])
    def test_a_bad_prefix_is_refused(self, storage: StorageBackend, prefix: str) -> None:
        with pytest.raises(InvalidPathError) as refused:
            storage.scoped(prefix)
        assert isinstance(refused.value, ValueError)
        assert refused.value.backend is not None

    def test_scopes_nest(self, storage: StorageBackend) -> None:
        nested = storage.scoped("a").scoped("/b/")
        assert nested == storage.scoped("a/b")
        assert hash(nested) == hash(storage.scoped("a/b/"))
        assert nested != storage.scoped("a")
        assert nested.scoped("c") == storage.scoped("a/b/c")
        write(nested, "x.txt", b"nested")
        assert names(storage) == ["a/b/x.txt"]
        assert names(storage.scoped("a")) == ["b/x.txt"]
        with pytest.raises(InvalidPathError):
            nested.scoped("..")

    def test_errors_name_the_view_and_the_relative_path(self, storage: StorageBackend) -> None:
        view = storage.scoped(TENANT)
        for attempt in (
            lambda: view.stat("missing.txt"),
            lambda: view.open("missing.txt", "rb"),
            lambda: view.download("missing.txt", io.BytesIO()),
            lambda: view.copy("missing.txt", "to.txt"),
            lambda: view.move("missing.txt", "to.txt"),
        ):
            with pytest.raises(FileNotFoundInStorageError) as missing:
                attempt()
            assert missing.value.path == "missing.txt"
            assert str(missing.value) == (
                f"File not found (backend {type(storage).__name__} {storage.name!r} scoped to "
                f"'{TENANT}/', path 'missing.txt')"
            )

    def test_conditional_writes_are_the_parents(self, storage: StorageBackend) -> None:
        view = storage.scoped(TENANT)
        assert view.capabilities == storage.capabilities
        write(view, "a.txt", b"first")
        if not storage.capabilities.conditional_create:
            with pytest.raises(UnsupportedOperationError):
                view.open("a.txt", "wb", overwrite=False)
        else:
            with pytest.raises(FileExistsInStorageError) as exists:
                view.upload(io.BytesIO(b"second"), "a.txt", overwrite=False)
            assert exists.value.path == "a.txt"
            write(storage, "outside.txt", b"outside")
            view.upload(io.BytesIO(b"inside"), "outside.txt", overwrite=False)
            assert read(storage, f"{TENANT}/outside.txt") == b"inside"
            with pytest.raises(FileExistsInStorageError):
                view.copy("outside.txt", "a.txt", overwrite=False)
            late_writer = view.open("late.txt", "wb", overwrite=False)
            with pytest.raises(FileExistsInStorageError) as late, late_writer:
                late_writer.write(b"mine")  # decided when publishing, at close
                write(storage, f"{TENANT}/late.txt", b"theirs")
            assert late.value.path == "late.txt"
            assert f"scoped to '{TENANT}/'" in str(late.value)
            assert read(storage, f"{TENANT}/late.txt") == b"theirs"
        etag = view.stat("a.txt").etag
        assert etag == storage.stat(f"{TENANT}/a.txt").etag
        if not storage.capabilities.conditional_replace:
            with pytest.raises(UnsupportedOperationError):
                view.upload(io.BytesIO(b"x"), "a.txt", if_match=etag)
        else:
            assert etag is not None
            view.upload(io.BytesIO(b"swapped"), "a.txt", if_match=etag)
            with pytest.raises(PreconditionFailedError) as stale:
                view.upload(io.BytesIO(b"late"), "a.txt", if_match=etag)
            assert stale.value.path == "a.txt"
        assert read(storage, f"{TENANT}/a.txt") == (
            b"swapped" if storage.capabilities.conditional_replace else b"first"
        )

    def test_modes_text_and_progress(self, storage: StorageBackend, tmp_path: Path) -> None:
        view = storage.scoped(TENANT)
        with view.open("text.txt", "wt", newline="\n") as text:
            text.write("zwölf\nlines\n")
        with view.open("text.txt", "rt") as text:
            assert text.readlines() == ["zwölf\n", "lines\n"]
        if storage.capabilities.read_write:
            with view.open("text.txt", "r+b") as both:
                both.seek(0)
                both.write(b"Z")
            assert read(storage, f"{TENANT}/text.txt").startswith(b"Zw")
        else:
            with pytest.raises(UnsupportedOperationError):
                view.open("text.txt", FileMode.read | FileMode.write)
        counts: list[int] = []
        data = b"p" * 100_000
        view.upload(io.BytesIO(data), "progress.bin", progress_callback=counts.append)
        assert counts[-1] == len(data) and counts == sorted(counts)
        counts.clear()
        local = tmp_path / "got.bin"
        view.get("progress.bin", local, progress_callback=counts.append)
        assert local.read_bytes() == data and counts[-1] == len(data)
        sink = io.BytesIO()
        view.download("progress.bin", sink)
        assert sink.getvalue() == data

    def test_closing_a_view_leaves_the_backend_open(self, storage: StorageBackend) -> None:
        write(storage, f"{TENANT}/before.txt", b"before")
        with storage.scoped(TENANT) as view:
            assert read(view, "before.txt") == b"before"
        view.close()
        write(storage, "after.txt", b"after")
        assert read(storage, f"{TENANT}/before.txt") == b"before"
        assert read(view, "before.txt") == b"before"  # the view itself keeps working too


class ScopedLinkCases(BackendCases):
    """CONTRACT §10: links signed by a view open nothing outside it (needs Flask for internal
    links, as :class:`~keg_storage.testing.LinkSigningCases`)."""

    def test_a_service_link_names_the_key_under_the_prefix(self, storage: StorageBackend) -> None:
        if not storage.capabilities.service_links:
            pytest.skip("no service links (internal links: see the token cases)")
        url = sign(storage.scoped(TENANT), "dir/a b.txt", "download")
        assert unquote(urlsplit(url).path).endswith(f"/{TENANT}/dir/a b.txt")

    def internal(self, storage: StorageBackend) -> InternalLinksStorageBackend:
        if not isinstance(storage, InternalLinksStorageBackend):
            pytest.skip("service links name their object: nothing to resolve")
        return storage

    def test_the_backend_resolves_a_views_link_inside_its_scope(
        self, storage: StorageBackend
    ) -> None:
        parent = self.internal(storage)
        view = parent.scoped(TENANT)
        assert isinstance(view, InternalLinksStorageBackend)
        token = token_of(sign(view, "dir/a.txt", "download"))
        assert parent.deserialize_link_token(token).path == f"{TENANT}/dir/a.txt"
        data = view.deserialize_link_token(token)
        assert (data.path, data.scope) == ("dir/a.txt", "")
        nested = parent.scoped(f"{TENANT}/dir")
        assert isinstance(nested, InternalLinksStorageBackend)
        with pytest.raises(LinkTokenError, match="another scope"):
            nested.deserialize_link_token(token)  # signed by a wider view
        inner = token_of(sign(nested, "a.txt", "download"))
        assert view.deserialize_link_token(inner).path == "dir/a.txt"
        assert parent.deserialize_link_token(inner).path == f"{TENANT}/dir/a.txt"

    def test_the_backends_own_links_keep_working(self, storage: StorageBackend) -> None:
        parent = self.internal(storage)
        token = token_of(sign(parent, f"{TENANT}/a.txt", "download"))
        data = parent.deserialize_link_token(token)
        assert (data.path, data.scope) == (f"{TENANT}/a.txt", "")
        assert "scope" not in jwt.decode(token, options={"verify_signature": False})
        view = parent.scoped(TENANT)
        assert isinstance(view, InternalLinksStorageBackend)
        with pytest.raises(LinkTokenError, match="another scope"):
            view.deserialize_link_token(token)  # not signed inside the view

    def test_another_scopes_link_is_refused(self, storage: StorageBackend) -> None:
        parent = self.internal(storage)
        token = token_of(sign(parent.scoped(TENANT), "a.txt", "download"))
        for other in (f"{TENANT}-b", f"{TENANT}x", "tenant", f"{TENANT}/a.txt"):
            view = parent.scoped(other)
            assert isinstance(view, InternalLinksStorageBackend)
            with pytest.raises(LinkTokenError) as refused:
                view.deserialize_link_token(token)
            assert f"scoped to '{other}/'" in str(refused.value)

    @pytest.mark.parametrize(
        "claims",
        [{"key": "../b.txt"}, {"key": "/etc/passwd"}, {"scope": ""}, {"scope": "tenant-b/"}],
    )
    def test_a_tampered_link_is_refused(
        self, storage: StorageBackend, claims: dict[str, str]
    ) -> None:
        parent = self.internal(storage)
        view = parent.scoped(TENANT)
        assert isinstance(view, InternalLinksStorageBackend)
        token = tampered(token_of(sign(view, "a.txt", "download")), **claims)
        for verifier in (parent, view, parent.scoped("tenant-b")):
            assert isinstance(verifier, InternalLinksStorageBackend)
            with pytest.raises(LinkTokenError, match="signature is invalid"):
                verifier.deserialize_link_token(token)

    @pytest.mark.parametrize(
        "claims",
        [
            {"key": "../b.txt"},
            {"key": "a/../../b.txt"},
            {"scope": "../"},
            {"scope": "tenant-a/../"},
            {"scope": "/tenant-a/"},
            {"scope": "tenant-a"},
            {"scope": "/"},
            {"scope": 3},
        ],
    )
    def test_an_escaping_claim_is_refused_even_when_signed(
        self, storage: StorageBackend, claims: dict[str, Any]
    ) -> None:
        parent = self.internal(storage)
        view = parent.scoped(TENANT)
        assert isinstance(view, InternalLinksStorageBackend)
        token = forged(token_of(sign(view, "a.txt", "download")), parent, **claims)
        for verifier in (parent, view):
            with pytest.raises(LinkTokenError):
                verifier.deserialize_link_token(token)

    def test_create_link_token_signs_the_scope(self, storage: StorageBackend) -> None:
        parent = self.internal(storage)
        view = parent.scoped(TENANT)
        assert isinstance(view, InternalLinksStorageBackend)
        token = view.create_link_token(
            path="/a.txt", operation="du", expire=timedelta(minutes=5), output_path="A.txt"
        )
        claims = jwt.decode(token, options={"verify_signature": False})
        assert (claims["key"], claims["scope"]) == ("a.txt", f"{TENANT}/")
        data = parent.deserialize_link_token(token)
        assert (data.path, data.output_path) == (f"{TENANT}/a.txt", "A.txt")
        assert data.allow_download and data.allow_upload
        with pytest.raises(InvalidPathError):
            view.create_link_token(path="../a.txt", operation="d", expire=timedelta(minutes=5))
