"""The public surface of the package (CONTRACT §1, §6)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import keg_storage
from keg_storage import errors
from keg_storage.backends import base


@pytest.mark.parametrize(
    "name",
    [
        "FileMode",
        "ShareLinkOperation",
        "ListEntry",
        "RemoteFile",
        "StorageBackend",
        "InternalLinksStorageBackend",
        "InternalLinkTokenData",
        "ProgressCallback",
        "FileNotFoundInStorageError",
    ],
)
def test_base_names(name: str) -> None:
    assert getattr(base, name) is getattr(keg_storage, name)


@pytest.mark.parametrize(
    ("error", "builtin"),
    [
        (errors.FileNotFoundInStorageError, FileNotFoundError),
        (errors.InvalidPathError, ValueError),
        (errors.StoragePermissionError, PermissionError),
        (errors.UnsupportedOperationError, NotImplementedError),
        (errors.StorageConnectionError, ConnectionError),
        (errors.FileExistsInStorageError, FileExistsError),
        (errors.PreconditionFailedError, errors.StorageError),
        (errors.LinkTokenError, errors.StorageError),
        (errors.ExpiredLinkTokenError, errors.LinkTokenError),
    ],
)
def test_error_hierarchy(error: type[Exception], builtin: type[Exception]) -> None:
    assert issubclass(error, errors.StorageError)
    assert issubclass(error, builtin)
    assert getattr(keg_storage, error.__name__) is error


def test_not_found_keeps_the_documented_signature() -> None:
    exc = errors.FileNotFoundInStorageError("S3Storage", "a/b.txt")
    assert (exc.storage_type, exc.filename) == ("S3Storage", "a/b.txt")
    assert str(exc) == "File not found (backend S3Storage, path 'a/b.txt')"


def test_import_without_optional_sdks() -> None:
    code = textwrap.dedent(
        """
        import sys
        for blocked in ("boto3", "botocore", "azure", "paramiko", "flask"):
            sys.modules[blocked] = None
        import keg_storage
        from keg_storage import LocalFSStorage, MemoryStorage, FileMode
        from keg_storage import *
        try:
            S3Storage("bucket", "eu-west-1")
        except MissingDependencyError as exc:
            assert 'keg-storage[s3]' in str(exc)
        else:
            raise AssertionError("S3Storage without boto3 raised nothing")
        assert "flask" not in [m for m in sys.modules if sys.modules[m] is not None]
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr


def test_backends_never_import_flask_at_module_level() -> None:
    code = textwrap.dedent(
        """
        import sys
        import keg_storage.backends.base, keg_storage.backends.filesystem
        import keg_storage.backends.memory
        print("flask" in sys.modules)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_version() -> None:
    assert keg_storage.__version__ == keg_storage.version.VERSION


PUBLIC_NAMES = {
    "AzureStorage",
    "Capabilities",
    "DeleteResult",
    "ExpiredLinkTokenError",
    "FileExistsInStorageError",
    "FileMode",
    "FileNotFoundInStorageError",
    "FileStat",
    "InternalLinkTokenData",
    "InternalLinksStorageBackend",
    "InvalidPathError",
    "LinkTokenError",
    "LinkViewMixin",
    "ListEntry",
    "LocalFSError",
    "LocalFSStorage",
    "MalformedLinkTokenError",
    "MemoryStorage",
    "MissingDependencyError",
    "PreconditionFailedError",
    "ProgressCallback",
    "RemoteFile",
    "RemoteTextFile",
    "S3Storage",
    "SFTPStorage",
    "ShareLinkOperation",
    "Storage",
    "StorageBackend",
    "StorageConnectionError",
    "StorageError",
    "StorageOperations",
    "StoragePermissionError",
    "TransferResult",
    "UnsupportedOperationError",
    "__version__",
    "backends",
    "base",
    "filesystem",
    "from_url",
    "memory",
    "storage_url",
    "sync",
}
"""Every public name of ``keg_storage`` (with Flask installed, as in the tests)."""


def test_package_namespace_holds_public_names_only() -> None:
    """``dir(keg_storage)`` shows the public names, lazy ones included, and no helper
    (``Any``, ``annotations``, ``importlib``); anything else in the module's namespace after a
    fresh import is private (``_``) or one of its own submodules."""
    code = textwrap.dedent(
        """
        import json, types
        import keg_storage
        print(json.dumps({
            "all": keg_storage.__all__,
            "dir": dir(keg_storage),
            "other": sorted(
                name for name, value in vars(keg_storage).items()
                if not name.startswith("_") and name not in keg_storage.__all__
                and not (isinstance(value, types.ModuleType)
                         and value.__name__ == "keg_storage." + name)
            ),
        }))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    namespace = json.loads(result.stdout)
    assert set(namespace["all"]) == PUBLIC_NAMES
    assert len(namespace["all"]) == len(PUBLIC_NAMES)
    public_in_dir = [name for name in namespace["dir"] if not name.endswith("__")]
    assert public_in_dir == sorted(PUBLIC_NAMES - {"__version__"})
    assert {"__all__", "__doc__", "__file__", "__name__", "__version__"} <= set(namespace["dir"])
    assert namespace["other"] == []
    for name in PUBLIC_NAMES:
        assert getattr(keg_storage, name) is not None
