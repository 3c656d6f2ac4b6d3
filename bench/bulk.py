"""Benchmark: bulk operations and LocalFS's file-object copies against the raw SDK, in one run.

Run from the repository root: ``.venv/bin/python bench/bulk.py [--repeat 5] [--files 500]``.
It starts its own SeaweedFS and Azurite (the test harness) and measures, interleaved (the raw
and the keg_storage run of a workload alternate, the order flipping every round, so that load
from elsewhere on the machine hits both alike):

- ``delete_many`` of 500 files against the SDK's batch call (boto3 ``delete_objects``, Azure
  ``delete_blobs``);
- ``upload_many`` of 500 x 4 KiB with 8 jobs against the SDK uploading them one after the
  other (boto3 ``put_object``, Azure ``upload_blob``), and, for S3, the SDK itself with 8
  threads against the same: the most the server gives to parallel requests on this machine;
- LocalFS ``upload``/``download`` of an open file object against ``shutil.copyfile`` at 64 and
  256 MiB, each writing a new file (dirty pages flushed with ``sync`` before each), and
  replacing one, as bench/compare.py does;
- the floors of LocalFS's atomic publish, measured without keg_storage: ``copyfile`` to a temp
  file then ``os.replace`` over the target, and a temp file + rename loop for 500 x 4 KiB,
  against writing in place (the "keg s" column of a ``floor:`` row is that raw loop).

Prints the median seconds of each side, the spread (min-max) and the ratio raw/keg_storage:
above 1.0x, keg_storage is faster. Not a test: nothing is asserted.

The workloads are plain functions taking a backend or a raw client (and what to work on), for
``bench/compare.py`` to call.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this directory comes first on sys.path, and bench/azure.py would shadow the
# Azure SDK's ``azure`` package: the repository root goes there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from keg_storage import AzureStorage, LocalFSStorage, S3Storage, StorageBackend  # noqa: E402

MIB = 1024 * 1024
S3_BATCH = 1000
AZURE_BATCH = 256

Pairs = Sequence[tuple[Path, str]]

# -- workloads: keg_storage -------------------------------------------------------------------


def keg_delete_many(backend: StorageBackend, keys: Sequence[str]) -> None:
    """``delete_many`` of ``keys``; every one must be deleted."""
    failed = [result for result in backend.delete_many(keys) if not result.ok]
    if failed:
        raise RuntimeError(f"delete_many failed: {failed[:3]}")


def keg_upload_many(backend: StorageBackend, pairs: Pairs, jobs: int = 8) -> None:
    """``upload_many`` of ``(local file, key)`` pairs with ``jobs`` in parallel."""
    failed = [r for r in backend.upload_many(pairs, max_concurrency=jobs) if not r.ok]
    if failed:
        raise RuntimeError(f"upload_many failed: {failed[:3]}")


def keg_upload_file_object(backend: StorageBackend, local: Path, key: str) -> None:
    """``upload`` of an open local file."""
    with local.open("rb") as file:
        backend.upload(file, key)


def keg_download_file_object(backend: StorageBackend, key: str, local: Path) -> None:
    """``download`` into an open local file."""
    with local.open("wb") as file:
        backend.download(key, file)


# -- workloads: the raw SDKs ------------------------------------------------------------------


def s3_delete_objects(client: Any, bucket: str, keys: Sequence[str]) -> None:
    """boto3 ``delete_objects``, 1,000 keys a request (the documented batch delete)."""
    for start in range(0, len(keys), S3_BATCH):
        objects = [{"Key": key} for key in keys[start : start + S3_BATCH]]
        client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def s3_put_each(client: Any, bucket: str, pairs: Pairs) -> None:
    """boto3 ``put_object`` of each file, one after the other."""
    for local, key in pairs:
        with local.open("rb") as body:
            client.put_object(Bucket=bucket, Key=key, Body=body)


def s3_put_parallel(client: Any, bucket: str, pairs: Pairs, jobs: int = 8) -> None:
    """boto3 ``put_object`` of each file, ``jobs`` at a time: what the server allows at best."""
    with ThreadPoolExecutor(jobs) as executor:
        list(executor.map(lambda pair: s3_put_each(client, bucket, [pair]), pairs))


def azure_delete_blobs(container: Any, keys: Sequence[str]) -> None:
    """Azure ``delete_blobs``, 256 blobs a batch (the service's limit)."""
    for start in range(0, len(keys), AZURE_BATCH):
        container.delete_blobs(*keys[start : start + AZURE_BATCH])


def azure_upload_each(container: Any, pairs: Pairs) -> None:
    """Azure ``upload_blob`` of each file, one after the other."""
    for local, key in pairs:
        with local.open("rb") as body:
            container.upload_blob(key, body, overwrite=True)


def copyfile(source: Path, target: Path) -> None:
    """``shutil.copyfile``: the kernel's copy, as ``cp`` does."""
    shutil.copyfile(source, target)


# -- measuring --------------------------------------------------------------------------------


def timed(action: Callable[[], None], before: Callable[[], None] = lambda: None) -> float:
    before()
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def interleaved(
    raw: Callable[[], float], keg: Callable[[], float], repeat: int
) -> tuple[list[float], list[float]]:
    """Seconds of ``repeat`` runs of each, alternating which goes first."""
    raw_times, keg_times = [], []
    for round_number in range(repeat):
        if round_number % 2:
            keg_times.append(keg())
            raw_times.append(raw())
        else:
            raw_times.append(raw())
            keg_times.append(keg())
    return raw_times, keg_times


def small_files(directory: Path, count: int, size: int = 4096) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for number in range(count):
        local = directory / f"small-{number:04}.bin"
        local.write_bytes(os.urandom(size))
        files.append(local)
    return files


def object_store_rows(
    name: str,
    backend: StorageBackend,
    raw_delete: Callable[[Sequence[str]], None],
    raw_upload: Callable[[Pairs], None],
    files: list[Path],
    repeat: int,
) -> list[tuple[str, list[float], list[float]]]:
    """The delete and small-upload workloads of one object store; each delete is timed on
    files seeded (untimed) by the raw SDK."""

    def pairs() -> list[tuple[Path, str]]:
        prefix = uuid.uuid4().hex
        return [(local, f"{prefix}/{local.name}") for local in files]

    def delete_run(delete: Callable[[Sequence[str]], None]) -> float:
        seeded = pairs()
        raw_upload(seeded)
        return timed(lambda: delete([key for _, key in seeded]))

    def upload_run(upload: Callable[[Pairs], None]) -> float:
        batch = pairs()
        seconds = timed(lambda: upload(batch))
        raw_delete([key for _, key in batch])
        return seconds

    deletes = interleaved(
        lambda: delete_run(raw_delete),
        lambda: delete_run(lambda keys: keg_delete_many(backend, keys)),
        repeat,
    )
    uploads = interleaved(
        lambda: upload_run(raw_upload),
        lambda: upload_run(lambda batch: keg_upload_many(backend, batch)),
        repeat,
    )
    count = len(files)
    return [
        (f"{name} delete_many {count} vs batch call", *deletes),
        (f"{name} upload_many {count} x 4 KiB, 8 jobs vs sequential", *uploads),
    ]


def localfs_rows(
    workdir: Path, sizes: list[int], repeat: int
) -> list[tuple[str, list[float], list[float]]]:
    """LocalFS upload/download of a file object against ``shutil.copyfile``."""
    root = workdir / "localfs"
    root.mkdir()
    backend = LocalFSStorage(root)
    rows = []
    for size in sizes:
        source = workdir / f"source-{size}.bin"
        with source.open("wb") as out:
            for _ in range(size // MIB):
                out.write(os.urandom(MIB))
        rows += localfs_size_rows(backend, source, workdir / "copy.bin", repeat)
        source.unlink()
    return rows


def localfs_size_rows(
    backend: LocalFSStorage, source: Path, target: Path, repeat: int
) -> list[tuple[str, list[float], list[float]]]:
    """Each run writes a new file (its previous version removed and everything flushed first,
    untimed): replacing a file costs ext4 a writeback at the rename or truncation, on both
    sides, which is noise here."""
    mib = source.stat().st_size // MIB
    stored = backend.root / "stored.bin"
    backend.put(source, "stored.bin")

    def fresh(*paths: Path) -> Callable[[], None]:
        def before() -> None:
            for path in paths:
                path.unlink(missing_ok=True)
            os.sync()

        return before

    uploaded = backend.root / "up.bin"
    upload = interleaved(
        lambda: timed(lambda: copyfile(source, target), fresh(target)),
        lambda: timed(lambda: keg_upload_file_object(backend, source, "up.bin"), fresh(uploaded)),
        repeat,
    )
    download = interleaved(
        lambda: timed(lambda: copyfile(stored, target), fresh(target)),
        lambda: timed(
            lambda: keg_download_file_object(backend, "stored.bin", target), fresh(target)
        ),
        repeat,
    )
    # Replacing a file, as bench/compare.py does run after run: the "keg" side of the floor row
    # is no keg_storage call but the least an atomic publish costs (copyfile to a temp file,
    # then rename over the target), against copyfile writing the target in place.
    replaced = [backend.root / name for name in ("in-place.bin", "atomic.bin", "keg.bin")]
    floor = interleaved(
        lambda: timed(lambda: copyfile(source, replaced[0]), os.sync),
        lambda: timed(lambda: copy_then_rename(source, replaced[1]), os.sync),
        repeat,
    )
    replace = interleaved(
        lambda: timed(lambda: copyfile(source, replaced[0]), os.sync),
        lambda: timed(lambda: keg_upload_file_object(backend, source, "keg.bin"), os.sync),
        repeat,
    )
    return [
        (f"LocalFS upload(file) {mib} MiB vs copyfile", *upload),
        (f"LocalFS download(file) {mib} MiB vs copyfile", *download),
        (f"LocalFS upload(file) {mib} MiB replacing, vs copyfile", *replace),
        (f"floor: copyfile+rename {mib} MiB vs copyfile", *floor),
    ]


def copy_then_rename(source: Path, target: Path) -> None:
    """The atomic publish alone: ``shutil.copyfile`` to a temp file beside ``target``, then
    ``os.replace`` over it (what LocalFS does, without keg_storage)."""
    temp = target.with_name(f".{uuid.uuid4().hex}.tmp")
    shutil.copyfile(source, temp)
    os.replace(temp, target)


def localfs_small_rows(
    workdir: Path, files: list[Path], repeat: int
) -> list[tuple[str, list[float], list[float]]]:
    """500 x 4 KiB written one after the other: ``upload`` of each (its bytes in memory), and
    the floor of an atomic publish (a raw temp file + rename loop), against plain ``open``
    writes in place."""
    (workdir / "localfs-small").mkdir()
    backend = LocalFSStorage(workdir / "localfs-small")
    contents = [(local.name, local.read_bytes()) for local in files]

    def target(side: str) -> Path:
        directory = backend.root / f"{side}-{uuid.uuid4().hex}"
        directory.mkdir()
        return directory

    def in_place() -> float:
        directory = target("raw")
        return timed(lambda: [(directory / name).write_bytes(data) for name, data in contents])

    def temp_then_rename() -> float:
        directory = target("floor")

        def run() -> None:
            for name, data in contents:
                temp = directory / f".{name}.tmp"
                temp.write_bytes(data)
                os.replace(temp, directory / name)

        return timed(run)

    def keg_uploads() -> float:
        prefix = target("keg").name
        return timed(
            lambda: [
                backend.upload(io.BytesIO(data), f"{prefix}/{name}") for name, data in contents
            ]
        )

    count = len(files)
    uploads = interleaved(in_place, keg_uploads, repeat)
    floor = interleaved(in_place, temp_then_rename, repeat)
    return [
        (f"LocalFS upload {count} x 4 KiB vs open().write", *uploads),
        (f"floor: temp+rename {count} x 4 KiB vs open().write", *floor),
    ]


def print_table(rows: list[tuple[str, list[float], list[float]]], repeat: int) -> None:
    print(
        f"\nmedians of {repeat} interleaved runs; ratio = raw / keg_storage (above 1.0x: faster)\n"
    )
    header = f"| {'workload':<46} | {'raw s':>17} | {'keg s':>17} | {'ratio':>6} |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for name, raw, keg in rows:
        spread = [f"{statistics.median(t):.3f} ({min(t):.3f}-{max(t):.3f})" for t in (raw, keg)]
        ratio = statistics.median(raw) / statistics.median(keg)
        print(f"| {name:<46} | {spread[0]:>17} | {spread[1]:>17} | {ratio:>5.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--sizes-mib", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--only", choices=["s3", "azure", "localfs"], nargs="*")
    args = parser.parse_args()
    only = set(args.only or ["s3", "azure", "localfs"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="keg-bench-bulk-") as tmp:
        workdir = Path(tmp)
        files = small_files(workdir / "small", args.files)
        if "s3" in only:
            rows += s3_rows(workdir, files, args.repeat)
        if "azure" in only:
            rows += azure_rows(workdir, files, args.repeat)
        if "localfs" in only:
            rows += localfs_small_rows(workdir, files, args.repeat)
            rows += localfs_rows(workdir, [size * MIB for size in args.sizes_mib], args.repeat)
    print_table(rows, args.repeat)


def s3_rows(
    workdir: Path, files: list[Path], repeat: int
) -> list[tuple[str, list[float], list[float]]]:
    from tests.fixtures.backend_s3 import raw_client
    from tests.servers.seaweedfs import running_seaweedfs

    with running_seaweedfs() as server:
        client = raw_client(server)
        bucket = "keg-bench-bulk"
        client.create_bucket(Bucket=bucket)
        backend = S3Storage(
            bucket,
            server.region,
            server.access_key,
            server.secret_key,
            endpoint_url=server.endpoint_url,
        )
        with backend:
            rows = object_store_rows(
                "S3",
                backend,
                lambda keys: s3_delete_objects(client, bucket, keys),
                lambda pairs: s3_put_each(client, bucket, pairs),
                files,
                repeat,
            )
            pairs = [(local, f"ceiling/{local.name}") for local in files]
            ceiling = interleaved(
                lambda: timed(lambda: s3_put_each(client, bucket, pairs)),
                lambda: timed(lambda: s3_put_parallel(client, bucket, pairs)),
                repeat,
            )
            return [*rows, ("S3 raw put_object, 8 threads vs sequential", *ceiling)]


def azure_rows(
    workdir: Path, files: list[Path], repeat: int
) -> list[tuple[str, list[float], list[float]]]:
    from azure.storage.blob import BlobServiceClient

    from tests.servers.azurite import run_azurite

    with run_azurite(workdir / "azurite") as server:
        credential = {"account_name": server.account, "account_key": server.key}
        service = BlobServiceClient(server.account_url, credential=credential)
        container = service.create_container("bench-bulk")
        backend = AzureStorage(
            server.account, server.key, "bench-bulk", account_url=server.account_url
        )
        with backend, service:
            return object_store_rows(
                "Azure",
                backend,
                lambda keys: azure_delete_blobs(container, keys),
                lambda pairs: azure_upload_each(container, pairs),
                files,
                repeat,
            )


if __name__ == "__main__":
    main()
