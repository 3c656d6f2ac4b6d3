"""Faults between each network backend and its real server, at many random cut points.

Whatever breaks, a user must see one of two outcomes: the operation succeeded byte-identical
(a transient reset was retried), or it raised a typed :class:`StorageError` and nothing partial is
visible (the old version stays, no multipart upload, uncommitted block or temp file remains). A
read never returns short data as if the file had ended, and the same backend instance keeps
working afterwards. Cut points are seeded; the seed is in the test id and printed on failure.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import time
from collections.abc import Callable

import pytest

from keg_storage import StorageBackend, StorageConnectionError, StorageError

from .conftest import IMPATIENT_TIMEOUT, FaultTarget
from .proxy import Direction

MiB = 1024 * 1024
CUTS = int(os.environ.get("KEG_STORAGE_FAULT_CUTS", "6"))
SEED = int(os.environ.get("KEG_STORAGE_FAULT_SEED", "20261124"))
SIZE = 7 * MiB + 11


def cut_points(label: str) -> list[int]:
    rng = random.Random(f"{SEED}-{label}")
    return sorted({rng.randrange(1, SIZE) for _ in range(CUTS)} | {1, 200})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read_back(target: FaultTarget, key: str) -> bytes:
    """Read through the direct (fault-free) backend."""
    buffer = io.BytesIO()
    target.direct.download(key, buffer)
    return buffer.getvalue()


def still_works(target: FaultTarget) -> None:
    """The fault fired, and the faulted instance works again once it is gone (pools recover)."""
    assert not target.proxy.armed, "the fault never fired: the test proved nothing"
    target.proxy.clear()
    target.storage.upload(io.BytesIO(b"after the fault"), "after.txt")
    with target.storage.open("after.txt") as file:
        assert file.read() == b"after the fault"


def stream_write(storage: StorageBackend, key: str, data: bytes) -> None:
    with storage.open(key, "wb") as file:
        for start in range(0, len(data), MiB):
            file.write(data[start : start + MiB])


def upload(storage: StorageBackend, key: str, data: bytes) -> None:
    storage.upload(io.BytesIO(data), key)


@pytest.mark.parametrize("write", [upload, stream_write], ids=["upload", "stream"])
@pytest.mark.parametrize("cut", cut_points("write"))
def test_interrupted_write(
    fault_target: FaultTarget, cut: int, write: Callable[[StorageBackend, str, bytes], None]
) -> None:
    old, new = os.urandom(1000), random.Random(cut).randbytes(SIZE)
    fault_target.direct.upload(io.BytesIO(old), "doc.bin")
    fault_target.proxy.cut_after(cut, "upstream")
    try:
        write(fault_target.storage, "doc.bin", new)
    except StorageError:
        assert read_back(fault_target, "doc.bin") == old, f"seed {SEED} cut {cut}"
    else:
        assert sha(read_back(fault_target, "doc.bin")) == sha(new), f"seed {SEED} cut {cut}"
    assert fault_target.leftovers() == [], f"seed {SEED} cut {cut}"
    still_works(fault_target)


@pytest.mark.parametrize("cut", cut_points("download"))
def test_interrupted_download(fault_target: FaultTarget, cut: int) -> None:
    data = random.Random(cut).randbytes(SIZE)
    fault_target.direct.upload(io.BytesIO(data), "doc.bin")
    fault_target.proxy.cut_after(cut, "downstream")
    target = io.BytesIO()
    try:
        fault_target.storage.download("doc.bin", target)
    except StorageError:
        pass
    else:
        assert sha(target.getvalue()) == sha(data), f"seed {SEED} cut {cut}: short or corrupt"
    still_works(fault_target)


@pytest.mark.parametrize("cut", cut_points("read"))
def test_interrupted_streaming_read(fault_target: FaultTarget, cut: int) -> None:
    data = random.Random(cut).randbytes(SIZE)
    fault_target.direct.upload(io.BytesIO(data), "doc.bin")
    with fault_target.storage.open("doc.bin") as file:
        fault_target.proxy.cut_after(cut, "downstream")
        try:
            received = b"".join(file.iter_chunks(MiB))
        except StorageError:
            pass
        else:
            assert sha(received) == sha(data), f"seed {SEED} cut {cut}: short or corrupt"
    still_works(fault_target)


def test_refused_connections_raise_a_typed_error(fault_target: FaultTarget) -> None:
    fault_target.proxy.reset_all()
    fault_target.proxy.refuse_new = True
    with pytest.raises(StorageConnectionError) as excinfo:
        fault_target.storage.upload(io.BytesIO(b"x"), "refused.txt")
    assert fault_target.storage.name in str(excinfo.value)
    assert fault_target.proxy.stats.refused >= 1
    still_works(fault_target)


# -- a server that stops answering ---------------------------------------------------------------

STALL = 10 * IMPATIENT_TIMEOUT
"""How long the stalled connection stays silent: far longer than the timeout."""
BOUND = 3 * IMPATIENT_TIMEOUT + 2
"""How long a stalled operation may take to give up: a few waits of the timeout, plus margin."""


def _stalled_read(storage: StorageBackend, new: bytes, stall: Callable[[], None]) -> bytes:
    stall()
    buffer = io.BytesIO()
    storage.download("doc.bin", buffer)
    return buffer.getvalue()


def _stalled_write(storage: StorageBackend, new: bytes, stall: Callable[[], None]) -> None:
    stall()
    storage.upload(io.BytesIO(new), "doc.bin")


def _stalled_close(storage: StorageBackend, new: bytes, stall: Callable[[], None]) -> None:
    with storage.open("doc.bin", "wb") as file:
        file.write(new)
        stall()


def _failed_write_then_close(
    storage: StorageBackend, new: bytes, stall: Callable[[], None]
) -> None:
    """close() after a write() that raised (no ``with``): must not publish the rest."""
    file = storage.open("doc.bin", "wb")
    stall()
    try:
        file.write(new)
    finally:
        file.close()


def lasting_leftovers(target: FaultTarget) -> list[str]:
    """Leftovers but Azure's uncommitted blocks, which the service keeps by design (CONTRACT §3)."""
    return [name for name in target.leftovers() if not name.startswith("uncommitted block")]


@pytest.mark.parametrize(
    ("operation", "direction", "after"),
    [
        (_stalled_read, "downstream", MiB),
        (_stalled_write, "upstream", MiB),
        (_stalled_close, "downstream", 1),
        (_failed_write_then_close, "upstream", MiB),
    ],
    ids=["read", "write", "close", "failed-write-close"],
)
def test_stalled_server_gives_up_within_the_timeout(
    fault_target: FaultTarget,
    operation: Callable[[StorageBackend, bytes, Callable[[], None]], bytes | None],
    direction: Direction,
    after: int,
) -> None:
    """A server that stops answering mid-request never hangs a thread: within a few timeouts
    the operation raises StorageConnectionError (or has succeeded on another connection), and
    the file is the old one or the whole new one, never a mix (CONTRACT §3)."""
    old, new = os.urandom(3 * MiB), random.Random(1).randbytes(6 * MiB)
    fault_target.direct.upload(io.BytesIO(old), "doc.bin")
    storage = fault_target.impatient
    assert storage.exists("doc.bin")  # connected before the stall
    start = time.monotonic()
    try:
        result = operation(
            storage, new, lambda: fault_target.proxy.stall_after(after, STALL, direction)
        )
    except StorageError as exc:  # a close() after a failed write names that failure as context
        assert isinstance(exc, StorageConnectionError) or isinstance(
            exc.__context__, StorageConnectionError
        ), exc
        result = None
    assert time.monotonic() - start < BOUND
    assert not fault_target.proxy.armed, "the stall never came: the test proved nothing"
    if result is not None:
        assert sha(result) == sha(old)
    stored = read_back(fault_target, "doc.bin")
    assert sha(stored) in (sha(old), sha(new))
    assert lasting_leftovers(fault_target) == []


def test_abort_on_a_stalled_server_returns_within_the_timeout(fault_target: FaultTarget) -> None:
    """Discarding a write waits for the requests in flight at most a few timeouts, and removes
    its temp state (through another connection when the stalled one is given up)."""
    storage = fault_target.impatient
    assert not storage.exists("doc.bin")
    file = storage.open("doc.bin", "wb")
    file.write(random.Random(3).randbytes(6 * MiB))
    fault_target.proxy.stall_after(1, STALL, "downstream")
    start = time.monotonic()
    file.abort()
    assert time.monotonic() - start < BOUND
    assert not fault_target.direct.exists("doc.bin")
    assert lasting_leftovers(fault_target) == []
