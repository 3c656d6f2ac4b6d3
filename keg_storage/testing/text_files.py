"""CONTRACT §3 and issue 14 point 5: text mode, binary defaults and mode messages, as a Python
user expects them from ``open()``."""

from __future__ import annotations

import gc
import threading
import time
import warnings

import pytest

from keg_storage import FileMode, RemoteFile, RemoteTextFile, StorageBackend

from .helpers import BackendCases, names, read, write

TEXT = "héllo wörld €\nsecond line\r\nthird\rlast, no newline"
"""Non-ASCII, and every newline convention."""


class TextFileCases(BackendCases):
    """CONTRACT §3: text mode, binary defaults and mode messages, as a Python user expects
    them from ``open()``."""

    def test_text_round_trip_is_utf8_with_universal_newlines(self, storage: StorageBackend) -> None:
        with storage.open("notes.txt", "wt") as file:
            assert isinstance(file, RemoteTextFile)
            assert file.writable() and not file.readable()
            assert file.encoding == "utf-8"
            assert file.write(TEXT) == len(TEXT)
        # On POSIX newline=None writes "\n" as "\n": the bytes are TEXT's, in UTF-8.
        assert read(storage, "notes.txt") == TEXT.encode("utf-8")
        with storage.open("notes.txt", "rt") as file:
            assert file.read() == "héllo wörld €\nsecond line\nthird\nlast, no newline"
        with storage.open("notes.txt", "rt", newline="") as file:
            assert file.read() == TEXT

    def test_text_mode_takes_encoding_errors_and_newline(self, storage: StorageBackend) -> None:
        with storage.open("latin.txt", "wt", encoding="latin-1", newline="\r\n") as file:
            file.write("café\nnaïve\n")
        assert read(storage, "latin.txt") == "café\r\nnaïve\r\n".encode("latin-1")
        with storage.open("latin.txt", "rt", encoding="latin-1") as file:
            assert file.read() == "café\nnaïve\n"
        with storage.open("latin.txt", "rt", errors="replace") as file:  # not UTF-8
            assert file.read() == "caf\ufffd\nna\ufffdve\n"
        with pytest.raises(UnicodeDecodeError), storage.open("latin.txt", "rt") as file:
            file.read()
        with storage.open("ascii.txt", "wt", encoding="ascii", errors="xmlcharrefreplace") as file:
            file.write("€1")
        assert read(storage, "ascii.txt") == b"&#8364;1"

    def test_text_file_iterates_by_lines(self, storage: StorageBackend) -> None:
        lines = [f"line {number} ünïcode {'x' * (number % 97)}\n" for number in range(20_000)]
        write(storage, "lines.txt", "".join(lines).encode("utf-8"))  # ~1.4 MB: many buffer refills
        with storage.open("lines.txt", "rt") as file:
            assert next(file) == lines[0]
            assert file.readline() == lines[1]
            assert list(file) == lines[2:]
        with storage.open("lines.txt", FileMode.read | FileMode.text) as file:
            assert file.readlines()[-1] == lines[-1]

    def test_binary_is_the_default_and_iterates_in_chunks(self, storage: StorageBackend) -> None:
        """``'r'`` without ``t`` reads bytes and iterating yields chunks of ``iter_chunk_size``
        (keg-storage 0.5's behaviour, documented in the quickstart and the API reference)."""
        data = b"a\n" * (3 * RemoteFile.iter_chunk_size // 4)  # one and a half chunks
        write(storage, "big.txt", data)
        with storage.open("big.txt", "r") as file:
            assert isinstance(file, RemoteFile)
            chunks = list(file)
        chunk_size = RemoteFile.iter_chunk_size
        assert [len(chunk) for chunk in chunks] == [chunk_size, len(data) - chunk_size]
        assert b"".join(chunks) == data
        with storage.open("big.txt") as file:
            assert file.read(4) == b"a\na\n"

    def test_text_write_aborted_in_with_publishes_nothing(self, storage: StorageBackend) -> None:
        write(storage, "kept.txt", b"old content")
        with pytest.raises(RuntimeError), storage.open("kept.txt", "wt") as file:
            file.write("new content\n" * 100_000)
            raise RuntimeError("boom")
        with pytest.raises(RuntimeError), storage.open("new.txt", "wt") as file:
            file.write("never published\n")
            raise RuntimeError("boom")
        assert file.closed
        assert read(storage, "kept.txt") == b"old content"
        assert names(storage) == ["kept.txt"]
        assert self.leftovers(storage) == []

    def test_text_abort_publishes_nothing(self, storage: StorageBackend) -> None:
        file = storage.open("aborted.txt", "wt")
        file.write("text\n" * 1000)
        file.abort()
        assert file.closed
        file.close()
        assert names(storage) == []

    def test_unclosed_text_writer_is_discarded_with_a_warning(
        self, storage: StorageBackend
    ) -> None:
        write(storage, "kept.txt", b"kept")
        caught: list[warnings.WarningMessage] = []

        def drop_unclosed_writer() -> None:
            file = storage.open("kept.txt", "wt")
            file.write("replaced?\n" * 10_000)
            with warnings.catch_warnings(record=True) as recorded:
                warnings.simplefilter("always")
                del file
                gc.collect()
            caught.extend(recorded)

        collector = threading.Thread(target=drop_unclosed_writer, daemon=True)
        collector.start()
        collector.join(30)
        assert not collector.is_alive(), "collecting an unclosed text writer hung"
        discarded = [w for w in caught if "without close()" in str(w.message)]
        assert [w.category for w in discarded] == [ResourceWarning]
        assert read(storage, "kept.txt") == b"kept"
        assert names(storage) == ["kept.txt"]
        deadline = time.monotonic() + 10  # network backends clean up off the collecting thread
        while self.leftovers(storage) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.leftovers(storage) == []

    @pytest.mark.parametrize("mode", ["a", "ab", "at", "a+"])
    def test_append_mode_says_why_it_is_refused(self, storage: StorageBackend, mode: str) -> None:
        write(storage, "log.txt", b"first\n")
        with pytest.raises(ValueError) as excinfo:
            storage.open("log.txt", mode)
        assert str(excinfo.value) == (
            f"unsupported file mode {mode!r}: appending is not supported (objects are written "
            "whole); read the file and write it again with 'w'"
        )
        assert read(storage, "log.txt") == b"first\n"

    def test_str_to_a_binary_writer_says_to_open_with_wt(self, storage: StorageBackend) -> None:
        with storage.open("doc.txt", "w") as file:
            with pytest.raises(TypeError) as excinfo:
                file.write("text")
            assert str(excinfo.value) == (
                f"{file!r} is a binary file: write() takes bytes, not str; open it with mode 'wt' "
                "to write text"
            )
            file.write(b"bytes still work")  # the writer was not spoiled by the refused str
        assert read(storage, "doc.txt") == b"bytes still work"

    def test_binary_mode_refuses_text_arguments(self, storage: StorageBackend) -> None:
        with pytest.raises(ValueError) as excinfo:
            storage.open("doc.txt", "wb", encoding="utf-8")
        assert str(excinfo.value) == (
            "binary mode 'wb' takes no encoding, errors or newline argument: open with 't' "
            "(e.g. 'rt') for text"
        )
        with pytest.raises(LookupError, match="unknown encoding: no-such-codec"):
            storage.open("doc.txt", "wt", encoding="no-such-codec")
        with pytest.raises(ValueError, match="illegal newline value: 'x'"):
            storage.open("doc.txt", "wt", newline="x")
        assert names(storage) == []
        assert self.leftovers(storage) == []

    def test_failing_last_flush_of_a_text_writer_publishes_nothing(
        self, storage: StorageBackend
    ) -> None:
        """Text still buffered at ``close()`` is written then; if that fails, nothing is published
        (here the remote file refuses the write, as a full disk or a dropped connection would)."""
        write(storage, "kept.txt", b"kept")
        file = storage.open("kept.txt", "wt")
        file.write("replaced?\n")

        def refuse(data: object) -> int:
            raise OSError("the write failed")

        file.remote_file.write = refuse  # type: ignore[method-assign]
        with pytest.raises(OSError, match="the write failed"):
            file.close()
        assert file.closed
        assert read(storage, "kept.txt") == b"kept"
        assert names(storage) == ["kept.txt"]
        assert self.leftovers(storage) == []

    def test_text_flag_alone_is_refused(self, storage: StorageBackend) -> None:
        with pytest.raises(ValueError, match="asks neither to read nor to write"):
            storage.open("doc.txt", FileMode.text)
