"""keg-storage 0.5's ``keg_storage.cli`` names, attached to an app's own click group."""

from __future__ import annotations

from pathlib import Path

import click
import flask

from keg_storage import LocalFSStorage, ShareLinkOperation, Storage
from keg_storage.cli import (
    add_cli_to_app,
    handle_not_found,
    storage,
    storage_copy,
    storage_delete,
    storage_get,
    storage_link_for,
    storage_list,
    storage_put,
)
from keg_storage.errors import FileNotFoundInStorageError


def make_app(root: Path) -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(
        KEG_STORAGE_PROFILES=[
            (
                LocalFSStorage,
                {"name": "files", "root": root, "secret_key": "s", "linked_endpoint": "link"},
            )
        ],
        KEG_STORAGE_DEFAULT_LOCATION="files",
        SERVER_NAME="files.test",
    )
    app.add_url_rule("/link", "link", lambda: "")
    Storage(app)
    return app


def test_the_storage_group_attached_to_an_app_group(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    app = make_app(root)

    @click.group()
    def admin() -> None:
        """The app's own command group."""

    admin.add_command(storage, name="files")
    runner = app.test_cli_runner()
    (tmp_path / "a.txt").write_bytes(b"hello")

    result = runner.invoke(admin, ["files", "put", str(tmp_path / "a.txt"), "docs/a.txt"])
    assert result.exit_code == 0, result.output
    assert (root / "docs" / "a.txt").read_bytes() == b"hello"
    assert runner.invoke(admin, ["files", "list", "--simple"]).output == "docs/a.txt\n"
    result = runner.invoke(admin, ["files", "--location", "files", "copy", "docs/a.txt", "b.txt"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(admin, ["files", "get", "b.txt", str(tmp_path / "back.txt")])
    assert (tmp_path / "back.txt").read_bytes() == b"hello"
    assert runner.invoke(admin, ["files", "delete", "b.txt"]).exit_code == 0
    assert not (root / "b.txt").exists()
    result = runner.invoke(admin, ["files", "link", "docs/a.txt", "-e", "60", "--upload"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip().split("token=")[1]
    with app.app_context():
        backend = app.storage.get_interface("files")  # type: ignore[attr-defined]
    assert backend.deserialize_link_token(token).operations == ShareLinkOperation.upload


def test_add_cli_to_app_and_the_command_aliases(tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    (root / "x.txt").write_bytes(b"x")
    app = make_app(root)
    add_cli_to_app(app, "legacy-storage")
    result = app.test_cli_runner().invoke(args=["legacy-storage", "list", "--simple"])
    assert result.exit_code == 0, result.output
    assert result.output == "x.txt\n"
    commands = [storage_list, storage_get, storage_put, storage_copy, storage_delete]
    assert [c.name for c in [*commands, storage_link_for]] == [
        "list",
        "get",
        "put",
        "copy",
        "delete",
        "link",
    ]
    link_options = {opt for p in storage_link_for.params for opt in p.opts + p.secondary_opts}
    assert {"-e", "--expiration", "--upload", "--no-upload", "--delete", "--download"} <= (
        link_options
    )


def test_handle_not_found_gives_a_click_file_error() -> None:
    @click.command()
    @handle_not_found
    def fetch() -> None:
        raise FileNotFoundInStorageError("LocalFSStorage", "gone.txt")

    result = click.testing.CliRunner().invoke(fetch)
    assert result.exit_code == 1
    assert "gone.txt" in result.output and "Not found in LocalFSStorage." in result.output
