"""Benchmark: what a create-only write costs over a plain one, on S3 (SeaweedFS) and Azure
(Azurite).

Run from the repository root: ``.venv/bin/python bench/conditional.py [--writes 200]``. It starts
both servers (the test harness), then writes ``--writes`` small files in each way of
:data:`WAYS` (``upload`` and ``open``, plain and ``overwrite=False``), the ways taking turns file
by file, and prints per backend and way the median and mean milliseconds of one write and the
HTTP requests one write sent. A create-only write sends the same one request as a plain one,
with ``If-None-Match: *``: the service decides it, so it costs no extra round trip."""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this file's directory comes first on sys.path, where bench/azure.py would
# shadow the SDK's ``azure`` package: the repository root replaces it.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from keg_storage.backends.azure import AzureStorage  # noqa: E402
from keg_storage.backends.base import StorageBackend  # noqa: E402
from keg_storage.backends.s3 import S3Storage  # noqa: E402
from tests.servers.azurite import run_azurite  # noqa: E402
from tests.servers.seaweedfs import running_seaweedfs  # noqa: E402

PAYLOAD = b"x" * 1024


class RequestCount:
    """Counts the HTTP requests a backend sends (botocore's events, azure-core's request hook)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        self.count += 1


@contextmanager
def s3_storage(counter: RequestCount) -> Iterator[StorageBackend]:
    with running_seaweedfs() as server:
        storage = S3Storage(
            "keg-bench-conditional",
            server.region,
            server.access_key,
            server.secret_key,
            endpoint_url=server.endpoint_url,
        )
        storage.client.create_bucket(Bucket=storage.bucket)
        storage.client.meta.events.register("before-send.s3", counter)
        with storage:
            yield storage


class CountedAzureStorage(AzureStorage):
    """AzureStorage whose clients call ``counter`` for every request (azure-core's
    ``raw_request_hook``)."""

    counter = RequestCount()

    def _client_options(self) -> dict[str, Any]:
        return {**super()._client_options(), "raw_request_hook": self.counter}


@contextmanager
def azure_storage(counter: RequestCount) -> Iterator[StorageBackend]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-azurite-") as location,
        run_azurite(Path(location)) as server,
    ):
        CountedAzureStorage.counter = counter
        storage = CountedAzureStorage(
            server.account, server.key, "bench", account_url=server.account_url
        )
        container = storage.clients().container
        assert container is not None
        container.create_container()
        with storage:
            yield storage


WAYS = {
    "upload": lambda storage, path: storage.upload(io.BytesIO(PAYLOAD), path),
    "upload create-only": lambda storage, path: storage.upload(
        io.BytesIO(PAYLOAD), path, overwrite=False
    ),
    "open": lambda storage, path: write_file(storage, path),
    "open create-only": lambda storage, path: write_file(storage, path, overwrite=False),
}
"""Each way of writing, plain and create-only: ``upload`` (on S3 a plain one goes through
boto3's transfer manager, a conditional one through keg_storage's writer) and ``open``."""


def write_file(storage: StorageBackend, path: str, **condition: Any) -> None:
    with storage.open(path, "w", **condition) as file:
        file.write(PAYLOAD)


def run(storage: StorageBackend, counter: RequestCount, writes: int) -> dict[str, Any]:
    """Seconds per write and the requests of one write, per way; the ways take turns, file by
    file, so that all see the same server state."""
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    requests: dict[str, int] = {}
    for number in range(writes):
        for way, write in WAYS.items():
            before = counter.count
            start = time.perf_counter()
            write(storage, f"{way}/{number}")
            seconds[way].append(time.perf_counter() - start)
            requests[way] = counter.count - before
    return {"seconds": seconds, "requests": requests}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    args = parser.parse_args()
    print(f"{args.writes} writes of {len(PAYLOAD)} B each way (new paths)")
    print(f"{'backend':<8}{'way':<20}{'median ms':>10}{'mean ms':>9}{'requests':>10}")
    for name, make in (("s3", s3_storage), ("azure", azure_storage)):
        counter = RequestCount()
        with ExitStack() as stack:
            storage = stack.enter_context(make(counter))
            results = run(storage, counter, args.writes)
        for way in WAYS:
            times = [1000 * seconds for seconds in results["seconds"][way]]
            print(
                f"{name:<8}{way:<20}{statistics.median(times):>10.2f}"
                f"{statistics.mean(times):>9.2f}{results['requests'][way]:>10}"
            )


if __name__ == "__main__":
    main()
