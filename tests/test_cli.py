"""The standalone ``keg-storage`` command."""

from __future__ import annotations

import logging
import os
import pty
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from keg_storage import LocalFSStorage, MemoryStorage
from keg_storage.backends.base import ListEntry
from keg_storage.backends.sftp import SFTPStorage
from keg_storage.cli import backend_from_profile, main
from keg_storage.profiles import ProfileError, UnknownProfileError, choose_profile
from tests.flask.conftest import ServerThread, make_app


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


def test_choose_profile_takes_the_name_else_the_default_else_the_first() -> None:
    configured = ["first", "second", "third"]
    assert choose_profile(configured, "third", "second", "storage.toml") == "third"
    assert choose_profile(configured, None, "second", "storage.toml") == "second"
    assert choose_profile(configured, "", "", "storage.toml") == "first"
    assert choose_profile(configured, None, None, "storage.toml") == "first"
    with pytest.raises(UnknownProfileError) as raised:
        choose_profile(configured, None, "gone", "storage.toml")
    assert (
        str(raised.value) == "no profile 'gone' in storage.toml; configured: first, second, third"
    )
    with pytest.raises(ProfileError) as nothing:
        choose_profile([], None, None, "KEG_STORAGE_PROFILES")
    assert str(nothing.value) == "no storage profile is configured in KEG_STORAGE_PROFILES"


def test_a_default_that_names_no_profile(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "storage.toml"
    config.write_text('default = "gone"\n[profiles.files]\nbackend = "memory"\n')
    result = runner.invoke(main, ["--config", str(config), "list"])
    assert (result.exit_code, result.output) == (
        1,
        f"Error: no profile 'gone' in {config}; configured: files\n",
    )


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


# -- issue 14 ---------------------------------------------------------------------------------


def write_config(tmp_path: Path, profile: str) -> str:
    config = tmp_path / "storage.toml"
    config.write_text(profile)
    return str(config)


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        (
            '[profiles.files]\nbackend = "localfs"\nrooot = "/tmp"\n',
            "profile 'files': unknown option 'rooot' "
            "(valid: root, linked_endpoint, secret_key, name, fsync)",
        ),
        (
            '[profiles.archive]\nbackend = "s3"\nbucket = "archive"\n',
            "profile 'archive': missing required option 'aws_region'",
        ),
        (
            '[profiles.files]\nbackend = "localfs"\nroot = 5\n',
            "profile 'files': option 'root' must be a str or path, not int",
        ),
        (
            '[profiles.box]\nbackend = "sftp"\nhost = "h"\nport = "twenty-two"\n',
            "profile 'box': option 'port' must be an int, not str",
        ),
    ],
)
def test_profile_mistakes_are_one_line(
    runner: CliRunner, tmp_path: Path, profile: str, message: str
) -> None:
    """Issue 14.1: a typo, a missing required option or a wrong type names the profile and
    the option, in one line, before anything connects."""
    result = runner.invoke(main, ["--config", write_config(tmp_path, profile), "list"])
    assert result.exit_code == 1
    assert result.output == f"Error: {message}\n"


def test_environment_values_take_the_option_type(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``${PORT}`` is text: it becomes the int (number, bool) an option that takes no str wants."""
    monkeypatch.setenv("SFTP_PORT", "2222")
    monkeypatch.setenv("SFTP_AGENT", "true")
    profile = {
        "backend": "sftp",
        "host": "127.0.0.1",
        "port": "${SFTP_PORT}",
        "allow_agent": "${SFTP_AGENT}",
        "timeout": "2.5",
    }
    with backend_from_profile("box", profile) as backend:
        assert isinstance(backend, SFTPStorage)
        assert (backend.port, backend.allow_agent, backend.timeout) == (2222, True, 2.5)


def test_put_blames_the_missing_local_file(runner: CliRunner) -> None:
    """Issue 14.2."""
    result = runner.invoke(main, ["put", "missing.txt", "x.txt"])
    assert result.exit_code == 1
    assert result.output == "Error: local file 'missing.txt': No such file or directory\n"
    result = runner.invoke(main, ["put", ".", "x.txt"])
    assert result.output == "Error: local file '.': Is a directory\n"


def test_dash_h_is_help(runner: CliRunner) -> None:
    """Issue 14.7: ``-h`` works as ``--help``, on the group and on each command."""
    assert runner.invoke(main, ["-h"]).output == runner.invoke(main, ["--help"]).output
    result = runner.invoke(main, ["put", "-h"])
    assert result.exit_code == 0
    assert result.output.startswith("Usage: keg-storage put [OPTIONS] FILE PATH\n")


def test_deleting_a_missing_file_says_so(runner: CliRunner) -> None:
    result = runner.invoke(main, ["delete", "nope.txt"])
    assert (result.exit_code, result.output) == (
        0,
        "Nothing to delete: nope.txt does not exist.\n",
    )
    runner.invoke(main, ["put", "-", "yes.txt"], input=b"y")
    result = runner.invoke(main, ["delete", "yes.txt"])
    assert (result.exit_code, result.output) == (0, "Deleted yes.txt.\n")


def test_put_reports_the_key_it_stored(runner: CliRunner, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    result = runner.invoke(main, ["put", "a.txt", "/abs//path.txt"])
    assert (result.exit_code, result.output) == (0, "Uploaded a.txt to abs/path.txt.\n")
    assert (tmp_path / "storage" / "abs" / "path.txt").read_bytes() == b"a"
    result = runner.invoke(main, ["put", "-", "/piped.txt"], input=b"p")
    assert result.output == "Uploaded stdin to piped.txt.\n"


def test_get_into_a_directory_and_clobbering(runner: CliRunner, tmp_path: Path) -> None:
    runner.invoke(main, ["put", "-", "docs/x.txt"], input=b"new")
    (tmp_path / "sub").mkdir()
    result = runner.invoke(main, ["get", "docs/x.txt", "sub/"])
    assert (result.exit_code, result.output) == (0, "Downloaded docs/x.txt to sub/x.txt.\n")
    assert (tmp_path / "sub" / "x.txt").read_bytes() == b"new"
    result = runner.invoke(main, ["get", "docs/x.txt", "sub"])
    assert (
        result.output == "Downloaded docs/x.txt to sub/x.txt (replaced the existing sub/x.txt).\n"
    )

    (tmp_path / "sub" / "x.txt").write_bytes(b"mine")
    result = runner.invoke(main, ["get", "--no-clobber", "docs/x.txt", "sub/x.txt"])
    assert (result.exit_code, result.output) == (
        1,
        "Error: local file 'sub/x.txt' exists; not replaced (--no-clobber)\n",
    )
    assert (tmp_path / "sub" / "x.txt").read_bytes() == b"mine"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nodir/x.txt", "Error: local directory 'nodir' does not exist\n"),
        ("nodir/", "Error: local directory 'nodir/' does not exist\n"),
    ],
)
def test_get_into_a_missing_directory(
    runner: CliRunner, tmp_path: Path, target: str, message: str
) -> None:
    runner.invoke(main, ["put", "-", "x.txt"], input=b"x")
    result = runner.invoke(main, ["get", "x.txt", target])
    assert (result.exit_code, result.output) == (1, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["storage"]


def test_list_marks_directories(runner: CliRunner) -> None:
    runner.invoke(main, ["put", "-", "docs/a.txt"], input=b"a")
    runner.invoke(main, ["put", "-", "top.txt"], input=b"top")
    lines = runner.invoke(main, ["list", "--no-recursive"]).output.splitlines()
    assert lines[0] == "DIR             \t\tdocs/"
    assert lines[1].endswith("\t3B\ttop.txt")


def test_content_type_on_localfs_is_ignored_with_a_warning(runner: CliRunner) -> None:
    result = runner.invoke(main, ["put", "--content-type", "text/csv", "-", "a.csv"], input=b"a")
    assert result.exit_code == 0
    assert result.output == (
        "keg-storage: warning: LocalFSStorage 'fs-storage' stores no content type; "
        "--content-type is ignored\nUploaded stdin to a.csv.\n"
    )


def test_environment_variables_in_profiles(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14.8: ``${NAME}`` comes from the environment, ``$${NAME}`` stays literal."""
    monkeypatch.setenv("KEG_TEST_ROOT", str(tmp_path / "from-env"))
    (tmp_path / "from-env" / "x").mkdir(parents=True)
    config = write_config(
        tmp_path,
        '[profiles.files]\nbackend = "localfs"\nroot = "${KEG_TEST_ROOT}/x"\n'
        'secret_key = "$${NOT_EXPANDED}"\nlink_base_url = "http://h/link"\n',
    )
    result = runner.invoke(main, ["--config", config, "put", "-", "f.txt"], input=b"env")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "from-env" / "x" / "f.txt").read_bytes() == b"env"
    result = runner.invoke(main, ["--config", config, "link", "f.txt"])
    token = result.stdout.strip().removeprefix("http://h/link?token=")
    from keg_storage import LocalFSStorage

    signer = LocalFSStorage(tmp_path / "from-env" / "x", secret_key="${NOT_EXPANDED}", name="files")
    assert signer.deserialize_link_token(token).path == "f.txt"

    monkeypatch.delenv("KEG_TEST_ROOT")
    result = runner.invoke(main, ["--config", config, "list"])
    assert (result.exit_code, result.output) == (
        1,
        "Error: profile 'files': environment variable 'KEG_TEST_ROOT' is not set\n",
    )


class RetryingBackend(MemoryStorage):
    """A backend that reports a retry on ``keg_storage.retry``, as the network backends do."""

    def _list(self, prefix: str, recursive: bool) -> Iterable[ListEntry]:
        logging.getLogger("paramiko.transport").error("an SDK's noise the CLI must not print")
        logging.getLogger("keg_storage.retry").warning(
            "s3 %r: GET %s failed (Read timed out) at http://127.0.0.1:8333; "
            "retrying (attempt 2 of 3)",
            self.name,
            prefix or "/",
        )
        return super()._list(prefix, recursive)


RETRY_PROFILE = '[profiles.archive]\nbackend = "tests.test_cli:RetryingBackend"\n'
RETRY_LINE = (
    "keg-storage: s3 'archive': GET / failed (Read timed out) at http://127.0.0.1:8333; "
    "retrying (attempt 2 of 3)\n"
)


def test_retries_are_reported_on_stderr(runner: CliRunner, tmp_path: Path) -> None:
    """Issue 14.3: the CLI prints the backends' retry log lines on stderr."""
    result = runner.invoke(main, ["--config", write_config(tmp_path, RETRY_PROFILE), "list"])
    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == ("", RETRY_LINE)
    assert logging.getLogger("keg_storage.retry").handlers == []  # removed after the command


def test_retries_and_sdk_noise_as_a_subprocess(tmp_path: Path) -> None:
    """Only the retry line reaches the terminal: a warning of another logger (an SDK's) goes
    nowhere instead of through Python's last-resort handler."""
    script = Path(sys.executable).with_name("keg-storage")
    config = write_config(tmp_path, RETRY_PROFILE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    done = subprocess.run(
        [script, "--config", config, "list"], env=env, capture_output=True, text=True, check=True
    )
    assert done.stderr == RETRY_LINE


def test_default_store_links(runner: CliRunner, tmp_path: Path) -> None:
    """Issue 14.4: the default store signs links with $KEG_STORAGE_SECRET_KEY for the app at
    --base-url (or $KEG_STORAGE_LINK_BASE_URL), and says what it needs otherwise."""
    runner.invoke(main, ["put", "-", "a.txt"], input=b"linked")
    result = runner.invoke(main, ["link", "a.txt"])
    assert (result.exit_code, result.output) == (
        1,
        "Error: links of the default store are signed with $KEG_STORAGE_SECRET_KEY, the "
        "secret_key of the app that serves them: set it\n",
    )
    env = {"KEG_STORAGE_SECRET_KEY": "cli-secret"}
    result = runner.invoke(main, ["link", "a.txt"], env=env)
    assert (result.exit_code, result.output) == (
        1,
        "Error: links of LocalFSStorage 'fs-storage' are served by your app's link view: pass "
        "--base-url with its URL (or set link_base_url in the profile, or "
        "KEG_STORAGE_LINK_BASE_URL for the default store)\n",
    )
    result = runner.invoke(main, ["link", "a.txt", "--base-url", "ftp://x"], env=env)
    assert result.exit_code == 2
    assert "Invalid value for '--base-url': 'ftp://x' is not an http(s) URL" in result.output

    app = make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": "fs-storage",
                    "root": tmp_path / "storage",
                    "linked_endpoint": "files_link",
                    "secret_key": "cli-secret",
                },
            )
        ]
    )
    with ServerThread(app) as server:
        result = runner.invoke(
            main, ["link", "a.txt", "--base-url", f"{server.url}/files/link"], env=env
        )
        assert result.exit_code == 0
        assert requests.get(result.stdout.strip(), timeout=10).content == b"linked"
        env["KEG_STORAGE_LINK_BASE_URL"] = f"{server.url}/files/link"
        result = runner.invoke(main, ["link", "--upload", "up.txt"], env=env)
        url = result.stdout.strip()
        assert result.stderr == f"upload with: curl -X PUT --upload-file FILE '{url}'\n"
        assert requests.put(url, data=b"up", timeout=10).ok
    assert (tmp_path / "storage" / "up.txt").read_bytes() == b"up"


def run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run ``keg-storage`` with stderr on a pseudo-terminal (where it draws progress bars);
    its exit code and what the terminal showed."""
    script = Path(sys.executable).with_name("keg-storage")
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEG_STORAGE_")}
    with subprocess.Popen(
        [script, *args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, stderr=terminal
    ) as process:
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the command ended
                break
            if not chunk:
                break
            shown += chunk
        code = process.wait(30)
    os.close(controller)
    return code, shown.decode()


def test_progress_bars_and_errors_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal: a bar for put and get, and the same one-line errors, never a traceback."""
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    code, shown = run_on_a_terminal(["put", "big.bin", "/data/big.bin"], tmp_path)
    assert code == 0
    assert "put data/big.bin" in shown and "100%" in shown
    assert shown.endswith("Uploaded big.bin to data/big.bin.\r\n")
    code, shown = run_on_a_terminal(["get", "data/big.bin", "copy.bin"], tmp_path)
    assert code == 0
    assert "get data/big.bin" in shown
    assert (tmp_path / "copy.bin").read_bytes() == (tmp_path / "big.bin").read_bytes()
    code, shown = run_on_a_terminal(["put", "missing.bin", "x.bin"], tmp_path)
    assert (code, shown) == (1, "Error: local file 'missing.bin': No such file or directory\r\n")
    code, shown = run_on_a_terminal(["get", "nope.bin", "nodir/"], tmp_path)
    assert (code, shown) == (1, "Error: local directory 'nodir/' does not exist\r\n")
