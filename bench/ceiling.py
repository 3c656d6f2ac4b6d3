"""Benchmark: how much parallel small uploads can gain on this machine, whoever sends them.

Run from the repository root: ``.venv/bin/python bench/ceiling.py [--files 500] [--repeat 3]``.
It starts its own SeaweedFS and Azurite (the test harness) and, for each, stores ``--files``
files of 4 KiB with the raw SDK one after the other, measuring the wall time, this process's
CPU time and the server's (its process group's, from /proc). Each request needs both CPUs'
work: with ``C`` client and ``S`` server CPU seconds on ``N`` cores, no number of parallel
senders finishes before ``max(C, (C + S) / N)``: the client's CPU holds Python's GIL (all of
it, for botocore and the Azure SDK), so its threads add up on one core, while a server may
use every core. The ratio of the sequential
wall time to that bound is the most any ``upload_many`` can gain here. It measures the
SDK from 8 threads and keg_storage's ``upload_many`` with 8 jobs the same way, and takes the
bound from the sender whose CPU cost per file is lowest (a server may spend less per request
under parallel load).

Prints medians and the spread. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
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


def group_cpu_seconds(pgid: int) -> float:
    """User and system CPU seconds of every live process in the process group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:  # fields after the command: state, ppid, pgrp, ...
                total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def server_pgid(name: str) -> int:
    """The process group of the server started for ``name`` (a child of this process)."""
    me = os.getpid()
    marker = {"s3": "weed", "azure": "azurite"}[name]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                command = Path("/proc", entry, "cmdline").read_bytes()
                stat = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
                if marker.encode() in command and int(stat[1]) == me:
                    return os.getpgid(int(entry))
    raise RuntimeError(f"no {marker} process started by this one")


def measured(action: Callable[[], Any], pgid: int) -> tuple[float, float, float]:
    """Wall seconds, this process's CPU seconds and the server's, for one call of ``action``."""
    server, client, wall = group_cpu_seconds(pgid), time.process_time(), time.perf_counter()
    action()
    wall, client = time.perf_counter() - wall, time.process_time() - client
    return wall, client, group_cpu_seconds(pgid) - server


def one_by_one(put: Callable[[str, bytes], Any], keys: list[str], data: bytes) -> None:
    for key in keys:
        put(key, data)


def parallel(put: Callable[[str, bytes], Any], keys: list[str], data: bytes) -> None:
    with ThreadPoolExecutor(JOBS) as pool:
        list(pool.map(lambda key: put(key, data), keys))


def rounds(target: Any, name: str, files: int, repeat: int, work: Path) -> dict[str, list[Any]]:
    pgid = server_pgid(name)
    data = os.urandom(SMALL)
    sources = []
    for number in range(files):
        local = work / f"{name}-{number:05}"
        local.write_bytes(data)
        sources.append(local)
    target.warm_raw()
    storage = target.keg()
    results: dict[str, list[Any]] = {"sequential": [], "sdk x8": [], "upload_many x8": []}
    for run in range(repeat):
        keys = [f"ceiling/{run}/{number:05}" for number in range(files)]
        pairs = [(str(local), key) for local, key in zip(sources, keys, strict=True)]
        senders: dict[str, Callable[[], Any]] = {
            "sequential": partial(one_by_one, target.raw_put, keys, data),
            "sdk x8": partial(parallel, target.raw_put, keys, data),
            "upload_many x8": partial(storage.upload_many, pairs, max_concurrency=JOBS),
        }
        for label, send in senders.items():
            results[label].append(measured(send, pgid))
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
    parser.add_argument("--backends", nargs="+", default=["s3", "azure"], choices=["s3", "azure"])
    args = parser.parse_args()
    with servers(args.backends) as (ctx, work):
        for name in args.backends:
            target = make_target(name, ctx)
            report(name, rounds(target, name, args.files, args.repeat, work), args.files)


if __name__ == "__main__":
    main()
