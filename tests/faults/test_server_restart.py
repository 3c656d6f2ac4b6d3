"""The S3 and Azure servers killed (SIGKILL) and restarted in the middle of a transfer.

Each scenario keeps one backend instance across the crash and lets a thread of its own kill the
server once the transfer has moved some bytes, then start it again on the same ports and data.
Whatever happens, a user sees either success, byte-identical, or a typed :class:`StorageError`
(never a raw SDK or socket exception); the key holds the old version or the complete new one,
never a part; a read never returns short data; and the same instance works again afterwards.

Each module gets servers of its own: restarting the session-wide ones would break other tests.
"""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

import pytest
from azure.storage.blob import BlobServiceClient, LinearRetry

from keg_storage import StorageBackend, StorageError
from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.s3 import S3Storage
from tests.fixtures.backend_s3 import empty_bucket, raw_client
from tests.servers.azurite import Azurite, run_azurite
from tests.servers.seaweedfs import SeaweedFS, running_seaweedfs

MiB = 1024 * 1024
SIZE = 20 * MiB + 7
KILL_AFTER = 6 * MiB
# Transfers are paced (a slow source or sink) so that the kill lands in the middle of them.
PACE_BYTES_PER_SECOND = 24 * MiB
# Retry settings: "few" gives up while the server is still down (the error path), "patient"
# retries for longer than a restart takes (the path where the transfer completes).
PATIENCE = {"few": 2, "patient": 10}


@dataclass
class Crashable:
    """A backend instance on a server that the test may kill and restart."""

    storage: StorageBackend
    restart: Callable[[], None]
    read: Callable[[str], bytes | None]
    """The key's content through a new SDK client (None when it does not exist)."""
    leftovers: Callable[[], list[str]]
    """Multipart uploads (S3) or uncommitted blocks (Azure) the server still holds."""
    make_durable: Callable[[], None]
    """Make what the server acknowledged survive a crash (Azurite saves its metadata every
    5 s only, so what it acknowledged less than that before a SIGKILL is lost)."""
    patience: str
    writes_survive: bool
    """Whether writes acknowledged before a SIGKILL survive it (Azurite loses staged blocks
    it had not saved yet, so a patient writer's commit fails there: a typed error)."""

    def must_complete(self, writing: bool) -> bool:
        """A patient instance rides out a restart, unless the server lost what it had
        acknowledged."""
        return self.patience == "patient" and (self.writes_survive or not writing)


@pytest.fixture(scope="module")
def crash_seaweedfs() -> Iterator[SeaweedFS]:
    with running_seaweedfs() as server:
        yield server


@pytest.fixture(scope="module")
def crash_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with run_azurite(tmp_path_factory.mktemp("azurite-crash")) as server:
        yield server


def _s3(request: pytest.FixtureRequest, patience: str) -> Iterator[Crashable]:
    server: SeaweedFS = request.getfixturevalue("crash_seaweedfs")
    bucket = f"keg-crash-{uuid.uuid4().hex[:16]}"
    raw_client(server).create_bucket(Bucket=bucket)

    def read(key: str) -> bytes | None:
        client = raw_client(server)
        try:
            body: bytes = client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except client.exceptions.NoSuchKey:
            return None
        return body

    def leftovers() -> list[str]:
        uploads = raw_client(server).list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [f"multipart upload of {upload['Key']}" for upload in uploads]

    storage = S3Storage(
        bucket,
        server.region,
        server.access_key,
        server.secret_key,
        endpoint_url=server.endpoint_url,
        chunk_size=5 * MiB,
        multipart_threshold=5 * MiB,
        max_concurrency=2,
        max_attempts=PATIENCE[patience],
        connect_timeout=2,
        read_timeout=5,
    )
    with storage:
        yield Crashable(storage, server.restart, read, leftovers, lambda: None, patience, True)
    client = raw_client(server)
    empty_bucket(client, bucket)
    client.delete_bucket(Bucket=bucket)


def _azure(request: pytest.FixtureRequest, patience: str) -> Iterator[Crashable]:
    server: Azurite = request.getfixturevalue("crash_azurite")

    def service() -> BlobServiceClient:
        return BlobServiceClient(
            server.account_url,
            credential={"account_name": server.account, "account_key": server.key},
        )

    name = f"crash-{uuid.uuid4().hex}"
    with service() as client:
        client.create_container(name)

    def read(key: str) -> bytes | None:
        with service() as client:
            blob = client.get_blob_client(name, key)
            return blob.download_blob().readall() if blob.exists() else None

    def leftovers() -> list[str]:
        with service() as client:
            container = client.get_container_client(name)
            return [
                f"uncommitted block {block.id} of {blob.name}"
                for blob in container.list_blobs()
                for block in container.get_blob_client(blob.name).get_block_list("uncommitted")[1]
            ]

    # The SDK types the backoff as int, but it is seconds and takes a float.
    # 10 retries 1 s apart: a window that a loaded machine's Azurite restart fits in.
    retry: dict[str, Any] = {"backoff": 1.0, "random_jitter_range": 0}
    storage = AzureStorage(
        server.account,
        server.key,
        name,
        chunk_size=1 * MiB,
        account_url=server.account_url,
        max_concurrency=2,
        timeout=5,
        retry=LinearRetry(retry_total=PATIENCE[patience], **retry),
    )

    def make_durable() -> None:
        server.restart(graceful=True)

    with storage:
        yield Crashable(storage, server.restart, read, leftovers, make_durable, patience, False)
    with service() as client:
        client.delete_container(name)


@pytest.fixture(
    params=[(name, patience) for name in ("s3", "azure") for patience in PATIENCE],
    ids=lambda param: "-".join(param),
)
def crashable(request: pytest.FixtureRequest) -> Iterator[Crashable]:
    name, patience = request.param
    yield from {"s3": _s3, "azure": _azure}[name](request, patience)


class Crash:
    """Kills and restarts the server from its own thread once ``after`` bytes were reported to
    :meth:`progress` (the transfer's progress callback, or the test's own count)."""

    def __init__(self, restart: Callable[[], None], after: int = KILL_AFTER) -> None:
        self.after = after
        self.reached = threading.Event()
        self.restarted = threading.Event()
        self.error: BaseException | None = None
        self._restart = restart
        self._thread = threading.Thread(target=self._run, name="crash", daemon=True)
        self._thread.start()

    def progress(self, count: int) -> None:
        if count >= self.after:
            self.reached.set()

    def _run(self) -> None:
        if not self.reached.wait(60):
            return
        try:
            self._restart()
        except BaseException as exc:
            self.error = exc
        finally:
            self.restarted.set()

    def join(self) -> None:
        """Wait for the restart (crashing now if the transfer ended first); fails if the server
        did not come back."""
        self.reached.set()
        self._thread.join(60)
        assert self.restarted.is_set(), "the restart did not finish"
        if self.error is not None:
            raise self.error


class Paced(io.RawIOBase):
    """A readable or writable stream that moves at most PACE_BYTES_PER_SECOND."""

    def __init__(self, inner: io.BytesIO) -> None:
        self.inner = inner
        self._started = time.monotonic()
        self._moved = 0

    def _pace(self, count: int) -> None:
        self._moved += count
        delay = self._moved / PACE_BYTES_PER_SECOND - (time.monotonic() - self._started)
        if delay > 0:
            time.sleep(delay)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.inner.read(min(len(buffer), MiB))
        buffer[: len(data)] = data
        self._pace(len(data))
        return len(data)

    def write(self, data: Any) -> int:
        count = self.inner.write(data)
        self._pace(count)
        return count


def sha(data: bytes | None) -> str | None:
    return None if data is None else hashlib.sha256(data).hexdigest()


def put_old_version(crashable: Crashable, key: str) -> bytes:
    old = random.Random(f"old-{key}").randbytes(1000)
    crashable.storage.upload(io.BytesIO(old), key)
    crashable.make_durable()
    return old


def works_again(crashable: Crashable) -> None:
    """The instance that lived through the crash uploads and reads again (its pools recover)."""
    data = random.Random("after").randbytes(6 * MiB + 5)
    crashable.storage.upload(io.BytesIO(data), "after.bin")
    with crashable.storage.open("after.bin") as file:
        assert sha(file.read()) == sha(data)
    assert sha(crashable.read("after.bin")) == sha(data)


def fails(transfer: Callable[[], object]) -> bool:
    """Run ``transfer``; True if it failed with a typed StorageError (printed for the log)."""
    try:
        transfer()
    except StorageError as exc:
        print(f"failed with {exc!r}")
        return True
    print("succeeded")
    return False


def check_write_outcome(
    crashable: Crashable, crash: Crash, failed: bool, old: bytes, new: bytes
) -> None:
    """A write the server died under left the old version if it failed, the new one if it
    succeeded, never a mix; nothing is left behind and the backend works again."""
    assert crash.reached.is_set(), "the transfer ended before the crash"
    assert not (failed and crashable.must_complete(writing=True)), "did not ride out the restart"
    crash.join()
    stored = crashable.read("doc.bin")
    assert sha(stored) in ({sha(old)} if failed else {sha(new)}), "partial or lost object"
    _check_leftovers(crashable, "doc.bin")
    works_again(crashable)


def test_upload_when_the_server_dies(crashable: Crashable) -> None:
    old = put_old_version(crashable, "doc.bin")
    new = random.Random("new").randbytes(SIZE)
    crash = Crash(crashable.restart)
    failed = fails(
        lambda: crashable.storage.upload(
            cast(IO[bytes], Paced(io.BytesIO(new))), "doc.bin", progress_callback=crash.progress
        )
    )
    check_write_outcome(crashable, crash, failed, old, new)


def test_streaming_write_when_the_server_dies(crashable: Crashable) -> None:
    old = put_old_version(crashable, "doc.bin")
    new = random.Random("new").randbytes(SIZE)
    crash = Crash(crashable.restart)

    def stream() -> None:
        with crashable.storage.open("doc.bin", "wb") as file:
            source = Paced(io.BytesIO(new))
            while chunk := source.read(MiB):
                file.write(chunk)
                crash.progress(file.tell())

    check_write_outcome(crashable, crash, fails(stream), old, new)


def _check_leftovers(crashable: Crashable, key: str) -> None:
    """No multipart upload survives a closed S3 writer.

    Azure has no call to drop staged blocks: those a failed writer staged stay uncommitted until
    the service collects them (after a week) or the next Put Block List of the blob discards
    them (Azurite's Put Blob keeps them). The content checks above show that they were never
    committed; here the next block-list write of the key must leave none behind.
    """
    if isinstance(crashable.storage, S3Storage):
        assert crashable.leftovers() == []
        return
    following = random.Random("following").randbytes(2 * MiB + 1)
    crashable.storage.upload(io.BytesIO(following), key)
    assert sha(crashable.read(key)) == sha(following)
    assert crashable.leftovers() == []


def test_download_when_the_server_dies(crashable: Crashable) -> None:
    data = random.Random("download").randbytes(SIZE)
    crashable.storage.upload(io.BytesIO(data), "doc.bin")
    crashable.make_durable()
    crash = Crash(crashable.restart)
    target = io.BytesIO()
    if fails(
        lambda: crashable.storage.download(
            "doc.bin", cast(IO[bytes], Paced(target)), progress_callback=crash.progress
        )
    ):
        assert not crashable.must_complete(writing=False), "did not ride out the restart"
    else:
        assert sha(target.getvalue()) == sha(data), "short or corrupt download"
    assert crash.reached.is_set(), "the transfer ended before the crash"
    crash.join()
    works_again(crashable)


def test_streaming_read_when_the_server_dies(crashable: Crashable) -> None:
    data = random.Random("read").randbytes(SIZE)
    crashable.storage.upload(io.BytesIO(data), "doc.bin")
    crashable.make_durable()
    crash = Crash(crashable.restart)
    received = Paced(io.BytesIO())

    def stream() -> None:
        with crashable.storage.open("doc.bin") as file:
            for chunk in file.iter_chunks(MiB):
                received.write(chunk)
                crash.progress(received.inner.tell())

    if fails(stream):
        assert not crashable.must_complete(writing=False), "did not ride out the restart"
    else:
        assert sha(received.inner.getvalue()) == sha(data), "short or corrupt read"
    assert crash.reached.is_set(), "the read ended before the crash"
    crash.join()
    works_again(crashable)


def test_harness_restart_keeps_data_and_ports(crashable: Crashable) -> None:
    """The restart the scenarios rely on: same address, same stored objects."""
    crashable.storage.upload(io.BytesIO(b"kept"), "kept.txt")
    crashable.make_durable()
    crashable.restart()
    assert crashable.read("kept.txt") == b"kept"
    with crashable.storage.open("kept.txt") as file:
        assert file.read() == b"kept"
