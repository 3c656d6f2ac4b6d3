"""No secret in any repr, error, DEBUG log or traceback with locals (CONTRACT §6, issue 12.4).

Error reporters (Sentry and the like) record ``traceback.TracebackException(...,
capture_locals=True)``: the locals of every frame of the exception and of its causes and
contexts. Each test renders exactly that and looks for every spelling of the secret. The values
a test looks for are module constants or fixture attributes, never locals of the test itself:
the test's own frame is part of what is rendered.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import pickle
import traceback
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import paramiko
import pytest
from azure.storage.blob import ContainerClient

from keg_storage import (
    LinkTokenError,
    MemoryStorage,
    StorageBackend,
    StorageConnectionError,
    StorageError,
    StoragePermissionError,
)
from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.s3 import S3Storage
from keg_storage.backends.sftp import SFTPStorage
from tests.servers.azurite import Azurite
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import PASSWORD_USER, SSHServer

LINK_SECRET = "link-secret-Qw7ZpL2x"
WRONG_PASSWORD = "wrong-password-Hj3kV9"
PASSPHRASE = "passphrase-Lm4Nb8Rt"
WRONG_PASSPHRASE = "wrong-passphrase-Xc5Vb1"
WRONG_AWS_SECRET = "wrong-aws-secret-Zx9Cv7Bn3Mq1"
SESSION_TOKEN = "session-token-Fg6Hj2Kl8Pw0+/="
WRONG_AZURE_KEY = base64.b64encode(b"wrong-azure-key-Tr5Yu1Io7").decode()
FIVE_MINUTES = timedelta(minutes=5)


# -- helpers ---------------------------------------------------------------------------------


def render(exc: BaseException) -> str:
    """What an error reporter records: the chain with every frame's locals."""
    text = traceback.TracebackException(
        type(exc), exc, exc.__traceback__, capture_locals=True
    ).format()
    return "".join(text)


def spellings(value: str | bytes) -> set[str]:
    """Every form in which ``value`` could show: plain, repr, hex, base64 (with and without
    padding), URL-quoted."""
    if isinstance(value, str):
        return {value, value.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")}
    encoded = {base64.b64encode(value).decode(), base64.urlsafe_b64encode(value).decode()}
    return {value.hex(), repr(value)[2:-1], *encoded, *(e.rstrip("=") for e in encoded)}


def derived_key(name: str, secret: str) -> bytes:
    """The link signing key, computed as the library does: sha512(name + 'signer' + secret)."""
    return hashlib.sha512(f"{name}signer{secret}".encode()).digest()


def assert_hidden(text: str, *values: str | bytes) -> None:
    for value in values:
        for form in spellings(value):
            assert form not in text, f"{form!r} shows in:\n{text[:4000]}"


def shown(storage: StorageBackend) -> str:
    """repr and str of the backend, and repr of every attribute and of theirs (one level down)."""
    parts = [repr(storage), str(storage), repr(vars(storage))]
    for value in vars(storage).values():
        parts.append(repr(value))
        parts += [repr(inner) for inner in getattr(value, "__dict__", {}).values()]
    return "\n".join(parts)


@pytest.fixture
def debug_log() -> Iterator[list[logging.LogRecord]]:
    """Every record of every logger at DEBUG, as a root handler sees them."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Collect(logging.DEBUG)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def formatted(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(message)s")
    return "\n".join(formatter.format(record) for record in records)


# -- the Secret type -------------------------------------------------------------------------


def test_secret_shows_redacted_and_cannot_be_pickled() -> None:
    from keg_storage.secrets import Secret

    secret = Secret(LINK_SECRET)
    assert repr(secret) == str(secret) == "Secret('***')"
    assert secret.reveal() == LINK_SECRET
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(secret)


@pytest.mark.parametrize(
    ("line", "hidden"),
    [
        ("headers={'X-Amz-Security-Token': b'FwoGZXIvYXdzEJr'}", "FwoGZXIvYXdzEJr"),
        ("x-amz-security-token:FwoGZXIvYXdzEJr\nhost:s3", "FwoGZXIvYXdzEJr"),
        ("?X-Amz-Security-Token=Fwo%2BGZX&X-Amz-Signature=0a1b2c3d", "Fwo%2BGZX"),
        ("'Authorization': b'AWS4-HMAC-SHA256 Credential=AK/x, Signature=9f8e7d'", "9f8e7d"),
        ("GET /c?sv=2024&sr=c&sig=AbC%2Bd%3D HTTP/1.1", "AbC%2Bd%3D"),
        ("Authorization: SharedKey devstoreaccount1:q1w2e3r4", "q1w2e3r4"),
    ],
)
def test_credential_headers_are_redacted_from_sdk_logs(
    line: str, hidden: str, debug_log: list[logging.LogRecord]
) -> None:
    """Credentials the backend never saw (from the environment) are redacted by their header."""
    MemoryStorage()  # any backend turns the redaction on
    logging.getLogger("botocore.endpoint").debug("Sending %s", line)
    logging.getLogger("azure.core.pipeline").debug(line)
    text = formatted(debug_log)
    assert text.count("***") >= 2
    assert hidden not in text


# -- internal links --------------------------------------------------------------------------


def link_storage() -> MemoryStorage:
    return MemoryStorage("files", linked_endpoint="link", secret_key=LINK_SECRET)


def test_link_backend_shows_no_secret() -> None:
    storage = link_storage()
    assert_hidden(shown(storage), LINK_SECRET, derived_key("files", LINK_SECRET))


def bad_tokens() -> dict[str, str]:
    key = derived_key("files", LINK_SECRET)
    claims = {"key": "a.txt", "op": "d", "exp": 2_000_000_000}
    return {
        "garbage": "not-a-token",
        "expired": jwt.encode({**claims, "exp": 1}, key, algorithm="HS512"),
        "forged": jwt.encode(claims, b"another key" * 8, algorithm="HS512"),
        "other algorithm": jwt.encode(claims, key, algorithm="HS256"),
        "bad claims": jwt.encode({**claims, "key": "../x"}, key, algorithm="HS512"),
        "missing claims": jwt.encode({"exp": 2_000_000_000}, key, algorithm="HS512"),
    }


@pytest.mark.parametrize("kind", sorted(bad_tokens()))
def test_bad_link_tokens_leave_no_key_in_the_traceback(kind: str) -> None:
    storage = MemoryStorage("files", linked_endpoint="link", secret_key=["rotated", LINK_SECRET])
    with pytest.raises(LinkTokenError) as caught:
        storage.deserialize_link_token(bad_tokens()[kind])
    assert_hidden(
        render(caught.value),
        LINK_SECRET,
        derived_key("files", LINK_SECRET),
        derived_key("files", "rotated"),
    )


def test_link_secret_is_hidden_on_construction_errors() -> None:
    with pytest.raises(ValueError, match="empty") as caught:
        MemoryStorage("files", secret_key=[LINK_SECRET, ""])
    assert_hidden(render(caught.value), LINK_SECRET, derived_key("files", LINK_SECRET))


# -- SFTP ------------------------------------------------------------------------------------


def password_storage(server: SSHServer, password: str, **options: Any) -> SFTPStorage:
    return SFTPStorage(
        "127.0.0.1",
        PASSWORD_USER,
        known_hosts_fpath=str(server.known_hosts),
        port=server.port,
        password=password,
        base_path=str(server.password_user_dir),
        secret_key=LINK_SECRET,
        **options,
    )


def encrypted_key_text() -> str:
    """An RSA private key encrypted with PASSPHRASE, as text."""
    out = io.StringIO()
    paramiko.RSAKey.generate(1024).write_private_key(out, password=PASSPHRASE)
    return out.getvalue()


def key_body(text: str) -> str:
    """The base64 lines of a PEM, joined (what must never show)."""
    return "".join(line for line in text.splitlines()[1:-1] if ":" not in line and line)


def test_sftp_backend_shows_no_secret(sftp_server: SSHServer) -> None:
    with password_storage(sftp_server, sftp_server.password, passphrase=PASSPHRASE) as storage:
        assert storage.exists("nothing.txt") is False
        assert_hidden(
            shown(storage), sftp_server.password, PASSPHRASE, derived_key("sftp", LINK_SECRET)
        )


def test_sftp_wrong_password_hides_it(sftp_server: SSHServer) -> None:
    with password_storage(sftp_server, WRONG_PASSWORD, retry=0) as storage:
        with pytest.raises(StorageConnectionError, match="authentication failed") as caught:
            storage.exists("a.txt")
        assert_hidden(render(caught.value), WRONG_PASSWORD, derived_key("sftp", LINK_SECRET))


def test_sftp_wrong_passphrase_hides_it_and_the_key(sftp_server: SSHServer, tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(encrypted_key_text())
    with pytest.raises(ValueError) as caught:
        SFTPStorage(
            "127.0.0.1",
            "root",
            port=sftp_server.port,
            pkey=key_file.read_text(),
            passphrase=WRONG_PASSPHRASE,
            password=WRONG_PASSWORD,
            secret_key=LINK_SECRET,
        )
    assert_hidden(
        render(caught.value),
        WRONG_PASSPHRASE,
        WRONG_PASSWORD,
        LINK_SECRET,
        key_body(key_file.read_text()),
    )


def test_sftp_wrong_passphrase_of_a_key_file_hides_it(
    sftp_server: SSHServer, tmp_path: Path
) -> None:
    key_file = tmp_path / "key.pem"
    key_file.write_text(encrypted_key_text())
    with (
        SFTPStorage(
            "127.0.0.1",
            "root",
            str(key_file),
            str(sftp_server.known_hosts),
            port=sftp_server.port,
            passphrase=WRONG_PASSPHRASE,
            retry=0,
        ) as storage,
        pytest.raises(StorageError) as caught,
    ):
        storage.exists("a.txt")
    assert_hidden(render(caught.value), WRONG_PASSPHRASE, key_body(key_file.read_text()))


def test_sftp_constructor_errors_hide_the_password() -> None:
    with pytest.raises(ValueError, match="host_key_policy") as caught:
        SFTPStorage(
            "127.0.0.1",
            "user",
            password=WRONG_PASSWORD,
            passphrase=WRONG_PASSPHRASE,
            secret_key=LINK_SECRET,
            host_key_policy="nonsense",
        )
    assert_hidden(render(caught.value), WRONG_PASSWORD, WRONG_PASSPHRASE, LINK_SECRET)


def test_sftp_debug_log_shows_no_password(
    sftp_server: SSHServer, debug_log: list[logging.LogRecord]
) -> None:
    with password_storage(sftp_server, sftp_server.password) as storage:
        storage.upload(io.BytesIO(b"x"), "a.txt")
        assert storage.exists("a.txt")
        storage.delete("a.txt")
    with (
        password_storage(sftp_server, WRONG_PASSWORD, retry=0) as storage,
        pytest.raises(StorageConnectionError),
    ):
        storage.exists("a.txt")
    assert debug_log
    assert_hidden(formatted(debug_log), sftp_server.password, WRONG_PASSWORD)


# -- S3 --------------------------------------------------------------------------------------


def s3_storage(server: SeaweedFS, bucket: str, secret: str, **options: Any) -> S3Storage:
    return S3Storage(
        bucket,
        server.region,
        server.access_key,
        secret,
        endpoint_url=options.pop("endpoint_url", server.endpoint_url),
        max_attempts=1,
        **options,
    )


def test_s3_backend_shows_no_secret(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    with s3_storage(
        seaweedfs, s3_bucket, seaweedfs.secret_key, aws_session_token=SESSION_TOKEN
    ) as storage:
        assert_hidden(shown(storage), seaweedfs.secret_key, SESSION_TOKEN)


def test_s3_wrong_secret_key_hides_it_and_the_session_token(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    with (
        s3_storage(
            seaweedfs, s3_bucket, WRONG_AWS_SECRET, aws_session_token=SESSION_TOKEN
        ) as storage,
        pytest.raises(StoragePermissionError) as caught,
    ):
        storage.list()
    assert_hidden(render(caught.value), WRONG_AWS_SECRET, SESSION_TOKEN)


def test_s3_unreachable_with_a_session_token_hides_it(seaweedfs: SeaweedFS, s3_bucket: str) -> None:
    with s3_storage(
        seaweedfs,
        s3_bucket,
        WRONG_AWS_SECRET,
        aws_session_token=SESSION_TOKEN,
        endpoint_url="http://127.0.0.1:1",
    ) as storage:
        for operation in (
            lambda: storage.exists("a.txt"),
            lambda: storage.download("a.txt", io.BytesIO()),
        ):
            with pytest.raises(StorageConnectionError) as caught:
                operation()
            assert_hidden(render(caught.value), WRONG_AWS_SECRET, SESSION_TOKEN)


def test_s3_debug_log_shows_no_secret_or_session_token(
    seaweedfs: SeaweedFS, s3_bucket: str, debug_log: list[logging.LogRecord]
) -> None:
    with s3_storage(seaweedfs, s3_bucket, seaweedfs.secret_key) as storage:
        storage.upload(io.BytesIO(b"data"), "a.txt")
        assert storage.exists("a.txt")
        storage.link_to("a.txt", "download", FIVE_MINUTES)
    with s3_storage(
        seaweedfs, s3_bucket, seaweedfs.secret_key, aws_session_token=SESSION_TOKEN
    ) as storage:
        with pytest.raises(StorageError):
            storage.upload(io.BytesIO(b"data"), "b.txt")
        assert "X-Amz-Security-Token" in storage.link_to("a.txt", "download", FIVE_MINUTES)
    assert any(record.name.startswith("botocore.") for record in debug_log)
    assert_hidden(formatted(debug_log), seaweedfs.secret_key, SESSION_TOKEN)


# -- Azure -----------------------------------------------------------------------------------


def test_azure_backends_show_no_key_or_sas(
    azurite: Azurite, backend_azure: AzureStorage, azure_container: ContainerClient
) -> None:
    assert_hidden(shown(backend_azure), azurite.key)
    with AzureStorage(sas_container_url=backend_azure.create_container_url(FIVE_MINUTES)) as shared:
        assert_hidden(shown(shared), sas_signature(shared), azurite.key)


def sas_signature(storage: AzureStorage) -> str:
    url = storage.sas_container_url or storage.sas_blob_url or ""
    return url.partition("sig=")[2].partition("&")[0]


def test_azure_wrong_key_hides_it(azurite: Azurite, azure_container: ContainerClient) -> None:
    with AzureStorage(
        azurite.account,
        WRONG_AZURE_KEY,
        azure_container.container_name,
        account_url=azurite.account_url,
        retry=0,
    ) as storage:
        with pytest.raises(StoragePermissionError) as caught:
            storage.exists("a.txt")
        assert_hidden(render(caught.value), WRONG_AZURE_KEY)


def test_azure_key_that_is_no_base64_is_hidden(
    azurite: Azurite, azure_container: ContainerClient
) -> None:
    with AzureStorage(
        azurite.account,
        "not base64 at all: Vb8Nm2Qw",
        azure_container.container_name,
        account_url=azurite.account_url,
        retry=0,
    ) as storage:
        with pytest.raises(Exception) as caught:
            storage.exists("a.txt")
        assert_hidden(render(caught.value), "not base64 at all: Vb8Nm2Qw")
        with pytest.raises(Exception) as caught:
            storage.link_to("a.txt", "download", FIVE_MINUTES)
        assert_hidden(render(caught.value), "not base64 at all: Vb8Nm2Qw")


def sas_backend(storage: AzureStorage, *, unreachable: bool = False) -> AzureStorage:
    """A container-SAS backend from ``storage``: through a closed port, or with a forged
    signature (built here, so that the URL is in no local of the test)."""
    url = storage.create_container_url(FIVE_MINUTES)
    if unreachable:
        url = "http://127.0.0.1:1/" + url.split("/", 3)[3]
    else:
        url = url.replace("sig=", "sig=AAAA")
    return AzureStorage(sas_container_url=url, retry=0)


@pytest.mark.parametrize("unreachable", [True, False], ids=["unreachable", "forged"])
def test_azure_sas_url_errors_hide_the_signature(
    backend_azure: AzureStorage, unreachable: bool
) -> None:
    with sas_backend(backend_azure, unreachable=unreachable) as shared:
        with pytest.raises(StorageError) as caught:
            shared.list()
        assert_hidden(render(caught.value), sas_signature(shared))


def test_azure_debug_log_shows_no_key_or_sas(
    azurite: Azurite,
    backend_azure: AzureStorage,
    azure_container: ContainerClient,
    debug_log: list[logging.LogRecord],
) -> None:
    backend_azure.upload(io.BytesIO(b"data"), "a.txt")
    assert backend_azure.exists("a.txt")
    url = backend_azure.create_container_url(FIVE_MINUTES)
    with AzureStorage(sas_container_url=url) as shared:
        assert [entry.name for entry in shared.list()] == ["a.txt"]
        signature = sas_signature(shared)
    with (
        AzureStorage(sas_container_url=url.replace("sig=", "sig=AAAA"), retry=0) as shared,
        pytest.raises(StoragePermissionError),
    ):
        shared.list()
    with (
        AzureStorage(
            azurite.account,
            WRONG_AZURE_KEY,
            azure_container.container_name,
            account_url=azurite.account_url,
            retry=0,
        ) as storage,
        pytest.raises(StoragePermissionError),
    ):
        storage.exists("a.txt")
    assert any(record.name.startswith("azure.") for record in debug_log)
    assert_hidden(formatted(debug_log), azurite.key, WRONG_AZURE_KEY, signature)
