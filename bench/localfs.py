"""LocalFS put/get/copy of a large file against ``cp``, in the same run.

    python bench/localfs.py [--size-mib 1024] [--runs 3] [--dir /path/on/the/disk/to/test]

Dirty pages are flushed (``sync``) before every timed operation and the order alternates, so
that one operation's write-back does not slow the next. A VM disk is noisy: ``--dir /dev/shm``
measures the copy machinery itself. Each keg_storage operation runs in a fresh Python process
that reports its own peak RSS, so the figure is that of the operation, not of this script.
Prints medians and ratios (cp time divided by keg_storage time: 1.0 is as fast as cp, higher is
faster). Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from keg_storage import LocalFSStorage
operation, root, source, target = sys.argv[1:5]
storage = LocalFSStorage(root)
start = time.perf_counter()
if operation == "put":
    storage.put(source, target)
elif operation == "get":
    storage.get(source, target)
else:
    storage.copy(source, target)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": elapsed, "peak_rss_kib": peak}))
"""


def make_file(path: Path, size: int) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as out:
        written = 0
        while written < size:
            out.write(block[: min(len(block), size - written)])
            written += len(block)


def time_cp(source: Path, target: Path) -> float:
    os.sync()
    start = time.perf_counter()
    subprocess.run(["cp", str(source), str(target)], check=True)
    return time.perf_counter() - start


def time_keg(operation: str, root: Path, source: str, target: str) -> tuple[float, int]:
    os.sync()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, operation, str(root), source, target],
        check=True,
        capture_output=True,
        text=True,
    )
    report = json.loads(result.stdout)
    return report["seconds"], report["peak_rss_kib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    args = parser.parse_args()
    size = args.size_mib * 1024 * 1024

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        base = Path(scratch)
        root = base / "root"
        root.mkdir()
        local = base / "local.bin"
        make_file(local, size)
        make_file(root / "stored.bin", size)

        rows = []
        cases = {
            "put": (str(local), "put.bin", local, root / "cp-put.bin"),
            "get": ("stored.bin", str(base / "got.bin"), root / "stored.bin", base / "cp-got.bin"),
            "copy": ("stored.bin", "copied.bin", root / "stored.bin", root / "cp-copied.bin"),
        }
        for operation, (source, target, cp_source, cp_target) in cases.items():
            cp_times, keg_times, peaks = [], [], []
            for run in range(args.runs):
                # Alternate which goes first, so that neither always meets the other's write-back.
                for tool in ("cp", "keg") if run % 2 else ("keg", "cp"):
                    if tool == "cp":
                        cp_times.append(time_cp(cp_source, cp_target))
                        os.unlink(cp_target)
                    else:
                        seconds, peak = time_keg(operation, root, source, target)
                        keg_times.append(seconds)
                        peaks.append(peak)
                        os.unlink(target if os.path.isabs(target) else root / target)
            cp_median = statistics.median(cp_times)
            keg_median = statistics.median(keg_times)
            rows.append((operation, cp_median, keg_median, cp_median / keg_median, max(peaks)))

    print(f"LocalFS, {args.size_mib} MiB file, median of {args.runs} runs")
    print(f"{'operation':<10}{'cp s':>10}{'keg s':>10}{'ratio':>10}{'peak RSS MiB':>15}")
    for operation, cp_median, keg_median, ratio, peak in rows:
        timings = f"{cp_median:>10.3f}{keg_median:>10.3f}{ratio:>10.2f}"
        print(f"{operation:<10}{timings}{peak / 1024:>15.1f}")


if __name__ == "__main__":
    main()
