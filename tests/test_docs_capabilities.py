"""The capabilities table of docs/backends/index.rst says what each backend class's
``capabilities`` says (CONTRACT §9), so the two cannot drift apart."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from keg_storage import (
    AzureStorage,
    Capabilities,
    LocalFSStorage,
    MemoryStorage,
    S3Storage,
    SFTPStorage,
    StorageBackend,
)

PAGE = Path(__file__).resolve().parents[1] / "docs" / "backends" / "index.rst"
BACKEND_CLASSES: list[type[StorageBackend]] = [
    S3Storage,
    AzureStorage,
    SFTPStorage,
    LocalFSStorage,
    MemoryStorage,
]
FIELDS = [field.name for field in dataclasses.fields(Capabilities)]


def documented() -> dict[str, dict[str, bool]]:
    """The table's rows: backend class name to {field: yes/no as a bool}."""
    text = PAGE.read_text(encoding="utf-8")
    block = re.search(r"\.\. csv-table::\n(?:   :.*\n)*\n((?:   .*\n)+)", text)
    assert block, f"no csv-table in {PAGE}"
    header, *rows = [line.strip().split(", ") for line in block.group(1).splitlines()]
    columns = [re.findall(r"``(\w+)``", cell)[0] for cell in header[1:]]
    assert columns == FIELDS, "the table's columns are not Capabilities' fields, in order"
    table = {}
    for backend, *cells in rows:
        assert set(cells) <= {"yes", "no"}, (backend, cells)
        table[backend.strip("`")] = {
            field: cell == "yes" for field, cell in zip(columns, cells, strict=True)
        }
    return table


def test_the_table_has_one_row_per_backend() -> None:
    assert list(documented()) == [backend.__name__ for backend in BACKEND_CLASSES]


@pytest.mark.parametrize("backend", BACKEND_CLASSES, ids=lambda backend: backend.__name__)
def test_the_table_says_what_the_class_says(backend: type[StorageBackend]) -> None:
    assert documented()[backend.__name__] == dataclasses.asdict(backend.capabilities)
