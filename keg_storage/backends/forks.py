"""Network clients that belong to the process that built them (fork safety, CONTRACT §7).

After ``os.fork()`` (gunicorn ``--preload``, Celery prefork, ``multiprocessing`` with the fork
start method) a child shares its parent's sockets, and the threads that drive them (paramiko's
transports) do not exist in it. A backend keeps its boto3 clients, Azure pipelines and SSH pools
in a :class:`PerProcess`: the first use in a process with another PID builds new ones there.

The parent's objects are never used, closed or garbage-collected in the child: closing them
could shut down what the parent still uses, and collecting a paramiko channel sends a close
message on the parent's SSH connection. The child keeps them referenced until it exits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["PerProcess"]

T = TypeVar("T")

_lock = threading.Lock()
_inherited: list[object] = []
"""What a child inherited from its parent: kept, never touched."""


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a thread of the parent may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


class PerProcess(Generic[T]):
    """A value built by ``factory`` once per process, on first use there (or at once with
    ``eager``, so that a bad configuration fails where the backend is made)."""

    def __init__(self, factory: Callable[[], T], *, eager: bool = False) -> None:
        self._factory = factory
        self._state: tuple[int, T] | None = None  # (pid, value), replaced as a whole
        if eager:
            self.get()

    def get(self) -> T:
        """This process's value, built now if there is none yet (the first use after a fork)."""
        state, pid = self._state, os.getpid()
        if state is not None and state[0] == pid:
            return state[1]
        with _lock:
            state = self._state
            if state is not None and state[0] == pid:
                return state[1]
            if state is not None:
                _inherited.append(state[1])
            value = self._factory()
            self._state = (pid, value)
            return value

    def current(self) -> T | None:
        """This process's value if it built one; never another process's (to close it)."""
        state = self._state
        return state[1] if state is not None and state[0] == os.getpid() else None

    def discard(self) -> T | None:
        """Forget the value, so that the next use builds a new one; this process's value is
        returned (for the caller to close), another process's is kept untouched."""
        with _lock:
            state, self._state = self._state, None
        if state is None:
            return None
        if state[0] != os.getpid():
            _inherited.append(state[1])
            return None
        return state[1]
