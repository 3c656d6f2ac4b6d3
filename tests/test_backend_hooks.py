"""The hooks a backend author implements, on a small backend defined here: the error-translation
hook applied by the public methods and by file objects, the writer/reader hooks of RemoteFile
(a writer without ``_discard`` is refused), and the forward-only progress counter."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

import pytest

from keg_storage import MemoryStorage
from keg_storage.backends.base import (
    FileMode,
    FileStat,
    ListEntry,
    RemoteFile,
    StorageBackend,
    translated_errors,
)
from keg_storage.backends.publish import is_temp_name, new_temp_name, prune_empty_parents
from keg_storage.errors import FileNotFoundInStorageError, StorageError
from keg_storage.progress import ForwardProgress


class ServiceDown(Exception):
    """What an SDK raises in these tests."""


class BrokenService(StorageBackend):
    """Every primitive fails with ``error``; ``_translate_error`` turns a ServiceDown into a
    StorageError naming the path, and lets anything else through."""

    def __init__(self, error: Exception) -> None:
        super().__init__("broken")
        self.error = error
        self.translated: list[tuple[Exception, str | None]] = []

    def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
        self.translated.append((error, path))
        if isinstance(error, ServiceDown):
            return StorageError(f"the service is down ({error})", backend=self, path=path)
        return None

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        return self._fail()

    def _open(self, key: str, mode: FileMode, extra_args: dict[str, Any]) -> RemoteFile:
        return self._fail()

    def _stat(self, key: str) -> FileStat:
        return self._fail()

    def _delete(self, key: str) -> None:
        self._fail()

    def _link_to(self, key: str, *args: Any, **options: Any) -> str:
        return self._fail()


OPERATIONS = {
    "list": (lambda storage: storage.list("dir"), "dir/"),
    "open": (lambda storage: storage.open("a.txt", "rb"), "a.txt"),
    "open to write": (lambda storage: storage.open("a.txt", "wb"), "a.txt"),
    "stat": (lambda storage: storage.stat("a.txt"), "a.txt"),
    "exists": (lambda storage: storage.exists("a.txt"), "a.txt"),
    "delete": (lambda storage: storage.delete("a.txt"), "a.txt"),
    "copy": (lambda storage: storage.copy("a.txt", "b.txt"), "a.txt"),
    "move": (lambda storage: storage.move("a.txt", "b.txt"), "a.txt"),
    "copy onto itself": (lambda storage: storage.copy("a.txt", "a.txt"), "a.txt"),
    "link_to": (lambda storage: storage.link_to("a.txt", "d", timedelta(hours=1)), "a.txt"),
    "download": (lambda storage: storage.download("a.txt", io.BytesIO()), "a.txt"),
    "upload": (lambda storage: storage.upload(io.BytesIO(b"x"), "a.txt"), "a.txt"),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_public_methods_translate_what_their_primitives_raise(operation: str) -> None:
    call, key = OPERATIONS[operation]
    down = ServiceDown("connection refused")
    storage = BrokenService(down)
    with pytest.raises(StorageError) as caught:
        call(storage)
    assert str(caught.value) == (
        f"the service is down (connection refused) (backend BrokenService 'broken', path {key!r})"
    )
    assert caught.value.__cause__ is down
    assert storage.translated == [(down, key)]  # once: never again for a StorageError


@pytest.mark.parametrize("operation", list(OPERATIONS))
def test_an_untranslated_error_passes_unchanged(operation: str) -> None:
    call, key = OPERATIONS[operation]
    other = KeyError("not the service's")
    storage = BrokenService(other)
    with pytest.raises(KeyError) as caught:
        call(storage)
    assert caught.value is other
    assert storage.translated  # asked (by each translating layer), and let through each time
    assert all(entry == (other, key) for entry in storage.translated)


def test_a_storage_error_is_never_translated_again() -> None:
    missing = FileNotFoundInStorageError("BrokenService", "a.txt")
    storage = BrokenService(missing)
    with pytest.raises(FileNotFoundInStorageError) as caught:
        storage.stat("a.txt")
    assert caught.value is missing
    assert storage.translated == []
    assert storage.exists("a.txt") is False  # _exists still sees the typed error


def test_translated_errors_chains_and_passes() -> None:
    def translate(error: Exception, path: str | None) -> StorageError | None:
        return StorageError("translated", path=path) if isinstance(error, OSError) else None

    with (
        pytest.raises(StorageError, match=r"^translated \(path 'k'\)$") as caught,
        translated_errors(translate, "k"),
    ):
        raise OSError("disk")
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(ValueError, match=r"^mine$"), translated_errors(translate, "k"):
        raise ValueError("mine")


def test_local_side_errors_of_a_transfer_are_never_the_stores() -> None:
    """A LocalFS-like translation of every OSError must not rename the caller's own file's
    failure: download writes to a file object that raises."""

    class FullDisk(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    class TranslatingMemory(MemoryStorage):
        def _translate_error(self, error: Exception, path: str | None) -> StorageError | None:
            return StorageError("translated", backend=self, path=path)

    storage = TranslatingMemory()
    storage.upload(io.BytesIO(b"data"), "a.txt")
    with pytest.raises(OSError, match="No space left on device") as caught:
        storage.download("a.txt", FullDisk())  # type: ignore[arg-type]
    assert not isinstance(caught.value, StorageError)


# -- RemoteFile hooks ---------------------------------------------------------------------------


def test_a_writer_without_discard_is_refused_when_defined() -> None:
    with pytest.raises(TypeError) as caught:

        class PublishingWriter(RemoteFile):
            def write(self, data: Any) -> int:
                return len(data)

            def _finish(self) -> None:
                pass

    assert str(caught.value) == (
        "tests.test_backend_hooks.test_a_writer_without_discard_is_refused_when_defined."
        "<locals>.PublishingWriter defines _finish (publishing what was written) but no "
        "_discard: abort(), an exception in a with block and garbage collection would publish "
        "too. Define _discard to drop what was written, or, for a reader, only "
        "_release_resources"
    )


class Recording(RemoteFile):
    """A reader that records which hooks ran."""

    def __init__(self, mode: str = "rb") -> None:
        super().__init__(mode)
        self.calls: list[str] = []

    def read(self, size: int | None = -1) -> bytes:
        return b""

    def _release_resources(self) -> None:
        self.calls.append("release")


def test_a_reader_implements_only_release_resources() -> None:
    closed, aborted = Recording(), Recording()
    closed.close()
    aborted.abort()
    assert closed.calls == ["release"]
    assert aborted.calls == ["release"]
    assert closed.closed and aborted.closed


class DropMixin:
    """A _discard from a class other than RemoteFile (a mixin of the author's own)."""

    dropped = False

    def _discard(self) -> None:
        self.dropped = True


def test_a_writer_may_inherit_discard_from_a_mixin() -> None:
    class Writer(DropMixin, RemoteFile):
        published = False

        def write(self, data: Any) -> int:
            return len(data)

        def _finish(self) -> None:
            self.published = True

    with pytest.raises(RuntimeError), Writer("wb") as writer:
        writer.write(b"x")
        raise RuntimeError("stop")
    assert writer.dropped and not writer.published
    with Writer("wb") as writer:
        writer.write(b"x")
    assert writer.published and not writer.dropped


def test_a_subclass_of_a_complete_writer_may_override_finish_alone() -> None:
    """_discard inherited from a writer class (not RemoteFile) counts as the writer's own."""

    class Base(RemoteFile):
        def _finish(self) -> None:
            pass

        def _discard(self) -> None:
            pass

    class Child(Base):
        def _finish(self) -> None:
            pass

    assert Child._discard is Base._discard


class FailingFile(RemoteFile):
    """A reader and writer whose every operation fails as an SDK would; its ``_translation``
    is what a backend's file returns (the storage's ``translating(key)``)."""

    path = "f.bin"

    def _translation(self) -> Any:
        return translated_errors(translate_service_down, self.path)

    def read(self, size: int | None = -1) -> bytes:
        raise ServiceDown("read failed")

    def write(self, data: Any) -> int:
        raise ServiceDown("write failed")

    def _finish(self) -> None:
        raise ServiceDown("publish failed")

    def _discard(self) -> None:
        raise ServiceDown("drop failed")


def translate_service_down(error: Exception, path: str | None) -> StorageError | None:
    if isinstance(error, ServiceDown):
        return StorageError(f"translated: {error}", path=path)
    return None


@pytest.mark.parametrize(
    ("operation", "message"),
    [
        (lambda file: file.read(1), "read failed"),
        (lambda file: file.read(size=1), "read failed"),
        (lambda file: file.readinto(bytearray(1)), "read failed"),  # through read()
        (lambda file: file.write(b"x"), "write failed"),
        (lambda file: file.close(), "publish failed"),
        (lambda file: file.abort(), "drop failed"),
    ],
)
def test_file_objects_translate_their_errors(operation: Any, message: str) -> None:
    file = FailingFile("w+b")
    with pytest.raises(StorageError) as caught:
        operation(file)
    assert str(caught.value) == f"translated: {message} (path 'f.bin')"
    assert isinstance(caught.value.__cause__, ServiceDown)
    with pytest.raises(TypeError, match="write\\(\\) takes bytes, not str"):
        file.write("text")  # the str check comes first, untranslated


# -- progress and publish helpers ---------------------------------------------------------------


def test_forward_progress_counts_each_byte_once() -> None:
    counted: list[int] = []
    progress = ForwardProgress(counted.append)
    progress.advance(5)
    progress.advance(-5)  # a retry rewinds
    progress.advance(8)
    progress.reach(2)
    progress.reach(10)
    assert counted == [5, 3, 2]
    assert sum(counted) == 10


def test_forward_progress_is_thread_safe() -> None:
    counted: list[int] = []
    lock = threading.Lock()

    def count(amount: int) -> None:
        with lock:
            counted.append(amount)

    progress = ForwardProgress(count)
    threads = [
        threading.Thread(target=lambda: [progress.advance(1) for _ in range(1000)])
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counted) == 4000


def test_temp_names_are_hidden_and_unique() -> None:
    names = {new_temp_name() for _ in range(100)}
    assert len(names) == 100
    assert all(is_temp_name(name) for name in names)
    assert is_temp_name(".keg-storage-0123456789abcdef.part")  # SFTP's before 1.0
    assert not is_temp_name("report.tmp")


def test_prune_walk_stops_at_the_first_directory_kept() -> None:
    removed: list[str] = []

    def remove_directory(directory: str) -> bool:
        removed.append(directory)
        return directory != "a/b"

    prune_empty_parents("a/b/c/file.txt", remove_directory)
    assert removed == ["a/b/c", "a/b"]
