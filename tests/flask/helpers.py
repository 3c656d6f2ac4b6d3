"""Links, tokens and memory sampling for the Flask tests."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import flask

from keg_storage import StorageBackend

PAGE = os.sysconf("SC_PAGE_SIZE")


def link(
    app: flask.Flask,
    backend: StorageBackend,
    path: str,
    operation: str,
    expire: timedelta = timedelta(minutes=5),
    **options: Any,
) -> str:
    """A link of ``backend`` as a path + query the test client can request."""
    with app.test_request_context():
        url = backend.link_to(path, operation, expire, **options)
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class PeakRSS:
    """Samples this process's resident set every few milliseconds; ``growth`` is the peak above
    the level when sampling started."""

    def __init__(self) -> None:
        self.baseline = rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, rss())

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss())

    @property
    def growth(self) -> int:
        return self.peak - self.baseline
