"""Azure's List Blobs pages read from their XML, for :func:`.object_listing.azure_pages`.

The SDK's ``list_blobs``/``walk_blobs`` build a generated model and then a ``BlobProperties``
of some twenty fields for every blob: at 50,000 blobs that was most of a listing's time and
about 45 MiB a page of 5,000 (``bench/listing.py``). A listing needs three fields, so the
request goes through the container client's own pipeline (its credential, retries, timeouts
and XML decoding, as the SDK's generated operation sends it) and the entries are read from
the decoded XML. An error answer is raised as the SDK raises it (``map_error`` then
``process_storage_error``, what the SDK's pager does), so its translation is unchanged.
"""

from __future__ import annotations

import contextlib
import datetime
import email.utils
import re
from typing import Any
from urllib.parse import quote, unquote
from xml.etree.ElementTree import Element

import arrow

from .files import ListEntry

# The backend raises MissingDependencyError when used without the SDK; nothing here runs then.
with contextlib.suppress(ImportError):
    from azure.core.exceptions import (
        ClientAuthenticationError,
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ResourceNotModifiedError,
        map_error,
    )
    from azure.core.pipeline.policies import ContentDecodePolicy
    from azure.core.rest import HttpRequest
    from azure.storage.blob._shared.response_handlers import process_storage_error

UTC = datetime.timezone.utc
_IMF_FIXDATE = re.compile(r"[A-Z][a-z]{2}, (\d\d) ([A-Z][a-z]{2}) (\d{4}) (\d\d):(\d\d):(\d\d) GMT")
"""HTTP's date form, which Azure gives as ``Last-Modified``: ``Sat, 05 Dec 2026 00:02:24 GMT``."""
_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


def list_blobs_page(container: Any, parameters: dict[str, str]) -> Element:
    """The decoded XML of one List Blobs answer (``parameters``: its query) for ``container``,
    a ``ContainerClient``, sent through the client's pipeline."""
    request = HttpRequest(
        "GET",
        container.url,
        params={name: quote(value, safe="") for name, value in parameters.items()},
        headers={"x-ms-version": container.api_version, "Accept": "application/xml"},
    )
    response = container._pipeline.run(request, stream=False)
    answer = response.http_response
    if answer.status_code != 200:
        try:
            map_error(
                status_code=answer.status_code,
                response=answer,
                error_map={
                    304: ResourceNotModifiedError,
                    401: ClientAuthenticationError,
                    404: ResourceNotFoundError,
                    409: ResourceExistsError,
                },
            )
            raise HttpResponseError(response=answer)
        except HttpResponseError as error:
            process_storage_error(error)
    page: Element = response.context[ContentDecodePolicy.CONTEXT_NAME]
    return page


class LastModified:
    """Reads the ``Last-Modified`` of a page's blobs as UTC Arrows, the Arrow of the previous
    blob again where the text repeats (blobs written in the same second, often neighbours)."""

    def __init__(self) -> None:
        self._text = ""
        self._moment = arrow.Arrow(1970, 1, 1, tzinfo=UTC)

    def __call__(self, text: str) -> arrow.Arrow:
        if text != self._text:
            self._moment = http_date(text)
            self._text = text
        return self._moment


def http_date(text: str) -> arrow.Arrow:
    """An HTTP date as a UTC Arrow: its usual form read directly (a third of the cost of the
    email parser, which reads the others)."""
    fixed = _IMF_FIXDATE.fullmatch(text)
    month = _MONTHS.get(fixed[2]) if fixed else None
    if fixed is None or month is None:
        return arrow.Arrow.fromdatetime(email.utils.parsedate_to_datetime(text).astimezone(UTC))
    day, _, year, hour, minute, second = fixed.groups()
    return arrow.Arrow(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=UTC)


def page_entries(page: Element, last_modified: LastModified) -> list[ListEntry]:
    """The entries of a decoded List Blobs page: its blobs, less folder markers (names ending
    in ``/``), and its blob prefixes (one-level listings) as directories."""
    entries = []
    for item in page.iterfind("Blobs/*"):
        name_element = item.find("Name")
        assert name_element is not None and name_element.text is not None
        name = name_element.text
        if name_element.get("Encoded") == "true":  # a name XML cannot hold, percent-encoded
            name = unquote(name)
        if item.tag == "BlobPrefix":
            entries.append(ListEntry(name, None, 0))
        elif not name.endswith("/"):
            properties = item.find("Properties")
            assert properties is not None
            entries.append(
                ListEntry(
                    name,
                    last_modified(properties.findtext("Last-Modified", "")),
                    int(properties.findtext("Content-Length", "0")),
                )
            )
    return entries
