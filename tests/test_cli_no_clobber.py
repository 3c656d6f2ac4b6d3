"""``--no-clobber`` on ``put``, ``copy``, ``move`` and ``link --upload``: create-only writes
decided by the service (SFTP on sshd here; S3 links on SeaweedFS), one line and exit 1 when the
target exists, and a clear refusal where the backend cannot write create-only."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from keg_storage import LocalFSStorage
from keg_storage.cli import main
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SSHServer
from tests.test_cli_network import run, s3_profile, sftp_config

EXISTS = "Error: {!r} exists on SFTPStorage 'box'; not replaced (--no-clobber)\n"


class OverwritingStorage(LocalFSStorage):
    """A backend that cannot write create-only (a third-party one, say)."""

    capabilities = dataclasses.replace(LocalFSStorage.capabilities, conditional_create=False)


@pytest.fixture
def sftp_cli(tmp_path: Path, sftp_server: SSHServer, sftp_base_path: str) -> list[str]:
    return ["--config", sftp_config(tmp_path, sftp_server, sftp_base_path)]


def test_put_no_clobber(sftp_cli: list[str], sftp_base_path: str, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, [*sftp_cli, "put", "--no-clobber", "-", "a.txt"], input=b"one")
    assert (result.exit_code, result.output) == (0, "Uploaded stdin to a.txt.\n")
    result = runner.invoke(main, [*sftp_cli, "put", "-n", "-", "a.txt"], input=b"two")
    assert (result.exit_code, result.output) == (1, EXISTS.format("a.txt"))
    local = tmp_path / "local.txt"
    local.write_bytes(b"three")
    result = runner.invoke(main, [*sftp_cli, "put", "--no-clobber", str(local), "a.txt"])
    assert (result.exit_code, result.output) == (1, EXISTS.format("a.txt"))
    assert Path(sftp_base_path, "a.txt").read_bytes() == b"one"
    result = runner.invoke(main, [*sftp_cli, "put", str(local), "a.txt"])  # without: replaced
    assert result.exit_code == 0
    assert Path(sftp_base_path, "a.txt").read_bytes() == b"three"


def test_copy_and_move_no_clobber(sftp_cli: list[str], sftp_base_path: str) -> None:
    runner = CliRunner()
    for name, data in (("src.txt", b"source"), ("taken.txt", b"old")):
        assert runner.invoke(main, [*sftp_cli, "put", "-", name], input=data).exit_code == 0
    for command in ("copy", "move"):
        result = runner.invoke(main, [*sftp_cli, command, "--no-clobber", "src.txt", "taken.txt"])
        assert (result.exit_code, result.output) == (1, EXISTS.format("taken.txt"))
    assert Path(sftp_base_path, "src.txt").read_bytes() == b"source"
    assert Path(sftp_base_path, "taken.txt").read_bytes() == b"old"

    result = runner.invoke(main, [*sftp_cli, "copy", "-n", "src.txt", "copy.txt"])
    assert (result.exit_code, result.output) == (0, "Copied src.txt to copy.txt.\n")
    result = runner.invoke(main, [*sftp_cli, "move", "-n", "src.txt", "moved.txt"])
    assert (result.exit_code, result.output) == (0, "Moved src.txt to moved.txt.\n")
    assert sorted(p.name for p in Path(sftp_base_path).iterdir()) == [
        "copy.txt",
        "moved.txt",
        "taken.txt",
    ]
    assert Path(sftp_base_path, "moved.txt").read_bytes() == b"source"


def test_no_clobber_as_a_subprocess(sftp_cli: list[str], sftp_base_path: str) -> None:
    """As a user runs it: exit 1, nothing on stdout, the one line on stderr."""
    Path(sftp_base_path, "a.txt").write_bytes(b"old")
    done, _ = run(*sftp_cli, "copy", "--no-clobber", "a.txt", "a.txt")
    assert (done.returncode, done.stdout, done.stderr) == (1, "", EXISTS.format("a.txt"))
    done, _ = run(*sftp_cli, "move", "--no-clobber", "a.txt", "b.txt")
    assert (done.returncode, done.stderr) == (0, "Moved a.txt to b.txt.\n")
    assert Path(sftp_base_path, "b.txt").read_bytes() == b"old"


def test_no_clobber_where_the_backend_cannot(tmp_path: Path) -> None:
    config = tmp_path / "plain.toml"
    config.write_text(
        f'[profiles.plain]\nbackend = "{__name__}:OverwritingStorage"\n'
        f'root = "{tmp_path / "root"}"\nname = "plain"\n'
    )
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.txt").write_bytes(b"old")
    message = (
        "Error: --no-clobber needs create-only writes, which OverwritingStorage 'plain' cannot do\n"
    )
    runner = CliRunner()
    for args in (["put", "-n", "-", "b.txt"], ["copy", "-n", "a.txt", "b.txt"]):
        result = runner.invoke(main, ["--config", str(config), *args], input=b"new")
        assert (result.exit_code, result.output) == (1, message)
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["a.txt"]


def test_link_no_clobber_is_for_upload_links(sftp_cli: list[str]) -> None:
    result = CliRunner().invoke(main, [*sftp_cli, "link", "--no-clobber", "a.txt"])
    assert result.exit_code == 2
    assert result.output.endswith("Error: --no-clobber applies to upload links: add --upload\n"), (
        result.output
    )


def test_s3_create_only_upload_link_prints_its_header(
    tmp_path: Path, seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """The printed curl command sends ``If-None-Match: *``: it uploads once, then SeaweedFS
    refuses to replace the file."""
    s3_env = {"TEST_S3_KEY_ID": seaweedfs.access_key, "TEST_S3_SECRET": seaweedfs.secret_key}
    config = s3_profile(tmp_path, seaweedfs.endpoint_url, s3_bucket)
    done, _ = run("--config", config, "link", "--upload", "--no-clobber", "up.txt", env=s3_env)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert done.stderr == (
        "upload with: curl -X PUT -H 'Content-Type: application/octet-stream' "
        f"-H 'If-None-Match: *' --upload-file FILE '{url}'\n"
    )
    words = shlex.split(done.stderr.removeprefix("upload with: "))
    headers = dict(words[i + 1].split(": ", 1) for i, w in enumerate(words) if w == "-H")
    assert requests.put(url, data=b"first", headers=headers, timeout=10).status_code == 200
    assert requests.put(url, data=b"second", headers=headers, timeout=10).status_code == 412
    done, _ = run("--config", config, "get", "up.txt", "-", env=s3_env)
    assert done.stdout == "first"
