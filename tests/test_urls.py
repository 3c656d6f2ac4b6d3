"""from_url, storage_url and URL locations without a server: LocalFS on a real disk, Memory, and
the configuration (no request made) of S3, Azure and SFTP URLs. The round trips on the real
servers are the conformance kit's (tests/conformance/test_urls.py)."""

from __future__ import annotations

import traceback
from datetime import timedelta
from pathlib import Path

import pytest

from keg_storage import (
    AzureStorage,
    InvalidPathError,
    LocalFSStorage,
    MemoryStorage,
    S3Storage,
    from_url,
    storage_url,
)
from keg_storage.urls import open_location, split_locations, url_options

S3_HINT = (
    ", or leave it to boto3's credential chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in "
    "the environment, aws_profile, an instance role)"
)
SFTP_HINT = ", or use a key file (key_filename) or an SSH agent (allow_agent=true)"


def refusal(scheme: str, what: str, option: str, hint: str = "") -> str:
    return (
        f"{scheme}:// URL refused: {what} is a secret, and URLs end up in logs; pass it as an "
        f"option instead (from_url(url, {option}=...), or the profile's options, which may read "
        f"it from the environment){hint}"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "sftp://deploy:hunter2-pw@files.example.com/srv",
            refusal("sftp", "the password in the URL's user part", "password", SFTP_HINT),
        ),
        (
            "s3://AKIAEXAMPLE:hunter2-pw@bucket/app",
            refusal("s3", "the password in the URL's user part", "aws_secret_access_key") + S3_HINT,
        ),
        (
            "az://assets:hunter2-pw@container?account=acct",
            refusal("az", "the password in the URL's user part", "key"),
        ),
        (
            "sftp://files.example.com/srv?password=hunter2-pw",
            refusal("sftp", "the query parameter 'password'", "password", SFTP_HINT),
        ),
        (
            "sftp://files.example.com/?passphrase=hunter2-pw",
            refusal("sftp", "the query parameter 'passphrase'", "passphrase", SFTP_HINT),
        ),
        (
            "s3://bucket/app?region=eu-west-1&aws_secret_access_key=hunter2-pw",
            refusal("s3", "the query parameter 'aws_secret_access_key'", "aws_secret_access_key")
            + S3_HINT,
        ),
        (
            "s3://bucket?AWS_SESSION_TOKEN=hunter2-pw",
            refusal("s3", "the query parameter 'AWS_SESSION_TOKEN'", "aws_session_token") + S3_HINT,
        ),
        (
            "az://files?account=acct&account_key=hunter2-pw",
            refusal("az", "the query parameter 'account_key'", "key"),
        ),
        ("az://files?key=hunter2-pw", refusal("az", "the query parameter 'key'", "key")),
        (
            "az://files?sv=2024&sig=hunter2-pw",
            refusal("az", "the query parameter 'sig'", "sas_container_url"),
        ),
        (
            "file:///srv?secret_key=hunter2-pw",
            refusal("file", "the query parameter 'secret_key'", "secret_key"),
        ),
        (
            "memory://m?secret_key=hunter2-pw",
            refusal("memory", "the query parameter 'secret_key'", "secret_key"),
        ),
    ],
)
def test_a_url_carrying_a_secret_is_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        from_url(url)
    assert str(refused.value) == message
    assert refused.value.__cause__ is None and refused.value.__context__ is None
    frames = traceback.walk_tb(refused.value.__traceback__)
    ours = [frame for frame, _ in frames if frame.f_globals["__name__"].startswith("keg_storage")]
    assert ours  # the caller's own frame holds the URL it wrote; none of keg_storage's does
    assert all("hunter2-pw" not in repr(frame.f_locals) for frame in ours)


def test_an_unknown_option_names_itself_and_the_valid_ones() -> None:
    with pytest.raises(ValueError) as unknown:
        from_url("memory://m?linked_endpont=x")
    assert str(unknown.value) == (
        "memory:// URL: unknown option 'linked_endpont' (valid: linked_endpoint)"
    )
    with pytest.raises(ValueError, match=r"^s3:// URL: unknown option 'regoin' \(valid: "):
        from_url("s3://bucket?regoin=eu-west-1")


def test_query_values_take_the_constructors_types(tmp_path: Path) -> None:
    local = from_url(f"file://{tmp_path}?fsync=yes&linked_endpoint=files.link")
    assert isinstance(local, LocalFSStorage)
    assert local.fsync is True and local.linked_endpoint == "files.link"
    assert local.root == tmp_path.resolve()
    s3 = from_url(
        "s3://bucket/app?region=eu-west-1&max_concurrency=8&connect_timeout=2.5"
        "&check_directories=false&endpoint_url=http://127.0.0.1:1",
        aws_access_key_id="id",
        aws_secret_access_key="secret",
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.aws_region) == ("bucket", "app", "eu-west-1")
    assert (s3.max_concurrency, s3.connect_timeout, s3.check_directories) == (8, 2.5, False)
    azure = from_url("az://files/tenant?account=acct&retry=3", key="a2V5")
    assert isinstance(azure, AzureStorage)
    assert (azure.bucket, azure.prefix, azure.account, azure.retry) == (
        "files",
        "tenant",
        "acct",
        3,
    )
    with pytest.raises(ValueError) as wrong:
        from_url("memory://m?linked_endpoint=x", linked_endpoint=3)
    assert str(wrong.value) == "memory:// URL: option 'linked_endpoint' must be a str, not int"
    with pytest.raises(ValueError) as not_a_number:
        from_url("s3://bucket?max_concurrency=many")
    assert str(not_a_number.value) == "s3:// URL: option 'max_concurrency' must be an int, not str"


def test_options_add_to_and_override_the_url() -> None:
    memory = from_url("memory://files?linked_endpoint=a", linked_endpoint="b", secret_key="s")
    assert isinstance(memory, MemoryStorage)
    assert (memory.name, memory.linked_endpoint) == ("files", "b")
    token = memory.create_link_token(path="x", operation="download", expire=timedelta(minutes=1))
    assert memory.deserialize_link_token(token).path == "x"  # signed with the secret of the options


def test_sftp_url_parts_fill_host_port_user_and_base_path() -> None:
    alias, options = url_options("sftp://deploy@files.example.com:2222/srv/files?timeout=5")
    assert alias == "sftp"
    assert options == {
        "host": "files.example.com",
        "port": 2222,
        "username": "deploy",
        "base_path": "/srv/files",
        "timeout": "5",
    }
    assert url_options("sftp://files.example.com")[1] == {"host": "files.example.com"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://host/x",
            "unsupported storage URL scheme 'ftp': expected one of file://, "
            "memory://, s3://, az://, sftp://",
        ),
        (
            "bucket/key",
            "not a storage URL: expected one of file://, memory://, s3://, az://, sftp://",
        ),
        ("file://relative/x", "file:// URLs take an absolute path: file:///abs/root"),
        ("s3:///app", "s3:// URL: names no bucket (s3://bucket/...)"),
        ("s3://bucket:99/app", "s3:// URL: takes no port (99)"),
        ("memory://m/a", "memory:// URL: takes no path ('/a')"),
        ("s3://bucket?region=a&region=b", "s3:// URL: option 'region' is given twice"),
        ("s3://bucket#x", "s3:// URL: a '#' fragment means nothing here"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError) as malformed:
        from_url(url)
    assert str(malformed.value) == message


def test_a_prefix_that_escapes_is_refused() -> None:
    with pytest.raises(InvalidPathError, match=r"'\.' and '\.\.' are not allowed in paths"):
        from_url("s3://bucket/app/../other?region=eu-west-1")


def test_storage_url_and_repr(tmp_path: Path) -> None:
    memory = MemoryStorage("files", secret_key="never-shown", linked_endpoint="files.link")
    assert storage_url(memory) == "memory://files?linked_endpoint=files.link"
    assert (
        repr(memory) == "MemoryStorage('memory://files?linked_endpoint=files.link', name='files')"
    )
    local = LocalFSStorage(tmp_path, name="disk")
    assert repr(local) == f"LocalFSStorage('file://{tmp_path.resolve()}', name='disk')"
    s3 = S3Storage("bucket", "eu-west-1", "id", "never-shown", name="files", prefix="/app/")
    assert repr(s3) == "S3Storage('s3://bucket/app?region=eu-west-1', name='files')"
    azure = AzureStorage("acct", "bmV2ZXItc2hvd24=", "box", prefix="t", max_concurrency=2)
    assert repr(azure) == "AzureStorage('az://box/t?account=acct&max_concurrency=2', name='azure')"
    for backend in (memory, s3, azure):
        assert "never-shown" not in repr(backend) and "bmV2ZXI" not in repr(backend)


def test_a_third_party_backend_keeps_the_plain_repr() -> None:
    from keg_storage.testing.example import DictStorage

    assert storage_url(DictStorage()) is None
    assert repr(DictStorage()) == "DictStorage(name='dict')"


def test_locations_split_into_a_store_and_a_path(tmp_path: Path) -> None:
    assert split_locations(["s3://bucket/app/a.txt?region=x"]) == (
        "s3://bucket/app?region=x",
        ["a.txt"],
    )
    assert split_locations(["s3://bucket/a.txt"]) == ("s3://bucket", ["a.txt"])
    assert split_locations(["sftp://h/srv/"]) == ("sftp://h/srv", [""])
    assert split_locations(["file:///a.txt"]) == ("file:///", ["a.txt"])
    assert split_locations(["memory://m/x/y.txt"]) == ("memory://m", ["x/y.txt"])
    assert split_locations(["az://c/p/a/x.txt", "az://c/p/b/y.txt"]) == (
        "az://c/p",
        ["a/x.txt", "b/y.txt"],
    )
    with pytest.raises(ValueError, match="are on different stores"):
        split_locations(["s3://one/a.txt", "s3://two/a.txt"])
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.txt").write_bytes(b"A")
    backend, path = open_location(f"file://{tmp_path}/d/a.txt")
    assert isinstance(backend, LocalFSStorage) and backend.root == (tmp_path / "d").resolve()
    assert path == "a.txt" and backend.open(path, "rb").read() == b"A"
