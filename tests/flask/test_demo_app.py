"""The demo app starts with no setup, keeps its secret, and reads the instance config."""

from __future__ import annotations

import io
import re
import socket
import stat
from html import unescape
from pathlib import Path

from keg_storage import MemoryStorage, SFTPStorage
from keg_storage.backends.azure import AzureStorage
from keg_storage_ta import create_app


def test_starts_with_no_setup_on_local_storage(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = create_app(instance_path=str(instance))
    secret = (instance / "secret_key").read_text()
    assert app.config["SECRET_KEY"] == secret
    assert stat.S_IMODE((instance / "secret_key").stat().st_mode) == 0o600
    assert create_app(instance_path=str(instance)).config["SECRET_KEY"] == secret

    with app.test_client() as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "No files yet." in page.text
        link = client.post("/upload-link", json={"filename": "notes.txt"}).json
        assert link["name"] == "notes.txt"
        assert link["method"] == "PUT"
        assert link["headers"] == {"Content-Type": "application/octet-stream"}
        assert client.put(link["url"], data=b"notes").status_code == 200
        assert (instance / "storage" / "notes.txt").read_bytes() == b"notes"

        page = client.get("/").text
        download = unescape(re.search(r'class="download" href="([^"]+)"', page)[1])  # type: ignore[index]
        assert client.get(download).data == b"notes"

        missing = client.post("/upload-link", json={})
        assert (missing.status_code, missing.json) == (400, {"error": "Choose a file to upload."})

        response = client.post("/form-upload", data={"file": (io.BytesIO(b"f"), "f.txt")})
        assert response.status_code == 201
        stored = response.json["name"]
        assert (instance / "storage" / stored).read_bytes() == b"f"


def test_instance_config_chooses_the_profiles(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / "config.py").write_text(
        "KEG_STORAGE_PROFILES = [('keg_storage.backends.memory:MemoryStorage',"
        " {'name': 'mem', 'linked_endpoint': 'demo.link', 'secret_key': 'x'})]\n"
    )
    app = create_app(instance_path=str(instance))
    with app.app_context():
        assert isinstance(app.storage.get_interface(), MemoryStorage)  # type: ignore[attr-defined]
    with app.test_client() as client:
        assert "Profile <code>mem</code>" in client.get("/").text
    assert not (instance / "storage").exists()


def test_a_refused_name_is_a_400_with_a_sentence_and_stores_nothing(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = create_app({"SECRET_KEY": "s"}, instance_path=str(instance))
    refused = {
        "a" * 396 + ".txt": "This file name is not allowed: it is too long (a name can have at "
        "most 255 bytes).",
        "..": 'This file name is not allowed: "." and ".." cannot be used as names.',
        "notes\n.txt": "This file name is not allowed: it contains a control character (such "
        "as a line break or a tab).",
    }
    with app.test_client() as client:
        for name, message in refused.items():
            response = client.post("/upload-link", json={"filename": name})
            assert (response.status_code, response.json) == (400, {"error": message})
        bad_type = client.post(
            "/upload-link", json={"filename": "a.txt", "content_type": "text/plain\r\nX: y"}
        )
        assert (bad_type.status_code, bad_type.json) == (
            400,
            {"error": "The type of this file is not valid."},
        )
        assert client.post("/upload-link", json=["a.txt"]).status_code == 400
    assert list((instance / "storage").iterdir()) == []


def test_the_name_the_user_chose_is_kept(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = create_app({"SECRET_KEY": "s"}, instance_path=str(instance))
    with app.test_client() as client:
        for name in ["back\\slash.txt", "C:\\docs\\notes.txt", "ü *?[x].txt"]:
            link = client.post("/upload-link", json={"filename": name}).json
            assert link["name"] == name
            assert client.put(link["url"], data=name.encode()).status_code == 200
            assert (instance / "storage" / name).read_bytes() == name.encode()
        page = client.get("/").text
    assert 'data-name="back\\slash.txt"' in page


def test_a_store_that_refuses_backslashes_says_so(
    backend_azure: AzureStorage, tmp_path: Path
) -> None:
    app = create_app(
        {"SECRET_KEY": "s", "KEG_STORAGE_PROFILES": [(lambda **_: backend_azure, {"name": "az"})]},
        instance_path=str(tmp_path / "instance"),
    )
    with app.test_client() as client:
        response = client.post("/upload-link", json={"filename": "back\\slash.txt"})
        assert (response.status_code, response.json) == (
            400,
            {
                "error": "This file name is not allowed: this storage cannot keep the "
                'character "\\" in a name.'
            },
        )
        assert client.post("/upload-link", json={"filename": "slash.txt"}).status_code == 200


def test_sizes_are_shown_for_people(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    app = create_app({"SECRET_KEY": "s"}, instance_path=str(instance))
    (instance / "storage" / "small.txt").write_bytes(b"x" * 532)
    (instance / "storage" / "big.bin").write_bytes(b"x" * 1_234_567)
    with app.test_client() as client:
        page = client.get("/").text
    sizes = re.findall(r'<td class="size" title="([^"]+)">([^<]+)</td>', page)
    assert sizes == [("1,234,567 bytes", "1.2 MB"), ("532 bytes", "532 Bytes")]


def test_an_unreachable_store_is_a_503_with_a_sentence(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sftp = {
        "name": "down",
        "host": "127.0.0.1",
        "port": port,
        "username": "nobody",
        "password": "unused",
        "host_key_policy": "auto_add",
        "timeout": 2,
        "retry": 0,
        "linked_endpoint": "demo.link",
        "secret_key": "s",
    }
    app = create_app(
        {"SECRET_KEY": "s", "KEG_STORAGE_PROFILES": [(SFTPStorage, sftp)]},
        instance_path=str(tmp_path / "instance"),
    )
    with app.test_client() as client:
        response = client.get("/")
    assert (response.status_code, response.mimetype) == (503, "text/plain")
    assert response.text == (
        "The storage cannot be reached right now. Please try again in a minute."
    )
