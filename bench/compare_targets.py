"""The stores bench/compare.py measures, each reachable three ways: keg_storage, its raw SDK (or
standard tool) used the documented best-practice way, and rclone.

The parent process starts the servers (the test harness in tests/servers) and hands each child
a plain JSON context; :func:`make_target` turns that context back into a :class:`Target` in the
child. Raw operations name remote files by key, as keg_storage does, so that one workload
function serves every store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

from bench.sftp import paramiko_client, run_sftp_batch
from tests.servers.azurite import ACCOUNT, ACCOUNT_KEY, run_azurite
from tests.servers.seaweedfs import running_seaweedfs
from tests.servers.sshd import SSHServer

Ctx = dict[str, Any]
BUCKET = "keg-bench"
CONTAINER = "bench"
AZURE_CONCURRENCY = 4
AZURE_BATCH = 256  # the most sub-requests one Azure blob batch may carry
S3_BATCH = 1000  # the most keys one DeleteObjects request may carry


class Target:
    """One store. Subclasses give keg_storage's backend and the raw side, and name the raw
    calls per kind of workload in ``raw_labels`` ("upload", "download", "small", "put",
    "exists"); a store without a raw counterpart (memory) leaves it empty."""

    name = ""
    raw_labels: dict[str, str] = {}

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx

    @cached_property
    def storage(self) -> Any:
        """keg_storage's backend for this store, made once per child process."""
        return self.make_keg()

    def keg(self) -> Any:
        return self.storage

    def make_keg(self) -> Any:
        raise NotImplementedError

    def warm_raw(self) -> None:
        """Untimed: build the raw SDK's client (no connection is opened), as ``keg()`` builds
        keg_storage's backend before the clock starts."""

    def raw_upload(self, local: Path, key: str) -> None:
        raise NotImplementedError

    def raw_download(self, key: str, local: Path) -> None:
        raise NotImplementedError

    def raw_put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def raw_get(self, key: str) -> bytes:
        raise NotImplementedError

    def raw_list(self, prefix: str) -> list[str]:
        raise NotImplementedError

    def raw_delete(self, keys: list[str]) -> None:
        """Delete ``keys`` with the SDK's batch call where it has one."""
        raise NotImplementedError

    def raw_exists(self, key: str) -> bool:
        raise NotImplementedError

    def make_dir(self, prefix: str) -> None:
        """Untimed: create the directory ``prefix`` where the raw side needs it to exist."""

    def clear(self, prefix: str) -> None:
        """Untimed: remove everything under ``prefix``."""
        keys = self.raw_list(prefix)
        if keys:
            self.raw_delete(keys)

    def rclone_remote(self, path: str) -> str:
        raise NotImplementedError

    def rclone_env(self) -> dict[str, str]:
        return {}


class MemoryTarget(Target):
    """keg_storage's in-process store, measured alone as the floor of the library's overhead."""

    name = "memory"

    def make_keg(self) -> Any:
        from keg_storage import MemoryStorage

        return MemoryStorage()

    def clear(self, prefix: str) -> None:
        """Nothing to clear: each child process starts with an empty store."""


class LocalFSTarget(Target):
    """A directory on the local disk; raw is ``shutil.copyfile`` (the kernel's copy, as ``cp``)
    and plain ``open``/``os.walk``/``os.unlink`` for small files."""

    name = "localfs"
    raw_labels = {
        "upload": "shutil.copyfile",
        "download": "shutil.copyfile",
        "small": "open/os.walk/os.unlink",
        "put": "open().write",
        "get": "open().read",
        "exists": "os.path.exists",
    }

    @property
    def root(self) -> Path:
        return Path(self.ctx["localfs_root"])

    def make_keg(self) -> Any:
        from keg_storage import LocalFSStorage

        return LocalFSStorage(self.root)

    def raw_upload(self, local: Path, key: str) -> None:
        shutil.copyfile(local, self.root / key)

    def raw_download(self, key: str, local: Path) -> None:
        shutil.copyfile(self.root / key, local)

    def raw_put(self, key: str, data: bytes) -> None:
        with open(self.root / key, "wb") as f:
            f.write(data)

    def raw_get(self, key: str) -> bytes:
        with open(self.root / key, "rb") as f:
            return f.read()

    def raw_list(self, prefix: str) -> list[str]:
        top = self.root / prefix
        if not top.is_dir():
            return []
        return sorted(
            str(Path(folder, name).relative_to(self.root))
            for folder, _, names in os.walk(top)
            for name in names
        )

    def raw_delete(self, keys: list[str]) -> None:
        for key in keys:
            os.unlink(self.root / key)

    def raw_exists(self, key: str) -> bool:
        return (self.root / key).exists()

    def make_dir(self, prefix: str) -> None:
        (self.root / prefix).mkdir(parents=True, exist_ok=True)

    def clear(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)

    def rclone_remote(self, path: str) -> str:
        return str(self.root / path)


class S3Target(Target):
    """SeaweedFS; raw is boto3 with its default TransferConfig."""

    name = "s3"
    raw_labels = {
        "upload": "boto3 upload_fileobj",
        "download": "boto3 download_fileobj",
        "small": "boto3 put_object/list_objects_v2/get_object/delete_objects",
        "put": "boto3 put_object",
        "get": "boto3 get_object",
        "exists": "boto3 head_object",
    }

    @cached_property
    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.ctx["s3_endpoint"],
            aws_access_key_id=self.ctx["s3_access_key"],
            aws_secret_access_key=self.ctx["s3_secret_key"],
            region_name=self.ctx["s3_region"],
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def warm_raw(self) -> None:
        assert self.client

    def make_keg(self) -> Any:
        from keg_storage.backends.s3 import S3Storage

        return S3Storage(
            BUCKET,
            self.ctx["s3_region"],
            self.ctx["s3_access_key"],
            self.ctx["s3_secret_key"],
            endpoint_url=self.ctx["s3_endpoint"],
        )

    def raw_upload(self, local: Path, key: str) -> None:
        with open(local, "rb") as f:
            self.client.upload_fileobj(f, BUCKET, key)

    def raw_download(self, key: str, local: Path) -> None:
        with open(local, "wb") as f:
            self.client.download_fileobj(BUCKET, key, f)

    def raw_put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data)

    def raw_get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        return body

    def raw_list(self, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def raw_delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), S3_BATCH):
            batch = [{"Key": key} for key in keys[start : start + S3_BATCH]]
            self.client.delete_objects(Bucket=BUCKET, Delete={"Objects": batch, "Quiet": True})

    def raw_exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=BUCKET, Key=key)
        except ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey"):
                return False
            raise
        return True

    def rclone_remote(self, path: str) -> str:
        return f"kegs3:{BUCKET}/{path}"

    def rclone_env(self) -> dict[str, str]:
        return {
            "RCLONE_CONFIG_KEGS3_TYPE": "s3",
            "RCLONE_CONFIG_KEGS3_PROVIDER": "SeaweedFS",
            "RCLONE_CONFIG_KEGS3_ENDPOINT": self.ctx["s3_endpoint"],
            "RCLONE_CONFIG_KEGS3_ACCESS_KEY_ID": self.ctx["s3_access_key"],
            "RCLONE_CONFIG_KEGS3_SECRET_ACCESS_KEY": self.ctx["s3_secret_key"],
            "RCLONE_CONFIG_KEGS3_REGION": self.ctx["s3_region"],
            "RCLONE_CONFIG_KEGS3_FORCE_PATH_STYLE": "true",
        }


class AzureTarget(Target):
    """Azurite; raw is azure-storage-blob with ``max_concurrency=4`` and ``delete_blobs``."""

    name = "azure"
    raw_labels = {
        "upload": "upload_blob (max_concurrency=4)",
        "download": "download_blob(max_concurrency=4).readinto",
        "small": "upload_blob/list_blobs/download_blob/delete_blobs",
        "put": "upload_blob",
        "get": "download_blob().readall",
        "exists": "BlobClient.exists",
    }

    @cached_property
    def container(self) -> Any:
        from azure.storage.blob import ContainerClient

        credential = {"account_name": ACCOUNT, "account_key": ACCOUNT_KEY}
        return ContainerClient(self.ctx["azure_account_url"], CONTAINER, credential=credential)

    def warm_raw(self) -> None:
        assert self.container

    def make_keg(self) -> Any:
        from keg_storage.backends.azure import AzureStorage

        return AzureStorage(
            ACCOUNT,
            ACCOUNT_KEY,
            CONTAINER,
            account_url=self.ctx["azure_account_url"],
            max_concurrency=AZURE_CONCURRENCY,
        )

    def raw_upload(self, local: Path, key: str) -> None:
        with open(local, "rb") as f:
            self.container.get_blob_client(key).upload_blob(
                f, length=local.stat().st_size, overwrite=True, max_concurrency=AZURE_CONCURRENCY
            )

    def raw_download(self, key: str, local: Path) -> None:
        with open(local, "wb") as f:
            blob = self.container.get_blob_client(key)
            blob.download_blob(max_concurrency=AZURE_CONCURRENCY).readinto(f)

    def raw_put(self, key: str, data: bytes) -> None:
        self.container.get_blob_client(key).upload_blob(data, overwrite=True)

    def raw_get(self, key: str) -> bytes:
        data: bytes = self.container.get_blob_client(key).download_blob().readall()
        return data

    def raw_list(self, prefix: str) -> list[str]:
        return [blob.name for blob in self.container.list_blobs(name_starts_with=prefix)]

    def raw_delete(self, keys: list[str]) -> None:
        for start in range(0, len(keys), AZURE_BATCH):
            self.container.delete_blobs(*keys[start : start + AZURE_BATCH])

    def raw_exists(self, key: str) -> bool:
        return bool(self.container.get_blob_client(key).exists())

    def rclone_remote(self, path: str) -> str:
        return f"kegaz:{CONTAINER}/{path}"

    def rclone_env(self) -> dict[str, str]:
        # Debian's rclone 1.60 builds https://<account>.<endpoint> from an account and key; a
        # SAS URL is the one setting that reaches an emulator on an arbitrary loopback port.
        return {
            "RCLONE_CONFIG_KEGAZ_TYPE": "azureblob",
            "RCLONE_CONFIG_KEGAZ_SAS_URL": self.ctx["azure_sas_url"],
        }


class SFTPTarget(Target):
    """OpenSSH's sshd; raw is ``sftp -b`` for whole files and paramiko (on a TCP_NODELAY socket,
    one connection) for small files. The server's directory is on this machine, so untimed
    set-up and clean-up use the local file system."""

    name = "sftp"
    raw_labels = {
        "upload": "OpenSSH sftp -b put",
        "download": "OpenSSH sftp -b get",
        "small": "paramiko open/listdir/remove (one connection)",
        "put": "paramiko open().write (one connection)",
        "get": "paramiko open().read (one connection)",
        "exists": "paramiko stat (one connection)",
    }

    @property
    def data_dir(self) -> Path:
        return Path(self.ctx["sftp_data_dir"])

    def make_keg(self) -> Any:
        from keg_storage.backends.sftp import SFTPStorage

        return SFTPStorage(
            "127.0.0.1",
            "root",
            self.ctx["key"],
            self.ctx["known_hosts"],
            port=self.ctx["port"],
            base_path=str(self.data_dir),
        )

    @cached_property
    def sftp(self) -> Any:
        return paramiko_client(self.ctx).open_sftp()

    def raw_upload(self, local: Path, key: str) -> None:
        run_sftp_batch(self.ctx, f'put "{local}" "{self.data_dir / key}"')

    def raw_download(self, key: str, local: Path) -> None:
        run_sftp_batch(self.ctx, f'get "{self.data_dir / key}" "{local}"')

    def raw_put(self, key: str, data: bytes) -> None:
        with self.sftp.open(str(self.data_dir / key), "wb") as f:
            f.write(data)

    def raw_get(self, key: str) -> bytes:
        with self.sftp.open(str(self.data_dir / key), "rb") as f:
            data: bytes = f.read()
            return data

    def raw_list(self, prefix: str) -> list[str]:
        return sorted(f"{prefix}/{name}" for name in self.sftp.listdir(str(self.data_dir / prefix)))

    def raw_delete(self, keys: list[str]) -> None:
        for key in keys:
            self.sftp.remove(str(self.data_dir / key))

    def raw_exists(self, key: str) -> bool:
        try:
            self.sftp.stat(str(self.data_dir / key))
        except FileNotFoundError:
            return False
        return True

    def make_dir(self, prefix: str) -> None:
        (self.data_dir / prefix).mkdir(parents=True, exist_ok=True)

    def clear(self, prefix: str) -> None:
        shutil.rmtree(self.data_dir / prefix, ignore_errors=True)

    def rclone_remote(self, path: str) -> str:
        return f"kegsftp:{self.data_dir / path}"

    def rclone_env(self) -> dict[str, str]:
        return {
            "RCLONE_CONFIG_KEGSFTP_TYPE": "sftp",
            "RCLONE_CONFIG_KEGSFTP_HOST": "127.0.0.1",
            "RCLONE_CONFIG_KEGSFTP_PORT": str(self.ctx["port"]),
            "RCLONE_CONFIG_KEGSFTP_USER": "root",
            "RCLONE_CONFIG_KEGSFTP_KEY_FILE": self.ctx["key"],
            "RCLONE_CONFIG_KEGSFTP_KNOWN_HOSTS_FILE": self.ctx["known_hosts"],
            # The server runs internal-sftp only: no shell to probe for md5sum.
            "RCLONE_CONFIG_KEGSFTP_SHELL_TYPE": "none",
        }


TARGETS: dict[str, type[Target]] = {
    target.name: target
    for target in (S3Target, AzureTarget, SFTPTarget, LocalFSTarget, MemoryTarget)
}


def make_target(name: str, ctx: Ctx) -> Target:
    return TARGETS[name](ctx)


def _azure_sas_url(account_url: str) -> str:
    """A container SAS URL (for rclone), valid for a day."""
    from datetime import datetime, timedelta, timezone

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    sas = generate_container_sas(
        ACCOUNT,
        CONTAINER,
        account_key=ACCOUNT_KEY,
        permission=ContainerSasPermissions(read=True, write=True, delete=True, list=True),
        expiry=datetime.now(timezone.utc) + timedelta(days=1),
    )
    return f"{account_url}/{CONTAINER}?{sas}"


@contextlib.contextmanager
def running_servers(backends: list[str], work: Path) -> Iterator[Ctx]:
    """Start the servers ``backends`` need (bucket and container created) and yield the context
    every child gets; stop them on exit."""
    ctx: Ctx = {"tmp": str(work), "localfs_root": str(work / "localfs")}
    (work / "localfs").mkdir()
    with contextlib.ExitStack() as stack:
        if "s3" in backends:
            seaweed = stack.enter_context(running_seaweedfs())
            ctx.update(
                s3_endpoint=seaweed.endpoint_url,
                s3_access_key=seaweed.access_key,
                s3_secret_key=seaweed.secret_key,
                s3_region=seaweed.region,
            )
            S3Target(ctx).client.create_bucket(Bucket=BUCKET)
        if "azure" in backends:
            # Azurite's blobs on tmpfs, as bench/azure.py keeps them, away from the disk's noise.
            shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
            blobs = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-az-", dir=shm))
            azurite = stack.enter_context(run_azurite(Path(blobs)))
            ctx.update(
                azure_account_url=azurite.account_url,
                azure_sas_url=_azure_sas_url(azurite.account_url),
            )
            AzureTarget(ctx).container.create_container()
        if "sftp" in backends:
            sshd = stack.enter_context(SSHServer(work / "sshd"))
            ctx.update(
                port=sshd.port,
                key=str(sshd.client_key),
                known_hosts=str(sshd.known_hosts),
                sftp_data_dir=str(sshd.data_dir),
            )
        yield ctx


def rclone_sync(src: str, dst: str, env: dict[str, str], jobs: int) -> None:
    """``rclone sync SRC DST`` with ``jobs`` transfers and checkers."""
    command = ["rclone", "sync", src, dst, f"--transfers={jobs}", f"--checkers={jobs}"]
    # rclone's AWS SDK refuses an AWS_CA_BUNDLE with its own HTTP transport
    # (LoadCustomCABundleError); the servers are plain HTTP on loopback, so it is not needed.
    inherited = {name: value for name, value in os.environ.items() if name != "AWS_CA_BUNDLE"}
    done = subprocess.run(command, env={**inherited, **env}, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
