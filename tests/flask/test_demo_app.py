"""The demo app starts with no setup, keeps its secret, and reads the instance config."""

from __future__ import annotations

import io
import re
import stat
from html import unescape
from pathlib import Path

from keg_storage import MemoryStorage
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
        link = client.post("/upload-link", json={"filename": "C:\\docs\\notes.txt"}).json
        assert link["name"] == "notes.txt"
        assert link["method"] == "PUT"
        assert link["headers"] == {"Content-Type": "application/octet-stream"}
        assert client.put(link["url"], data=b"notes").status_code == 200
        assert (instance / "storage" / "notes.txt").read_bytes() == b"notes"

        page = client.get("/").text
        download = unescape(re.search(r'class="download" href="([^"]+)"', page)[1])  # type: ignore[index]
        assert client.get(download).data == b"notes"

        assert client.post("/upload-link", json={}).status_code == 400
        assert client.post("/upload-link", json={"filename": ".."}).status_code == 400

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
