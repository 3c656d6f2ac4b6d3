"""S3 ``upload_many`` of small files and ``sync`` into S3, sent as one batch of direct requests
(S3Storage._put_batch, keg_storage.backends.keep_alive), against the SeaweedFS test server
and through the fault proxy: each file is stored whole or gets its own error, the client takes
what the batch cannot send, and the files' times are kept as a single upload keeps them."""

from __future__ import annotations

import asyncio
import io
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from keg_storage import LocalFSStorage, StorageConnectionError, StoragePermissionError, sync
from keg_storage.backends.bulk import TransferResult
from keg_storage.backends.s3 import S3Storage
from tests.backends.test_s3_direct import PutObjects
from tests.faults.proxy import Direction, FaultProxy
from tests.fixtures.backend_s3 import make_storage
from tests.servers.seaweedfs import SeaweedFS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def local_files(directory: Path, count: int) -> dict[Path, bytes]:
    files = {}
    for number in range(count):
        path = directory / f"f{number:03}.bin"
        path.write_bytes(os.urandom(1000 + number))
        files[path] = path.read_bytes()
    return files


def stored(client: S3Client, bucket: str, key: str) -> bytes:
    return client.get_object(Bucket=bucket, Key=key)["Body"].read()


def test_small_files_go_as_one_batch_of_direct_requests(
    s3_proxied: tuple[S3Storage, FaultProxy], s3_client: S3Client, tmp_path: Path
) -> None:
    """8 jobs: the files' PUTs go 8 at a time on 8 connections, none through the client; every
    file is stored whole, the progress reaches the total."""
    storage, proxy = s3_proxied
    files = local_files(tmp_path, 120)
    puts = PutObjects(storage.client)
    progress: list[int] = []
    pairs = [(local, f"batch/{local.name}") for local in files]
    results = storage.upload_many(pairs, max_concurrency=8, progress=progress.append)
    assert results == [TransferResult(str(local), key, len(files[local])) for local, key in pairs]
    assert puts.keys == []
    assert proxy.stats.connections == 8
    assert progress == sorted(progress) and progress[-1] == sum(map(len, files.values()))
    for local, key in pairs:
        assert stored(s3_client, storage.bucket, key) == files[local]


def test_a_file_that_cannot_be_read_fails_alone(
    backend_s3: S3Storage, s3_client: S3Client, tmp_path: Path
) -> None:
    """A local file removed after the batch was planned (here by the progress callback, once
    the first file is stored) gets its error, naming it; the others are stored."""
    files = local_files(tmp_path, 30)
    gone = tmp_path / "f017.bin"

    def remove_one(total: int) -> None:
        gone.unlink(missing_ok=True)

    pairs = [(local, f"alone/{local.name}") for local in files]
    results = backend_s3.upload_many(pairs, max_concurrency=4, progress=remove_one)
    failed = [result for result in results if not result.ok]
    assert [result.source for result in failed] == [str(gone)]
    assert isinstance(failed[0].error, FileNotFoundError)
    assert str(gone) in str(failed[0].error)
    for local, key in pairs:
        if local != gone:
            assert stored(s3_client, backend_s3.bucket, key) == files[local]
    assert "Contents" not in s3_client.list_objects_v2(
        Bucket=backend_s3.bucket, Prefix="alone/f017"
    )


@pytest.mark.parametrize(
    ("direction", "cut", "through_client"), [("upstream", 3_000, {0, 1}), ("downstream", 20, {1})]
)
def test_a_connection_cut_in_a_batch_loses_no_file(
    s3_proxied: tuple[S3Storage, FaultProxy],
    s3_client: S3Client,
    tmp_path: Path,
    direction: Direction,
    cut: int,
    through_client: set[int],
) -> None:
    """Cut in a request (the second of some connection: sent again on a new connection; the
    first: through the client) or in the first answer (sent again through the client, whose
    retries apply): every file is stored whole."""
    storage, proxy = s3_proxied
    files = local_files(tmp_path, 60)
    puts = PutObjects(storage.client)
    proxy.cut_after(cut, direction)
    pairs = [(local, f"cut/{local.name}") for local in files]
    results = storage.upload_many(pairs, max_concurrency=4)
    assert not proxy.armed
    assert [result.error for result in results] == [None] * len(pairs)
    assert len(puts.keys) in through_client
    for local, key in pairs:
        assert stored(s3_client, storage.bucket, key) == files[local]


def test_a_refused_batch_gives_each_file_the_clients_error(
    seaweedfs: SeaweedFS, s3_bucket: str, tmp_path: Path
) -> None:
    files = local_files(tmp_path, 12)
    with make_storage(seaweedfs, s3_bucket, "not-the-secret", max_attempts=1) as storage:
        pairs = [(local, f"refused/{local.name}") for local in files]
        results = storage.upload_many(pairs, max_concurrency=8)
    for result, (_, key) in zip(results, pairs, strict=True):
        assert isinstance(result.error, StoragePermissionError)
        assert result.error.path == key and result.bytes == 0
        assert "not-the-secret" not in str(result.error)


def test_a_batch_from_a_thread_that_runs_an_event_loop(
    backend_s3: S3Storage, s3_client: S3Client, tmp_path: Path
) -> None:
    """Called from a coroutine (the thread runs an event loop, asyncio.run cannot start
    another): the batch sends its files one after the other instead."""
    files = local_files(tmp_path, 10)
    pairs = [(local, f"loop/{local.name}") for local in files]

    async def upload() -> list[TransferResult]:
        return backend_s3.upload_many(pairs, max_concurrency=8)

    results = asyncio.run(upload())
    assert [result.error for result in results] == [None] * len(pairs)
    for local, key in pairs:
        assert stored(s3_client, backend_s3.bucket, key) == files[local]


class Stop(Exception):
    """What the progress callback raises."""


def stop(total: int) -> None:
    """A progress callback that raises once more than 10,000 bytes went."""
    if total > 10_000:
        raise Stop


def test_a_progress_callback_that_raises_stops_the_batch(
    backend_s3: S3Storage, s3_client: S3Client, tmp_path: Path
) -> None:
    """Its exception propagates once the batch stopped; the files stored are whole."""
    files = local_files(tmp_path, 100)

    pairs = [(local, f"stop/{local.name}") for local in files]
    with pytest.raises(Stop):
        backend_s3.upload_many(pairs, max_concurrency=8, progress=stop)
    listed = s3_client.list_objects_v2(Bucket=backend_s3.bucket, Prefix="stop/")
    kept = [entry["Key"] for entry in listed.get("Contents", [])]
    assert 10 <= len(kept) < 30
    for key in kept:
        assert stored(s3_client, backend_s3.bucket, key) == files[tmp_path / key[5:]]


def test_a_sync_into_s3_keeps_times_as_a_single_upload_does(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    """The batch stores the source's time as the metadata ``mtime`` to the microsecond, as
    ``upload_keeping_mtime`` does; a second sync copies nothing."""
    source = tmp_path / "source"
    source.mkdir()
    files = local_files(source, 40)
    for number, local in enumerate(files):
        moment = 1_700_000_000 + number + 0.25
        os.utime(local, (moment, moment))
    with make_storage(seaweedfs, s3_bucket) as storage:
        result = sync(LocalFSStorage(source), storage, path="", jobs=4)
        assert result.ok and result.copied == len(files)
        for number, local in enumerate(files):
            head = s3_client.head_object(Bucket=s3_bucket, Key=local.name)
            assert head["Metadata"] == {"mtime": f"{1_700_000_000 + number}.250000"}
            assert stored(s3_client, s3_bucket, local.name) == files[local]
        single = io.BytesIO(b"x")
        storage.upload_keeping_mtime(single, "single.bin", 1_700_000_000.25)
        assert s3_client.head_object(Bucket=s3_bucket, Key="single.bin")["Metadata"] == {
            "mtime": "1700000000.250000"
        }
        assert sync(LocalFSStorage(source), storage).copied == 0


def test_a_stalled_answer_in_a_batch_times_out_and_goes_through_the_client(
    s3_proxied: tuple[S3Storage, FaultProxy], s3_client: S3Client, tmp_path: Path
) -> None:
    """The server holds one answer longer than ``read_timeout`` (5 s): that request is given
    up after the timeout and sent through the client; the others go on meanwhile."""
    storage, proxy = s3_proxied
    files = local_files(tmp_path, 40)
    puts = PutObjects(storage.client)
    proxy.stall_after(1, 8, "downstream")
    pairs = [(local, f"stall/{local.name}") for local in files]
    started = time.monotonic()
    results = storage.upload_many(pairs, max_concurrency=4)
    assert 5 <= time.monotonic() - started < 12
    assert [result.error for result in results] == [None] * len(pairs)
    assert len(puts.keys) == 1
    for local, key in pairs:
        assert stored(s3_client, storage.bucket, key) == files[local]


def test_a_server_that_refuses_connections_gives_each_file_its_error(
    s3_proxied: tuple[S3Storage, FaultProxy], tmp_path: Path
) -> None:
    storage, proxy = s3_proxied
    proxy.refuse_new = True
    files = local_files(tmp_path, 6)
    pairs = [(local, f"dead/{local.name}") for local in files]
    results = storage.upload_many(pairs, max_concurrency=4)
    for result, (_, key) in zip(results, pairs, strict=True):
        assert isinstance(result.error, StorageConnectionError)
        assert result.error.path == key and result.bytes == 0


def test_without_direct_requests_a_batch_still_runs_max_concurrency_at_once(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    """``direct_requests=False`` (or a proxy): the batch's files go through the client, 8 at
    once on 8 threads, as before batches, not one after the other."""
    files = local_files(tmp_path, 64)
    with FaultProxy("127.0.0.1", seaweedfs.ports["s3.port"]) as proxy:
        proxy.latency = 0.005  # each request long enough for the threads to overlap
        with S3Storage(
            s3_bucket,
            seaweedfs.region,
            seaweedfs.access_key,
            seaweedfs.secret_key,
            endpoint_url=f"http://127.0.0.1:{proxy.port}",
            direct_requests=False,
        ) as storage:
            puts = PutObjects(storage.client)
            progress: list[int] = []
            pairs = [(local, f"threads/{local.name}") for local in files]
            results = storage.upload_many(pairs, max_concurrency=8, progress=progress.append)
        assert proxy.stats.connections == 8
    assert [result.error for result in results] == [None] * len(pairs)
    assert len(puts.keys) == len(pairs)
    assert progress == sorted(progress) and progress[-1] == sum(map(len, files.values()))
    for local, key in pairs:
        assert stored(s3_client, s3_bucket, key) == files[local]


def test_a_progress_callback_that_raises_stops_the_threads_of_a_batch(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    files = local_files(tmp_path, 200)

    pairs = [(local, f"stop/{local.name}") for local in files]
    with (
        make_storage(seaweedfs, s3_bucket, direct_requests=False) as storage,
        pytest.raises(Stop),
    ):
        storage.upload_many(pairs, max_concurrency=8, progress=stop)
    listed = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="stop/")
    kept = [entry["Key"] for entry in listed.get("Contents", [])]
    assert 10 <= len(kept) < 40  # those stored or running when it raised, never the rest
    for key in kept:
        assert stored(s3_client, s3_bucket, key) == files[tmp_path / key[5:]]
