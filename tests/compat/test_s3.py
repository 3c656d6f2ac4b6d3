"""``S3Storage.copy`` with keg-storage 0.5's documented keywords and today's."""

from __future__ import annotations

import io

import pytest

from keg_storage.backends.s3 import S3Storage


def test_copy_takes_both_keyword_spellings(backend_s3: S3Storage) -> None:
    backend_s3.upload(io.BytesIO(b"data"), "a.txt")
    backend_s3.copy(current_file="a.txt", new_file="b.txt")
    backend_s3.copy(path="b.txt", new_path="c.txt")
    backend_s3.copy("c.txt", new_file="d.txt")
    assert [e.name for e in backend_s3.list()] == ["a.txt", "b.txt", "c.txt", "d.txt"]
    with backend_s3.open("d.txt", "rb") as copied:
        assert copied.read() == b"data"
    with pytest.raises(TypeError, match="exactly one"):
        backend_s3.copy("a.txt", "b.txt", new_file="c.txt")
