"""Benchmark: keg_storage's S3 backend against raw boto3, on a local SeaweedFS.

Run from the repository root: ``.venv/bin/python bench/s3.py [--size-mib 64 256] [--repeat 5]``.
It starts its own SeaweedFS (the test harness), runs every case ``--repeat`` times (round-robin),
each run in a fresh subprocess so that its peak RSS is its own, and prints medians, the spread
(fastest-slowest run), ratios against the boto3 baseline (above 1.0x means faster than boto3) and
the peak RSS of a run on a 1 GiB object (which includes about 60 MiB for Python, boto3 and
keg_storage themselves). The small-files workload moves ``--small-count`` files of 4 KiB one
request each: uploads against ``put_object``, reads against ``get_object``.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rss import peak_rss_mib  # noqa: E402
from tests.servers.seaweedfs import SeaweedFS, running_seaweedfs  # noqa: E402

MIB = 1024 * 1024
BUCKET = "keg-bench"


def source_key(size: int) -> str:
    """The object the download cases read, one per size."""
    return f"bench/source-{size}.bin"


@dataclass(frozen=True)
class Env:
    """What a case needs to know, passed to the child process as JSON."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    source_file: str
    scratch_dir: str
    size: int
    keg_options: dict[str, Any]
    small_dir: str = ""
    small_count: int = 0


def boto3_client(env: Env) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=env.endpoint_url,
        aws_access_key_id=env.access_key,
        aws_secret_access_key=env.secret_key,
        region_name=env.region,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )


def case_boto3_upload(env: Env) -> Callable[[], None]:
    client = boto3_client(env)

    def run() -> None:
        with open(env.source_file, "rb") as f:
            client.upload_fileobj(f, BUCKET, "bench/boto3-upload.bin")

    return run


def case_boto3_download(env: Env) -> Callable[[], None]:
    client = boto3_client(env)

    def run() -> None:
        with open(Path(env.scratch_dir) / "boto3-download.bin", "wb") as f:
            client.download_fileobj(BUCKET, source_key(env.size), f)

    return run


def keg_storage(env: Env) -> Any:
    from keg_storage.backends.s3 import S3Storage

    return S3Storage(
        BUCKET,
        env.region,
        env.access_key,
        env.secret_key,
        endpoint_url=env.endpoint_url,
        **env.keg_options,
    )


def case_keg_upload(env: Env) -> Callable[[], None]:
    storage = keg_storage(env)

    def run() -> None:
        with open(env.source_file, "rb") as f:
            storage.upload(f, "bench/keg-upload.bin")

    return run


def case_keg_download(env: Env) -> Callable[[], None]:
    storage = keg_storage(env)

    def run() -> None:
        with open(Path(env.scratch_dir) / "keg-download.bin", "wb") as f:
            storage.download(source_key(env.size), f)

    return run


def case_keg_stream_write(env: Env) -> Callable[[], None]:
    storage = keg_storage(env)

    def run() -> None:
        with open(env.source_file, "rb") as f, storage.open("bench/keg-stream.bin", "wb") as out:
            while chunk := f.read(MIB):
                out.write(chunk)

    return run


def case_keg_stream_read(env: Env) -> Callable[[], None]:
    storage = keg_storage(env)

    def run() -> None:
        target = Path(env.scratch_dir) / "keg-stream.bin"
        with storage.open(source_key(env.size), "rb") as source, open(target, "wb") as f:
            while chunk := source.read(MIB):
                f.write(chunk)

    return run


def small_files(env: Env) -> list[Path]:
    return [Path(env.small_dir) / f"{index}.bin" for index in range(env.small_count)]


def case_boto3_put_small(env: Env) -> Callable[[], None]:
    client = boto3_client(env)

    def run() -> None:
        for local in small_files(env):
            with open(local, "rb") as f:
                client.put_object(Bucket=BUCKET, Key=f"small/boto3/{local.name}", Body=f)

    return run


def case_keg_upload_small(env: Env) -> Callable[[], None]:
    storage = keg_storage(env)

    def run() -> None:
        for local in small_files(env):
            with open(local, "rb") as f:
                storage.upload(f, f"small/keg/{local.name}")

    return run


def case_boto3_get_small(env: Env) -> Callable[[], None]:
    client = boto3_client(env)

    def run() -> None:
        for local in small_files(env):
            client.get_object(Bucket=BUCKET, Key=f"small/src/{local.name}")["Body"].read()

    return run


def case_keg_download_small(env: Env) -> Callable[[], None]:
    storage = keg_storage(env)

    def run() -> None:
        for local in small_files(env):
            storage.download(f"small/src/{local.name}", io.BytesIO())

    return run


def case_keg_read_small(env: Env) -> Callable[[], None]:
    storage = keg_storage(env)

    def run() -> None:
        for local in small_files(env):
            with storage.open(f"small/src/{local.name}", "rb") as f:
                f.read()

    return run


SMALL_CASES: dict[str, tuple[Callable[[Env], Callable[[], None]], str | None]] = {
    "boto3 put_object": (case_boto3_put_small, None),
    "keg upload": (case_keg_upload_small, "boto3 put_object"),
    "boto3 get_object().read()": (case_boto3_get_small, None),
    "keg download": (case_keg_download_small, "boto3 get_object().read()"),
    "keg open('rb').read()": (case_keg_read_small, "boto3 get_object().read()"),
}

# name -> (setup returning the timed callable, baseline case name or None)
CASES: dict[str, tuple[Callable[[Env], Callable[[], None]], str | None]] = {
    "boto3 upload_fileobj": (case_boto3_upload, None),
    "keg upload": (case_keg_upload, "boto3 upload_fileobj"),
    "keg open('wb').write(1 MiB)": (case_keg_stream_write, "boto3 upload_fileobj"),
    "boto3 download_fileobj": (case_boto3_download, None),
    "keg download": (case_keg_download, "boto3 download_fileobj"),
    "keg open('rb').read(1 MiB)": (case_keg_stream_read, "boto3 download_fileobj"),
}


SMALL = "small: "
"""Prefix of a small-files case's name as the child process gets it."""


def child(case: str, env_json: str) -> None:
    """Run one case once; print its time and this process's peak RSS as JSON."""
    env = Env(**json.loads(env_json))
    setup = SMALL_CASES[case[len(SMALL) :]][0] if case.startswith(SMALL) else CASES[case][0]
    run = setup(env)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    result = {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mib": peak_rss_mib()}
    print(json.dumps(result))


def run_case(case: str, env: Env) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", case, json.dumps(env.__dict__)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    ).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def round_robin(
    cases: list[str], envs: list[Env], repeat: int
) -> list[dict[str, list[dict[str, float]]]]:
    """``repeat`` runs of every case on every env, interleaved, so that load from elsewhere on
    the machine hits every case alike."""
    runs: list[dict[str, list[dict[str, float]]]] = [{case: [] for case in cases} for _ in envs]
    for _ in range(repeat):
        for env, env_runs in zip(envs, runs, strict=True):
            for case in cases:
                env_runs[case].append(run_case(case, env))
    return runs


def print_table(
    title: str,
    cases: dict[str, tuple[Any, str | None]],
    runs: dict[str, list[dict[str, float]]],
    peaks: dict[str, float] | None,
    size_mib: float | None,
) -> None:
    print(f"\n{title}\n")
    header = (
        f"| {'case':<30} | {'median s':>8} | {'spread s':>11} | {'MiB/s':>6} | {'vs boto3':>8} "
        f"| {'client CPU s':>12} | {'peak RSS':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    medians = {case: statistics.median(r["seconds"] for r in runs[case]) for case in runs}
    for case in runs:
        baseline = cases[case][1]
        seconds = medians[case]
        times = [r["seconds"] for r in runs[case]]
        spread = f"{min(times):.2f}-{max(times):.2f}"
        ratio = f"{medians[baseline] / seconds:.2f}x" if baseline in medians else "1.00x"
        rate = f"{size_mib / seconds:>6.0f}" if size_mib else f"{'':>6}"
        cpu = statistics.median(r["cpu_seconds"] for r in runs[case])
        peak = f"{peaks[case]:>5.0f} MiB" if peaks else f"{'':>9}"
        print(
            f"| {case:<30} | {seconds:>8.2f} | {spread:>11} | {rate} | {ratio:>8} "
            f"| {cpu:>12.2f} | {peak} |"
        )


def make_source(path: Path, size: int) -> None:
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for offset in range(0, size, MIB):
            f.write(block[: min(MIB, size - offset)])


def prepare(
    server: SeaweedFS, workdir: Path, size: int, keg_options: dict[str, Any], small_count: int = 0
) -> Env:
    source = workdir / f"source-{size}.bin"
    make_source(source, size)
    small_dir = workdir / "small"
    small_dir.mkdir(exist_ok=True)
    for index in range(small_count):
        (small_dir / f"{index}.bin").write_bytes(os.urandom(4096))
    env = Env(
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
        source_file=str(source),
        scratch_dir=str(workdir),
        size=size,
        keg_options=keg_options,
        small_dir=str(small_dir),
        small_count=small_count,
    )
    client = boto3_client(env)
    if BUCKET not in [bucket["Name"] for bucket in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    client.upload_file(str(source), BUCKET, source_key(size))
    for index in range(small_count):
        client.upload_file(str(small_dir / f"{index}.bin"), BUCKET, f"small/src/{index}.bin")
    return env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--rss-size-mib", type=int, default=1024, help="0: no peak-RSS runs")
    parser.add_argument("--small-count", type=int, default=500, help="0: no small-files runs")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--keg-options", type=json.loads, default={}, help="S3Storage keyword options, as JSON"
    )
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--child", nargs=2, metavar=("CASE", "ENV"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    with running_seaweedfs() as server, tempfile.TemporaryDirectory(prefix="keg-bench-") as tmp:
        workdir = Path(tmp)
        envs = [prepare(server, workdir, size * MIB, args.keg_options) for size in args.size_mib]
        cases = [case for case in CASES if not args.only or args.only in case]
        small_cases = [SMALL + c for c in SMALL_CASES if not args.only or args.only in SMALL + c]
        runs = round_robin(cases, envs, args.repeat)
        small_runs = {}
        if args.small_count and small_cases:
            small_env = prepare(server, workdir, MIB, args.keg_options, args.small_count)
            small_runs = round_robin(small_cases, [small_env], args.repeat)[0]
        peaks = None
        if args.rss_size_mib:
            for env in envs:
                Path(env.source_file).unlink()
            big = prepare(server, workdir, args.rss_size_mib * MIB, args.keg_options)
            peaks = {case: run_case(case, big)["peak_rss_mib"] for case in cases}

    options = f"S3Storage options {args.keg_options or 'default'}"
    for size_mib, size_runs in zip(args.size_mib, runs, strict=True):
        title = f"{size_mib} MiB on loopback SeaweedFS, median of {args.repeat}; {options}"
        if peaks:
            title += f"; peak RSS for {args.rss_size_mib} MiB"
        print_table(title, CASES, size_runs, peaks, size_mib)
    if small_runs:
        title = f"{args.small_count} x 4 KiB files, one at a time, median of {args.repeat}"
        named = {
            SMALL + name: (setup, base and SMALL + base)
            for name, (setup, base) in SMALL_CASES.items()
        }
        print_table(title, named, small_runs, None, None)


if __name__ == "__main__":
    main()
