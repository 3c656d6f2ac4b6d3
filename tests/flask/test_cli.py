"""``flask storage`` through Flask's CLI runner, on the app's profiles."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import flask
import pytest
import requests
from click.testing import CliRunner
from flask.testing import FlaskCliRunner

from keg_storage import LocalFSStorage, MemoryStorage, ShareLinkOperation, Storage
from keg_storage.cli import main
from keg_storage_ta import create_app
from tests.test_cli import RETRY_LINE, RetryingBackend

from .conftest import ServerThread, make_app


@pytest.fixture
def roots(tmp_path: Path) -> dict[str, Path]:
    roots = {name: tmp_path / name for name in ("first", "second")}
    for root in roots.values():
        root.mkdir()
    return roots


def two_profile_app(roots: dict[str, Path], **config: object) -> flask.Flask:
    return make_app(
        [
            (
                LocalFSStorage,
                {
                    "name": name,
                    "root": root,
                    "linked_endpoint": "files_link",
                    "secret_key": "cli-secret",
                },
            )
            for name, root in roots.items()
        ],
        **config,
    )


@pytest.fixture
def runner(roots: dict[str, Path]) -> FlaskCliRunner:
    return two_profile_app(roots).test_cli_runner()


def test_round_trip_on_the_first_profile(
    runner: FlaskCliRunner, roots: dict[str, Path], tmp_path: Path
) -> None:
    source = tmp_path / "hello.txt"
    source.write_bytes(b"hello")
    result = runner.invoke(args=["storage", "put", str(source), "docs/hello.txt"])
    assert result.exit_code == 0, result.output
    assert (roots["first"] / "docs" / "hello.txt").read_bytes() == b"hello"

    assert runner.invoke(args=["storage", "list", "--simple"]).output == "docs/hello.txt\n"
    listing = runner.invoke(args=["storage", "list"])
    assert listing.output.endswith("\t5B\tdocs/hello.txt\n")

    stat = runner.invoke(args=["storage", "stat", "docs/hello.txt"])
    assert "size: 5\n" in stat.output

    target = tmp_path / "back.txt"
    result = runner.invoke(args=["storage", "get", "docs/hello.txt", str(target)])
    assert result.exit_code == 0
    assert target.read_bytes() == b"hello"

    assert runner.invoke(args=["storage", "copy", "docs/hello.txt", "c.txt"]).exit_code == 0
    assert runner.invoke(args=["storage", "move", "c.txt", "m.txt"]).exit_code == 0
    assert runner.invoke(args=["storage", "list", "--simple"]).output == ("docs/hello.txt\nm.txt\n")
    assert runner.invoke(args=["storage", "delete", "m.txt"]).exit_code == 0
    assert not (roots["first"] / "m.txt").exists()


def test_link_is_served_by_the_app(roots: dict[str, Path]) -> None:
    app = two_profile_app(roots, SERVER_NAME="files.example")
    (roots["first"] / "l.txt").write_bytes(b"linked")
    result = app.test_cli_runner().invoke(
        args=["storage", "link", "l.txt", "--output-path", "nice.txt"]
    )
    assert result.exit_code == 0, result.output
    url = result.output.strip()
    assert url.startswith("http://files.example/files/link?token=")
    with app.test_client() as client:
        response = client.get(url)
        assert response.data == b"linked"
        assert response.headers["Content-Disposition"] == 'attachment; filename="nice.txt"'


@pytest.mark.parametrize(
    ("flags", "allowed"),
    [
        ([], ShareLinkOperation.download),
        (["--upload"], ShareLinkOperation.upload),
        (["--delete"], ShareLinkOperation.remove),
        (["--download", "--upload"], ShareLinkOperation.download | ShareLinkOperation.upload),
    ],
)
def test_link_allows_what_its_flags_name(
    roots: dict[str, Path], flags: list[str], allowed: ShareLinkOperation
) -> None:
    """Download is the default only when no other operation is asked for (an upload link that
    also downloads would be refused by S3, which signs one operation per link)."""
    app = two_profile_app(roots, SERVER_NAME="files.example")
    result = app.test_cli_runner().invoke(args=["storage", "link", "l.txt", *flags])
    assert result.exit_code == 0, result.output
    token = parse_qs(urlsplit(result.stdout.strip()).query)["token"][0]
    with app.app_context():
        backend = app.extensions["keg_storage"].get("first")
        assert backend.deserialize_link_token(token).operations == allowed


def test_link_without_server_name_explains(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["storage", "link", "l.txt"])
    assert (result.exit_code, result.output) == (
        1,
        "Error: links of LocalFSStorage 'first' are served by this app: pass --base-url with the "
        "URL the app is served at (e.g. http://127.0.0.1:5000), or set KEG_STORAGE_LINK_BASE_URL "
        "(or SERVER_NAME) in its config\n",
    )


def test_link_base_url_option_and_config(roots: dict[str, Path]) -> None:
    """Issue 14.4: ``--base-url`` (or KEG_STORAGE_LINK_BASE_URL) is the URL the app is served
    at; the link's path comes from the app's routes."""
    app = two_profile_app(roots, KEG_STORAGE_LINK_BASE_URL="https://files.example/app")
    (roots["first"] / "l.txt").write_bytes(b"linked")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage", "link", "l.txt"])
    assert result.stdout.startswith("https://files.example/app/files/link?token=")
    result = runner.invoke(args=["storage", "link", "l.txt", "--base-url", "http://other:81"])
    assert result.stdout.startswith("http://other:81/files/link?token=")
    with app.test_client() as client:
        response = client.get(result.stdout.strip())
        assert response.data == b"linked"
    result = runner.invoke(args=["storage", "link", "l.txt", "--base-url", "other"])
    assert result.exit_code == 2
    assert "Invalid value for '--base-url': 'other' is not an http(s) URL" in result.output


def test_demo_app_links_from_the_command_line(tmp_path: Path) -> None:
    """``flask --app keg_storage_ta storage link fruit.csv`` works with no setup: the demo is
    configured for where ``flask run`` serves it; the link works on the app served for real."""
    app = create_app(instance_path=str(tmp_path / "instance"))
    (tmp_path / "instance" / "storage" / "fruit.csv").write_bytes(b"apple,pear\n")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage", "link", "fruit.csv"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("http://127.0.0.1:5000/link?token=")
    with ServerThread(app) as server:
        result = runner.invoke(args=["storage", "link", "fruit.csv", "--base-url", server.url])
        assert result.stdout.startswith(f"{server.url}/link?token=")
        response = requests.get(result.stdout.strip(), timeout=10)
        assert response.content == b"apple,pear\n"


def test_retries_are_reported_on_stderr() -> None:
    """Issue 14.3: ``flask storage`` prints the backends' retry lines too."""
    app = make_app([(RetryingBackend, {"name": "archive"})])
    result = app.test_cli_runner().invoke(args=["storage", "list"])
    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == ("", RETRY_LINE)


def test_dash_h_is_help(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["storage", "-h"])
    assert result.exit_code == 0
    assert "Store, fetch and share files on the app's storage profiles." in result.output
    result = runner.invoke(args=["storage", "get", "-h"])
    assert result.output.startswith("Usage: ")
    assert "--no-clobber" in result.output


@pytest.mark.parametrize(
    ("options", "toml", "message"),
    [
        (
            {"rooot": "/tmp"},
            'rooot = "/tmp"',
            "profile 'files': unknown option 'rooot' "
            "(valid: root, linked_endpoint, secret_key, name, fsync)",
        ),
        ({}, "", "profile 'files': missing required option 'root'"),
        ({"root": 5}, "root = 5", "profile 'files': option 'root' must be a str or path, not int"),
    ],
)
def test_profile_mistakes_say_the_same_as_the_cli(
    tmp_path: Path, options: dict[str, object], toml: str, message: str
) -> None:
    """Issue 14.1: one checker, one message for KEG_STORAGE_PROFILES and the TOML profiles;
    Flask still builds lazily, so the app starts and the error comes at first use."""
    app = make_app([(LocalFSStorage, {"name": "files", **options})])
    with app.app_context(), pytest.raises(ValueError) as raised:
        app.storage.get_interface("files")  # type: ignore[attr-defined]
    assert str(raised.value) == message
    result = app.test_cli_runner().invoke(args=["storage", "list"])
    assert (result.exit_code, result.output) == (1, f"Error: {message}\n")

    config = tmp_path / "storage.toml"
    config.write_text(f'[profiles.files]\nbackend = "localfs"\n{toml}\n')
    result = CliRunner().invoke(main, ["--config", str(config), "list"])
    assert (result.exit_code, result.output) == (1, f"Error: {message}\n")


def test_location_option_and_default_location(roots: dict[str, Path], tmp_path: Path) -> None:
    (roots["second"] / "only-in-second.txt").write_bytes(b"2")
    runner = two_profile_app(roots).test_cli_runner()
    assert runner.invoke(args=["storage", "list", "--simple"]).output == ""
    result = runner.invoke(args=["storage", "--location", "second", "list", "--simple"])
    assert result.output == "only-in-second.txt\n"

    configured = two_profile_app(roots, KEG_STORAGE_DEFAULT_LOCATION="second").test_cli_runner()
    assert configured.invoke(args=["storage", "list", "--simple"]).output == (
        "only-in-second.txt\n"
    )
    result = configured.invoke(args=["storage", "--location", "first", "list", "--simple"])
    assert result.output == ""


def test_unknown_location_lists_the_configured_names(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["storage", "--location", "nowhere", "list"])
    assert result.exit_code != 0
    assert result.output.endswith(
        "Error: no profile 'nowhere' in KEG_STORAGE_PROFILES; configured: first, second\n"
    )
    assert "Traceback" not in result.output
    assert not isinstance(result.exception, ValueError)


def test_one_wording_of_an_unknown_profile(roots: dict[str, Path], tmp_path: Path) -> None:
    """The standalone CLI, ``flask storage`` and ``Storage.get_interface`` say it alike,
    naming where they looked."""
    app = two_profile_app(roots)
    flask_result = app.test_cli_runner().invoke(args=["storage", "--location", "nope", "list"])
    assert flask_result.exit_code == 2
    assert flask_result.output.splitlines()[-1] == (
        "Error: no profile 'nope' in KEG_STORAGE_PROFILES; configured: first, second"
    )
    with app.app_context(), pytest.raises(ValueError) as raised:
        app.storage.get_interface("nope")  # type: ignore[attr-defined]
    assert (
        str(raised.value) == "no profile 'nope' in KEG_STORAGE_PROFILES; configured: first, second"
    )
    config = tmp_path / "storage.toml"
    config.write_text(
        '[profiles.first]\nbackend = "memory"\n[profiles.second]\nbackend = "memory"\n'
    )
    cli_result = CliRunner().invoke(main, ["--config", str(config), "-p", "nope", "list"])
    assert (cli_result.exit_code, cli_result.output) == (
        1,
        f"Error: no profile 'nope' in {config}; configured: first, second\n",
    )


def test_errors_are_one_line_without_traceback(runner: FlaskCliRunner) -> None:
    result = runner.invoke(args=["storage", "get", "missing.txt", "-"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: File not found")
    assert "Traceback" not in result.output
    result = runner.invoke(args=["storage", "stat", "../escape"])
    assert result.exit_code == 1
    assert "Error:" in result.output


def test_no_profiles_says_so() -> None:
    app = flask.Flask(__name__)
    Storage(app)
    result = app.test_cli_runner().invoke(args=["storage", "list"])
    assert result.exit_code != 0
    assert "no storage profile is configured" in result.output


def test_group_name_is_configurable(roots: dict[str, Path]) -> None:
    app = flask.Flask(__name__)
    app.config["KEG_STORAGE_PROFILES"] = [(LocalFSStorage, {"name": "x", "root": roots["first"]})]
    Storage(app, cli_group_name="files")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["files", "list"]).exit_code == 0
    assert runner.invoke(args=["storage", "list"]).exit_code != 0
    no_cli = flask.Flask(__name__)
    Storage(no_cli, cli_group_name="")
    assert "storage" not in no_cli.cli.list_commands(None)  # type: ignore[arg-type]


def test_commands_share_the_app_backend_and_leave_it_open() -> None:
    app = make_app([(MemoryStorage, {"name": "mem"})])
    runner = app.test_cli_runner()
    result = runner.invoke(args=["storage", "put", "-", "shared.txt"], input=b"shared")
    assert result.exit_code == 0, result.output
    assert runner.invoke(args=["storage", "list", "--simple"]).output == "shared.txt\n"
    with app.app_context():
        backend = app.storage.get_interface("mem")  # type: ignore[attr-defined]
        with backend.open("shared.txt") as file:
            assert file.read() == b"shared"


def test_profile_text_values_take_the_option_type(tmp_path: Path) -> None:
    """Config read from the environment is text: ``"false"`` is False for a bool option (not a
    truthy string), as ``${NAME}`` values are in the CLI's profiles."""
    app = make_app([(LocalFSStorage, {"name": "files", "root": tmp_path, "fsync": "false"})])
    with app.app_context():
        backend = app.storage.get_interface("files")  # type: ignore[attr-defined]
    assert backend.fsync is False
