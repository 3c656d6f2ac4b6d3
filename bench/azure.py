"""Benchmark: keg_storage's AzureStorage against the raw Azure SDK, on a local Azurite.

Not a test. Starts its own Azurite (the same harness the tests use), then runs every case
``--repeat`` times, round-robin, each run in a fresh child process, and prints per case the
median time, the client's CPU time, the CPU time Azurite spent meanwhile (the emulator is a
single Node.js thread and is usually what limits uploads) and the client's peak RSS; then the
throughput ratios the issue asks for. Run from the repository root::

    .venv/bin/python bench/azure.py                  # 64 and 256 MiB, 500 x 4 KiB, medians of 5
    .venv/bin/python bench/azure.py --rss-mib 1024   # plus the peak-RSS check on a 1 GiB blob

The small-files workload moves ``--small-count`` files of 4 KiB one request each: uploads
against ``upload_blob``, reads against ``download_blob().readall()``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this file's directory comes first on sys.path and this module, named
# ``azure``, would shadow the Azure SDK's ``azure`` package: put the repository root there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.rss import peak_rss_mib  # noqa: E402
from tests.servers.azurite import ACCOUNT, ACCOUNT_KEY, run_azurite  # noqa: E402

MIB = 1024 * 1024
CONTAINER = "bench"
CONCURRENCY = 4
STREAM_CHUNK = MIB


def _sdk_blob(account_url: str, blob: str):  # type: ignore[no-untyped-def]
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        account_url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
    )
    return service.get_blob_client(CONTAINER, blob)


def sdk_upload(account_url: str, blob: str, local: Path) -> None:
    client = _sdk_blob(account_url, blob)
    with local.open("rb") as f:
        client.upload_blob(
            f, length=local.stat().st_size, overwrite=True, max_concurrency=CONCURRENCY
        )


def sdk_download(account_url: str, blob: str, local: Path) -> None:
    client = _sdk_blob(account_url, blob)
    with local.open("wb") as f:
        client.download_blob(max_concurrency=CONCURRENCY).readinto(f)


def _keg(account_url: str):  # type: ignore[no-untyped-def]
    from keg_storage.backends.azure import AzureStorage

    return AzureStorage(
        ACCOUNT, ACCOUNT_KEY, CONTAINER, account_url=account_url, max_concurrency=CONCURRENCY
    )


def keg_upload(account_url: str, blob: str, local: Path) -> None:
    with _keg(account_url) as storage, local.open("rb") as f:
        storage.upload(f, blob)


def keg_download(account_url: str, blob: str, local: Path) -> None:
    with _keg(account_url) as storage, local.open("wb") as f:
        storage.download(blob, f)


def keg_open_write(account_url: str, blob: str, local: Path) -> None:
    """Stream through ``open(path, 'wb')`` in 1 MiB writes, as an application would."""
    with _keg(account_url) as storage, local.open("rb") as f, storage.open(blob, "wb") as remote:
        while chunk := f.read(STREAM_CHUNK):
            remote.write(chunk)


def keg_open_read(account_url: str, blob: str, local: Path) -> None:
    """Stream through ``open(path, 'rb')`` in 1 MiB reads, as an application would."""
    with _keg(account_url) as storage, local.open("wb") as f, storage.open(blob, "rb") as remote:
        while chunk := remote.read(STREAM_CHUNK):
            f.write(chunk)


def _small_files(local: Path) -> list[Path]:
    """The small files of the workload (``local`` is their directory)."""
    return sorted(local.iterdir(), key=lambda path: int(path.stem))


def sdk_upload_small(account_url: str, blob: str, local: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        account_url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
    )
    container = service.get_container_client(CONTAINER)
    for path in _small_files(local):
        with path.open("rb") as f:
            container.upload_blob(f"{blob}/{path.name}", f, overwrite=True)


def keg_upload_small(account_url: str, blob: str, local: Path) -> None:
    with _keg(account_url) as storage:
        for path in _small_files(local):
            with path.open("rb") as f:
                storage.upload(f, f"{blob}/{path.name}")


def sdk_download_small(account_url: str, blob: str, local: Path) -> None:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        account_url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
    )
    container = service.get_container_client(CONTAINER)
    for path in _small_files(local):
        container.download_blob(f"small-source/{path.name}").readall()


def keg_download_small(account_url: str, blob: str, local: Path) -> None:
    with _keg(account_url) as storage:
        for path in _small_files(local):
            storage.download(f"small-source/{path.name}", io.BytesIO())


SMALL_CASES: dict[str, Callable[[str, str, Path], None]] = {
    "sdk upload_blob (small)": sdk_upload_small,
    "keg upload (small)": keg_upload_small,
    "sdk download_blob (small)": sdk_download_small,
    "keg download (small)": keg_download_small,
}
SMALL_COMPARISONS: list[tuple[str, str, float]] = [
    ("keg upload (small)", "sdk upload_blob (small)", 1.0),
    ("keg download (small)", "sdk download_blob (small)", 1.0),
]

CASES: dict[str, Callable[[str, str, Path], None]] = {
    "sdk upload_blob": sdk_upload,
    "keg upload": keg_upload,
    "keg open wb (stream)": keg_open_write,
    "sdk download_blob": sdk_download,
    "keg download": keg_download,
    "keg open rb (stream)": keg_open_read,
}
DOWNLOADS = {sdk_download, keg_download, keg_open_read}
# (case, baseline, required throughput ratio case/baseline)
COMPARISONS: list[tuple[str, str, float]] = [
    ("keg upload", "sdk upload_blob", 1.0),
    ("keg download", "sdk download_blob", 1.0),
    ("keg open wb (stream)", "sdk upload_blob", 0.8),
    ("keg open rb (stream)", "sdk download_blob", 0.8),
]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time a running process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(
    case: str, account_url: str, blob: str, local: Path, server_pid: int
) -> dict[str, float]:
    """Run one case in a fresh interpreter; return its transfer time, client CPU, peak RSS, and
    the CPU the emulator spent meanwhile."""
    server_cpu = process_cpu_seconds(server_pid)
    child = subprocess.run(
        [sys.executable, __file__, "--child", case, account_url, blob, str(local)],
        capture_output=True,
        text=True,
    )
    if child.returncode:
        raise SystemExit(f"{case} failed:\n{child.stderr}")
    result = dict(json.loads(child.stdout.splitlines()[-1]))
    result["server_cpu"] = process_cpu_seconds(server_pid) - server_cpu
    return result


def child_main(case: str, account_url: str, blob: str, local: str) -> None:
    # Every case imports the SDK and keg_storage before the clock starts: the benchmark times
    # transfers, not the interpreter loading modules (about 0.4 s, a third of a transfer).
    import azure.storage.blob  # noqa: F401

    import keg_storage.backends.azure  # noqa: F401

    func = {**CASES, **SMALL_CASES}[case]
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    func(account_url, blob, Path(local))
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    print(json.dumps({"seconds": seconds, "cpu": cpu, "rss_mib": peak_rss_mib()}))


def make_source(path: Path, size: int) -> None:
    with path.open("wb") as f:
        remaining = size
        while remaining:
            n = min(remaining, 16 * MIB)
            f.write(os.urandom(n))
            remaining -= n


def bench(
    account_url: str, server_pid: int, work: Path, size: int, repeat: int
) -> dict[str, dict[str, float]]:
    """Medians of ``repeat`` runs of every case moving ``size`` bytes."""
    source = work / f"source-{size}"
    make_source(source, size)
    # Download cases read a blob the SDK wrote; upload cases write their own blob.
    sdk_upload(account_url, "source", source)
    runs: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
    # Round-robin, so that the emulator's drift (it stores on disk, collects garbage) touches
    # every case alike.
    for _ in range(repeat):
        for case, func in CASES.items():
            download = func in DOWNLOADS
            blob = "source" if download else f"up-{case.split()[0]}"
            local = work / "sink" if download else source
            runs[case].append(run_child(case, account_url, blob, local, server_pid))
            if download and local.stat().st_size != size:
                raise SystemExit(f"{case}: got {local.stat().st_size} bytes, expected {size}")
    source.unlink()
    return summarize(runs)


def summarize(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Medians of the runs of each case, with the fastest and slowest run."""
    return {
        case: {
            "seconds": statistics.median(r["seconds"] for r in case_runs),
            "fastest": min(r["seconds"] for r in case_runs),
            "slowest": max(r["seconds"] for r in case_runs),
            "cpu": statistics.median(r["cpu"] for r in case_runs),
            "server_cpu": statistics.median(r["server_cpu"] for r in case_runs),
            "rss_mib": max(r["rss_mib"] for r in case_runs),
        }
        for case, case_runs in runs.items()
    }


def bench_small(
    account_url: str, server_pid: int, work: Path, count: int, repeat: int
) -> dict[str, dict[str, float]]:
    """Medians of ``repeat`` runs of every small-files case over ``count`` files of 4 KiB."""
    small = work / "small"
    small.mkdir()
    for index in range(count):
        (small / f"{index}.bin").write_bytes(os.urandom(4096))
    sdk_upload_small(account_url, "small-source", small)
    runs: dict[str, list[dict[str, float]]] = {case: [] for case in SMALL_CASES}
    for _ in range(repeat):
        for case in SMALL_CASES:
            blob = f"small-{case.split()[0]}"
            runs[case].append(run_child(case, account_url, blob, small, server_pid))
    return summarize(runs)


def print_table(
    title: str,
    size: int,
    results: dict[str, dict[str, float]],
    *,
    compare: bool = True,
    comparisons: list[tuple[str, str, float]] = COMPARISONS,
) -> None:
    print(f"\n{title}, medians of the runs, peak RSS of the child process")
    print(
        f"{'case':<26}{'median s':>9}{'spread s':>13}{'MiB/s':>8}{'client CPU s':>14}"
        f"{'Azurite CPU s':>15}{'peak RSS MiB':>14}"
    )
    for case, r in results.items():
        rate = size / MIB / r["seconds"]
        spread = f"{r['fastest']:.2f}-{r['slowest']:.2f}"
        print(
            f"{case:<26}{r['seconds']:>9.3f}{spread:>13}{rate:>8.1f}{r['cpu']:>14.2f}"
            f"{r['server_cpu']:>15.2f}{r['rss_mib']:>14.1f}"
        )
    if compare:
        print(f"\n{'comparison':<56}{'ratio':>8}{'target':>8}")
        for case, base, target in comparisons:
            ratio = results[base]["seconds"] / results[case]["seconds"]
            ok = "ok" if ratio >= target else "MISSED"
            print(f"{case + ' / ' + base:<56}{ratio:>8.2f}{'>=' + str(target):>8} {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--small-count", type=int, default=500, help="0: no small-files runs")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rss-mib", type=int, default=0, help="also check peak RSS at this size")
    parser.add_argument(
        "--server-dir",
        default="/dev/shm" if Path("/dev/shm").is_dir() else None,
        help="where Azurite stores blobs (default: /dev/shm, a tmpfs, so that the VM disk's "
        "writeback does not time the emulator instead of the clients)",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return

    from azure.storage.blob import BlobServiceClient

    with (
        tempfile.TemporaryDirectory(prefix="bench-azure-") as tmp,
        tempfile.TemporaryDirectory(prefix="bench-azurite-", dir=args.server_dir) as server_dir,
        run_azurite(Path(server_dir)) as server,
    ):
        BlobServiceClient(
            server.account_url, credential={"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
        ).create_container(CONTAINER)
        where = (server.account_url, server.process.pid, Path(tmp))
        for size_mib in args.size_mib:
            size = size_mib * MIB
            print_table(f"throughput: {size_mib} MiB", size, bench(*where, size, args.repeat))
        if args.small_count:
            small = bench_small(*where, args.small_count, args.repeat)
            title = f"small files: {args.small_count} x 4 KiB, one request each"
            print_table(title, args.small_count * 4096, small, comparisons=SMALL_COMPARISONS)
        if args.rss_mib:
            rss_size = args.rss_mib * MIB
            memory = bench(*where, rss_size, 1)
            print_table(f"memory: {args.rss_mib} MiB", rss_size, memory, compare=False)
            worst = max(r["rss_mib"] for case, r in memory.items() if case.startswith("keg"))
            verdict = "ok" if worst < 200 else "MISSED"
            print(f"\nkeg_storage peak RSS {worst:.1f} MiB (target < 200 MiB) {verdict}")


if __name__ == "__main__":
    main()
