"""SFTP benchmark: OpenSSH's ``sftp -b`` and raw paramiko against keg_storage, side by side.

Starts its own sshd on a free loopback port (the test harness in tests/servers/sshd.py), then
runs every case ``--runs`` times, each run in a fresh child process so that its peak RSS
(VmHWM, see bench/rss.py) belongs to that case alone. Prints medians and ratios.

    .venv/bin/python bench/sftp.py [--size-mib 256] [--runs 5] [--rss-gib 1]

Not a test: numbers depend on the machine. Targets (issue 5): upload/download >= 0.9x ``sftp -b``
and >= 1.0x paramiko putfo/getfo; streaming ``open().read(1 MiB)`` >= 0.8x getfo; 1,000
``exists()`` >= 20x a connection per call; peak RSS < 128 MiB for a 1 GiB file.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.rss import peak_rss_mib  # noqa: E402
from tests.servers.sshd import SSHServer  # noqa: E402

MiB = 1024 * 1024
Ctx = dict[str, Any]
CASES: dict[str, Callable[[Ctx], float]] = {}


def case(func: Callable[[Ctx], float]) -> Callable[[Ctx], float]:
    CASES[func.__name__] = func
    return func


# -- raw clients -----------------------------------------------------------------------------
def paramiko_client(ctx: Ctx) -> Any:
    """A paramiko SSHClient on a TCP_NODELAY socket, the fastest plain-paramiko setup."""
    import paramiko

    sock = socket.create_connection(("127.0.0.1", ctx["port"]))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(ctx["known_hosts"])
    client.connect(
        "127.0.0.1",
        port=ctx["port"],
        username="root",
        key_filename=ctx["key"],
        sock=sock,
        allow_agent=False,
        look_for_keys=False,
    )
    return client


def run_sftp_batch(ctx: Ctx, command: str) -> float:
    batch = Path(ctx["tmp"]) / "batch"
    batch.write_text(command + "\n")
    args = [
        "sftp", "-q", "-b", str(batch), "-P", str(ctx["port"]), "-i", ctx["key"],
        "-o", f"UserKnownHostsFile={ctx['known_hosts']}", "-o", "StrictHostKeyChecking=yes",
        "-o", "BatchMode=yes", "root@127.0.0.1",
    ]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


@case
def sftp_b_put(ctx: Ctx) -> float:
    return run_sftp_batch(ctx, f'put "{ctx["src"]}" "{ctx["remote_dir"]}/put.bin"')


@case
def sftp_b_get(ctx: Ctx) -> float:
    return run_sftp_batch(ctx, f'get "{ctx["remote_dir"]}/src.bin" "{ctx["dst"]}"')


@case
def paramiko_putfo(ctx: Ctx) -> float:
    start = time.perf_counter()
    client = paramiko_client(ctx)
    with open(ctx["src"], "rb") as src:
        client.open_sftp().putfo(src, f"{ctx['remote_dir']}/put.bin")
    client.close()
    return time.perf_counter() - start


@case
def paramiko_getfo(ctx: Ctx) -> float:
    start = time.perf_counter()
    client = paramiko_client(ctx)
    with open(ctx["dst"], "wb") as dst:
        client.open_sftp().getfo(f"{ctx['remote_dir']}/src.bin", dst)
    client.close()
    return time.perf_counter() - start


@case
def paramiko_exists_new_connection(ctx: Ctx) -> float:
    """stat() with a fresh connection per call, as keg-storage 0.5 did (scaled from 20 calls)."""
    calls = 20
    start = time.perf_counter()
    for _ in range(calls):
        client = paramiko_client(ctx)
        client.open_sftp().stat(f"{ctx['remote_dir']}/src.bin")
        client.close()
    return (time.perf_counter() - start) * ctx["exists_calls"] / calls


# -- keg_storage ----------------------------------------------------------------------------
def keg_storage(ctx: Ctx) -> Any:
    from keg_storage.backends.sftp import SFTPStorage

    return SFTPStorage(
        "127.0.0.1",
        "root",
        ctx["key"],
        ctx["known_hosts"],
        port=ctx["port"],
        base_path=ctx["remote_dir"],
    )


@case
def keg_upload(ctx: Ctx) -> float:
    start = time.perf_counter()
    with keg_storage(ctx) as storage, open(ctx["src"], "rb") as src:
        storage.upload(src, "put.bin")
    return time.perf_counter() - start


@case
def keg_download(ctx: Ctx) -> float:
    start = time.perf_counter()
    with keg_storage(ctx) as storage, open(ctx["dst"], "wb") as dst:
        storage.download("src.bin", dst)
    return time.perf_counter() - start


@case
def keg_stream_read(ctx: Ctx) -> float:
    """``open().read(1 MiB)`` to the end, data discarded."""
    start = time.perf_counter()
    with keg_storage(ctx) as storage, storage.open("src.bin") as remote:
        while remote.read(MiB):
            pass
    return time.perf_counter() - start


@case
def keg_exists_pooled(ctx: Ctx) -> float:
    start = time.perf_counter()
    with keg_storage(ctx) as storage:
        for _ in range(ctx["exists_calls"]):
            storage.exists("src.bin")
    return time.perf_counter() - start


@case
def keg_upload_big(ctx: Ctx) -> float:
    start = time.perf_counter()
    with keg_storage(ctx) as storage, open(ctx["big"], "rb") as src:
        storage.upload(src, "big-put.bin")
    return time.perf_counter() - start


@case
def keg_download_big(ctx: Ctx) -> float:
    start = time.perf_counter()
    with keg_storage(ctx) as storage, open(ctx["dst"], "wb") as dst:
        storage.download("big.bin", dst)
    return time.perf_counter() - start


# -- driver ----------------------------------------------------------------------------------
def run_case(name: str, ctx: Ctx) -> tuple[float, int, float]:
    """Run one case in a child process; return (seconds, peak RSS in KiB, client CPU seconds)."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", name, json.dumps(ctx)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"case {name} failed with exit code {proc.returncode}")
    result = json.loads(out)
    cpu = usage.ru_utime + usage.ru_stime
    return result["seconds"], max(result["self_rss_kib"], result["children_rss_kib"]), cpu


def child_main(name: str, ctx: Ctx) -> None:
    import resource

    seconds = CASES[name](ctx)
    # A child program's (sftp's) ru_maxrss; this process's own peak from VmHWM (see bench.rss).
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    own = int(peak_rss_mib() * 1024)
    print(json.dumps({"seconds": seconds, "self_rss_kib": own, "children_rss_kib": kids}))


def write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        block = os.urandom(MiB)
        for i in range(size // MiB):
            out.write(block[i % 7 :] + block[: i % 7])


ROWS: list[tuple[str, str, str, float]] = [
    # (label, case, baseline case, target ratio = baseline time / case time)
    ("sftp -b put", "sftp_b_put", "", 0.0),
    ("sftp -b get", "sftp_b_get", "", 0.0),
    ("paramiko putfo (TCP_NODELAY)", "paramiko_putfo", "", 0.0),
    ("paramiko getfo (TCP_NODELAY)", "paramiko_getfo", "", 0.0),
    ("keg upload vs sftp -b put", "keg_upload", "sftp_b_put", 0.9),
    ("keg upload vs putfo", "keg_upload", "paramiko_putfo", 1.0),
    ("keg download vs sftp -b get", "keg_download", "sftp_b_get", 0.9),
    ("keg download vs getfo", "keg_download", "paramiko_getfo", 1.0),
    ("keg open().read(1 MiB) vs getfo", "keg_stream_read", "paramiko_getfo", 0.8),
    ("exists x1000, new conn each", "paramiko_exists_new_connection", "", 0.0),
    ("keg exists x1000 (pool)", "keg_exists_pooled", "paramiko_exists_new_connection", 20.0),
]
RSS_CASES = ("keg_upload_big", "keg_download_big")
RSS_LIMIT_MIB = 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rss-gib", type=int, default=1, help="file size for the RSS cases")
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args.child[0], json.loads(args.child[1]))
        return

    with tempfile.TemporaryDirectory(prefix="keg-sftp-bench-") as tmp:
        server = SSHServer(Path(tmp) / "sshd").start()
        try:
            report(server, Path(tmp), args)
        finally:
            server.stop()


def report(server: SSHServer, tmp: Path, args: argparse.Namespace) -> None:
    size = args.size_mib * MiB
    remote_dir = server.data_dir / "bench"
    remote_dir.mkdir()
    src = tmp / "src.bin"
    write_random(src, size)
    os.link(src, remote_dir / "src.bin")
    big = tmp / "big.bin"
    if "keg_upload_big" in args.cases:
        write_random(big, args.rss_gib * 1024 * MiB)
        os.link(big, remote_dir / "big.bin")
    ctx: Ctx = {
        "port": server.port,
        "known_hosts": str(server.known_hosts),
        "key": str(server.client_key),
        "remote_dir": str(remote_dir),
        "src": str(src),
        "dst": str(tmp / "dst.bin"),
        "tmp": str(tmp),
        "size": size,
        "exists_calls": 1000,
        "big": str(big),
    }
    times: dict[str, list[float]] = {name: [] for name in args.cases}
    cpus: dict[str, list[float]] = {name: [] for name in args.cases}
    rss: dict[str, int] = {}
    # Round-robin, so that load from elsewhere on the machine hits every case alike.
    for run in range(args.runs):
        for name in args.cases:
            if name in RSS_CASES and run:
                continue
            seconds, peak, cpu = run_case(name, ctx)
            times[name].append(seconds)
            cpus[name].append(cpu)
            rss[name] = max(rss.get(name, 0), peak)
            print(f"  run {run + 1} {name}: {seconds:.3f} s", file=sys.stderr)
    medians = {name: statistics.median(values) for name, values in times.items()}
    cpu_medians = {name: statistics.median(values) for name, values in cpus.items()}
    print(f"\n{args.size_mib} MiB on loopback, medians of {args.runs} runs\n")
    print(
        f"{'case':34} {'median s':>9} {'MB/s':>8} {'ratio':>7} {'target':>7} "
        f"{'peak RSS':>9} {'client CPU s':>13}"
    )
    for label, name, base, target in ROWS:
        if name not in medians or (base and base not in medians):
            continue
        seconds = medians[name]
        speed = f"{size / seconds / 1e6:8.1f}" if "exists" not in name else f"{'':8}"
        ratio = f"{medians[base] / seconds:6.2f}x" if base else f"{'':7}"
        goal = f"{target:6.2f}x" if target else f"{'':7}"
        print(
            f"{label:34} {seconds:9.3f} {speed} {ratio} {goal} {rss[name] / 1024:7.1f}Mi "
            f"{cpu_medians[name]:13.2f}"
        )
    for name in RSS_CASES:
        if name in rss:
            verdict = "ok" if rss[name] / 1024 < RSS_LIMIT_MIB else "OVER"
            print(
                f"{name} ({args.rss_gib} GiB, one run): {medians[name]:.2f} s, peak RSS "
                f"{rss[name] / 1024:.1f} MiB (limit {RSS_LIMIT_MIB} MiB: {verdict})"
            )


if __name__ == "__main__":
    main()
