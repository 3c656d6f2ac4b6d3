"""The standalone ``keg-storage`` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from keg_storage.cli import main


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KEG_STORAGE_ROOT", raising=False)
    monkeypatch.delenv("KEG_STORAGE_CONFIG", raising=False)
    return CliRunner()


def test_round_trip_on_the_default_local_store(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "hello.txt").write_bytes(b"hello")
    result = runner.invoke(main, ["put", "hello.txt", "docs/hello.txt"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "storage" / "docs" / "hello.txt").read_bytes() == b"hello"

    listing = runner.invoke(main, ["list"])
    assert listing.exit_code == 0
    assert listing.output.endswith("\t5B\tdocs/hello.txt\n")
    assert runner.invoke(main, ["list", "--simple"]).output == "docs/hello.txt\n"
    assert runner.invoke(main, ["list", "--no-recursive", "--simple"]).output == "docs/\n"

    result = runner.invoke(main, ["get", "docs/hello.txt", "back.txt"])
    assert result.exit_code == 0
    assert (tmp_path / "back.txt").read_bytes() == b"hello"
    result = runner.invoke(main, ["get", "docs/hello.txt"])
    assert (tmp_path / "hello.txt").read_bytes() == b"hello"

    assert runner.invoke(main, ["copy", "docs/hello.txt", "docs/copy.txt"]).exit_code == 0
    assert runner.invoke(main, ["move", "docs/copy.txt", "moved.txt"]).exit_code == 0
    assert runner.invoke(main, ["list", "--simple"]).output == "docs/hello.txt\nmoved.txt\n"
    stat = runner.invoke(main, ["stat", "moved.txt"])
    assert "size: 5\n" in stat.output
    assert runner.invoke(main, ["delete", "moved.txt"]).exit_code == 0
    assert runner.invoke(main, ["list", "--simple"]).output == "docs/hello.txt\n"


def test_stdin_and_stdout(runner: CliRunner) -> None:
    result = runner.invoke(main, ["put", "-", "piped.bin"], input=b"\x00\x01binary")
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["get", "piped.bin", "-"])
    assert result.stdout_bytes == b"\x00\x01binary"


def test_errors_are_one_line_and_exit_non_zero(runner: CliRunner) -> None:
    result = runner.invoke(main, ["get", "missing.txt", "out.txt"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: File not found (backend LocalFSStorage 'fs-storage', path 'missing.txt')"
    ]
    result = runner.invoke(main, ["stat", "../etc/passwd"])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "'..'" in result.output


def test_environment_root(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(
        main,
        ["put", "-", "x.txt"],
        input=b"x",
        env={"KEG_STORAGE_ROOT": str(tmp_path / "elsewhere")},
    )
    assert result.exit_code == 0
    assert (tmp_path / "elsewhere" / "x.txt").read_bytes() == b"x"


def test_config_profiles(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config = tmp_path / "storage.toml"
    config.write_text(
        f"""
default = "second"
[profiles.first]
backend = "localfs"
root = "{tmp_path / "a"}"
[profiles.second]
backend = "keg_storage.backends.filesystem:LocalFSStorage"
root = "{tmp_path / "b"}"
"""
    )
    assert (
        runner.invoke(main, ["--config", str(config), "put", "-", "f.txt"], input=b"2").exit_code
        == 0
    )
    assert (tmp_path / "b" / "f.txt").read_bytes() == b"2"
    args = ["--config", str(config), "--profile", "first", "put", "-", "f.txt"]
    assert runner.invoke(main, args, input=b"1").exit_code == 0
    assert (tmp_path / "a" / "f.txt").read_bytes() == b"1"
    result = runner.invoke(main, ["--config", str(config), "-p", "nope", "list"])
    assert result.exit_code == 1
    assert "no profile 'nope'" in result.output and "first, second" in result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not toml [", "not valid TOML"),
        ("x = 1", "no [profiles.NAME] tables"),
        ("[profiles.a]\nroot = '/tmp'", "has no 'backend' key"),
        ("[profiles.a]\nbackend = 'nowhere'", "unknown backend 'nowhere'"),
        ("[profiles.a]\nbackend = 'os:path'", "is not a StorageBackend class"),
    ],
)
def test_bad_config_says_what_is_wrong(
    runner: CliRunner, tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(content)
    result = runner.invoke(main, ["--config", str(config), "list"])
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output


def test_installed_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("keg-storage")
    env = {**os.environ, "KEG_STORAGE_ROOT": str(tmp_path / "store")}
    (tmp_path / "in.txt").write_bytes(b"console")
    subprocess.run([script, "put", str(tmp_path / "in.txt"), "in.txt"], check=True, env=env)
    out = subprocess.run(
        [script, "get", "in.txt", "-"], check=True, env=env, capture_output=True
    ).stdout
    assert out == b"console"
    failed = subprocess.run([script, "get", "nope", "-"], env=env, capture_output=True, text=True)
    assert failed.returncode == 1
    assert failed.stderr.startswith("Error: File not found")
