"""Benchmark: ``iter_list`` at scale, against the raw SDKs' paginators (issue 17).

Not a test. Lists a tree of directories of equal size holding N keys in all, and one of N/10 (as
many keys a directory, a tenth of the directories), on Memory and LocalFS (default N = 1,000,000:
1,000 directories x 1,000 files) and on S3 (SeaweedFS) and Azure (Azurite) (default N = 50,000:
50 x 1,000), each listing in a fresh child process, and prints per case the medians (with
min-max) of:

- the peak RSS growth during the listing (VmHWM at the end, reset before the listing, less
  VmRSS before it): it must not
  grow with N;
- the time to the first entry (one page: the root and one directory on a walk);
- the total time, and against the raw SDK listing the same keys in the same run (boto3's
  ``list_objects_v2`` paginator, azure's ``list_blobs().by_page()``; on LocalFS ``os.walk`` with
  an ``lstat`` per file, unordered), as ``raw / keg`` (above 1.0x: keg_storage is faster).

Cases run round-robin, ``--repeat`` times. It starts its own SeaweedFS and Azurite (the test
harness). Run from the repository root::

    .venv/bin/python bench/listing.py                      # full counts
    .venv/bin/python bench/listing.py --scale 0.1          # 100,000 / 5,000 keys (and a tenth)
    .venv/bin/python bench/listing.py --only s3,azure --repeat 7

Populating 55,000 blobs in Azurite takes most of an hour on a loaded machine: ``--azure-url``
measures against an Azurite already running (the test account) whose ``--azure-container``
holds the keys (``n50000/d0000/f0000000``... and ``n5000/...``), writing nothing.
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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from bench.rss import peak_rss_mib  # noqa: E402

CONTAINER = BUCKET = "listing-bench"
FULL = {"memory": 1_000_000, "localfs": 1_000_000, "s3": 50_000, "azure": 50_000}


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak_rss() -> None:
    """Make VmHWM the current RSS (Linux: ``clear_refs`` 5), so that the peak measured after the
    listing is the listing's, not the set-up's (Memory fills its store in the child)."""
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")


def tree(count: int, per_dir: int) -> Iterator[str]:
    """``count`` keys in directories of ``per_dir``: ``d0000/f0000000``..."""
    for index in range(count):
        yield f"d{index // per_dir:04}/f{index:07}"


# -- the child: one listing, measured -----------------------------------------------------------


def keg_entries(env: dict[str, Any]) -> Iterator[Any]:
    kind, prefix = env["kind"], env["prefix"]
    if kind == "memory":
        from keg_storage import MemoryStorage

        storage: Any = MemoryStorage()
        for key in tree(env["count"], env["per_dir"]):
            storage.store(key, b"")
        return storage.iter_list(prefix)
    if kind == "localfs":
        from keg_storage import LocalFSStorage

        return LocalFSStorage(env["root"]).iter_list(prefix)
    if kind == "s3":
        from keg_storage.backends.s3 import S3Storage

        s3 = env["s3"]
        storage = S3Storage(
            BUCKET, s3["region"], s3["access_key"], s3["secret_key"], endpoint_url=s3["endpoint"]
        )
        return storage.iter_list(prefix)
    from keg_storage.backends.azure import AzureStorage

    az = env["azure"]
    storage = AzureStorage(az["account"], az["key"], az["container"], account_url=az["url"])
    return storage.iter_list(prefix)


def raw_entries(env: dict[str, Any]) -> Iterator[Any]:
    kind, prefix = env["kind"], env["prefix"]
    if kind == "localfs":
        return raw_walk(os.path.join(env["root"], prefix))
    if kind == "s3":
        client = s3_client(env["s3"])
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return (obj for page in pages for obj in page.get("Contents", ()))
    container = azure_container(env["azure"])
    pages = container.list_blobs(name_starts_with=prefix).by_page()
    return (blob for page in pages for blob in page)


def raw_walk(top: str) -> Iterator[os.stat_result]:
    for directory, _, files in os.walk(top):
        for name in files:
            yield os.lstat(os.path.join(directory, name))


def child(env: dict[str, Any]) -> None:
    make: Callable[[dict[str, Any]], Iterator[Any]] = raw_entries if env["raw"] else keg_entries
    started = time.perf_counter()
    entries = make(env)
    setup = time.perf_counter() - started
    reset_peak_rss()
    before = rss_mib()
    started = time.perf_counter()
    count, first = 0, None
    for _ in entries:
        if first is None:
            first = time.perf_counter() - started
        count += 1
    total = time.perf_counter() - started
    result = {"count": count, "first": first, "total": total, "setup": setup}
    result["rss_growth"] = peak_rss_mib() - before
    print(json.dumps(result))


# -- the parent: data, servers, rounds -------------------------------------------------------------


def s3_client(s3: dict[str, str]) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=s3["endpoint"],
        aws_access_key_id=s3["access_key"],
        aws_secret_access_key=s3["secret_key"],
        region_name=s3["region"],
        config=Config(
            signature_version="s3v4", s3={"addressing_style": "path"}, max_pool_connections=32
        ),
    )


def azure_container(az: dict[str, str]) -> Any:
    from azure.storage.blob import BlobServiceClient

    service = BlobServiceClient(
        az["url"], credential={"account_name": az["account"], "account_key": az["key"]}
    )
    return service.get_container_client(az["container"])


def populate_s3(s3: dict[str, str], keys: list[str]) -> None:
    client = s3_client(s3)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: client.put_object(Bucket=BUCKET, Key=key, Body=b""), keys))


def populate_azure(az: dict[str, str], keys: list[str]) -> None:
    container = azure_container(az)
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(lambda key: container.upload_blob(key, b"", overwrite=True), keys))


def populate_localfs(root: Path, keys: list[str]) -> None:
    for key in keys:
        path = root / key
        if not path.parent.is_dir():
            path.parent.mkdir(parents=True)
        path.touch()


def run_child(env: dict[str, Any]) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(env)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def summary(values: list[float], unit: str, digits: int = 2) -> str:
    return (
        f"{statistics.median(values):.{digits}f}{unit} "
        f"({min(values):.{digits}f}-{max(values):.{digits}f})"
    )


def measure(base: dict[str, Any], counts: list[int], repeat: int, raw: bool) -> None:
    """Round-robin: for each repeat, each count, raw then keg; then one line per count."""
    results: dict[tuple[int, bool], list[dict[str, Any]]] = {}
    for _ in range(repeat):
        for count in counts:
            for is_raw in (True, False) if raw else (False,):
                env = {**base, "count": count, "prefix": f"n{count}/", "raw": is_raw}
                if base["kind"] == "localfs":
                    env["prefix"] = ""
                    env["root"] = str(Path(base["root"]) / f"n{count}")
                if base["kind"] == "memory":
                    env["prefix"] = ""
                result = run_child(env)
                assert result["count"] == count, (base["kind"], count, result["count"])
                results.setdefault((count, is_raw), []).append(result)
    for count in counts:
        keg = results[(count, False)]
        line = (
            f"{base['kind']:8} {count:>9,} keys  keg: rss +"
            f"{summary([r['rss_growth'] for r in keg], ' MiB', 1)}  first "
            f"{summary([r['first'] * 1000 for r in keg], ' ms', 1)}  total "
            f"{summary([r['total'] for r in keg], ' s')}"
        )
        if raw:
            raws = results[(count, True)]
            ratios = [r["total"] / k["total"] for r, k in zip(raws, keg, strict=True)]
            line += (
                f"  | raw: rss +{summary([r['rss_growth'] for r in raws], ' MiB', 1)} total "
                f"{summary([r['total'] for r in raws], ' s')}  raw/keg {summary(ratios, 'x')}"
            )
        print(line, flush=True)


def prepare(
    kind: str,
    base: dict[str, Any],
    counts: list[int],
    stack: ExitStack,
    scratch: Path,
    options: argparse.Namespace,
) -> None:
    """Start the server of ``kind`` (none for ``--azure-url``) and write the keys of ``counts``
    to it; ``base`` gets what the children need to reach them."""
    per_dir = base["per_dir"]
    if kind == "localfs":
        base["root"] = str(scratch)
        for count in counts:
            populate_localfs(scratch / f"n{count}", list(tree(count, per_dir)))
    elif kind == "s3":
        from tests.servers.seaweedfs import running_seaweedfs

        server = stack.enter_context(running_seaweedfs())
        base["s3"] = {
            "endpoint": server.endpoint_url,
            "access_key": server.access_key,
            "secret_key": server.secret_key,
            "region": server.region,
        }
        s3_client(base["s3"]).create_bucket(Bucket=BUCKET)
        for count in counts:
            populate_s3(base["s3"], [f"n{count}/{k}" for k in tree(count, per_dir)])
    elif kind == "azure":
        from tests.servers.azurite import ACCOUNT, ACCOUNT_KEY, run_azurite

        base["azure"] = {"account": ACCOUNT, "key": ACCOUNT_KEY, "url": options.azure_url}
        base["azure"]["container"] = options.azure_container
        if options.azure_url:
            return
        base["azure"]["url"] = stack.enter_context(run_azurite(scratch / "azurite")).account_url
        azure_container(base["azure"]).create_container()
        for count in counts:
            populate_azure(base["azure"], [f"n{count}/{k}" for k in tree(count, per_dir)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full counts")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", default="memory,localfs,s3,azure")
    parser.add_argument("--azure-url", help="an Azurite already holding the keys (see above)")
    parser.add_argument("--azure-container", default=CONTAINER)
    options = parser.parse_args()
    if options.child:
        child(json.loads(options.child))
        return
    kinds = options.only.split(",")
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="listing-bench-")))
        print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; medians (min-max)")
        for kind in kinds:
            full = int(FULL[kind] * options.scale)
            counts = [full, full // 10]
            dirs = 1000 if kind in ("memory", "localfs") else 50
            per_dir = full // dirs  # the tenth: as many keys a directory, a tenth of the dirs
            base: dict[str, Any] = {"kind": kind, "per_dir": per_dir}
            started = time.perf_counter()
            prepare(kind, base, counts, stack, scratch, options)
            print(
                f"{kind}: {counts[0]:,} keys in {dirs} directories of {per_dir:,} (and a tenth: "
                f"{dirs // 10} directories), populated in "
                f"{time.perf_counter() - started:.0f} s",
                flush=True,
            )
            measure(base, counts, options.repeat, raw=kind != "memory")


if __name__ == "__main__":
    main()
