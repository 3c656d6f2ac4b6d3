"""The cleanup thread: discards of network files garbage-collected while still open.

A finalizer may run on any thread at any allocation: inside a paramiko call that holds a lock
the discard needs, on paramiko's transport thread (which alone feeds the responses the discard
would wait for), or in a cyclic collection that has already cleared the weak references paramiko
keeps to pending requests. So a network file's ``__del__`` never talks to the server itself: it
queues its discard here (:func:`discard_later`) and returns. One daemon thread per process runs
the queue; each discard is bounded by its backend's timeout. At interpreter exit the queue is
given up to :data:`EXIT_WAIT` seconds to finish.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

EXIT_WAIT = 10.0
"""Seconds the interpreter's exit waits for queued discards."""

_tasks: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_lock = threading.Lock()
_thread: threading.Thread | None = None
_pid: int | None = None


def prepare() -> int:
    """Start this process's cleanup thread if it is not running, and return the process id to
    give :func:`discard_later` (call it when a network file is opened, so that a finalizer never
    has to start a thread)."""
    global _thread, _pid
    if _pid == os.getpid() and _thread is not None and _thread.is_alive():
        return _pid
    with _lock:
        if _pid == os.getpid() and _thread is not None and _thread.is_alive():
            return _pid
        if _pid != os.getpid():  # a forked child: tasks queued by the parent are the parent's
            while not _tasks.empty():
                _tasks.get_nowait()
        _thread = threading.Thread(target=_run, name="keg-storage-cleanup", daemon=True)
        _thread.start()
        if _pid is None:
            atexit.register(_drain)
        _pid = os.getpid()
        return _pid


def discard_later(task: Callable[[], None], opened_in: int) -> None:
    """Run ``task`` on the cleanup thread; never blocks (safe in ``__del__``). ``opened_in`` is
    what :func:`prepare` returned when the file was opened: a file collected in a forked child
    belongs to the parent (its sockets, its temp file), so the child drops the task."""
    if opened_in == os.getpid() == _pid:
        _tasks.put(task)  # SimpleQueue.put is reentrant: safe in a finalizer


def _run() -> None:
    while True:
        task = _tasks.get()
        try:
            task()
        except Exception:  # one failed discard must not stop the others
            log.warning("discarding an unclosed file failed", exc_info=True)
        del task


def _drain() -> None:
    """Wait (at most :data:`EXIT_WAIT` s) until every discard queued so far has run."""
    if _pid != os.getpid() or _thread is None or not _thread.is_alive():
        return
    done = threading.Event()
    _tasks.put(done.set)
    done.wait(EXIT_WAIT)
