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


def test_directory_swapped_for_symlink_never_leads_outside(tmp_path: Path) -> None:
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
    before = snapshot(outside)
    storage = LocalFSStorage(root)
    escapes: collections.Counter[str] = collections.Counter()
    untyped: list[BaseException] = []
    operations: collections.Counter[str] = collections.Counter()
    refusals: collections.Counter[str] = collections.Counter()
    stop = time.monotonic() + SECONDS

    def secret_read(what: str, data: bytes) -> None:
        if OUTSIDE_SECRET in data:
            escapes[what] += 1

    def work(index: int) -> None:
        local = tmp_path / f"local-{index}.bin"
        local.write_bytes(INSIDE_SECRET)
        got = tmp_path / f"got-{index}.bin"
        actions: dict[str, Callable[[], None]] = {
            "read": lambda: secret_read("read", storage.open("box/secret.txt").read()),
            "r+": lambda: read_write(),
            "get": lambda: (
                storage.get("box/secret.txt", got),
                secret_read("get", got.read_bytes()),
            ),
            "download": lambda: download(),
            "copy": lambda: copy(),
            "stat": lambda: stat(),
            "exists": lambda: storage.exists("box/secret.txt") and None,
            "list": lambda: listing(storage.list("box")),
            "glob": lambda: listing(storage.glob("box/*.txt")),
            "write": lambda: write(),
            "upload": lambda: storage.upload(io.BytesIO(b"new"), f"box/up-{index}.txt"),
            "put": lambda: storage.put(local, f"box/canary/x-{index}.txt"),
            "move": lambda: (
                storage.upload(io.BytesIO(b"mine"), f"box/moveme-{index}.txt"),
                storage.move(f"box/moveme-{index}.txt", f"moved/m-{index}.txt"),
                secret_read("move", (root / "moved" / f"m-{index}.txt").read_bytes()),
            ),
            "move in": lambda: storage.move(f"moved/m-{index}.txt", f"box/back-{index}.txt"),
            "delete": lambda: (
                storage.upload(io.BytesIO(b"mine"), f"box/victim-{index}.txt"),
                storage.delete(f"box/victim-{index}.txt"),
            ),
            "prune": lambda: (
                storage.upload(io.BytesIO(b"mine"), f"box/prunable/p-{index}.txt"),
                storage.delete(f"box/prunable/p-{index}.txt"),
            ),
        }

        def read_write() -> None:
            with storage.open("box/secret.txt", "r+") as file:
                data = file.read()
                secret_read("r+", data)
                file.seek(0)
                file.write(INSIDE_SECRET)

        def download() -> None:
            buffer = io.BytesIO()
            storage.download("box/secret.txt", buffer)
            secret_read("download", buffer.getvalue())

        def copy() -> None:
            storage.copy("box/secret.txt", f"copies/c-{index}.txt")
            secret_read("copy", (root / "copies" / f"c-{index}.txt").read_bytes())

        def stat() -> None:
            if storage.stat("box/secret.txt").size == len(OUTSIDE_SECRET):
                escapes["stat"] += 1

        def listing(entries: list[object]) -> None:
            if any("outside-only" in str(entry) for entry in entries):
                escapes["list"] += 1

        def write() -> None:
            with storage.open(f"box/w-{index}.txt", "wb") as file:
                file.write(b"written")

        names = list(actions)
        while time.monotonic() < stop:
            name = random.choice(names)
            operations[name] += 1
            try:
                actions[name]()
            except StorageError:  # a typed refusal: the path was a symlink at that moment
                refusals[name] += 1
            except Exception as exc:
                untyped.append(exc)

    with swapping(box, root / "swap"):
        run_threads(work, SECONDS)

    after = snapshot(outside)
    changed = sorted(name for name in before if after.get(name, b"gone") != before[name])
    created = sorted(set(after) - set(before))
    print(f"\noperations: {dict(operations)}\nrefused: {dict(refusals)}")
    print(f"escapes: {dict(escapes)}")
    print(f"outside changed or gone: {changed}\noutside created: {created}")
    assert sum(refusals.values()) > 0, "the swapper never got in the way"
    assert not escapes, f"reads through the symlink: {dict(escapes)}"
    assert not changed, f"outside entries changed, moved or removed: {changed}"
    assert not created, f"entries created outside: {created}"
    assert not untyped, f"untyped errors: {untyped[:5]}"
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
