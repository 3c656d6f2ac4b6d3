"""A sync into S3, Azure or SFTP whose connections are cut at a random point (the fault proxy),
then run again on a healthy network: the destination ends byte-identical to the source, and no
temp state (multipart uploads, temp files) stays behind."""

from __future__ import annotations

import os
import random
from pathlib import Path

from keg_storage import LocalFSStorage, sync

from .conftest import FaultTarget

MiB = 1024 * 1024


def stored(target: FaultTarget) -> dict[str, bytes]:
    """What the destination holds, read directly (not through the proxy)."""
    found = {}
    for entry in target.direct.list():
        with target.direct.open(entry.name, "rb") as source:
            found[entry.name] = source.read()
    return found


def test_a_cut_sync_rerun_ends_byte_identical(fault_target: FaultTarget, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    chance = random.Random(seed)
    root = tmp_path / "source"
    files = {f"big/{n}.bin": os.urandom(2 * MiB + chance.randrange(MiB)) for n in range(4)}
    files.update({f"small/{n:02d}.txt": os.urandom(chance.randrange(1, 9000)) for n in range(30)})
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    total = sum(map(len, files.values()))
    cut_at = chance.randrange(total // 10, total * 9 // 10)
    source = LocalFSStorage(root)
    # The connection carrying the cut_at-th byte upstream is reset, and seven more after it
    # every 256 KiB, so that retries are cut too and some files fail.
    for cut in range(8):
        fault_target.proxy.cut_after(cut_at + cut * 256 * 1024, "upstream")

    first = sync(source, fault_target.storage, jobs=4)

    assert fault_target.proxy.stats.resets >= 1, f"seed {seed}"  # the sync was cut
    assert first.copied + len(first.failures) == len(files)
    partial = stored(fault_target)
    assert all(files[name] == data for name, data in partial.items()), f"seed {seed}"
    fault_target.proxy.clear()
    second = sync(source, fault_target.storage, jobs=4)

    assert second.ok, (seed, second.failures)
    assert second.copied == len(files) - first.copied, f"seed {seed}"
    assert stored(fault_target) == files, f"seed {seed}"
    leftovers = fault_target.leftovers()
    if type(fault_target.storage).__name__ != "AzureStorage":  # staged blocks: CONTRACT §3
        assert leftovers == [], f"seed {seed}"
    assert sync(source, fault_target.storage).copied == 0
