"""StorageOperations: the keg-storage 0.5 helper for service classes."""

from __future__ import annotations

import enum
import io
import re
from pathlib import Path

import flask
import pytest
from flask.testing import FlaskClient

from keg_storage import LocalFSStorage, MemoryStorage, StorageOperations

from .helpers import link

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}"


class Location(enum.Enum):
    invoices = "Invoices"
    archive = "Archive/Old"


class Invoices(StorageOperations):
    storage_location = Location.invoices
    storage_profile = "memory"


class Anywhere(StorageOperations):
    """No class location, the app's default profile."""


def test_prefix_path_and_generated_names() -> None:
    prefix = StorageOperations.storage_prefix_path
    assert prefix(Location.invoices, "a.pdf") == "Invoices/a.pdf"
    assert prefix(None, "a.pdf") == "a.pdf"
    assert prefix(Location.archive, ".hidden") == "Archive/Old/hidden"
    assert prefix("plain", "x") == "plain/x"

    for filename, suffix in [
        ("report.pdf", r"\.pdf"),
        ("a.tar.gz", r"\.gz"),
        (".bashrc", r"\.bashrc"),
        ("README", ""),
        ("", ""),
        ("weird.ex/t", r"\.ex_t"),
    ]:
        name = StorageOperations.storage_generate_filename(filename)
        assert isinstance(name, str)
        assert re.fullmatch(UUID + suffix, name), (filename, name)
    assert StorageOperations.storage_generate_filename("x") != (
        StorageOperations.storage_generate_filename("x")
    )


def test_upload_download_duplicate_delete_with_class_location_and_profile(
    app: flask.Flask, memory: MemoryStorage, files: LocalFSStorage
) -> None:
    with app.test_request_context():
        name = Invoices.storage_upload_file(io.BytesIO(b"invoice"), "march.pdf")
        assert re.fullmatch(UUID + r"\.pdf", name)
        assert memory.exists(f"Invoices/{name}")
        assert files.list() == []
        assert Invoices.storage_download_file(name).read() == b"invoice"

        copy = Invoices.storage_duplicate_file(name)
        assert copy != name and copy.endswith(".pdf")
        assert Invoices.storage_download_file(copy).getvalue() == b"invoice"

        assert Invoices.storage_delete_file(name) is True
        assert not memory.exists(f"Invoices/{name}")
        assert Invoices.storage_delete_file(name) is True


def test_arguments_override_the_class_attributes(
    app: flask.Flask, memory: MemoryStorage, files: LocalFSStorage, storage_root: Path
) -> None:
    with app.test_request_context():
        name = Invoices.storage_upload_file(
            io.BytesIO(b"x"), "x.txt", storage_location=Location.archive, storage_profile="files"
        )
        assert (storage_root / "Archive" / "Old" / name).read_bytes() == b"x"
        name = Invoices.storage_upload_file(
            io.BytesIO(b"root"), "r.txt", storage_location=None, storage_profile="files"
        )
        assert (storage_root / name).read_bytes() == b"root"
        name = Anywhere.storage_upload_file(io.BytesIO(b"default"), "d.txt")
        assert (storage_root / name).read_bytes() == b"default"
        assert Anywhere.storage_get_profile() is files
        assert Anywhere.storage_get_profile("memory") is memory
        assert Invoices.storage_get_profile() is memory


def test_preserved_names_are_made_safe(app: flask.Flask, memory: MemoryStorage) -> None:
    with app.test_request_context():
        kept = Invoices.storage_upload_file(
            io.BytesIO(b"1"), "../../etc/pass wd.txt", preserve_filename=True
        )
        assert kept == "etc_pass_wd.txt"
        assert memory.exists("Invoices/etc_pass_wd.txt")
        emptied = Invoices.storage_upload_file(io.BytesIO(b"2"), "../..", preserve_filename=True)
        assert re.fullmatch(UUID, emptied)
        unicode_only = Invoices.storage_upload_file(
            io.BytesIO(b"3"), "報告.pdf", preserve_filename=True
        )
        assert unicode_only == "pdf"  # what werkzeug's secure_filename leaves
        assert memory.exists(f"Invoices/{unicode_only}")


def test_content_type_and_encoding_are_stored(app: flask.Flask, memory: MemoryStorage) -> None:
    with app.test_request_context():
        name = Invoices.storage_upload_file(
            io.BytesIO(b"{}"), "d.json", content_type="application/json", content_encoding="gzip"
        )
    assert memory.stat(f"Invoices/{name}").content_type == "application/json"


def test_upload_form_file_honours_location_and_profile(
    app: flask.Flask, client: FlaskClient, memory: MemoryStorage, storage_root: Path
) -> None:
    @app.post("/form")
    def form() -> str:
        return Invoices.storage_upload_form_file("document")

    @app.post("/form-elsewhere")
    def form_elsewhere() -> str:
        return Invoices.storage_upload_form_file(
            "document", storage_location=Location.archive, storage_profile="files"
        )

    response = client.post(
        "/form", data={"document": (io.BytesIO(b"form data"), "scan.png", "image/png")}
    )
    assert response.status_code == 200
    name = response.text
    assert re.fullmatch(UUID + r"\.png", name)
    assert memory.stat(f"Invoices/{name}").content_type == "image/png"

    response = client.post(
        "/form-elsewhere", data={"document": (io.BytesIO(b"elsewhere"), "scan.png")}
    )
    assert (storage_root / "Archive" / "Old" / response.text).read_bytes() == b"elsewhere"

    assert client.post("/form", data={"other": "x"}).status_code == 400


def test_links(app: flask.Flask, client: FlaskClient, memory: MemoryStorage) -> None:
    memory.upload(io.BytesIO(b"linked"), "Invoices/a.txt")
    with app.test_request_context():
        url = Invoices.storage_get_download_link(
            "a.txt", 5, output_path="nice.txt", content_type="text/plain"
        )
        upload_url, stored_name = Invoices.storage_get_upload_link("photo.jpg", 5)
    response = client.get(url)
    assert response.data == b"linked"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Content-Disposition"] == 'attachment; filename="nice.txt"'
    assert re.fullmatch(UUID + r"\.jpg", stored_name)
    assert client.put(upload_url, data=b"jpeg").status_code == 200
    assert memory.exists(f"Invoices/{stored_name}")
    with app.test_request_context():
        assert link(app, memory, "x", "download").startswith("/memory/link?token=")


def test_needs_the_extension() -> None:
    app = flask.Flask(__name__)
    with app.app_context(), pytest.raises(RuntimeError, match="Storage is not initialised"):
        Anywhere.storage_get_profile()
