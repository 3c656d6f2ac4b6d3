"""Every example of docs/cli.rst runs as pasted (issue 14, docs).

The TOML blocks are loaded through the CLI's own config loader and every profile in them is
built; the console blocks run in bash in an empty directory and their transcript must match the
page (``...`` stands for any text, as in doctest). ``flask --app keg_storage_ta storage`` lines
run through Flask's CLI runner on a demo app whose instance folder is a temporary directory (the
``flask`` program would put it in the source tree).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from keg_storage.backends.azure import AzureStorage
from keg_storage.backends.filesystem import LocalFSStorage
from keg_storage.backends.memory import MemoryStorage
from keg_storage.backends.s3 import S3Storage
from keg_storage.backends.sftp import SFTPStorage
from keg_storage.cli import backend_from_profile, load_config
from keg_storage_ta import create_app

PAGE = Path(__file__).parent.parent / "docs" / "cli.rst"


def code_blocks(language: str) -> list[str]:
    """The text of every ``.. code-block:: <language>`` of the page, dedented."""
    blocks: list[str] = []
    lines = PAGE.read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() != f".. code-block:: {language}":
            continue
        indent = len(line) - len(line.lstrip()) + 4
        body: list[str] = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) < indent:
                break
            body.append(following[indent:])
        blocks.append("\n".join(body).strip("\n") + "\n")
    return blocks


def matches(expected: str, actual: str) -> bool:
    """``actual`` is ``expected`` where each ``...`` may be any text of one line."""
    pattern = "".join(
        "[^\n]*" if part == "..." else re.escape(part) for part in re.split(r"(\.\.\.)", expected)
    )
    return re.fullmatch(pattern, actual) is not None


@pytest.fixture
def shell_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment: the installed programs, an empty home, no keg-storage settings."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "known_hosts").write_text("")
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("KEG_STORAGE_", "AWS_", "AZURE_"))
    }
    env["HOME"] = str(home)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_page_has_examples() -> None:
    assert len(code_blocks("toml")) == 1
    assert len(code_blocks("console")) == 4


def test_toml_profiles_load_and_build(
    tmp_path: Path, shell_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each profile of the page builds its backend (nothing connects before first use), its
    secrets read from the environment."""
    for key, value in shell_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("FILES_LINK_SECRET", "link-secret")
    monkeypatch.setenv("MINIO_ACCESS_KEY", "minio-key-id")
    monkeypatch.setenv("MINIO_SECRET_KEY", "minio-secret")
    monkeypatch.setenv("AZURE_STORAGE_KEY", "YWNjb3VudC1rZXk=")
    config = tmp_path / "storage.toml"
    config.write_text(code_blocks("toml")[0])
    profiles, default = load_config(config)
    assert default == "files"
    expected = {
        "files": LocalFSStorage,
        "archive": S3Storage,
        "minio": S3Storage,
        "blobs": AzureStorage,
        "partner": SFTPStorage,
        "scratch": MemoryStorage,
    }
    assert list(profiles) == list(expected)
    for name, profile in profiles.items():
        with backend_from_profile(name, profile) as backend:
            assert type(backend) is expected[name]
            assert backend.name == name
    with backend_from_profile("files", profiles["files"]) as files:
        assert isinstance(files, LocalFSStorage)
        token = files.create_link_token(path="a.txt", operation="d", expire=timedelta(minutes=1))
        signer = LocalFSStorage(shell_env["HOME"], secret_key="link-secret", name="files")
        assert signer.deserialize_link_token(token).path == "a.txt"


@pytest.mark.parametrize("block", [b for b in code_blocks("console") if "flask " not in b])
def test_console_examples(tmp_path: Path, shell_env: dict[str, str], block: str) -> None:
    """Run in bash, one after the other as a user pastes them; the transcript is the page's."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "storage.toml").write_text(code_blocks("toml")[0])
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    script = "".join(
        f"printf '%s\\n' {shlex.quote('$ ' + command)}\n{command} 2>&1\n" for command in commands
    )
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, env=shell_env, capture_output=True, text=True, timeout=60
    )
    assert done.stderr == ""
    assert matches(block, done.stdout), done.stdout


def test_flask_console_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (block,) = [b for b in code_blocks("console") if "flask " in b]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fruit.csv").write_text("apple,pear\n")
    runner = create_app(instance_path=str(tmp_path / "instance")).test_cli_runner()
    output = ""
    for line in block.splitlines():
        if line.startswith("$ "):
            words = shlex.split(line[2:])
            assert words[:3] == ["flask", "--app", "keg_storage_ta"]
            output += f"{line}\n{runner.invoke(args=words[3:]).output}"
    assert matches(block, output), output
