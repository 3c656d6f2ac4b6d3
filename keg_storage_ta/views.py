"""The demo page: list the stored files, upload from the browser through an upload link,
download through signed links, delete through remove links."""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask.views import MethodView

from keg_storage import InvalidPathError, LinkViewMixin, ShareLinkOperation, StorageOperations

from .extensions import storage

demo = Blueprint("demo", __name__)


class LinkView(LinkViewMixin, MethodView):
    """Serves the links of the profiles whose ``linked_endpoint`` is ``demo.link``."""


demo.add_url_rule("/link", view_func=LinkView.as_view("link"))


class StorageLocation(enum.Enum):
    """Folders the form upload can store into."""

    forms = "forms"


class FormFiles(StorageOperations):
    """Files uploaded with a classic HTML form, stored under ``forms/`` with random names."""

    storage_location = StorageLocation.forms


def _expiry() -> timedelta:
    return timedelta(minutes=current_app.config["LINK_EXPIRY_MINUTES"])


@demo.get("/")
def index() -> ResponseReturnValue:
    """The page: the stored files with their links, and the upload controls."""
    backend = storage.get_interface()
    files: list[dict[str, Any]] = []
    for entry in backend.list():
        filename = entry.name.rsplit("/", 1)[-1]
        files.append(
            {
                "name": entry.name,
                "size": entry.size,
                "last_modified": entry.last_modified,
                "download_url": backend.link_to(
                    entry.name, ShareLinkOperation.download, _expiry(), output_path=filename
                ),
                "remove_url": backend.link_to(entry.name, ShareLinkOperation.remove, _expiry()),
            }
        )
    return render_template("index.html", files=files, profile=storage.interface)


@demo.post("/upload-link")
def upload_link() -> ResponseReturnValue:
    """A link the browser PUTs a file to: ``{"url", "method", "headers", "name"}``.

    The file keeps its name (its last path segment); the content type is signed into the link.
    """
    payload = request.get_json(silent=True) or {}
    filename = str(payload.get("filename") or "").replace("\\", "/").rsplit("/", 1)[-1]
    content_type = str(payload.get("content_type") or "") or "application/octet-stream"
    if not filename:
        return jsonify(error="filename is required"), 400
    backend = storage.get_interface()
    try:
        url = backend.link_to(
            filename, ShareLinkOperation.upload, _expiry(), content_type=content_type
        )
    except InvalidPathError as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(url=url, method="PUT", headers={"Content-Type": content_type}, name=filename)


@demo.post("/form-upload")
def form_upload() -> ResponseReturnValue:
    """A classic multipart upload (field ``file``), stored by :class:`FormFiles`."""
    name = FormFiles.storage_upload_form_file("file")
    return jsonify(name=f"{StorageLocation.forms.value}/{name}"), 201
