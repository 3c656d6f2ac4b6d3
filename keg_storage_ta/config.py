"""Configuration of the demo app.

With no setup the app stores files under ``<instance folder>/storage`` (LocalFS) and serves their
links itself. To use another service, put ``KEG_STORAGE_PROFILES`` in ``<instance
folder>/config.py`` (a Python file read at start-up); the profiles below show the options. The
first profile is the default one the demo page uses.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from keg_storage import LocalFSStorage

LINK_ENDPOINT = "demo.link"
"""The endpoint of the demo's LinkView, which serves LocalFS/SFTP/Memory links."""


class DefaultConfig:
    """Settings every instance of the demo starts from."""

    MAX_CONTENT_LENGTH = 1024 * 1024 * 1024
    """Largest upload through the link view (1 GiB)."""
    LINK_EXPIRY_MINUTES = 15
    KEG_STORAGE_LINK_BASE_URL = "http://127.0.0.1:5000"
    """Where ``flask --app keg_storage_ta run`` serves the app, so that ``flask storage link``
    (which runs outside any request) can build the links the app serves. Set it in the
    instance's ``config.py`` when the app is served elsewhere."""


def local_profiles(instance_path: str, secret_key: str) -> list[tuple[Any, dict[str, Any]]]:
    """The default profile: a LocalFS store in the instance folder, links served by the app."""
    root = Path(instance_path) / "storage"
    root.mkdir(parents=True, exist_ok=True)
    return [
        (
            LocalFSStorage,
            {
                "name": "local",
                "root": root,
                "linked_endpoint": LINK_ENDPOINT,
                "secret_key": secret_key,
            },
        ),
        # An S3 bucket (AWS or any S3-compatible server). The browser uploads straight to the
        # bucket, so its CORS rules must allow PUT and DELETE from this app's origin.
        # (
        #     "keg_storage.backends.s3:S3Storage",
        #     {
        #         "name": "s3",
        #         "bucket": "my-bucket",
        #         "aws_region": "eu-west-1",
        #         "aws_access_key_id": os.environ.get("AWS_ACCESS_KEY_ID"),
        #         "aws_secret_access_key": os.environ.get("AWS_SECRET_ACCESS_KEY"),
        #     },
        # ),
        # An Azure Blob Storage container (SAS links; CORS as for S3).
        # (
        #     "keg_storage.backends.azure:AzureStorage",
        #     {
        #         "name": "azure",
        #         "account": "myaccount",
        #         "key": os.environ.get("AZURE_STORAGE_KEY"),
        #         "bucket": "my-container",
        #     },
        # ),
        # A directory on an SFTP server; links are served by this app like LocalFS's.
        # (
        #     "keg_storage.backends.sftp:SFTPStorage",
        #     {
        #         "name": "sftp",
        #         "host": "sftp.example.com",
        #         "username": "demo",
        #         "key_filename": os.path.expanduser("~/.ssh/id_ed25519"),
        #         "known_hosts_fpath": os.path.expanduser("~/.ssh/known_hosts"),
        #         "base_path": "/upload",
        #         "linked_endpoint": LINK_ENDPOINT,
        #         "secret_key": secret_key,
        #     },
        # ),
    ]


def instance_secret_key(instance_path: str) -> str:
    """The app's secret key, made once and kept in ``<instance folder>/secret_key``."""
    path = Path(instance_path) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as key_file:
        key_file.write(key)
    return key
