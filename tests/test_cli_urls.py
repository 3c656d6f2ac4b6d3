"""Storage URLs as CLI locations and as profiles (TOML ``url``, ``KEG_STORAGE_PROFILES``), on a
real disk and on the test servers (the installed ``keg-storage`` run as a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import flask
import pytest
from click.testing import CliRunner

from keg_storage import LocalFSStorage, MemoryStorage, S3Storage, Storage
from keg_storage.cli import main
from tests.servers.seaweedfs import SeaweedFS
from tests.servers.sshd import SSHServer

SCRIPT = Path(sys.executable).with_name("keg-storage")


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEG_STORAGE_CONFIG", raising=False)
    monkeypatch.setenv("KEG_STORAGE_ROOT", str(tmp_path / "default-store"))
    return CliRunner()


def test_every_command_takes_file_urls(runner: CliRunner, tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / "docs").mkdir(parents=True)
    url = f"file://{store}"
    (tmp_path / "in.txt").write_bytes(b"hello")
    assert runner.invoke(main, ["put", "in.txt", f"{url}/docs/a.txt"]).exit_code == 0
    assert (store / "docs" / "a.txt").read_bytes() == b"hello"
    listing = runner.invoke(main, ["list", "--simple", f"{url}/"])
    assert listing.output == "docs/a.txt\n"
    assert runner.invoke(main, ["list", "--simple", f"{url}/docs/"]).output == "a.txt\n"
    got = runner.invoke(main, ["get", f"{url}/docs/a.txt", "-"])
    assert got.exit_code == 0 and got.stdout_bytes == b"hello"
    copied = runner.invoke(main, ["copy", f"{url}/docs/a.txt", f"{url}/b.txt"])
    assert copied.exit_code == 0 and copied.stderr == "Copied docs/a.txt to b.txt.\n"
    assert runner.invoke(main, ["move", f"{url}/b.txt", f"{url}/docs/c.txt"]).exit_code == 0
    stat = runner.invoke(main, ["stat", f"{url}/docs/c.txt"])
    assert stat.output.splitlines()[:2] == ["path: c.txt", "size: 5"]
    assert runner.invoke(main, ["delete", f"{url}/docs/c.txt"]).exit_code == 0
    assert sorted(p.name for p in (store / "docs").iterdir()) == ["a.txt"]
    put = runner.invoke(main, ["put", "in.txt", f"{url}/new/dir/x.txt"])
    assert put.exit_code == 0 and put.stderr == "Uploaded in.txt to new/dir/x.txt.\n"
    assert (store / "new" / "dir" / "x.txt").read_bytes() == b"hello"
    assert runner.invoke(main, ["delete", f"{url}/new/dir/x.txt"]).exit_code == 0
    assert (store / "new" / "dir").is_dir()  # the store was new/dir itself: nothing pruned
    assert not (tmp_path / "default-store").exists()  # no command used the default store


def test_url_mistakes_are_one_line(runner: CliRunner, tmp_path: Path) -> None:
    mixed = runner.invoke(main, ["copy", f"file://{tmp_path}/a.txt", "b.txt"])
    assert mixed.exit_code == 2
    assert mixed.output.endswith("Error: give every location as a storage URL, or none\n")
    secret = runner.invoke(main, ["get", "sftp://me:hunter2-pw@host/srv/a.txt", "-"])
    assert secret.exit_code == 1
    assert "hunter2-pw" not in secret.output
    assert secret.output.startswith(
        "Error: sftp:// URL refused: the password in the URL's user part is a secret"
    )
    typo = runner.invoke(main, ["list", f"file://{tmp_path}/?fsnyc=true"])
    assert typo.output == (
        "Error: file:// URL: unknown option 'fsnyc' (valid: fsync, linked_endpoint, name)\n"
    )
    missing = runner.invoke(main, ["stat", f"file://{tmp_path}/nope.txt"])
    assert missing.exit_code == 1
    assert (
        missing.output == "Error: File not found (backend LocalFSStorage 'file', path 'nope.txt')\n"
    )


def test_toml_profiles_as_urls(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORE_DIR", str(tmp_path))
    (tmp_path / "files").mkdir()
    config = tmp_path / "storage.toml"
    config.write_text(
        '[profiles.files]\nurl = "file://${STORE_DIR}/files?fsync=true"\nsecret_key = "s3cret"\n'
        '[profiles.both]\nurl = "memory://m"\nbackend = "memory"\n'
        '[profiles.leaky]\nurl = "sftp://h/?password=hunter2-pw"\n'
    )
    put = runner.invoke(main, ["--config", str(config), "put", "-", "x.txt"], input=b"1")
    assert put.exit_code == 0
    assert (tmp_path / "files" / "x.txt").read_bytes() == b"1"
    both = runner.invoke(main, ["--config", str(config), "-p", "both", "list"])
    assert both.output == "Error: profile 'both': give 'backend' or 'url', not both\n"
    leaky = runner.invoke(main, ["--config", str(config), "-p", "leaky", "list"])
    assert leaky.output.startswith(
        "Error: profile 'leaky': sftp:// URL refused: the query parameter 'password' is a secret"
    )
    assert "hunter2-pw" not in leaky.output


def test_flask_profiles_as_urls(tmp_path: Path) -> None:
    app = flask.Flask(__name__)
    app.config["KEG_STORAGE_PROFILES"] = [
        ("files", "memory://files?linked_endpoint=files.link"),
        ("disk", {"url": f"file://{tmp_path}", "secret_key": "s3cret"}),
        (
            "archive",
            {
                "url": "s3://archive/app?region=eu-west-1",
                "aws_access_key_id": "id",
                "aws_secret_access_key": "hunter2-pw",
            },
        ),
        (MemoryStorage, {"name": "classic"}),
    ]
    storage = Storage(app)
    with app.app_context():
        assert storage.profile_names == ["files", "disk", "archive", "classic"]
        files = storage.get_interface("files")
        assert isinstance(files, MemoryStorage)
        assert (files.name, files.linked_endpoint) == ("files", "files.link")
        disk = storage.get_interface("disk")
        assert isinstance(disk, LocalFSStorage) and disk.name == "disk"
        assert disk.root == tmp_path.resolve()
        archive = storage.get_interface("archive")
        assert isinstance(archive, S3Storage)
        assert repr(archive) == "S3Storage('s3://archive/app?region=eu-west-1', name='archive')"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            ("leaky", "sftp://me:hunter2-pw@host/"),
            "KEG_STORAGE_PROFILES[0] (profile 'leaky'): sftp:// URL refused: the password in",
        ),
        (
            ("typo", {"url": "memory://m?linked_endpont=x"}),
            "KEG_STORAGE_PROFILES[0] (profile 'typo'): memory:// URL: unknown option "
            "'linked_endpont' (valid: linked_endpoint)",
        ),
    ],
)
def test_flask_url_profile_mistakes_name_the_entry(entry: Any, message: str) -> None:
    app = flask.Flask(__name__)
    app.config["KEG_STORAGE_PROFILES"] = [entry]
    with pytest.raises(ValueError) as wrong:
        Storage(app)
    assert str(wrong.value).startswith(message)
    assert "hunter2-pw" not in str(wrong.value)


def test_s3_urls_in_the_installed_command(
    seaweedfs: SeaweedFS, s3_bucket: str, s3_client: Any, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "KEG_STORAGE_ROOT": str(tmp_path / "unused"),
    }
    query = f"?region={seaweedfs.region}&endpoint_url={seaweedfs.endpoint_url}"
    (tmp_path / "in.txt").write_bytes(b"to s3")
    base = f"s3://{s3_bucket}/app"
    run = lambda *args: subprocess.run(  # noqa: E731
        [SCRIPT, *args], env=env, capture_output=True, timeout=120
    )
    put = run("put", str(tmp_path / "in.txt"), f"{base}/docs/in.txt{query}")
    assert put.returncode == 0, put.stderr
    assert [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == [
        "app/docs/in.txt"
    ]
    listing = run("list", "--simple", f"{base}/{query}")
    assert listing.stdout == b"docs/in.txt\n"
    assert run("get", f"{base}/docs/in.txt{query}", "-").stdout == b"to s3"
    assert run("list", "--simple", f"s3://{s3_bucket}/{query}").stdout == b"app/docs/in.txt\n"


def test_sftp_url_in_the_installed_command(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path
) -> None:
    Path(sftp_base_path, "sub").mkdir()
    Path(sftp_base_path, "sub", "a.txt").write_bytes(b"over ssh")
    query = f"?key_filename={sftp_server.client_key}&known_hosts_fpath={sftp_server.known_hosts}"
    url = f"sftp://root@127.0.0.1:{sftp_server.port}{sftp_base_path}/sub/a.txt{query}"
    env = {**os.environ, "KEG_STORAGE_ROOT": str(tmp_path / "unused")}
    got = subprocess.run([SCRIPT, "get", url, "-"], env=env, capture_output=True, timeout=120)
    assert got.returncode == 0, got.stderr
    assert got.stdout == b"over ssh"
    missing = subprocess.run(
        [SCRIPT, "list", url.replace("/sub/a.txt", "/nowhere/")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1
    assert missing.stderr == (
        f"Error: base_path '{sftp_base_path}/nowhere' does not exist on SFTPStorage 'sftp'\n"
    )


def test_flask_storage_takes_urls_beside_the_apps_profiles(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"A")
    app = flask.Flask(__name__)
    app.config["KEG_STORAGE_PROFILES"] = [("files", "memory://files")]
    Storage(app)
    runner = app.test_cli_runner()
    listing = runner.invoke(args=["storage", "list", "--simple", f"file://{tmp_path}/"])
    assert listing.exit_code == 0 and listing.output == "a.txt\n"
    on_profile = runner.invoke(args=["storage", "list", "--simple"])
    assert on_profile.exit_code == 0 and on_profile.output == ""
