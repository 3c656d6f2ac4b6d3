"""``StorageOperations``: keg-storage 0.5's storage helpers for service classes that store uploads
(in the current app's profiles, through the extension's state)."""

from __future__ import annotations

import enum
import io
import uuid
from datetime import timedelta
from typing import IO, Any

from .errors import MissingDependencyError

try:
    from flask import current_app, request
    from werkzeug.utils import secure_filename
except ImportError as exc:  # pragma: no cover - the test extra installs Flask
    raise MissingDependencyError("keg_storage.StorageOperations", "flask", "flask") from exc

from .app_state import StorageState
from .backends.base import ShareLinkOperation, StorageBackend

__all__ = ["Location", "StorageOperations"]


class _Unset(enum.Enum):
    token = 0


_UNSET = _Unset.token
Location = enum.Enum | str | None


class StorageOperations:
    """Storage helpers for service classes (keg-storage 0.5): every operation is a classmethod
    that works in ``storage_location`` (an Enum whose value is a folder) on ``storage_profile``
    (a profile name; the app's default when None), unless given other ones as arguments."""

    storage_location: enum.Enum | None = None
    storage_profile: str | None = None

    @classmethod
    def _location(cls, storage_location: Location | _Unset) -> Location:
        return cls.storage_location if storage_location is _UNSET else storage_location

    @classmethod
    def _path(cls, storage_location: Location | _Unset, filename: str) -> str:
        return cls.storage_prefix_path(cls._location(storage_location), filename)

    @classmethod
    def storage_get_profile(cls, storage_profile: str | None = None) -> StorageBackend:
        """The backend of ``storage_profile``, else the class's profile, else the app's default."""
        state = StorageState.of(current_app)
        if state is None:
            raise RuntimeError("keg_storage.Storage is not initialised on this app")
        return state.get(storage_profile or cls.storage_profile)

    @staticmethod
    def storage_prefix_path(location: Location, filename: str) -> str:
        """``<location.value>/<filename>`` (one leading ``.`` of filename dropped)."""
        filename = filename.removeprefix(".")
        if not location:
            return filename
        folder = location.value if isinstance(location, enum.Enum) else location
        return f"{folder}/{filename}"

    @staticmethod
    def storage_generate_filename(filename: str) -> str:
        """A new random name keeping the (sanitised) extension of ``filename``: ``<uuid4>.ext``."""
        name = str(uuid.uuid4())
        _, dot, extension = filename.rpartition(".")
        extension = secure_filename(extension) if dot else ""
        return f"{name}.{extension}" if extension else name

    @classmethod
    def storage_upload_file(
        cls,
        file_object: IO[bytes],
        filename: str,
        preserve_filename: bool = False,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
        content_type: str | None = None,
        content_encoding: str | None = None,
    ) -> str:
        """Store ``file_object`` and return the name it was stored under (without location):
        a random name keeping the extension, or the ``secure_filename`` of ``filename`` when
        ``preserve_filename`` (a random one when nothing safe is left of it)."""
        safe_name = secure_filename(filename)
        if not preserve_filename or not safe_name:
            safe_name = cls.storage_generate_filename(safe_name or filename)
        extra_args: dict[str, Any] = {}
        if content_type:
            extra_args["ContentType"] = content_type
        if content_encoding:
            extra_args["ContentEncoding"] = content_encoding
        backend = cls.storage_get_profile(storage_profile)
        backend.upload(file_object, cls._path(storage_location, safe_name), extra_args=extra_args)
        return safe_name

    @classmethod
    def storage_upload_form_file(
        cls,
        form_field: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> str:
        """Store the uploaded file of the form field ``form_field``; returns its stored name."""
        uploaded = request.files[form_field]
        return cls.storage_upload_file(
            uploaded.stream,
            uploaded.filename or "",
            storage_location=storage_location,
            storage_profile=storage_profile,
            content_type=uploaded.mimetype or None,
        )

    @classmethod
    def storage_download_file(
        cls,
        filename: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> io.BytesIO:
        """The whole file in a ``BytesIO``, rewound."""
        buffer = io.BytesIO()
        cls.storage_get_profile(storage_profile).download(
            cls._path(storage_location, filename), buffer
        )
        buffer.seek(0)
        return buffer

    @classmethod
    def storage_delete_file(
        cls,
        filename: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> bool:
        """Delete the file (a missing file is not an error); returns True."""
        cls.storage_get_profile(storage_profile).delete(cls._path(storage_location, filename))
        return True

    @classmethod
    def storage_duplicate_file(
        cls,
        filename: str,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
    ) -> str:
        """Copy the file to a new random name (same extension, same location); returns it."""
        new_name = cls.storage_generate_filename(filename)
        cls.storage_get_profile(storage_profile).copy(
            cls._path(storage_location, filename), cls._path(storage_location, new_name)
        )
        return new_name

    @classmethod
    def storage_get_download_link(
        cls,
        filename: str,
        expire_minutes: int | float,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
        **kwargs: Any,
    ) -> str:
        """A download link valid for ``expire_minutes``; ``kwargs`` go to ``link_to``
        (``output_path``, ``content_type``, ...)."""
        return cls.storage_get_profile(storage_profile).link_to(
            cls._path(storage_location, filename),
            ShareLinkOperation.download,
            timedelta(minutes=expire_minutes),
            **kwargs,
        )

    @classmethod
    def storage_get_upload_link(
        cls,
        filename: str,
        expire_minutes: int | float,
        storage_location: Location | _Unset = _UNSET,
        storage_profile: str | None = None,
        **kwargs: Any,
    ) -> tuple[str, str]:
        """An upload link for a new random name keeping the extension of ``filename``;
        returns ``(url, stored_name)``."""
        new_name = cls.storage_generate_filename(filename)
        url = cls.storage_get_profile(storage_profile).link_to(
            cls._path(storage_location, new_name),
            ShareLinkOperation.upload,
            timedelta(minutes=expire_minutes),
            **kwargs,
        )
        return url, new_name
