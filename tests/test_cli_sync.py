"""``keg-storage sync`` and ``flask storage sync``: CliRunner on real LocalFS and S3 (SeaweedFS)
profiles, and the installed console script in a subprocess."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from keg_storage.cli import main
from tests.flask.conftest import make_app
from tests.servers.seaweedfs import SeaweedFS

SUMMARY = re.compile(
    r"Synced (\S+) to (\S+): (\d+) copied, (\d+) skipped, (\d+) deleted, (\d+) bytes in "
    r"\d+\.\d s\.\n"
)


@pytest.fixture
def trees(tmp_path: Path) -> dict[str, Path]:
    trees = {name: tmp_path / name for name in ("here", "there")}
    for root in trees.values():
        root.mkdir()
    (trees["here"] / "docs").mkdir()
    (trees["here"] / "docs" / "a.txt").write_bytes(b"alpha")
    (trees["here"] / "b.bin").write_bytes(b"\x00\x01" * 1000)
    return trees


@pytest.fixture
def config(tmp_path: Path, trees: dict[str, Path]) -> str:
    path = tmp_path / "storage.toml"
    path.write_text(
        "".join(
            f'[profiles.{name}]\nbackend = "localfs"\nroot = "{root}"\n'
            for name, root in trees.items()
        )
    )
    return str(path)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


def test_sync_copies_then_skips_and_summarises(config: str, trees: dict[str, Path]) -> None:
    code, out, err = invoke("--config", config, "sync", "here", "there:backup")

    assert (code, out) == (0, "")
    assert SUMMARY.fullmatch(err).groups() == ("here", "there:backup", "2", "0", "0", "2005")  # type: ignore[union-attr]
    assert (trees["there"] / "backup" / "docs" / "a.txt").read_bytes() == b"alpha"
    assert (trees["there"] / "backup" / "b.bin").read_bytes() == b"\x00\x01" * 1000

    code, out, err = invoke("--config", config, "sync", "here", "there:backup")
    assert SUMMARY.fullmatch(err).groups()[2:] == ("0", "2", "0", "0")  # type: ignore[union-attr]


def test_dry_run_prints_the_plan_and_changes_nothing(config: str, trees: dict[str, Path]) -> None:
    (trees["there"] / "old.txt").write_bytes(b"old")

    code, out, err = invoke("--config", config, "sync", "--dry-run", "--delete", "here", "there")

    assert code == 0
    assert out == (
        "copy b.bin (new, 2000 bytes)\n"
        "copy docs/a.txt (new, 5 bytes)\n"
        "delete old.txt (not at source, 3 bytes)\n"
    )
    assert err == (
        "Dry run of here to there, nothing changed: would copy 2 (2005 bytes), "
        "would delete 1, 0 skipped.\n"
    )
    assert sorted(p.name for p in trees["there"].rglob("*")) == ["old.txt"]


def test_delete_and_checksum(config: str, trees: dict[str, Path]) -> None:
    (trees["there"] / "old.txt").write_bytes(b"old")
    invoke("--config", config, "sync", "here", "there")
    changed = trees["here"] / "docs" / "a.txt"
    before = changed.stat()
    changed.write_bytes(b"ALPHA")
    os.utime(changed, ns=(before.st_atime_ns, before.st_mtime_ns))

    code, _, err = invoke(
        "--config", config, "sync", "--checksum", "--delete", "-j", "2", "here", "there"
    )

    assert code == 0
    assert SUMMARY.fullmatch(err).groups()[2:] == ("1", "1", "1", "5")  # type: ignore[union-attr]
    assert (trees["there"] / "docs" / "a.txt").read_bytes() == b"ALPHA"
    assert not (trees["there"] / "old.txt").exists()


def test_a_failing_file_exits_1_naming_it_while_the_others_finish(
    config: str, trees: dict[str, Path]
) -> None:
    (trees["there"] / "docs" / "a.txt").mkdir(parents=True)  # a directory in the way

    code, out, err = invoke("--config", config, "sync", "here", "there")

    assert (code, out) == (1, "")
    first, summary = err.splitlines()
    assert first == (
        "keg-storage: copy docs/a.txt failed: a directory exists at this path "
        "(backend LocalFSStorage 'there', path 'docs/a.txt')"
    )
    assert summary.startswith("Synced here to there: 1 copied, 0 skipped, 0 deleted, 2000 bytes")
    assert summary.endswith(", 1 failed.")
    assert (trees["there"] / "b.bin").read_bytes() == b"\x00\x01" * 1000


def test_locations_of_the_default_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    (store / "in").mkdir(parents=True)
    (store / "in" / "x.txt").write_bytes(b"x")
    monkeypatch.setenv("KEG_STORAGE_ROOT", str(store))
    monkeypatch.delenv("KEG_STORAGE_CONFIG", raising=False)

    code, _, err = invoke("sync", ":in", ":out")
    assert code == 0, err
    assert (store / "out" / "x.txt").read_bytes() == b"x"

    code, _, err = invoke("sync", "archive:in", ":out")
    assert (code, err) == (1, "Error: profile 'archive' needs --config\n")


def test_locations_as_storage_urls(tmp_path: Path) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_bytes(b"a")
    (source / "sub" / "b.txt").write_bytes(b"b")

    code, _, err = invoke("sync", f"file://{source}/", f"file://{tmp_path}/copy/")
    assert code == 0, err
    assert (tmp_path / "copy" / "a.txt").read_bytes() == b"a"
    assert (tmp_path / "copy" / "sub" / "b.txt").read_bytes() == b"b"
    code, _, err = invoke("sync", f"file://{source}/", f"file://{tmp_path}/copy/")
    assert code == 0, err
    assert "0 copied, 2 skipped" in err


def test_sync_to_an_s3_profile(
    tmp_path: Path, trees: dict[str, Path], seaweedfs: SeaweedFS, s3_bucket: str, s3_client: object
) -> None:
    path = tmp_path / "s3.toml"
    path.write_text(
        f'[profiles.here]\nbackend = "localfs"\nroot = "{trees["here"]}"\n'
        f'[profiles.bucket]\nbackend = "s3"\nbucket = "{s3_bucket}"\n'
        f'aws_region = "{seaweedfs.region}"\nendpoint_url = "{seaweedfs.endpoint_url}"\n'
        f'aws_access_key_id = "{seaweedfs.access_key}"\n'
        f'aws_secret_access_key = "{seaweedfs.secret_key}"\n'
    )

    code, _, err = invoke("--config", str(path), "sync", "here:docs", "bucket:mirror/docs")

    assert code == 0, err
    body = s3_client.get_object(Bucket=s3_bucket, Key="mirror/docs/a.txt")["Body"].read()  # type: ignore[attr-defined]
    assert body == b"alpha"
    code, _, err = invoke("--config", str(path), "sync", "here:docs", "bucket:mirror/docs")
    assert SUMMARY.fullmatch(err).groups()[2:] == ("0", "1", "0", "0")  # type: ignore[union-attr]


def test_flask_storage_sync_between_app_profiles(trees: dict[str, Path]) -> None:
    app = make_app(
        [
            (
                "localfs",
                {"name": name, "root": root, "linked_endpoint": "files_link", "secret_key": "s"},
            )
            for name, root in trees.items()
        ]
    )

    result = app.test_cli_runner().invoke(args=["storage", "sync", ":docs", "there:copy"])

    assert result.exit_code == 0, result.output
    assert (trees["there"] / "copy" / "a.txt").read_bytes() == b"alpha"
    assert "Synced :docs to there:copy: 1 copied" in result.output


def test_console_script_exit_code_and_summary(config: str, trees: dict[str, Path]) -> None:
    script = Path(sys.executable).with_name("keg-storage")
    (trees["there"] / "b.bin").mkdir()

    failed = subprocess.run(
        [script, "--config", config, "sync", "here", "there"], capture_output=True, text=True
    )

    assert failed.returncode == 1
    assert failed.stdout == ""
    assert failed.stderr.startswith("keg-storage: copy b.bin failed: a directory exists")
    assert "Synced here to there: 1 copied, 0 skipped, 0 deleted, 5 bytes" in failed.stderr
    (trees["there"] / "b.bin").rmdir()
    done = subprocess.run(
        [script, "--config", config, "sync", "here", "there"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert SUMMARY.fullmatch(done.stderr).groups()[2:] == ("1", "1", "0", "2000")  # type: ignore[union-attr]
