"""Soak: 16 threads on one shared backend instance, mixed operations on random sizes, every byte
checked by sha256.

Bounded so CI stays fast: ``KEG_STORAGE_SOAK_SECONDS`` (default 4) and
``KEG_STORAGE_SOAK_OPS`` (operations per thread, default 40), whichever ends first. ``tox -e
chaos`` runs it longer.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import threading
import time
from dataclasses import dataclass, field

import pytest

from keg_storage import FileNotFoundInStorageError, StorageBackend

THREADS = 16
SECONDS = float(os.environ.get("KEG_STORAGE_SOAK_SECONDS", "4"))
OPS_PER_THREAD = int(os.environ.get("KEG_STORAGE_SOAK_OPS", "40"))
SIZES = [0, 1, 1000, 64 * 1024, 700_000, 2 * 1024 * 1024, 6 * 1024 * 1024 + 3]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Worker:
    """One thread's files (key → sha256) and what it did."""

    index: int
    storage: StorageBackend
    files: dict[str, str] = field(default_factory=dict)
    operations: int = 0
    bytes_verified: int = 0
    error: BaseException | None = None

    def run(self, deadline: float) -> None:
        rng = random.Random(self.index)
        try:
            while self.operations < OPS_PER_THREAD and time.monotonic() < deadline:
                self.step(rng)
                self.operations += 1
        except BaseException as exc:
            self.error = exc

    def new_key(self, rng: random.Random) -> str:
        return f"w{self.index}/{rng.choice(['a', 'b/c', 'd e'])}/{rng.getrandbits(32):08x}.bin"

    def verify(self, key: str, data: bytes) -> None:
        assert digest(data) == self.files[key], f"{key}: content differs from what was written"
        self.bytes_verified += len(data)

    def step(self, rng: random.Random) -> None:
        operation = rng.choice(
            ["upload", "stream_write", "download", "stream_read", "copy", "move", "delete", "list"]
        )
        if not self.files or operation in ("upload", "stream_write"):
            data = rng.randbytes(rng.choice(SIZES))
            key = self.new_key(rng)
            if operation == "stream_write":
                with self.storage.open(key, "wb") as file:
                    for start in range(0, len(data), 256 * 1024):
                        file.write(data[start : start + 256 * 1024])
            else:
                self.storage.upload(io.BytesIO(data), key)
            self.files[key] = digest(data)
            return
        key = rng.choice(sorted(self.files))
        if operation == "download":
            target = io.BytesIO()
            self.storage.download(key, target)
            self.verify(key, target.getvalue())
        elif operation == "stream_read":
            with self.storage.open(key, "rb") as file:
                self.verify(key, b"".join(file.iter_chunks(300_000)))
        elif operation == "copy":
            new_key = self.new_key(rng)
            self.storage.copy(key, new_key)
            self.files[new_key] = self.files[key]
        elif operation == "move":
            new_key = self.new_key(rng)
            self.storage.move(key, new_key)
            self.files[new_key] = self.files.pop(key)
            with pytest.raises(FileNotFoundInStorageError):
                self.storage.open(key, "rb")
        elif operation == "delete":
            self.storage.delete(key)
            del self.files[key]
            assert not self.storage.exists(key)
        else:
            listed = {entry.name for entry in self.storage.list(f"w{self.index}")}
            assert listed == set(self.files), "listing differs from what this thread stored"


def test_soak(storage: StorageBackend) -> None:
    workers = [Worker(index, storage) for index in range(THREADS)]
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=worker.run, args=(deadline,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    errors = [worker.error for worker in workers if worker.error is not None]
    if errors:
        raise errors[0]
    expected = {key: sha for worker in workers for key, sha in worker.files.items()}
    assert {entry.name for entry in storage.list()} == set(expected)
    for key, sha in expected.items():
        target = io.BytesIO()
        storage.download(key, target)
        assert digest(target.getvalue()) == sha, key
    operations = sum(worker.operations for worker in workers)
    verified = sum(worker.bytes_verified for worker in workers)
    print(
        f"\nsoak {storage.name}: {THREADS} threads, {operations} operations, "
        f"{len(expected)} objects and {verified} bytes verified"
    )
    assert operations >= THREADS
