"""``keg-storage`` against real servers (SeaweedFS, Azurite, sshd) and dead ones (issue 14).

Where the terminal matters (nothing but one line on stderr, the exit code) the command runs as
a subprocess, as a user runs it.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from azure.storage.blob import ContainerClient
from click.testing import CliRunner

from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.s3 import S3Storage
from keg_storage.backends.sftp import SFTPStorage
from keg_storage.cli import backend_from_profile, main
from tests.servers.azurite import Azurite
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SSHServer

SCRIPT = Path(sys.executable).with_name("keg-storage")


def run(
    *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``keg-storage`` as a user would; the result and the seconds it took."""
    started = time.monotonic()
    done = subprocess.run(
        [SCRIPT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    return done, time.monotonic() - started


def assert_error_after_retries(
    done: subprocess.CompletedProcess[str], retries: int, *parts: str
) -> None:
    """Exit code 1, nothing on stdout; on stderr one ``keg-storage: ... retrying`` line per
    retry, then one ``Error:`` line holding ``parts``: no traceback, no SDK output."""
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    *notices, error = done.stderr.splitlines()
    assert len(notices) == retries, done.stderr
    for attempt, notice in enumerate(notices, start=2):
        assert re.fullmatch(
            rf"keg-storage: .+ failed \(.+\) at .+; retrying \(attempt {attempt} of \d+\)", notice
        ), notice
    assert error.startswith("Error: "), done.stderr
    for part in parts:
        assert part in error


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    for connection in held:
        connection.close()
    server.close()


@pytest.fixture
def refused_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def s3_profile(tmp_path: Path, endpoint_url: str, bucket: str, extra: str = "") -> str:
    """A TOML profile for the test server, its keys read from the environment."""
    config = tmp_path / "s3.toml"
    config.write_text(
        f"""
[profiles.archive]
backend = "s3"
bucket = "{bucket}"
aws_region = "us-east-1"
endpoint_url = "{endpoint_url}"
aws_access_key_id = "${{TEST_S3_KEY_ID}}"
aws_secret_access_key = "${{TEST_S3_SECRET}}"
{extra}
"""
    )
    return str(config)


@pytest.fixture
def s3_env(seaweedfs: SeaweedFS) -> dict[str, str]:
    return {"TEST_S3_KEY_ID": seaweedfs.access_key, "TEST_S3_SECRET": seaweedfs.secret_key}


def test_cli_network_defaults_and_overrides() -> None:
    """Issue 14.3: short timeouts when the profile sets none; the profile's own, else
    ``--timeout``, win."""
    s3 = {"backend": "s3", "bucket": "b", "aws_region": "us-east-1"}
    with backend_from_profile("a", s3) as backend:
        assert isinstance(backend, S3Storage)
        assert backend.max_attempts == 3
    with backend_from_profile("a", {**s3, "max_attempts": 7}) as backend:
        assert isinstance(backend, S3Storage)
        assert backend.max_attempts == 7
    azure = {"backend": "azure", "account": "a", "key": "a2V5", "bucket": "c"}
    with backend_from_profile("a", azure) as backend:
        assert isinstance(backend, AzureStorage)
        assert backend.timeout == (5, 10)
        assert backend.retry == 2
    with backend_from_profile("a", {**azure, "timeout": [3, 4]}) as backend:
        assert isinstance(backend, AzureStorage)
        assert backend.timeout == (3, 4)
    with backend_from_profile("a", azure, timeout=2) as backend:
        assert isinstance(backend, AzureStorage)
        assert backend.timeout == 2
    sftp = {"backend": "sftp", "host": "127.0.0.1"}
    with backend_from_profile("a", sftp) as backend:
        assert isinstance(backend, SFTPStorage)
        assert (backend.timeout, backend.retry) == (5, 1)
    with backend_from_profile("a", {**sftp, "timeout": 30}, timeout=1.5) as backend:
        assert isinstance(backend, SFTPStorage)
        assert backend.timeout == 1.5


def test_s3_server_that_never_answers(
    tmp_path: Path, silent_port: int, s3_env: dict[str, str]
) -> None:
    """The profile asks for 60 s; ``--timeout 1`` makes it give up in seconds, in one line."""
    config = s3_profile(
        tmp_path, f"http://127.0.0.1:{silent_port}", "b", "read_timeout = 60\nmax_attempts = 2"
    )
    done, took = run("--config", config, "--timeout", "1", "list", env=s3_env)
    # max_attempts = 2: one retry, reported.
    assert_error_after_retries(done, 1, f"127.0.0.1:{silent_port}", "no answer within 1 s")
    assert took < 15
    # The profile's own timeout beats the CLI's default (10 s per read).
    config = s3_profile(
        tmp_path, f"http://127.0.0.1:{silent_port}", "b", "read_timeout = 1\nmax_attempts = 2"
    )
    done, took = run("--config", config, "list", env=s3_env)
    assert_error_after_retries(done, 1, f"127.0.0.1:{silent_port}", "no answer within 1 s")
    assert took < 15


@pytest.mark.parametrize("backend", ["s3", "azure", "sftp"])
def test_refused_port_is_one_line(
    tmp_path: Path, refused_port: int, s3_env: dict[str, str], backend: str
) -> None:
    """A server that is down: one line naming where, no traceback, no SDK output."""
    profiles = {
        "s3": s3_profile(tmp_path, f"http://127.0.0.1:{refused_port}", "b"),
        "azure": f"""
[profiles.archive]
backend = "azure"
account = "devstoreaccount1"
key = "a2V5"
bucket = "c"
account_url = "http://127.0.0.1:{refused_port}/devstoreaccount1"
""",
        "sftp": f"""
[profiles.archive]
backend = "sftp"
host = "127.0.0.1"
port = {refused_port}
host_key_policy = "auto_add"
""",
    }
    config = tmp_path / "down.toml"
    if backend == "s3":
        config = Path(profiles["s3"])
    else:
        config.write_text(profiles[backend])
    done, took = run("--config", str(config), "--timeout", "1", "list", env=s3_env)
    # The CLI's defaults: S3 3 attempts, Azure 2 retries, SFTP 1 retry.
    retries = {"s3": 2, "azure": 2, "sftp": 1}[backend]
    assert_error_after_retries(done, retries, f"127.0.0.1:{refused_port}", "Connection refused")
    assert took < 30


def test_sftp_server_that_never_answers(tmp_path: Path, silent_port: int) -> None:
    config = tmp_path / "silent.toml"
    config.write_text(
        f"""
[profiles.box]
backend = "sftp"
host = "127.0.0.1"
port = {silent_port}
host_key_policy = "auto_add"
"""
    )
    done, took = run("--config", str(config), "--timeout", "1", "list")
    assert_error_after_retries(done, 1, f"127.0.0.1:{silent_port}", "no answer within 1 s")
    assert took < 30


def test_s3_upload_link_prints_the_headers_it_needs(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str, s3_env: dict[str, str]
) -> None:
    """Issue 14.4: stdout is the bare URL; stderr the curl command, whose headers make a real
    PUT to SeaweedFS succeed (without them the signature does not match)."""
    config = s3_profile(tmp_path, seaweedfs.endpoint_url, s3_bucket)
    done, _ = run(
        "--config", config, "link", "--upload", "--content-type", "text/csv", "up.csv", env=s3_env
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert done.stdout == url + "\n"
    assert done.stderr == (
        f"upload with: curl -X PUT -H 'Content-Type: text/csv' --upload-file FILE '{url}'\n"
    )
    words = shlex.split(done.stderr.removeprefix("upload with: "))
    header_name, _, header_value = words[words.index("-H") + 1].partition(": ")
    assert requests.put(url, data=b"a,b\n", timeout=10).status_code == 403
    response = requests.put(url, data=b"a,b\n", headers={header_name: header_value}, timeout=10)
    assert response.status_code == 200, response.text
    done, _ = run("--config", config, "get", "up.csv", "-", env=s3_env)
    assert done.stdout == "a,b\n"
    done, _ = run("--config", config, "stat", "up.csv", env=s3_env)
    assert "content_type: text/csv\n" in done.stdout


def sftp_config(tmp_path: Path, server: SSHServer, base_path: str) -> str:
    config = tmp_path / "sftp.toml"
    config.write_text(
        f"""
[profiles.box]
backend = "sftp"
host = "127.0.0.1"
port = {server.port}
username = "root"
key_filename = "{server.client_key}"
known_hosts_fpath = "{server.known_hosts}"
base_path = "{base_path}"
"""
    )
    return str(config)


def test_sftp_missing_base_path(
    tmp_path: Path, sftp_server: SSHServer, sftp_base_path: str
) -> None:
    """Issue 14.7: ``list`` says the base_path is missing (exit 1) and ``put`` refuses to create
    it."""
    missing = f"{sftp_base_path}/not-here"
    runner = CliRunner()
    config = sftp_config(tmp_path, sftp_server, missing)
    message = f"Error: base_path {missing!r} does not exist on SFTPStorage 'box'\n"
    result = runner.invoke(main, ["--config", config, "list"])
    assert (result.exit_code, result.output) == (1, message)
    result = runner.invoke(main, ["--config", config, "put", "-", "a.txt"], input=b"a")
    assert (result.exit_code, result.output) == (1, message)
    assert not Path(missing).exists()

    config = sftp_config(tmp_path, sftp_server, sftp_base_path)
    result = runner.invoke(main, ["--config", config, "put", "-", "a.txt"], input=b"a")
    assert (result.exit_code, result.output) == (0, "Uploaded stdin to a.txt.\n")
    result = runner.invoke(main, ["--config", config, "list", "--simple"])
    assert (result.exit_code, result.output) == (0, "a.txt\n")
    result = runner.invoke(main, ["--config", config, "put", "--content-type", "x/y", "-", "b"])
    assert result.output.startswith(
        "keg-storage: warning: SFTPStorage 'box' stores no content type; --content-type is "
        "ignored\n"
    )


def test_azure_upload_link_prints_the_headers_it_needs(
    tmp_path: Path, azurite: Azurite, azure_container: ContainerClient
) -> None:
    """Azure refuses a PUT of a blob without its type: the printed command sends it."""
    config = tmp_path / "azure.toml"
    config.write_text(
        f"""
[profiles.blobs]
backend = "azure"
account = "{azurite.account}"
key = "${{TEST_AZURE_KEY}}"
bucket = "{azure_container.container_name}"
account_url = "{azurite.account_url}"
"""
    )
    env = {"TEST_AZURE_KEY": azurite.key}
    done, _ = run("--config", str(config), "link", "--upload", "up.txt", env=env)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert done.stderr == (
        f"upload with: curl -X PUT -H 'x-ms-blob-type: BlockBlob' --upload-file FILE '{url}'\n"
    )
    assert requests.put(url, data=b"blob", timeout=10).status_code == 400
    response = requests.put(url, data=b"blob", headers={"x-ms-blob-type": "BlockBlob"}, timeout=10)
    assert response.status_code == 201, response.text
    assert azure_container.download_blob("up.txt").readall() == b"blob"
