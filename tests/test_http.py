"""Content-Disposition values (RFC 6266) shared by every kind of link."""

from __future__ import annotations

import pytest
from werkzeug.http import parse_options_header

from keg_storage.http import content_disposition


@pytest.mark.parametrize(
    ("name", "header", "parsed"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"', "report.pdf"),
        ('say "hi".txt', 'attachment; filename="say \\"hi\\".txt"', 'say "hi".txt'),
        ("C:\\Users\\me\\x.txt", 'attachment; filename="x.txt"', "x.txt"),
        (
            "Résumé 2026.pdf",
            'attachment; filename="Resume 2026.pdf"; '
            "filename*=UTF-8''R%C3%A9sum%C3%A9%202026.pdf",
            "Résumé 2026.pdf",
        ),
        ("dir/inner.txt", 'attachment; filename="inner.txt"', "inner.txt"),
        ("new\nline.txt", 'attachment; filename="newline.txt"', "newline.txt"),
        (
            "日本.txt",
            "attachment; filename=\"__.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt",
            "日本.txt",
        ),
    ],
)
def test_content_disposition(name: str, header: str, parsed: str) -> None:
    assert content_disposition(name) == header
    _, options = parse_options_header(header)
    assert options["filename"] == parsed
