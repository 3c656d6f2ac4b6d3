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
        quoted = quote(name, safe="!#$&+-.^_`|~")
        return f"{disposition}; {_filename_param(_ascii_fallback(name))}; filename*=UTF-8''{quoted}"
    return f"{disposition}; {_filename_param(name)}"


def _ascii_fallback(name: str) -> str:
    """For clients without RFC 5987: accents dropped (é → e), other non-ASCII as ``_``."""
    decomposed = unicodedata.normalize("NFKD", name)
    kept = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")
    return "".join(ch if ch.isascii() else "_" for ch in kept)


def _filename_param(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'filename="{escaped}"'
