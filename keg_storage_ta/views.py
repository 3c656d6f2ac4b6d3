"""The demo page: list the stored files, upload from the browser through an upload link,
download through signed links, delete through remove links."""

from __future__ import annotations

import enum
from datetime import timedelta
from typing import Any

from flask import Blueprint, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from flask.views import MethodView

from keg_storage import LinkViewMixin, ShareLinkOperation, StorageError, StorageOperations
from keg_storage.backends.base import check_link_header_values
from keg_storage.link_view import describe_storage_error
from keg_storage.paths import file_key

from .extensions import storage

demo = Blueprint("demo", __name__)


class LinkView(LinkViewMixin, MethodView):
    """Serves the links of the profiles whose ``linked_endpoint`` is ``demo.link``."""


demo.add_url_rule("/link", view_func=LinkView.as_view("link"))


@demo.errorhandler(StorageError)
def storage_failed(error: StorageError) -> ResponseReturnValue:
    """A failed storage operation of the page: its status and plain sentence (JSON for the
    page's script), never a traceback page."""
    status, message = describe_storage_error(error)
    if status >= 500:
        current_app.logger.error("storage failed: %s", error, exc_info=error)
    if request.is_json:
        return jsonify(error=message), status
    return current_app.response_class(message, status, mimetype="text/plain")


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
    """A link the browser PUTs a file to: ``{"url", "method", "headers", "name"}``; a refused
    name answers ``{"error"}`` with a sentence for the page to show (400 for a name the store
    refuses: too long, ``..``, control characters, ``\\`` on Azure).

    The file is stored under the name the browser gives (``File.name``, which never holds a
    folder), unchanged: ``back\\slash.txt`` stays ``back\\slash.txt``. ``name`` is the key as
    stored. The content type is signed into the link.
    """
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        payload = {}
    filename = payload.get("filename")
    if not isinstance(filename, str) or not filename:
        return jsonify(error="Choose a file to upload."), 400
    content_type = payload.get("content_type") or "application/octet-stream"
    try:
        check_link_header_values(None, content_type)
    except ValueError:
        return jsonify(error="The type of this file is not valid."), 400
    backend = storage.get_interface()
    url = backend.link_to(filename, ShareLinkOperation.upload, _expiry(), content_type=content_type)
    return jsonify(
        url=url,
        method="PUT",
        headers={"Content-Type": content_type},
        name=file_key(filename, backend),
    )


@demo.post("/form-upload")
def form_upload() -> ResponseReturnValue:
    """A classic multipart upload (field ``file``), stored by :class:`FormFiles`."""
    name = FormFiles.storage_upload_form_file("file")
    return jsonify(name=f"{StorageLocation.forms.value}/{name}"), 201
