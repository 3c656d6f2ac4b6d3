"""Benchmark: how much parallel small uploads can gain on this machine, whoever sends them.

Run from the repository root: ``.venv/bin/python bench/ceiling.py [--files 500] [--repeat 3]
[--backends s3 azure sftp]``. It starts its own SeaweedFS, Azurite and sshd (the test harness)
and, for each, stores ``--files`` files of 4 KiB with the raw SDK one after the other,
measuring the wall time, this process's CPU time and the server's (from /proc: its process
group's; for sshd, every process it forked, one per connection and one per SFTP session, file
system work in the kernel included). Each request needs both CPUs'
work: with ``C`` client and ``S`` server CPU seconds on ``N`` cores, no number of parallel
senders finishes before ``max(C, (C + S) / N)``: the client's CPU holds Python's GIL (all of
it, for botocore and the Azure SDK), so its threads add up on one core, while a server may
use every core. The ratio of the sequential
wall time to that bound is the most any ``upload_many`` can gain here. It measures the
SDK from 8 threads and keg_storage's ``upload_many`` with 8 jobs the same way, and takes the
bound from the sender whose CPU cost per file is lowest (a server may spend less per request
under parallel load).

Each sender stores new files (none replaces another's), after ``os.sync()``. Prints medians
and the spread. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import queue
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Run as a script, this directory comes first on sys.path, and bench/azure.py would shadow the
# Azure SDK's ``azure`` package: the repository root goes there instead.
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.compare_targets import make_target, running_servers  # noqa: E402

SMALL = 4096
JOBS = 8
TICKS = os.sysconf("SC_CLK_TCK")


def process_table() -> dict[int, tuple[int, int, float]]:
    """Every live process: its parent, its process group and its user + system CPU seconds."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            # fields after the command: state, ppid, pgrp, ..., utime (11), stime (12)
            cpu = (int(fields[11]) + int(fields[12])) / TICKS
            table[int(entry)] = (int(fields[1]), int(fields[2]), cpu)
    return table


def server_cpu(name: str) -> Callable[[], float]:
    """The CPU seconds used so far by the server started for ``name`` (a child of this
    process): its process group's (SeaweedFS, Azurite), or for sshd every process it forked,
    each connection and each SFTP session (they run in sessions of their own)."""
    me = os.getpid()
    marker = {"s3": b"weed", "azure": b"azurite", "sftp": b"sshd"}[name]
    table = process_table()
    for pid, (parent, group, _) in table.items():
        with contextlib.suppress(OSError):
            if parent == me and marker in Path("/proc", str(pid), "cmdline").read_bytes():
                return partial(tree_cpu, pid) if name == "sftp" else partial(group_cpu, group)
    raise RuntimeError(f"no {marker.decode()} process started by this one")


def group_cpu(pgid: int) -> float:
    return sum(cpu for _, group, cpu in process_table().values() if group == pgid)


def tree_cpu(root: int) -> float:
    table = process_table()

    def descends(pid: int) -> bool:
        while pid in table and pid > 1:
            if pid == root:
                return True
            pid = table[pid][0]
        return False

    return sum(cpu for pid, (_, _, cpu) in table.items() if descends(pid))


def measured(
    action: Callable[[], Any], server_seconds: Callable[[], float]
) -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds and the server's, for one call of ``action``."""
    server, client, wall = server_seconds(), time.process_time(), time.perf_counter()
    action()
    wall, client = time.perf_counter() - wall, time.process_time() - client
    return wall, client, server_seconds() - server


def one_by_one(put: Callable[[str, bytes], Any], keys: list[str], data: bytes) -> None:
    for key in keys:
        put(key, data)


def parallel(puts: list[Callable[[str, bytes], Any]], keys: list[str], data: bytes) -> None:
    """``keys`` stored from ``JOBS`` threads, each calling a ``put`` of its own."""
    free: queue.SimpleQueue[Callable[[str, bytes], Any]] = queue.SimpleQueue()
    for put in puts:
        free.put(put)
    mine = threading.local()

    def send(key: str) -> None:
        if not hasattr(mine, "put"):
            mine.put = free.get()
        mine.put(key, data)

    with ThreadPoolExecutor(JOBS) as pool:
        list(pool.map(send, keys))


def rounds(target: Any, name: str, files: int, repeat: int, work: Path) -> dict[str, list[Any]]:
    server_seconds = server_cpu(name)
    data = os.urandom(SMALL)
    sources = []
    for number in range(files):
        local = work / f"{name}-{number:05}"
        local.write_bytes(data)
        sources.append(local)
    target.warm_raw()
    storage = target.keg()
    # boto3's and the Azure SDK's clients serve many threads; a paramiko SFTPClient does not
    # (threads waiting for their answers on one deadlock): one connection per thread.
    puts = [target.raw_put] * JOBS
    if name == "sftp":
        puts = [make_target(name, target.ctx).raw_put for _ in range(JOBS)]
    results: dict[str, list[Any]] = {"sequential": [], "sdk x8": [], "upload_many x8": []}
    for run in range(repeat):
        # Each sender stores new files (a file replaced costs the server more: ext4 flushes a
        # file renamed or truncated over another).
        keys = {
            sender: [f"ceiling/{run}/{sender}/{number:05}" for number in range(files)]
            for sender in ("sequential", "sdk", "keg")
        }
        for sender in keys:
            target.make_dir(f"ceiling/{run}/{sender}")
        pairs = [(str(local), key) for local, key in zip(sources, keys["keg"], strict=True)]
        senders: dict[str, Callable[[], Any]] = {
            "sequential": partial(one_by_one, target.raw_put, keys["sequential"], data),
            "sdk x8": partial(parallel, puts, keys["sdk"], data),
            "upload_many x8": partial(storage.upload_many, pairs, max_concurrency=JOBS),
        }
        for label, send in senders.items():
            os.sync()  # the last sender's dirty pages are not written back in this one's time
            results[label].append(measured(send, server_seconds))
    return results


def report(name: str, results: dict[str, list[Any]], files: int) -> None:
    cores = os.cpu_count() or 1
    wall = statistics.median(run[0] for run in results["sequential"])
    print(f"\n{name}: {files} x 4 KiB, {cores} cores; ratio = sequential SDK / this")
    print(f"  {'sender':<15} {'wall s':<21} {'ratio':<17} client / server CPU per file")
    bounds = []
    for label, runs in results.items():
        times = [run[0] for run in runs]
        client, server = (statistics.median(run[i] for run in runs) / files for i in (1, 2))
        bounds.append(max(client, (client + server) / cores) * files)
        ratios = sorted(wall / seconds for seconds in times)
        print(
            f"  {label:<15} {statistics.median(times):.3f} ({min(times):.3f}-{max(times):.3f})"
            f"  {wall / statistics.median(times):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f})"
            f"  {client * 1e3:.2f} / {server * 1e3:.2f} ms"
        )
    print(
        f"  at the CPU cost per file of the cheapest sender, no parallel sender can beat "
        f"{min(bounds):.3f} s = {wall / min(bounds):.2f}x the sequential SDK"
    )


@contextlib.contextmanager
def servers(names: list[str]) -> Iterator[tuple[dict[str, Any], Path]]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-ceiling-") as work,
        running_servers(names, Path(work)) as ctx,
    ):
        yield ctx, Path(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--backends", nargs="+", default=["s3", "azure"], choices=["s3", "azure", "sftp"]
    )
    args = parser.parse_args()
    with servers(args.backends) as (ctx, work):
        for name in args.backends:
            target = make_target(name, ctx)
            report(name, rounds(target, name, args.files, args.repeat, work), args.files)


if __name__ == "__main__":
    main()
