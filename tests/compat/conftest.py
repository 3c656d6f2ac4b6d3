"""``storage`` here is a keg-storage 0.5 style custom backend (tests/compat/legacy.py), so the
conformance cases of keg_storage.testing that test_conformance_legacy.py binds run against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .legacy import LegacyStorage

# Conformance cases a 0.5 style backend cannot pass, because its public methods are its own:
# the behaviour they test lives in the public methods it replaces, or in its RemoteFile.
PATHS = "paths are validated by the public methods a 0.5 backend replaces"
NOT_FOR_LEGACY = {
    "test_bad_file_paths_are_refused": PATHS,
    "test_bad_directory_paths_are_refused": PATHS,
    "test_thousands_of_segments": PATHS,
    "test_link_to_refuses_exactly_what_open_and_put_refuse": PATHS,
    "test_the_longest_key_a_backend_allows": PATHS,
    "test_a_name_longer_than_the_file_system": PATHS,
    "test_pure_posix_path_keys": "a 0.5 backend's own public methods take str paths",
    "test_windows_paths_are_converted": "a 0.5 backend's own public methods take str paths",
    "test_other_key_types_are_refused": PATHS,
    "test_extra_args": "a 0.5 backend handles extra_args in its own open()",
    "test_upload_extra_args": "a 0.5 backend handles extra_args in its own open()",
    "test_metadata_must_be_strings": "a 0.5 backend handles extra_args in its own open()",
    "test_read_write_mode": "a 0.5 backend's open() decides which modes it supports",
    "test_exists_and_stat": "0.5 backends have no ETag or content type (stat comes from list)",
    "test_etag_changes_with_content": "0.5 backends have no ETag (stat comes from list)",
    "test_etag_has_one_form": "0.5 backends have no ETag (stat comes from list)",
    "test_reader_is_a_raw_binary_file": "0.5's open() takes the mode; its file is not seekable",
    "test_reader_iterates_in_chunks": "0.5's open() takes the mode",
    "test_buffered_reader_zipfile_and_tarfile": "0.5's open() takes the mode",
    "test_closed_file_refuses_io": "0.5's open() takes the mode",
    "test_copy": "a 0.5 backend's own copy() raises what it raises for a missing file",
    "test_missing_file_raises_at_open": "a 0.5 backend's own open() raises what it raises",
    "test_exception_in_with_block": "0.5's RemoteFile commits in close(): it has no abort",
    "test_exception_before_first_write": "0.5's RemoteFile commits in close(): it has no abort",
    "test_abort_publishes_nothing": "0.5's RemoteFile commits in close(): it has no abort",
    "test_unclosed_writer": "0.5's RemoteFile commits in close(): it has no abort",
    "test_failing_source_publishes_nothing": "0.5's RemoteFile commits in close()",
    "test_progress_callback_that_raises": "0.5's RemoteFile commits in close()",
    # Conditional writes: a 0.5 backend's capabilities are all False, so the cases check the
    # refusal, which lives in the public methods; where it replaces them, they take no condition.
    "-open]": "a 0.5 backend's own open() takes no overwrite or if_match",
    "-copy]": "a 0.5 backend's own copy() takes no overwrite",
    "test_if_match_with_": "0.5 backends have no ETag to give if_match (stat comes from list)",
    "test_read_write": "a 0.5 backend's open() decides which modes it supports",
    "test_metadata": "a 0.5 backend handles extra_args in its own open()",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.nodeid.startswith("tests/compat/test_conformance_legacy.py"):
            continue
        for fragment, reason in NOT_FOR_LEGACY.items():
            if fragment in item.nodeid:
                item.add_marker(pytest.mark.skip(reason=f"0.5 style backend: {reason}"))


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[LegacyStorage]:
    root = tmp_path / "legacy"
    root.mkdir()
    with LegacyStorage(root) as backend:
        yield backend
