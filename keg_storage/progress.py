"""Progress callbacks delivered on the calling thread (CONTRACT §4).

Transfers may run in worker threads (boto3's transfer manager, Azure's parallel blocks, our own
part uploads). Users' callbacks touch UI state, Flask globals or non-thread-safe objects, so they
must run on the thread that called ``upload``/``download``. :func:`relay_progress` runs the
transfer in a worker and turns the byte increments it reports, from any thread, into cumulative,
never-decreasing calls on the calling thread that end on the total (an empty transfer reports 0
once). A callback that raises stops the transfer at its next chunk and the error propagates.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

ProgressCallback = Callable[[int], None]
ByteCounter = Callable[[int], None]
"""Receives the number of bytes just transferred; may be called from any thread."""

T = TypeVar("T")

_POLL_SECONDS = 0.05


def relay_progress(
    transfer: Callable[[ByteCounter], T], progress_callback: ProgressCallback | None
) -> T:
    """Run ``transfer(count_bytes)`` and report its progress to ``progress_callback``."""
    if progress_callback is None:
        return transfer(ignore_bytes)
    increments: queue.SimpleQueue[int] = queue.SimpleQueue()
    outcome: dict[str, object] = {}
    cancelled = threading.Event()

    def count_bytes(count: int) -> None:
        if cancelled.is_set():
            raise TransferCancelledError("the progress callback raised; transfer stopped")
        increments.put(count)

    def run() -> None:
        try:
            outcome["result"] = transfer(count_bytes)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="keg-storage-transfer", daemon=True)
    worker.start()
    received = 0
    reported = -1
    while True:
        finished = not worker.is_alive()
        try:
            while True:
                received += increments.get(timeout=0 if finished else _POLL_SECONDS)
                if increments.empty():
                    break
        except queue.Empty:
            pass
        if received > reported and (received > 0 or finished) and "error" not in outcome:
            try:
                progress_callback(received)
            except BaseException:
                cancelled.set()
                worker.join()
                raise
            reported = received
        if finished and increments.empty():
            break
    worker.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    if reported < 0:
        progress_callback(0)
    return outcome["result"]  # type: ignore[return-value]


class ForwardProgress:
    """Relays a transfer's running byte count, which goes back when a retry rewinds (a request
    body sent again, boto3's callbacks after a failed part), to ``count_bytes`` as forward-only
    increments: only bytes beyond the furthest point reached before are counted. Thread-safe.
    """

    def __init__(self, count_bytes: ByteCounter) -> None:
        self.count_bytes = count_bytes
        self.lock = threading.Lock()
        self.position = 0
        self.furthest = 0

    def reach(self, position: int) -> None:
        """The transfer is at byte ``position`` (possibly behind where it was)."""
        self._move(lambda _: position)

    def advance(self, amount: int) -> None:
        """The transfer moved ``amount`` bytes (negative when a retry rewinds it); boto3's
        transfer ``Callback``."""
        self._move(lambda current: current + amount)

    def _move(self, where: Callable[[int], int]) -> None:
        with self.lock:
            self.position = where(self.position)
            increment = self.position - self.furthest
            if increment <= 0:
                return
            self.furthest = self.position
        self.count_bytes(increment)


class TransferCancelledError(Exception):
    """Raised inside a transfer's worker to stop it after the progress callback failed."""


def ignore_bytes(count: int) -> None:
    """A byte counter for transfers nobody watches."""
