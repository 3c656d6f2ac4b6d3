"""LocalFS confinement while another process rewrites the tree under it (CONTRACT §2).

A swapper process exchanges, in a tight loop, a directory inside the root with a symlink to a
directory outside it (``renameat2(RENAME_EXCHANGE)``, so the name always exists), while threads of
this process run every LocalFS operation on keys under that directory. Nothing may read, write,
rename, delete or prune anything outside the root, no temp file may land outside, and no thread
may hang. The same with a regular file exchanged with a FIFO: no operation blocks.

Runs ``KEG_STORAGE_RACE_SECONDS`` seconds per test (2 by default, 10 in ``tox -e chaos``).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import io
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from keg_storage import FileNotFoundInStorageError, LocalFSStorage, StorageError

SECONDS = float(os.environ.get("KEG_STORAGE_RACE_SECONDS", "2"))
THREADS = 3
INSIDE_SECRET = b"inside secret"
OUTSIDE_SECRET = b"OUTSIDE SECRET, never to be read through the storage"
RENAME_EXCHANGE = 2
AT_FDCWD = -100

SWAPPER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
first, second = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2])
print("ready", flush=True)
while True:
    if libc.renameat2(-100, first, -100, second, 2) != 0:
        sys.exit(f"renameat2: {os.strerror(ctypes.get_errno())}")
"""


def exchange(first: Path, second: Path) -> None:
    """Swap two names atomically (renameat2 RENAME_EXCHANGE); skip where the system cannot."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        pytest.skip("libc has no renameat2")
    if renameat2(AT_FDCWD, os.fsencode(first), AT_FDCWD, os.fsencode(second), RENAME_EXCHANGE):
        pytest.skip(f"renameat2(RENAME_EXCHANGE): {os.strerror(ctypes.get_errno())}")


@contextlib.contextmanager
def swapping(first: Path, second: Path) -> Iterator[None]:
    """Run the swapper process until the block ends, then put both names back."""
    exchange(first, second)  # skips where RENAME_EXCHANGE is missing
    exchange(first, second)
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(first), str(second)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert swapper.stdout is not None and swapper.stdout.readline() == "ready\n"
    try:
        yield
    finally:
        swapper.kill()
        swapper.wait(timeout=10)
    assert swapper.returncode == -9, "the swapper stopped on its own"


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every entry under ``directory``: file contents, None for directories."""
    return {
        str(path.relative_to(directory)): None if path.is_dir() else path.read_bytes()
        for path in directory.rglob("*")
    }


def run_threads(work: Callable[[int], None], seconds: float) -> None:
    """Run ``work(index)`` on THREADS daemon threads; each must be done within a bound."""
    threads = [
        threading.Thread(target=work, args=(index,), daemon=True) for index in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds + 30
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    hung = [thread.name for thread in threads if thread.is_alive()]
    assert not hung, f"threads hung: {hung}"


def make_trees(tmp_path: Path) -> tuple[Path, Path]:
    """The root (with ``box``, the directory the swapper exchanges with the symlink ``swap``)
    and the outside directory, full of files an escape would read, change or remove."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    box = root / "box"
    for directory in (box / "canary", outside / "canary"):
        directory.mkdir(parents=True)
    (box / "secret.txt").write_bytes(INSIDE_SECRET)
    (outside / "secret.txt").write_bytes(OUTSIDE_SECRET)
    (outside / "outside-only.txt").write_bytes(OUTSIDE_SECRET)
    for index in range(THREADS):
        for name in (f"victim-{index}.txt", f"moveme-{index}.txt", f"canary/x-{index}.txt"):
            (outside / name).write_bytes(OUTSIDE_SECRET)
    (outside / "prunable").mkdir()  # empty: pruned only through an escape
    os.symlink(outside, root / "swap")
    return root, outside


class Tally:
    """What the threads saw: operations run, typed refusals, escapes, untyped errors."""

    def __init__(self) -> None:
        self.operations: collections.Counter[str] = collections.Counter()
        self.refusals: collections.Counter[str] = collections.Counter()
        self.escapes: collections.Counter[str] = collections.Counter()
        self.untyped: list[BaseException] = []

    def secret_read(self, what: str, data: bytes) -> None:
        if OUTSIDE_SECRET in data:
            self.escapes[what] += 1


class RaceActions:
    """Every LocalFS operation on keys under ``box``, for one thread (``index``)."""

    def __init__(self, storage: LocalFSStorage, root: Path, tmp_path: Path, index: int) -> None:
        self.storage, self.root, self.index = storage, root, index
        self.local = tmp_path / f"local-{index}.bin"
        self.local.write_bytes(INSIDE_SECRET)
        self.got = tmp_path / f"got-{index}.bin"

    def all(self, tally: Tally) -> dict[str, Callable[[], object]]:
        storage, index, secret_read = self.storage, self.index, tally.secret_read
        return {
            "read": lambda: secret_read("read", storage.open("box/secret.txt").read()),
            "r+": lambda: self.read_write(tally),
            "get": lambda: (
                storage.get("box/secret.txt", self.got),
                secret_read("get", self.got.read_bytes()),
            ),
            "download": lambda: self.download(tally),
            "copy": lambda: self.copy(tally),
            "stat": lambda: self.stat(tally),
            "exists": lambda: storage.exists("box/secret.txt"),
            "list": lambda: self.listing(tally, storage.list("box")),
            "glob": lambda: self.listing(tally, storage.glob("box/*.txt")),
            "write": self.write,
            "upload": lambda: storage.upload(io.BytesIO(b"new"), f"box/up-{index}.txt"),
            "put": lambda: storage.put(self.local, f"box/canary/x-{index}.txt"),
            "move": lambda: self.move(tally),
            "move in": lambda: storage.move(f"moved/m-{index}.txt", f"box/back-{index}.txt"),
            "delete": lambda: self.upload_and_delete(f"box/victim-{index}.txt"),
            "prune": lambda: self.upload_and_delete(f"box/prunable/p-{index}.txt"),
        }

    def read_write(self, tally: Tally) -> None:
        with self.storage.open("box/secret.txt", "r+") as file:
            tally.secret_read("r+", file.read())
            file.seek(0)
            file.write(INSIDE_SECRET)

    def download(self, tally: Tally) -> None:
        buffer = io.BytesIO()
        self.storage.download("box/secret.txt", buffer)
        tally.secret_read("download", buffer.getvalue())

    def copy(self, tally: Tally) -> None:
        self.storage.copy("box/secret.txt", f"copies/c-{self.index}.txt")
        tally.secret_read("copy", (self.root / "copies" / f"c-{self.index}.txt").read_bytes())

    def stat(self, tally: Tally) -> None:
        if self.storage.stat("box/secret.txt").size == len(OUTSIDE_SECRET):
            tally.escapes["stat"] += 1

    def listing(self, tally: Tally, entries: list[object]) -> None:
        if any("outside-only" in str(entry) for entry in entries):
            tally.escapes["list"] += 1

    def write(self) -> None:
        with self.storage.open(f"box/w-{self.index}.txt", "wb") as file:
            file.write(b"written")

    def move(self, tally: Tally) -> None:
        self.storage.upload(io.BytesIO(b"mine"), f"box/moveme-{self.index}.txt")
        self.storage.move(f"box/moveme-{self.index}.txt", f"moved/m-{self.index}.txt")
        tally.secret_read("move", (self.root / "moved" / f"m-{self.index}.txt").read_bytes())

    def upload_and_delete(self, key: str) -> None:
        self.storage.upload(io.BytesIO(b"mine"), key)
        self.storage.delete(key)


def test_directory_swapped_for_symlink_never_leads_outside(tmp_path: Path) -> None:
    root, outside = make_trees(tmp_path)
    before = snapshot(outside)
    storage = LocalFSStorage(root)
    tally = Tally()
    stop = time.monotonic() + SECONDS

    def work(index: int) -> None:
        actions = RaceActions(storage, root, tmp_path, index).all(tally)
        names = list(actions)
        while time.monotonic() < stop:
            name = random.choice(names)
            tally.operations[name] += 1
            try:
                actions[name]()
            except StorageError:  # a typed refusal: the path was a symlink at that moment
                tally.refusals[name] += 1
            except Exception as exc:
                tally.untyped.append(exc)

    with swapping(root / "box", root / "swap"):
        run_threads(work, SECONDS)

    after = snapshot(outside)
    changed = sorted(name for name in before if after.get(name, b"gone") != before[name])
    created = sorted(set(after) - set(before))
    print(f"\noperations: {dict(tally.operations)}\nrefused: {dict(tally.refusals)}")
    print(f"escapes: {dict(tally.escapes)}")
    print(f"outside changed or gone: {changed}\noutside created: {created}")
    assert sum(tally.refusals.values()) > 0, "the swapper never got in the way"
    assert not tally.escapes, f"reads through the symlink: {dict(tally.escapes)}"
    assert not changed, f"outside entries changed, moved or removed: {changed}"
    assert not created, f"entries created outside: {created}"
    assert not tally.untyped, f"untyped errors: {tally.untyped[:5]}"
    leftovers = [p.name for p in root.rglob(".keg-storage-*")]
    assert not leftovers, f"temp files left: {leftovers}"


def test_file_swapped_for_fifo_never_blocks(tmp_path: Path) -> None:
    """A regular file exchanged with a FIFO between any two system calls: every operation ends,
    with the file's bytes or FileNotFoundInStorageError."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "data.bin").write_bytes(INSIDE_SECRET)
    os.mkfifo(root / "pipe")
    storage = LocalFSStorage(root)
    stop = time.monotonic() + SECONDS
    outcomes: collections.Counter[str] = collections.Counter()
    wrong: list[object] = []

    def work(index: int) -> None:
        got = tmp_path / f"got-{index}.bin"

        def read_write() -> bytes:
            with storage.open("data.bin", "r+") as file:
                return file.read()

        def download() -> bytes:
            buffer = io.BytesIO()
            storage.download("data.bin", buffer)
            return buffer.getvalue()

        actions: dict[str, Callable[[], bytes]] = {
            "read": lambda: storage.open("data.bin").read(),
            "r+": read_write,
            "get": lambda: (storage.get("data.bin", got), got.read_bytes())[1],
            "download": download,
            "copy": lambda: (
                storage.copy("data.bin", f"copy-{index}.bin"),
                (root / f"copy-{index}.bin").read_bytes(),
            )[1],
        }
        while time.monotonic() < stop:
            name = random.choice(list(actions))
            try:
                data = actions[name]()
            except FileNotFoundInStorageError:
                outcomes["refused"] += 1
                continue
            except Exception as exc:
                wrong.append(exc)
                continue
            outcomes["read"] += 1
            if data != INSIDE_SECRET:
                wrong.append((name, data))

    try:
        with swapping(root / "data.bin", root / "pipe"):
            run_threads(work, SECONDS)
    finally:
        release_fifo_readers(root)
    print(f"\noutcomes: {dict(outcomes)}")
    assert outcomes["read"] > 0 and outcomes["refused"] > 0
    assert not wrong, wrong[:5]


def release_fifo_readers(root: Path) -> None:
    """Open the FIFO (whichever name it has now) for writing, which wakes a reader blocked in
    ``open()``, so that a failing run does not leave threads stuck for the rest of the session."""
    for name in ("data.bin", "pipe"):
        with contextlib.suppress(OSError):
            os.close(os.open(root / name, os.O_WRONLY | os.O_NONBLOCK))
