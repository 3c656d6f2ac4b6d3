"""LocalFS create-only writes (``overwrite=False``) against plain writes, side by side.

    python bench/conditional_localfs.py [--writes 200] [--size 1000] [--rounds 5] [--dir /path]

Each round makes ``--writes`` small uploads of new paths of each kind, alternating which kind
goes first; prints the median time per write of each kind over the rounds and the extra cost of
a create-only write. Also times ``if_match`` replacements of one file. Not a test: nothing is
asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from keg_storage import LocalFSStorage


def time_writes(writes: int, write: Callable[[int], None]) -> float:
    """Seconds per write of ``writes`` calls of ``write(index)``."""
    start = time.perf_counter()
    for index in range(writes):
        write(index)
    return (time.perf_counter() - start) / writes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--size", type=int, default=1000, help="bytes per write")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", default=None, help="directory on the disk to measure")
    args = parser.parse_args()
    data = os.urandom(args.size)

    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        storage = LocalFSStorage(Path(scratch))
        storage.upload(io.BytesIO(data), "cas/file.bin")
        times: dict[str, list[float]] = {"plain": [], "create-only": [], "if_match": []}

        def plain(round_: int) -> Callable[[int], None]:
            return lambda index: storage.upload(io.BytesIO(data), f"plain/{round_}/{index}")

        def create_only(round_: int) -> Callable[[int], None]:
            return lambda index: storage.upload(
                io.BytesIO(data), f"create/{round_}/{index}", overwrite=False
            )

        def compare_and_swap(index: int) -> None:
            etag = storage.stat("cas/file.bin").etag
            storage.upload(io.BytesIO(data), "cas/file.bin", if_match=etag)

        for round_ in range(args.rounds):
            kinds = [("plain", plain(round_)), ("create-only", create_only(round_))]
            for kind, write in kinds if round_ % 2 else kinds[::-1]:
                times[kind].append(time_writes(args.writes, write))
            times["if_match"].append(time_writes(args.writes, compare_and_swap))

    plain_median = statistics.median(times["plain"])
    print(f"LocalFS, {args.writes} writes of {args.size} B, median of {args.rounds} rounds")
    print(f"{'write':<14}{'µs/write':>10}{'vs plain':>10}")
    for kind, samples in times.items():
        median = statistics.median(samples)
        print(f"{kind:<14}{median * 1e6:>10.1f}{median / plain_median:>9.2f}x")
    print("(if_match includes the stat() that reads the ETag)")


if __name__ == "__main__":
    main()
