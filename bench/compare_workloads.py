"""The workloads bench/compare.py runs: each a keg_storage function and its raw counterpart,
registered in :data:`WORKLOADS`.

A workload function takes the :class:`~bench.compare_targets.Target` and the :class:`Job` and
returns the seconds of its timed parts (``Clock.parts``); set-up it must not time (seeding the
object to download, making a directory, clearing a sync destination) goes in ``prepare``, which
runs before either side. To register a workload at merge::

    WORKLOADS.append(
        Workload("name", keg_function, raw_function, small_variants, "small")
    )
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.compare_targets import Target, make_target, rclone_sync

MIB = 1024 * 1024
SMALL_SIZE = 4 * 1024
CHUNK = MIB
JOBS = 8
EXISTS_KEY = "bench/exists.bin"
SYNC_ROUTES = (("localfs", "s3"), ("localfs", "azure"), ("localfs", "sftp"), ("s3", "sftp"))


@dataclass(frozen=True)
class Job:
    """One timed run, as the parent describes it to the child (JSON)."""

    backend: str
    workload: str
    side: str  # "keg" or "raw"
    run: int
    size: int = 0  # bytes moved by a transfer workload
    count: int = 0  # files of a small-file or sync workload
    source: str = ""  # a local file (transfers) or directory (small files, sync) to read from
    scratch: str = ""  # a local directory to write into
    dataset: str = ""  # sync: the path synced on both sides ("up/small", "s3/large")
    source_backend: str = ""  # sync: the store synced from

    def key(self, name: str) -> str:
        return f"bench/{self.side}-{name}"


class Clock:
    """The seconds of each named part of a run."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.parts[name] = time.perf_counter() - start


Parts = dict[str, float]
Run = Callable[[Target, Job], Parts]


@dataclass(frozen=True)
class Settings:
    """How big the run is (``--sizes``, ``--quick``) and where its local data lives."""

    work: str
    sizes: tuple[int, ...] = (64 * MIB, 256 * MIB)
    small_count: int = 500
    exists_count: int = 1000
    sync_small_count: int = 2000
    sync_large_count: int = 4
    sync_large_size: int = 64 * MIB

    @property
    def localfs_root(self) -> Path:
        return Path(self.work, "localfs")


# A variant of a workload on one backend: its label and the Job fields that make it.
Variant = tuple[str, dict[str, Any]]


def sized_variants(backend: str, settings: Settings) -> list[Variant]:
    return [
        (f"{size // MIB} MiB" if size >= MIB else f"{size // 1024} KiB",
         {"size": size, "source": str(Path(settings.work, f"source-{size}.bin"))})
        for size in settings.sizes
    ]  # fmt: skip


def small_variants(backend: str, settings: Settings) -> list[Variant]:
    source = str(Path(settings.work, "small"))
    return [(f"{settings.small_count} x 4 KiB", {"count": settings.small_count, "source": source})]


def exists_variants(backend: str, settings: Settings) -> list[Variant]:
    return [(f"{settings.exists_count} calls", {"count": settings.exists_count})]


def sync_variants(backend: str, settings: Settings) -> list[Variant]:
    """Each route into ``backend`` with each data set (many small files, a few large ones)."""
    large = f"{settings.sync_large_count} x {settings.sync_large_size // MIB} MiB"
    sets = [("small", f"{settings.sync_small_count} x 4 KiB"), ("large", large)]
    return [
        (f"{source} -> {backend}, {label}",
         {"source_backend": source,
          "dataset": f"{'up' if source == 'localfs' else source}/{name}",
          "source": str(settings.localfs_root / "up" / name)})
        for source, dest in SYNC_ROUTES if dest == backend
        for name, label in sets
    ]  # fmt: skip


@dataclass(frozen=True)
class Workload:
    """A workload: its keg_storage and raw functions, its variants on a backend, where it runs
    and which kind of raw call it is measured against (a key of ``Target.raw_labels``)."""

    name: str
    keg: Run
    raw: Run | None
    variants: Callable[[str, Settings], list[Variant]]
    raw_kind: str = "upload"
    backends: tuple[str, ...] = ("s3", "azure", "sftp", "localfs", "memory")
    prepare: Callable[[Target, Job], None] | None = None


def timed(func: Callable[[], Any]) -> Parts:
    clock = Clock()
    with clock.part("total"):
        func()
    return clock.parts


# -- large transfers ---------------------------------------------------------------------------
def source_key(job: Job) -> str:
    return f"bench/source-{job.size}.bin"


def seed_source(target: Target, job: Job) -> None:
    """Store the object download and read workloads fetch, once per server (every run on
    memory, whose store lives in the child)."""
    storage = target.keg()
    key = source_key(job)
    if target.name == "memory" or not storage.exists(key) or storage.stat(key).size != job.size:
        with open(job.source, "rb") as f:
            storage.upload(f, key)


def prepare_upload(target: Target, job: Job) -> None:
    """The folder of the uploaded keys, which plain ``open`` needs to exist (LocalFS, SFTP)."""
    target.make_dir(job.key("upload.bin").rpartition("/")[0])


def keg_upload(target: Target, job: Job) -> Parts:
    storage = target.keg()

    def run() -> None:
        with open(job.source, "rb") as f:
            storage.upload(f, job.key("upload.bin"))

    return timed(run)


def raw_upload(target: Target, job: Job) -> Parts:
    return timed(lambda: target.raw_upload(Path(job.source), job.key("upload.bin")))


def keg_download(target: Target, job: Job) -> Parts:
    storage = target.keg()

    def run() -> None:
        with open(Path(job.scratch) / "keg-download.bin", "wb") as f:
            storage.download(source_key(job), f)

    return timed(run)


def raw_download(target: Target, job: Job) -> Parts:
    return timed(lambda: target.raw_download(source_key(job), Path(job.scratch) / "raw.bin"))


def keg_stream_write(target: Target, job: Job) -> Parts:
    storage = target.keg()

    def run() -> None:
        with open(job.source, "rb") as f, storage.open(job.key("stream.bin"), "wb") as out:
            while chunk := f.read(CHUNK):
                out.write(chunk)

    return timed(run)


def keg_stream_read(target: Target, job: Job) -> Parts:
    storage = target.keg()

    def run() -> None:
        target_file = Path(job.scratch) / "keg-stream.bin"
        with storage.open(source_key(job), "rb") as remote, open(target_file, "wb") as f:
            while chunk := remote.read(CHUNK):
                f.write(chunk)

    return timed(run)


# -- small files -------------------------------------------------------------------------------
def small_files(job: Job) -> list[tuple[Path, str]]:
    """The local small files of ``job.source`` and the keys they are stored at in this run."""
    prefix = f"small/{job.side}-{job.run}"
    names = sorted(os.listdir(job.source))[: job.count]
    return [(Path(job.source, name), f"{prefix}/{name}") for name in names]


def prepare_small(target: Target, job: Job) -> None:
    target.clear(f"small/{job.side}-{job.run}")
    target.make_dir(f"small/{job.side}-{job.run}")


def keg_small(target: Target, job: Job) -> Parts:
    """Upload each, list, read each whole with ``download`` (the call that reads a whole file,
    as the raw side's ``get_object().read()``; ``open('rb')`` adds the HEAD that lets a reader
    seek without downloading what it skips, CONTRACT §3), delete with ``delete_many``."""
    storage = target.keg()
    files = [(key, local.read_bytes()) for local, key in small_files(job)]
    clock = Clock()
    with clock.part("upload"):
        for key, data in files:
            storage.upload(io.BytesIO(data), key)
    with clock.part("list"):
        listed = storage.list(f"small/{job.side}-{job.run}")
    with clock.part("download"):
        for key, _ in files:
            storage.download(key, io.BytesIO())
    with clock.part("delete_many"):
        storage.delete_many([key for key, _ in files])
    check_count(listed, files)
    return clock.parts


def raw_small(target: Target, job: Job) -> Parts:
    files = [(key, local.read_bytes()) for local, key in small_files(job)]
    clock = Clock()
    with clock.part("upload"):
        for key, data in files:
            target.raw_put(key, data)
    with clock.part("list"):
        listed = target.raw_list(f"small/{job.side}-{job.run}")
    with clock.part("read"):
        for key, _ in files:
            target.raw_get(key)
    with clock.part("delete"):
        target.raw_delete([key for key, _ in files])
    check_count(listed, files)
    return clock.parts


def check_count(listed: list[Any], files: list[Any]) -> None:
    if len(listed) != len(files):
        raise RuntimeError(f"listed {len(listed)} files, stored {len(files)}")


def keg_exists(target: Target, job: Job) -> Parts:
    storage = target.keg()
    return timed(lambda: [storage.exists(EXISTS_KEY) for _ in range(job.count)])


def raw_exists(target: Target, job: Job) -> Parts:
    return timed(lambda: [target.raw_exists(EXISTS_KEY) for _ in range(job.count)])


def prepare_exists(target: Target, job: Job) -> None:
    target.keg().upload(io.BytesIO(b"x" * SMALL_SIZE), EXISTS_KEY)


# -- bulk --------------------------------------------------------------------------------------
def keg_upload_many(target: Target, job: Job) -> Parts:
    storage = target.keg()
    pairs = [(str(local), key) for local, key in small_files(job)]
    return timed(lambda: storage.upload_many(pairs, max_concurrency=JOBS))


def raw_upload_each(target: Target, job: Job) -> Parts:
    """The sequential raw SDK: one small-body call per file (put_object, not the transfer
    manager, which only adds a thread hand-off for a 4 KiB file), read from disk in the run."""
    pairs = small_files(job)
    return timed(lambda: [target.raw_put(key, local.read_bytes()) for local, key in pairs])


def prepare_download_many(target: Target, job: Job) -> None:
    """Store the small files (untimed, through a raw SDK client of its own, so that neither
    side starts with a connection open) and empty the local directory the run writes into."""
    prepare_small(target, job)
    seeder = make_target(target.name, target.ctx)
    for local, key in small_files(job):
        seeder.raw_put(key, local.read_bytes())
    shutil.rmtree(Path(job.scratch, "many"), ignore_errors=True)
    Path(job.scratch, "many").mkdir()


def keg_download_many(target: Target, job: Job) -> Parts:
    storage = target.keg()
    pairs = [(key, str(Path(job.scratch, "many", local.name))) for local, key in small_files(job)]
    parts = timed(lambda: storage.download_many(pairs, max_concurrency=JOBS))
    stored = len(os.listdir(Path(job.scratch, "many")))
    if stored != len(pairs):
        raise RuntimeError(f"download_many stored {stored} files of {len(pairs)}")
    return parts


def raw_download_each(target: Target, job: Job) -> Parts:
    """The sequential raw SDK: each file read whole (``raw_get``) and written to its local
    file, one after the other."""
    pairs = [(key, Path(job.scratch, "many", local.name)) for local, key in small_files(job)]
    return timed(lambda: [local.write_bytes(target.raw_get(key)) for key, local in pairs])


# -- sync --------------------------------------------------------------------------------------
def source_target(target: Target, job: Job) -> Target:
    return make_target(job.source_backend, target.ctx)


def prepare_sync(target: Target, job: Job) -> None:
    """Empty the destination; on a remote source, store the data set once."""
    target.clear(job.dataset)
    source = source_target(target, job)
    if source.name == "localfs":
        return
    local = Path(job.source)
    wanted = {f"{job.dataset}/{path.relative_to(local)}": path for path in local.rglob("*")}
    have = set(source.raw_list(job.dataset))
    for key, path in wanted.items():
        if path.is_file() and key not in have:
            source.raw_upload(path, key)


def keg_sync(target: Target, job: Job) -> Parts:
    import keg_storage

    sync: Any = keg_storage.sync  # type: ignore[attr-defined]
    sync = getattr(sync, "sync", sync)  # the function, should the package export the module
    src, dst = source_target(target, job).keg(), target.keg()
    parts = timed(lambda: sync(src, dst, path=job.dataset, jobs=JOBS))
    check_synced(target, job)
    return parts


def raw_rclone(target: Target, job: Job) -> Parts:
    source = source_target(target, job)
    env = {**source.rclone_env(), **target.rclone_env()}
    src, dst = source.rclone_remote(job.dataset), target.rclone_remote(job.dataset)
    parts = timed(lambda: rclone_sync(src, dst, env, JOBS))
    check_synced(target, job)
    return parts


def check_synced(target: Target, job: Job) -> None:
    """A sync that copied less than the data set does not count as a run."""
    copied, wanted = len(target.raw_list(job.dataset)), len(os.listdir(job.source))
    if copied != wanted:
        raise RuntimeError(f"{job.dataset}: {copied} files at the destination, {wanted} wanted")


WORKLOADS: list[Workload] = [
    Workload("upload", keg_upload, raw_upload, sized_variants, prepare=prepare_upload),
    Workload(
        "download", keg_download, raw_download, sized_variants, "download", prepare=seed_source
    ),
    Workload("stream write", keg_stream_write, raw_upload, sized_variants, prepare=prepare_upload),
    Workload(
        "stream read",
        keg_stream_read,
        raw_download,
        sized_variants,
        "download",
        prepare=seed_source,
    ),
    Workload("small files", keg_small, raw_small, small_variants, "small", prepare=prepare_small),
    Workload("exists", keg_exists, raw_exists, exists_variants, "exists", prepare=prepare_exists),
    Workload(
        "upload_many",
        keg_upload_many,
        raw_upload_each,
        small_variants,
        "sequential",
        prepare=prepare_small,
    ),
    Workload(
        "download_many",
        keg_download_many,
        raw_download_each,
        small_variants,
        "sequential get",
        backends=("s3", "azure", "sftp", "localfs"),
        prepare=prepare_download_many,
    ),
    Workload(
        "sync",
        keg_sync,
        raw_rclone,
        sync_variants,
        "rclone",
        backends=("s3", "azure", "sftp"),
        prepare=prepare_sync,
    ),
]


def raw_label(workload: Workload, target: Target) -> str:
    """What the raw side of ``workload`` calls on ``target``; empty where it has none."""
    if workload.raw_kind == "rclone":
        return "rclone sync (same --transfers/--checkers)"
    if workload.raw_kind == "sequential":
        put = target.raw_labels.get("put", "")
        return f"sequential {put}, one file after another" if put else ""
    if workload.raw_kind == "sequential get":
        get = target.raw_labels.get("get", "")
        return f"sequential {get} written to a local file, one after another" if get else ""
    return target.raw_labels.get(workload.raw_kind, "")


def make_local_data(settings: Settings) -> None:
    """Write the local files every workload reads: one random file per size, the small files
    and the sync data sets (under the LocalFS root, which is the sync source)."""
    work = Path(settings.work)
    for size in settings.sizes:
        write_random(work / f"source-{size}.bin", size)
    write_small(work / "small", settings.small_count)
    sync_root = settings.localfs_root / "up"
    write_small(sync_root / "small", settings.sync_small_count)
    (sync_root / "large").mkdir(parents=True)
    for number in range(settings.sync_large_count):
        write_random(sync_root / "large" / f"part-{number}.bin", settings.sync_large_size)
    (work / "scratch").mkdir()


def write_random(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for offset in range(0, size, MIB):
            f.write(block[: min(MIB, size - offset)])


def write_small(folder: Path, count: int) -> None:
    folder.mkdir(parents=True)
    for number in range(count):
        (folder / f"f{number:05d}.bin").write_bytes(os.urandom(SMALL_SIZE))


def find(name: str) -> Workload:
    return next(workload for workload in WORKLOADS if workload.name == name)
