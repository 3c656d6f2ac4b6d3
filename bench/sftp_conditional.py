"""SFTP benchmark: create-only writes (``overwrite=False``) against plain writes, side by side.

Starts its own sshd on a free loopback port (the test harness in tests/servers/sshd.py) and, in
each round, uploads ``--writes`` small files to new paths plainly (temp file + posix-rename) and
create-only (temp file + hardlink and remove, pipelined), in alternating order, on one warm
storage; it also times as many
``stat`` calls, one round trip each, to express the difference in round trips. Prints the
median per write over ``--rounds`` rounds.

    .venv/bin/python bench/sftp_conditional.py [--writes 200] [--rounds 5] [--size 1000]

Not a test: numbers depend on the machine. Target (issue 16): a create-only write costs no more
than one extra round trip over a plain write.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from keg_storage.backends.sftp import SFTPStorage  # noqa: E402
from tests.servers.sshd import SSHServer  # noqa: E402


def per_call_ms(calls: int, call: Callable[[int], object]) -> float:
    started = time.perf_counter()
    for number in range(calls):
        call(number)
    return (time.perf_counter() - started) * 1000 / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--size", type=int, default=1000, help="bytes per file")
    args = parser.parse_args()
    data = os.urandom(args.size)
    with tempfile.TemporaryDirectory() as workdir:
        server = SSHServer(Path(workdir) / "sshd")
        server.start()
        try:
            base = tempfile.mkdtemp(dir=server.data_dir)
            storage = SFTPStorage(
                "127.0.0.1",
                "root",
                str(server.client_key),
                str(server.known_hosts),
                port=server.port,
                base_path=base,
            )
            with storage:
                storage.upload(io.BytesIO(data), "warm.bin")
                results: dict[str, list[float]] = {"plain": [], "create-only": [], "stat": []}
                for round_number in range(args.rounds):

                    def plain(n: int, r: int = round_number) -> None:
                        storage.upload(io.BytesIO(data), f"plain/{r}/{n}.bin")

                    def create_only(n: int, r: int = round_number) -> None:
                        storage.upload(io.BytesIO(data), f"new/{r}/{n}.bin", overwrite=False)

                    cases = [("plain", plain), ("create-only", create_only)]
                    for name, write in cases[:: 1 if round_number % 2 else -1]:  # fair order
                        results[name].append(per_call_ms(args.writes, write))
                    results["stat"].append(
                        per_call_ms(args.writes, lambda n: storage.stat("warm.bin"))
                    )
        finally:
            server.stop()
    medians = {name: statistics.median(values) for name, values in results.items()}
    extra = medians["create-only"] - medians["plain"]
    print(f"{args.writes} writes of {args.size} B, median of {args.rounds} rounds, per call:")
    for name in ("plain", "create-only"):
        print(f"  {name:12} {medians[name]:7.3f} ms")
    print(f"  stat (1 RTT) {medians['stat']:7.3f} ms")
    print(f"  create-only costs {extra:+.3f} ms = {extra / medians['stat']:+.2f} round trips")


if __name__ == "__main__":
    main()
