"""CONTRACT §9: conditional writes (create-only and compare-and-swap) and ``capabilities``.

Every case reads ``storage.capabilities`` first: where a capability is True it proves the
operation works as promised, where it is False that the operation raises
:class:`~keg_storage.UnsupportedOperationError` before any I/O. A backend whose capabilities are
all False passes by refusing everything.
"""

from __future__ import annotations

import dataclasses
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from keg_storage import (
    Capabilities,
    FileExistsInStorageError,
    InternalLinksStorageBackend,
    PreconditionFailedError,
    StorageBackend,
    UnsupportedOperationError,
)
from keg_storage.backends.base import FILE_EXISTS, PRECONDITION_FAILED

from .helpers import BackendCases, MiB, names, payload, read, write
from .links import sign

SIZES = {"empty": 0, "small": 1000, "multipart": 12 * MiB + 5}
"""A 0-byte file, a small one, and one written in parts (S3 parts of 8 MiB, Azure blocks,
SFTP's pipelined writes)."""
WRITERS = ("open", "upload", "put")
RACERS = 16

STALE_ETAG = '"00000000000000000000000000000000"'


def conditional_write(
    storage: StorageBackend,
    writer: str,
    path: str,
    data: bytes,
    source_dir: Path,
    **condition: Any,
) -> None:
    """Store ``data`` at ``path`` with ``condition`` (``overwrite``, ``if_match``) through
    ``open(path, 'wb')``, ``upload`` or ``put`` (from a local file in ``source_dir``)."""
    if writer == "open":
        with storage.open(path, "wb", **condition) as file:
            file.write(data)
    elif writer == "upload":
        storage.upload(io.BytesIO(data), path, **condition)
    else:
        source = source_dir / f"source-{threading.get_ident()}.bin"
        source.write_bytes(data)
        storage.put(source, path, **condition)


def refused_before_io(storage: StorageBackend, call: Callable[[io.BytesIO], object]) -> None:
    """``call`` (given a source it may read) raises UnsupportedOperationError without reading
    the source or changing what is stored."""
    before = {name: read(storage, name) for name in names(storage)}
    source = io.BytesIO(b"never read")
    with pytest.raises(UnsupportedOperationError) as excinfo:
        call(source)
    assert excinfo.value.backend is not None
    assert source.tell() == 0, "the source was read before the refusal"
    assert {name: read(storage, name) for name in names(storage)} == before


def asking(
    storage: StorageBackend, writer: str, path: str, source_dir: Path, **condition: Any
) -> Callable[[io.BytesIO], object]:
    """A call that asks for ``condition`` on ``path`` through ``writer`` (``open``, ``upload``,
    ``put``, ``copy`` or ``move``, the last two from ``source.bin``), given a source to read."""
    local = source_dir / "refused-source.bin"
    local.write_bytes(b"local")
    calls: dict[str, Callable[[io.BytesIO], object]] = {
        "open": lambda source: storage.open(path, "wb", **condition),
        "upload": lambda source: storage.upload(source, path, **condition),
        "put": lambda source: storage.put(local, path, **condition),
        "copy": lambda source: storage.copy("source.bin", path, **condition),
        "move": lambda source: storage.move("source.bin", path, **condition),
    }
    return calls[writer]


sized = pytest.mark.parametrize("size", list(SIZES.values()), ids=list(SIZES))


class ConditionalWriteCases(BackendCases):
    """CONTRACT §9: ``overwrite=False`` and ``if_match``, decided at the moment of publishing,
    for a 0-byte, a small and a multi-part file; refused before any I/O where the backend's
    capabilities lack them."""

    @pytest.mark.parametrize("writer", WRITERS)
    @sized
    def test_create_only_onto_an_existing_file(
        self, storage: StorageBackend, size: int, writer: str, tmp_path: Path
    ) -> None:
        write(storage, "target.bin", b"old content")
        if not storage.capabilities.conditional_create:
            call = asking(storage, writer, "target.bin", tmp_path, overwrite=False)
            refused_before_io(storage, call)
            return
        with pytest.raises(FileExistsInStorageError) as excinfo:
            conditional_write(
                storage, writer, "target.bin", payload(size, seed=1), tmp_path, overwrite=False
            )
        assert isinstance(excinfo.value, FileExistsError)
        assert excinfo.value.reason == FILE_EXISTS
        assert excinfo.value.path == "target.bin"
        assert read(storage, "target.bin") == b"old content"
        assert names(storage) == ["target.bin"]
        assert self.leftovers(storage) == []

    @pytest.mark.parametrize("writer", WRITERS)
    @sized
    def test_create_only_onto_a_missing_path(
        self, storage: StorageBackend, size: int, writer: str, tmp_path: Path
    ) -> None:
        data = payload(size, seed=2)
        if not storage.capabilities.conditional_create:
            refused_before_io(
                storage, asking(storage, writer, "new.bin", tmp_path, overwrite=False)
            )
            assert names(storage) == []
            return
        conditional_write(storage, writer, "dir/new.bin", data, tmp_path, overwrite=False)
        assert read(storage, "dir/new.bin") == data
        assert names(storage) == ["dir/new.bin"]
        assert self.leftovers(storage) == []

    @pytest.mark.parametrize("writer", WRITERS)
    @sized
    def test_if_match_with_the_current_etag_replaces(
        self, storage: StorageBackend, size: int, writer: str, tmp_path: Path
    ) -> None:
        write(storage, "cas.bin", payload(size, seed=3))
        current = storage.stat("cas.bin").etag
        if not storage.capabilities.conditional_replace:
            call = asking(storage, writer, "cas.bin", tmp_path, if_match=current)
            refused_before_io(storage, call)
            return
        replacement = payload(size + 1, seed=4)
        conditional_write(storage, writer, "cas.bin", replacement, tmp_path, if_match=current)
        assert read(storage, "cas.bin") == replacement
        assert storage.stat("cas.bin").etag != current
        assert self.leftovers(storage) == []

    @pytest.mark.parametrize("writer", WRITERS)
    @sized
    def test_if_match_with_a_stale_etag_fails(
        self, storage: StorageBackend, size: int, writer: str, tmp_path: Path
    ) -> None:
        write(storage, "cas.bin", b"first")
        stale = storage.stat("cas.bin").etag
        write(storage, "cas.bin", b"second, written by someone else")
        if not storage.capabilities.conditional_replace:
            refused_before_io(storage, asking(storage, writer, "cas.bin", tmp_path, if_match=stale))
            return
        with pytest.raises(PreconditionFailedError) as excinfo:
            conditional_write(
                storage, writer, "cas.bin", payload(size, seed=5), tmp_path, if_match=stale
            )
        assert excinfo.value.reason == PRECONDITION_FAILED
        assert excinfo.value.path == "cas.bin"
        assert read(storage, "cas.bin") == b"second, written by someone else"
        assert names(storage) == ["cas.bin"]
        assert self.leftovers(storage) == []

    @pytest.mark.parametrize("writer", WRITERS)
    @sized
    def test_if_match_on_a_missing_file_fails(
        self, storage: StorageBackend, size: int, writer: str, tmp_path: Path
    ) -> None:
        if not storage.capabilities.conditional_replace:
            call = asking(storage, writer, "missing.bin", tmp_path, if_match=STALE_ETAG)
            refused_before_io(storage, call)
            assert names(storage) == []
            return
        with pytest.raises(PreconditionFailedError) as excinfo:
            conditional_write(
                storage, writer, "missing.bin", payload(size, seed=6), tmp_path, if_match=STALE_ETAG
            )
        assert excinfo.value.reason == PRECONDITION_FAILED
        assert names(storage) == []
        assert self.leftovers(storage) == []

    @pytest.mark.parametrize("operation", ["copy", "move"])
    @sized
    def test_create_only_copy_and_move(
        self, storage: StorageBackend, size: int, operation: str, tmp_path: Path
    ) -> None:
        data = payload(size, seed=7)
        write(storage, "source.bin", data)
        write(storage, "taken.bin", b"old content")
        if not storage.capabilities.conditional_create:
            call = asking(storage, operation, "taken.bin", tmp_path, overwrite=False)
            refused_before_io(storage, call)
            assert read(storage, "source.bin") == data
            return
        transfer = getattr(storage, operation)
        with pytest.raises(FileExistsInStorageError) as excinfo:
            transfer("source.bin", "taken.bin", overwrite=False)
        assert excinfo.value.reason == FILE_EXISTS
        assert excinfo.value.path == "taken.bin"
        assert read(storage, "taken.bin") == b"old content"
        assert read(storage, "source.bin") == data
        transfer("source.bin", "free.bin", overwrite=False)
        assert read(storage, "free.bin") == data
        assert storage.exists("source.bin") is (operation == "copy")
        assert self.leftovers(storage) == []

    @sized
    def test_racing_creators_exactly_one_wins(
        self, storage: StorageBackend, size: int, tmp_path: Path
    ) -> None:
        if not storage.capabilities.conditional_create:
            call = asking(storage, "upload", "raced.bin", tmp_path, overwrite=False)
            refused_before_io(storage, call)
            return
        contents = [payload(size, seed=100 + racer) for racer in range(RACERS)]
        start = threading.Barrier(RACERS)
        winners: list[int] = []
        losers: list[BaseException] = []

        def race(racer: int) -> None:
            start.wait()
            try:
                writer = WRITERS[racer % len(WRITERS)]
                conditional_write(
                    storage, writer, "raced.bin", contents[racer], tmp_path, overwrite=False
                )
            except BaseException as exc:  # every outcome is asserted below
                losers.append(exc)
            else:
                winners.append(racer)

        threads = [threading.Thread(target=race, args=(racer,)) for racer in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(winners) == 1, f"{len(winners)} creators won: {losers!r}"
        assert all(isinstance(loser, FileExistsInStorageError) for loser in losers), losers
        assert read(storage, "raced.bin") == contents[winners[0]]
        assert names(storage) == ["raced.bin"]
        assert self.leftovers(storage) == []


class CapabilityCases(BackendCases):
    """CONTRACT §9: ``storage.capabilities`` tells the truth, each field proven both ways."""

    def test_capabilities_are_frozen_and_agree_with_supports_read_write(
        self, storage: StorageBackend
    ) -> None:
        capabilities = storage.capabilities
        assert isinstance(capabilities, Capabilities)
        with pytest.raises(dataclasses.FrozenInstanceError):
            capabilities.read_write = not capabilities.read_write  # type: ignore[misc]
        assert storage.supports_read_write is capabilities.read_write

    def test_read_write(self, storage: StorageBackend) -> None:
        write(storage, "rw.bin", b"0123456789")
        if not storage.capabilities.read_write:
            with pytest.raises(UnsupportedOperationError):
                storage.open("rw.bin", "r+b")
            assert read(storage, "rw.bin") == b"0123456789"
            return
        with storage.open("rw.bin", "r+b") as file:
            file.seek(2)
            file.write(b"ab")
        assert read(storage, "rw.bin") == b"01ab456789"

    def test_conditional_create(self, storage: StorageBackend, tmp_path: Path) -> None:
        write(storage, "taken.txt", b"old")
        if not storage.capabilities.conditional_create:
            refused_before_io(
                storage, lambda source: storage.upload(source, "new.txt", overwrite=False)
            )
            return
        storage.upload(io.BytesIO(b"new"), "new.txt", overwrite=False)
        with pytest.raises(FileExistsInStorageError):
            storage.upload(io.BytesIO(b"newer"), "taken.txt", overwrite=False)
        assert (read(storage, "new.txt"), read(storage, "taken.txt")) == (b"new", b"old")

    def test_conditional_replace(self, storage: StorageBackend) -> None:
        write(storage, "cas.txt", b"old")
        if not storage.capabilities.conditional_replace:
            refused_before_io(
                storage, lambda source: storage.upload(source, "cas.txt", if_match=STALE_ETAG)
            )
            return
        etag = storage.stat("cas.txt").etag
        storage.upload(io.BytesIO(b"new"), "cas.txt", if_match=etag)
        with pytest.raises(PreconditionFailedError):
            storage.upload(io.BytesIO(b"newer"), "cas.txt", if_match=etag)
        assert read(storage, "cas.txt") == b"new"

    def test_condition_arguments_are_checked_before_any_io(self, storage: StorageBackend) -> None:
        source = io.BytesIO(b"never read")
        with pytest.raises(TypeError, match="overwrite must be a bool"):
            storage.upload(source, "a.txt", overwrite=0)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="if_match must be an ETag str"):
            storage.upload(source, "a.txt", if_match=b'"x"')  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="exclude each other"):
            storage.upload(source, "a.txt", overwrite=False, if_match='"x"')
        assert source.tell() == 0
        assert names(storage) == []

    def test_server_side_copy(self, storage: StorageBackend) -> None:
        # True: the copy stays on the service; False: it streams through this process. Either
        # way the copy is whole (what stays on the service is the backend's own test).
        data = payload(MiB + 1, seed=8)
        write(storage, "a.bin", data)
        storage.copy("a.bin", "b.bin")
        assert read(storage, "b.bin") == data
        assert read(storage, "a.bin") == data

    def test_metadata(self, storage: StorageBackend) -> None:
        extra = {"ContentType": "application/x-conformance", "Metadata": {"k": "v"}}
        storage.upload(io.BytesIO(b"typed"), "typed.bin", extra_args=extra)
        assert read(storage, "typed.bin") == b"typed"
        if storage.capabilities.metadata:
            assert storage.stat("typed.bin").content_type == "application/x-conformance"

    def test_multi_operation_links(self, storage: StorageBackend) -> None:
        links = storage.capabilities.service_links or storage.capabilities.internal_links
        if not (links and storage.capabilities.multi_operation_links):
            with pytest.raises(UnsupportedOperationError):
                sign(storage, "file.txt", "du")
            return
        assert sign(storage, "file.txt", "du").startswith(("http://", "https://"))

    def test_links(self, storage: StorageBackend) -> None:
        capabilities = storage.capabilities
        if not (capabilities.service_links or capabilities.internal_links):
            with pytest.raises(UnsupportedOperationError):
                sign(storage, "file.txt", "download")
            return
        url = sign(storage, "file.txt", "download")
        to_link_view = url.startswith("http://localhost/link?token=")
        assert to_link_view is capabilities.internal_links, url
        if capabilities.internal_links:
            assert isinstance(storage, InternalLinksStorageBackend)
            token = url.removeprefix("http://localhost/link?token=")
            assert storage.deserialize_link_token(token).path == "file.txt"
        else:
            assert url.startswith(("http://", "https://")), url

    def test_create_only_upload_links(self, storage: StorageBackend) -> None:
        if not isinstance(storage, InternalLinksStorageBackend):
            pytest.skip("service links: the backend's own tests say what the service enforces")
        if not storage.capabilities.conditional_create:
            with pytest.raises(UnsupportedOperationError):
                sign(storage, "file.txt", "upload", overwrite=False)
            return
        url = sign(storage, "file.txt", "upload", overwrite=False)
        token = url.removeprefix("http://localhost/link?token=")
        assert storage.deserialize_link_token(token).overwrite is False
        plain = sign(storage, "file.txt", "upload").removeprefix("http://localhost/link?token=")
        assert storage.deserialize_link_token(plain).overwrite is True
        with pytest.raises(ValueError, match="applies to links that allow 'upload'"):
            sign(storage, "file.txt", "download", overwrite=False)
