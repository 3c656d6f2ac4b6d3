"""Ctrl-C during ``keg-storage put`` of a large file to SFTP (the real script, the real sshd),
and during an S3 ``upload_many`` of small files (a real SeaweedFS).

SIGINT lands at a random moment of the upload: in the middle of a packet, while write
acknowledgements are pending, or while the temp file is being opened. The process must exit
within 5 s every time and leave no temp file on the server. ``KEG_STORAGE_SIGINT_RUNS`` sets the
number of runs (3 by default; 10 in ``tox -e chaos``); ``KEG_STORAGE_SIGINT_SEED`` the delays.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SSHServer

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024
RUNS = int(os.environ.get("KEG_STORAGE_SIGINT_RUNS", "3"))
SEED = int(os.environ.get("KEG_STORAGE_SIGINT_SEED", "20261203"))
SCRIPT = Path(sys.executable).with_name("keg-storage")


def temp_files(directory: str) -> list[str]:
    return [name for _, _, files in os.walk(directory) for name in files if name.startswith(".keg")]


def interrupted(process: subprocess.Popen[bytes], delay: float, run: int) -> tuple[bytes, bytes]:
    """Send SIGINT to ``process`` after ``delay`` seconds; what it wrote, once it exited, which
    must be within 5 s."""
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"seed {SEED} run {run}: still running 5 s after SIGINT at {delay:.2f} s")


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """200 MiB: a random MiB repeated (incompressible per packet, cheap to make)."""
    path = tmp_path / "big.bin"
    block = os.urandom(MiB)
    with path.open("wb") as file:
        for _ in range(200):
            file.write(block)
    return path


def test_sigint_during_put_exits_within_5_s_and_leaves_no_temp_file(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path, big_file: Path
) -> None:
    config = tmp_path / "storage.toml"
    config.write_text(
        "[profiles.remote]\n"
        'backend = "sftp"\n'
        'host = "127.0.0.1"\n'
        f"port = {sftp_server.port}\n"
        'username = "root"\n'
        f'key_filename = "{sftp_server.client_key}"\n'
        f'known_host_keys = "{sftp_server.host_key_line()}"\n'
        f'base_path = "{sftp_base_path}"\n'
    )
    rng = random.Random(SEED)
    for run in range(RUNS):
        delay = rng.uniform(0.3, 2.0)  # start-up and connecting included: the upload takes ~2 s
        process = subprocess.Popen(
            [str(SCRIPT), "--config", str(config), "put", str(big_file), f"run{run}/big.bin"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        _, stderr = interrupted(process, delay, run)
        assert temp_files(sftp_base_path) == [], f"seed {SEED} run {run} (SIGINT at {delay:.2f} s)"
        published = Path(sftp_base_path, f"run{run}", "big.bin")
        if published.exists():  # the upload finished before the signal: whole, then
            assert published.stat().st_size == big_file.stat().st_size, stderr.decode()


UPLOAD_MANY = """
import os, sys
from keg_storage.backends.s3 import S3Storage

bucket, region, endpoint, source = sys.argv[1:]
storage = S3Storage(
    bucket, region, os.environ["KEY_ID"], os.environ["SECRET"], endpoint_url=endpoint
)
pairs = [(os.path.join(source, name), "sig/" + name) for name in sorted(os.listdir(source))]
print("ready", flush=True)
storage.upload_many(pairs, max_concurrency=8)
print("done", flush=True)
"""


def test_sigint_during_an_s3_batch_of_small_files_stops_it_within_5_s(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: S3Client, tmp_path: Path
) -> None:
    """``upload_many`` sends its small files from the calling thread on 8 connections at once
    (asyncio): Ctrl-C stops it at any moment; every object stored is a whole file."""
    source = tmp_path / "small"
    source.mkdir()
    files = {f"{number:04}.bin": os.urandom(4096) for number in range(3000)}
    for name, data in files.items():
        (source / name).write_bytes(data)
    endpoint_and_source = (seaweedfs.endpoint_url, str(source))
    rng = random.Random(SEED)
    environment = {**os.environ, "KEY_ID": seaweedfs.access_key, "SECRET": seaweedfs.secret_key}
    for run in range(RUNS):
        process = subprocess.Popen(
            [sys.executable, "-c", UPLOAD_MANY, s3_bucket, seaweedfs.region, *endpoint_and_source],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=environment,
        )
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n", process.stderr.read()
        delay = rng.uniform(0.05, 0.8)  # the upload takes about 1.5 s
        out, err = interrupted(process, delay, run)
        assert out == b"done\n" or b"KeyboardInterrupt" in err, err.decode()
        listed = s3_client.get_paginator("list_objects_v2").paginate(
            Bucket=s3_bucket, Prefix="sig/"
        )
        for page in listed:
            for entry in page.get("Contents", []):
                body = s3_client.get_object(Bucket=s3_bucket, Key=entry["Key"])["Body"].read()
                assert body == files[entry["Key"][4:]], f"seed {SEED} run {run}: {entry['Key']}"
