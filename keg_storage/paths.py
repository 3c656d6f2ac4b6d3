"""Path rules shared by every backend (CONTRACT §2), in one place.

A path is a ``/``-separated key relative to the backend's root: a leading ``/`` is ignored and
``a//b`` is ``a/b``. ``.`` and ``..`` segments, control characters and (for file operations) a
trailing ``/`` are refused with :class:`InvalidPathError` before any I/O happens. Everything else
is allowed, including spaces and ``*?~[]``: nothing is ever expanded by a shell. A backend
limits the length of keys (``max_key_bytes``) and of their segments (``max_segment_bytes``), in
bytes of UTF-8, to what its service keeps; longer paths are refused the same way.

A path may be given as a ``str`` or as an :class:`os.PathLike` such as
:class:`~pathlib.PurePosixPath`; :func:`path_text` turns it into the ``str`` every other function
here works on. A :class:`~pathlib.PureWindowsPath` (what :class:`~pathlib.Path` is on Windows) is
converted deliberately, its ``\\`` separators becoming ``/``, because its segments are what the
caller means; one with a drive (``C:``, ``\\\\server\\share``) names a place on a local disk, not
a key, and is refused.
"""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from pathlib import PureWindowsPath
from typing import Any

from .errors import InvalidPathError

RemotePath = str | os.PathLike[str]
"""What every method taking a remote path accepts: a ``str`` or an ``os.PathLike`` of one."""


def path_text(path: Any, backend: Any = None) -> str:
    """The ``str`` form of a remote path given as a ``str`` or an ``os.PathLike`` (see the module
    docstring for :class:`~pathlib.PureWindowsPath`); anything else is an
    :class:`InvalidPathError`."""
    if isinstance(path, str):
        return path
    if isinstance(path, PureWindowsPath):
        if path.drive:
            raise InvalidPathError(
                "a Windows path with a drive names a local file, not a key: give the key "
                "relative to the backend's root",
                backend=backend,
                path=str(path),
            )
        return path.as_posix()
    if isinstance(path, os.PathLike):
        text = os.fspath(path)
        if isinstance(text, str):
            return text
    raise InvalidPathError(
        f"path must be a str or an os.PathLike of str, not {type(path).__name__} {path!r}",
        backend=backend,
    )


CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f-\x9f]")
"""The control characters: Unicode's category ``Cc``, which its stability policy keeps at these
65 code points."""


def _check_characters(path: str, backend: Any) -> None:
    refused = getattr(backend, "unsupported_path_characters", "")
    # The common case, a clean path, in one regex search (a loop over the characters costs
    # 2-3 us a path, which counts in a delete_many of thousands); the loop names the first.
    if not CONTROL_CHARACTER.search(path) and not (
        refused and any(char in path for char in refused)
    ):
        return
    for char in path:
        if unicodedata.category(char) == "Cc":
            raise InvalidPathError(
                f"control character {char!r} in path", backend=backend, path=path
            )
        if char in refused:
            raise InvalidPathError(
                f"{char!r} cannot be kept in a name by this backend's service",
                backend=backend,
                path=path,
            )


def _segments(path: str, backend: Any) -> list[str]:
    _check_characters(path, backend)
    segments = path.split("/")
    if "" in segments:  # a leading, trailing or doubled "/"
        segments = [segment for segment in segments if segment]
    if "." in segments or ".." in segments:
        raise InvalidPathError("'.' and '..' are not allowed in paths", backend=backend, path=path)
    _check_length(segments, backend, path)
    return segments


def _check_length(segments: list[str], backend: Any, path: str) -> None:
    """Refuse keys and segments longer (in UTF-8) than the backend's service keeps."""
    max_segment = getattr(backend, "max_segment_bytes", None)
    max_key = getattr(backend, "max_key_bytes", None)
    if max_segment is None and max_key is None:
        return
    # No segment, and no key of these segments, is longer than an ASCII path itself.
    shortest = min(
        sys.maxsize if max_segment is None else max_segment,
        sys.maxsize if max_key is None else max_key,
    )
    if path.isascii() and len(path) <= shortest:
        return
    # An ASCII path has as many bytes of UTF-8 as characters: no encoding to count them.
    sizes = (
        [len(segment) for segment in segments]
        if path.isascii()
        else [len(segment.encode("utf-8", "surrogatepass")) for segment in segments]
    )
    if max_segment is not None and any(size > max_segment for size in sizes):
        raise InvalidPathError(
            f"a path segment is longer than this backend allows ({max_segment} bytes of UTF-8)",
            backend=backend,
            path=path,
        )
    if max_key is not None:
        size = sum(sizes) + max(len(segments) - 1, 0)
        if size > max_key:
            raise InvalidPathError(
                f"the path is {size} bytes of UTF-8, longer than this backend allows ({max_key})",
                backend=backend,
                path=path,
            )


def file_key(path: RemotePath, backend: Any = None) -> str:
    """The normalised key of a file: no leading, trailing or doubled ``/``."""
    path = path_text(path, backend)
    segments = _segments(path, backend)
    if not segments:
        raise InvalidPathError("a file path cannot be empty", backend=backend, path=path)
    if path.endswith("/"):
        raise InvalidPathError("a file path cannot end with '/'", backend=backend, path=path)
    return "/".join(segments)


def directory_prefix(path: RemotePath, backend: Any = None) -> str:
    """The key prefix of a directory: ``''`` for the root, else ``'a/b/'``."""
    path = path_text(path, backend)
    segments = _segments(path, backend)
    return "".join(segment + "/" for segment in segments)


_GLOB_CHARS = re.compile(r"[*?\[]")


def glob_parts(pattern: RemotePath, backend: Any = None) -> tuple[str, re.Pattern[str]]:
    """Split a glob into the directory prefix to list and a regex matching full keys.

    ``*``, ``?`` and ``[...]`` match within one segment; a ``**`` segment matches zero or more
    whole segments, so ``**/a.txt`` matches ``a.txt`` and ``x/y/a.txt``.
    """
    pattern = path_text(pattern, backend)
    segments = _segments(pattern, backend)
    if not segments or pattern.endswith("/"):
        raise InvalidPathError("a glob pattern must name files", backend=backend, path=pattern)
    literal: list[str] = []
    for segment in segments:
        if _GLOB_CHARS.search(segment):
            break
        literal.append(segment)
    if len(literal) == len(segments):
        literal.pop()
    regex = ""
    rest = segments[len(literal) :]
    for index, segment in enumerate(rest):
        last = index == len(rest) - 1
        if segment == "**":
            regex += ".*" if last else "(?:[^/]+/)*"
            continue
        regex += _segment_regex(segment) + ("" if last else "/")
    prefix = "".join(segment + "/" for segment in literal)
    return prefix, re.compile(re.escape(prefix) + regex + r"\Z", re.DOTALL)


def _segment_regex(segment: str) -> str:
    """Translate one glob segment; wildcards never cross a ``/``."""
    out = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = segment.find("]", index + 2)
            if end == -1:
                out.append(re.escape(char))
            else:
                body = segment[index + 1 : end]
                negate = body.startswith("!")
                if negate:
                    body = body[1:]
                # Only ranges (a-z) keep a meaning inside the set; escape what regex sets treat
                # specially, or would one day (nested sets, set operations).
                body = "".join("\\" + ch if ch in "\\^[]&~|" else ch for ch in body)
                out.append(f"[{'^/' if negate else ''}{body}]")
                index = end
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)
