"""``keg_storage.sync`` against ``rclone sync``, side by side, on this project's loopback servers.

Starts SeaweedFS (S3), Azurite and sshd (the test harness's servers in tests/servers), writes a
local tree, then for each pair (local → S3, local → Azure, local → SFTP, S3 → SFTP) and each tree
(``--small`` files of 4 KiB; ``--large`` files of 64 MiB) runs both tools ``--runs`` times,
interleaved, each run into a fresh empty destination, with the same parallelism (``--jobs``; for
rclone ``--transfers N --checkers N``). rclone is configured for the same servers through
``RCLONE_CONFIG_<NAME>_<OPTION>`` environment variables (Debian's ``rclone`` package). Also
times a second sync, which copies nothing (``resync``). Prints medians, spreads and ratios
(rclone's time / keg's: above 1.0x keg is faster).

    .venv/bin/python bench/sync.py [--small 2000] [--large 4] [--runs 3] [--jobs 8]

bench/compare.py calls :func:`sync_workload` and :func:`rclone_workload` with its own stores.
Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, bench/ comes first on sys.path, where bench/azure.py would hide the SDK.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path.insert(0, str(ROOT))

from keg_storage import LocalFSStorage, StorageBackend, sync  # noqa: E402
from keg_storage.backends.azure import AzureStorage  # noqa: E402
from keg_storage.backends.s3 import S3Storage  # noqa: E402
from keg_storage.backends.sftp import SFTPStorage  # noqa: E402
from tests.servers.azurite import Azurite, run_azurite  # noqa: E402
from tests.servers.seaweedfs import SeaweedFS, running_seaweedfs  # noqa: E402
from tests.servers.sshd import SSHServer  # noqa: E402

MiB = 1024 * 1024
SMALL_SIZE = 4096


def make_tree(root: Path, count: int, size: int) -> None:
    """``count`` files of ``size`` random bytes under ``root``, 100 per directory."""
    for index in range(count):
        path = root / f"d{index // 100:03d}" / f"f{index:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))


def sync_workload(src: StorageBackend, dst: StorageBackend, files: int, *, jobs: int = 8) -> float:
    """Seconds ``keg_storage.sync(src, dst, jobs=jobs)`` takes; it must copy ``files`` files
    (0 for a second sync) and fail none."""
    start = time.perf_counter()
    result = sync(src, dst, jobs=jobs)
    seconds = time.perf_counter() - start
    if result.failures or result.copied != files:
        raise RuntimeError(f"keg sync copied {result.copied} of {files}: {result.failures[:3]}")
    return seconds


def rclone_workload(src: str, dst: str, env: dict[str, str], *, jobs: int = 8) -> float:
    """Seconds ``rclone sync SRC DST --transfers N --checkers N`` takes (remotes configured
    by ``env``, see :func:`rclone_env`)."""
    command = ["rclone", "sync", "-q", src, dst, "--transfers", str(jobs), "--checkers", str(jobs)]
    # rclone's S3 client refuses a custom CA bundle on its HTTP transport (plain HTTP here).
    environment = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    start = time.perf_counter()
    subprocess.run(command, env={**environment, **env}, check=True)
    return time.perf_counter() - start


def rclone_env(seaweedfs: SeaweedFS, azurite: Azurite, sshd: SSHServer) -> dict[str, str]:
    """Remotes ``s3:`` and ``sf:`` on the servers, as environment variables.

    None for Azurite: Debian's rclone 1.60 cannot reach it. Its ``endpoint`` becomes
    ``https://ACCOUNT.ENDPOINT``, ``use_emulator`` sends requests without a scheme, and a
    container ``sas_url`` crashes it (nil pointer in ``StageBlock``); so local → Azure is timed
    for keg only."""
    return {
        "RCLONE_CONFIG_S3_TYPE": "s3",
        "RCLONE_CONFIG_S3_PROVIDER": "Other",
        "RCLONE_CONFIG_S3_ENDPOINT": seaweedfs.endpoint_url,
        "RCLONE_CONFIG_S3_ACCESS_KEY_ID": seaweedfs.access_key,
        "RCLONE_CONFIG_S3_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "RCLONE_CONFIG_S3_REGION": seaweedfs.region,
        "RCLONE_CONFIG_SF_TYPE": "sftp",
        "RCLONE_CONFIG_SF_HOST": "127.0.0.1",
        "RCLONE_CONFIG_SF_PORT": str(sshd.port),
        "RCLONE_CONFIG_SF_USER": "root",
        "RCLONE_CONFIG_SF_KEY_FILE": str(sshd.client_key),
        "RCLONE_CONFIG_SF_KNOWN_HOSTS_FILE": str(sshd.known_hosts),
        "RCLONE_CONFIG_SF_SHELL_TYPE": "none",
    }


@dataclass
class Servers:
    seaweedfs: SeaweedFS
    azurite: Azurite
    sshd: SSHServer

    def s3(self, bucket: str) -> S3Storage:
        server = self.seaweedfs
        return S3Storage(
            bucket,
            server.region,
            server.access_key,
            server.secret_key,
            endpoint_url=server.endpoint_url,
        )

    def azure(self, container: str) -> AzureStorage:
        server = self.azurite
        return AzureStorage(server.account, server.key, container, account_url=server.account_url)

    def sftp(self, directory: str) -> SFTPStorage:
        server = self.sshd
        return SFTPStorage(
            "127.0.0.1",
            "root",
            str(server.client_key),
            str(server.known_hosts),
            port=server.port,
            base_path=directory,
        )


@dataclass
class Target:
    """A fresh, empty destination: the keg backend and rclone's name for the same place."""

    storage: StorageBackend
    remote: str


def new_target(servers: Servers, kind: str) -> Target:
    """A new bucket, container or directory, empty."""
    name = f"sync-{uuid.uuid4().hex[:16]}"
    if kind == "s3":
        servers.s3(name).client.create_bucket(Bucket=name)
        return Target(servers.s3(name), f"s3:{name}")
    if kind == "azure":
        storage = servers.azure(name)
        storage._container().create_container()
        return Target(storage, f"az:{name}")
    directory = servers.sshd.data_dir / name
    directory.mkdir(parents=True)
    return Target(servers.sftp(str(directory)), f"sf:{directory}")


@contextlib.contextmanager
def running_servers(workdir: Path) -> Iterator[Servers]:
    sshd = SSHServer(workdir / "sshd")
    sshd.start()
    try:
        with running_seaweedfs() as seaweedfs, run_azurite(workdir / "azurite") as azurite:
            yield Servers(seaweedfs, azurite, sshd)
    finally:
        sshd.stop()


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):7.2f} s ({min(values):.2f}-{max(values):.2f})"


def compare_pair(
    label: str,
    runs: int,
    keg: Callable[[Target], float],
    rclone: Callable[[Target], float] | None,
    make: Callable[[], Target],
) -> None:
    """Run keg and rclone (None: keg only) ``runs`` times each, interleaved, into fresh targets;
    print both medians and the ratio, and the time of a second sync (nothing to copy)."""
    times: dict[str, list[float]] = {"keg": [], "rclone": [], "keg again": [], "rclone again": []}
    for _ in range(runs):
        target = make()
        times["keg"].append(keg(target))
        times["keg again"].append(keg(Target(target.storage, "")))
        target.storage.close()
        if rclone is not None:
            target = make()
            times["rclone"].append(rclone(target))
            times["rclone again"].append(rclone(target))
            target.storage.close()
    line = f"{label:30} keg {spread(times['keg'])}"
    again = f"resync keg {statistics.median(times['keg again']):5.2f} s"
    if rclone is not None:
        ratio = statistics.median(times["rclone"]) / statistics.median(times["keg"])
        line += f"  rclone {spread(times['rclone'])}  {ratio:5.2f}x"
        ratio = statistics.median(times["rclone again"]) / statistics.median(times["keg again"])
        again += f" rclone {statistics.median(times['rclone again']):5.2f} s {ratio:5.2f}x"
    else:
        line += f"  rclone {'n/a (see rclone_env)':>27}      "
    print(f"{line}   {again}", flush=True)


def run(args: argparse.Namespace, servers: Servers, work: Path) -> None:
    env = rclone_env(servers.seaweedfs, servers.azurite, servers.sshd)
    trees = {"small": (args.small, SMALL_SIZE), "large": (args.large, 64 * MiB)}
    for tree, (count, size) in trees.items():
        if not count:
            continue
        local = work / tree
        make_tree(local, count, size)
        source = LocalFSStorage(local)
        for kind in ("s3", "azure", "sftp"):
            if args.only and args.only != f"local,{kind}":
                continue

            def keg(target: Target, count: int = count, source: LocalFSStorage = source) -> float:
                files = count if target.remote else 0
                return sync_workload(source, target.storage, files, jobs=args.jobs)

            def clone(target: Target, local: Path = local) -> float:
                return rclone_workload(str(local), target.remote, env, jobs=args.jobs)

            label = f"local → {kind}, {count} x {size // 1024} KiB"
            make = functools.partial(new_target, servers, kind)
            compare_pair(label, args.runs, keg, None if kind == "azure" else clone, make)
        if args.only and args.only != "s3,sftp":
            continue
        bucket = new_target(servers, "s3")
        sync_workload(source, bucket.storage, count, jobs=args.jobs)

        def keg_s3(target: Target, count: int = count, bucket: Target = bucket) -> float:
            files = count if target.remote else 0
            return sync_workload(bucket.storage, target.storage, files, jobs=args.jobs)

        def clone_s3(target: Target, bucket: Target = bucket) -> float:
            return rclone_workload(bucket.remote, target.remote, env, jobs=args.jobs)

        label = f"s3 → sftp, {count} x {size // 1024} KiB"
        compare_pair(label, args.runs, keg_s3, clone_s3, lambda: new_target(servers, "sftp"))
        shutil.rmtree(local)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=2000, help="small files (4 KiB)")
    parser.add_argument("--large", type=int, default=4, help="large files (64 MiB)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--only", help="run the pairs whose source and target are these (s3,sftp)")
    args = parser.parse_args()
    if shutil.which("rclone") is None:
        sys.exit("rclone is not installed: sudo apt-get install -y rclone")
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        work = Path(tmp)
        with running_servers(work) as servers:
            print(f"sync, {args.runs} runs each, interleaved, --jobs {args.jobs}; ratio = "
                  "rclone time / keg time (> 1.0x: keg faster)", flush=True)  # fmt: skip
            run(args, servers, work)


if __name__ == "__main__":
    main()
