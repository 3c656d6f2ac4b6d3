"""HTTP header values every kind of link shares (S3 presigned, Azure SAS, the link view)."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

__all__ = ["content_disposition"]


def content_disposition(filename: str, disposition: str = "attachment") -> str:
    """A ``Content-Disposition`` value (RFC 6266): ``filename`` in ASCII, plus ``filename*``
    (RFC 5987) when the name is not ASCII. Only the last path segment is used."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C") or "download"
    try:
        name.encode("ascii")
    except UnicodeEncodeError:
        simple = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
        simple = simple.strip() or "download"
        quoted = quote(name, safe="!#$&+-.^_`|~")
        return f"{disposition}; {_filename_param(simple)}; filename*=UTF-8''{quoted}"
    return f"{disposition}; {_filename_param(name)}"


def _filename_param(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'filename="{escaped}"'
