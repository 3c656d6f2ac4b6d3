"""The conformance kit (keg_storage.testing) run on the backend of the "Writing a backend" docs
page, and what the kit itself promises: it catches a broken backend, it needs pytest but not
Flask, and ``import keg_storage`` needs neither."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from keg_storage import FileMode, MemoryStorage, RemoteFile
from keg_storage.testing import ConformanceCases, FileCases, LinkSigningCases
from keg_storage.testing.example import DictStorage, DictWriter

DOCS = Path(__file__).parent.parent / "docs"


class TestDictStorage(ConformanceCases):
    """Every case of the kit on the page's backend, as a backend author runs them."""

    @pytest.fixture
    def storage(self) -> Iterator[DictStorage]:
        with DictStorage() as backend:
            yield backend


def test_the_page_shows_the_backend_that_passes_the_kit() -> None:
    page = (DOCS / "writing-a-backend.rst").read_text()
    assert ".. literalinclude:: ../keg_storage/testing/example.py" in page
    index = (DOCS / "index.rst").read_text()
    assert "   writing-a-backend\n" in index


class PublishingOnAbortWriter(DictWriter):
    """The trap of issue 15: a writer whose discard publishes, as its ``_finish`` does."""

    def _discard(self) -> None:
        self.storage.publish(self.path, self.buffer.getvalue())


class PublishingOnAbortStorage(DictStorage):
    def _open(self, key: str, mode: FileMode, extra_args: dict[str, Any]) -> RemoteFile:
        return PublishingOnAbortWriter(self, key)


def test_the_kit_fails_a_writer_that_publishes_on_abort() -> None:
    with (
        PublishingOnAbortStorage() as storage,
        pytest.raises(AssertionError) as excinfo,
    ):
        FileCases().test_abort_publishes_nothing(storage)
    # pytest rewrote the kit's assert: the message shows what the backend did.
    assert "assert not True" in str(excinfo.value)
    assert "exists('aborted.bin')" in str(excinfo.value)


def test_signing_cases_skip_internal_links_without_flask(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "flask", None)
    with (
        MemoryStorage(secret_key="kit-secret") as storage,
        pytest.raises(pytest.skip.Exception) as excinfo,
    ):
        LinkSigningCases().test_link_to_refuses_exactly_what_open_and_put_refuse(
            storage, "download", tmp_path
        )
    assert str(excinfo.value) == (
        "internal links are signed in a Flask request: pip install 'keg-storage[flask]'"
    )


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )


def test_the_kit_imports_without_flask_and_keg_storage_without_pytest() -> None:
    result = run_python(
        """
        import sys
        import keg_storage
        assert "pytest" not in sys.modules, "import keg_storage imported pytest"
        sys.modules["flask"] = None  # not installed
        import keg_storage.testing
        import keg_storage.testing.example
        print("imported")
        """
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "imported\n", "")


def test_the_kit_without_pytest_names_the_extra() -> None:
    result = run_python(
        """
        import sys
        sys.modules["pytest"] = None  # not installed
        import keg_storage.testing
        """
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "keg_storage.errors.MissingDependencyError: keg_storage.testing needs the 'pytest' "
        'package: pip install "keg-storage[testing]"'
    )
