"""SFTP-specific behaviour of SFTPStorage against OpenSSH's sshd (the harness in
tests/servers/sshd.py): host key policies, authentication, the connection pool, atomic writes."""

from __future__ import annotations

import concurrent.futures
import gc
import hashlib
import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import paramiko
import pytest

from keg_storage import (
    FileNotFoundInStorageError,
    InvalidPathError,
    StorageConnectionError,
    StoragePermissionError,
)
from keg_storage.backends.sftp import SFTPLocation, SFTPStorage
from tests.faults.proxy import FaultProxy
from tests.servers.sshd import PASSWORD_USER, SSHServer

MiB = 1024 * 1024


def plain_client(server: SSHServer, **auth: object) -> paramiko.SSHClient:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.connect(
        "127.0.0.1", port=server.port, sock=sock, allow_agent=False, look_for_keys=False, **auth
    )
    return client


def read(storage: SFTPStorage, path: str) -> bytes:
    with storage.open(path) as remote:
        return remote.read()


def temp_files(directory: str) -> list[str]:
    """Temp files left anywhere under a remote directory, seen on the server's own disk."""
    return [name for _, _, files in os.walk(directory) for name in files if name.startswith(".keg")]


def test_harness_serves_sftp_to_plain_paramiko(sftp_server: SSHServer) -> None:
    data = os.urandom(3 * MiB + 17)
    path = str(sftp_server.data_dir / "harness.bin")
    with plain_client(sftp_server, username="root", key_filename=str(sftp_server.client_key)) as c:
        sftp = c.open_sftp()
        sftp.putfo(io.BytesIO(data), path)
        out = io.BytesIO()
        sftp.getfo(path, out)
        sftp.remove(path)
    assert out.getvalue() == data
    with plain_client(sftp_server, username=PASSWORD_USER, password=sftp_server.password) as c:
        assert c.open_sftp().listdir(str(sftp_server.password_user_dir)) == []


# -- host keys -------------------------------------------------------------------------------


def other_host_key_line(server: SSHServer) -> str:
    key = paramiko.Ed25519Key.from_private_key_file(str(server.client_key))
    return f"[127.0.0.1]:{server.port} {key.get_name()} {key.get_base64()}"


def test_unknown_host_is_refused_under_strict(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path
) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    storage = SFTPStorage(
        "127.0.0.1", "root", str(sftp_server.client_key), str(empty), port=sftp_server.port
    )
    with pytest.raises(StorageConnectionError, match="unknown host key") as excinfo:
        storage.exists("x")
    assert isinstance(excinfo.value, ConnectionError)
    assert "SFTPStorage 'sftp'" in str(excinfo.value)
    assert empty.read_text() == ""
    storage.close()


@pytest.mark.parametrize("policy", ["strict", "tofu", "auto_add"])
def test_changed_host_key_is_refused_under_every_policy(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path, policy: str
) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(other_host_key_line(sftp_server) + "\n")
    storage = SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(known_hosts),
        port=sftp_server.port,
        host_key_policy=policy,
        base_path=sftp_base_path,
    )
    with storage, pytest.raises(StorageConnectionError, match="host key mismatch"):
        storage.exists("x")
    assert known_hosts.read_text() == other_host_key_line(sftp_server) + "\n"


def test_tofu_records_the_first_key(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path
) -> None:
    known_hosts = tmp_path / "ssh" / "known_hosts"
    with SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(known_hosts),
        port=sftp_server.port,
        host_key_policy="tofu",
        base_path=sftp_base_path,
    ) as storage:
        assert not storage.exists("x")
    assert known_hosts.read_text() == sftp_server.host_key_line() + "\n"
    # The recorded key now lets a strict instance in.
    with SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(known_hosts),
        port=sftp_server.port,
        base_path=sftp_base_path,
    ) as strict:
        assert strict.list() == []


def test_known_host_keys_string(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path
) -> None:
    with SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(tmp_path / "no-such-file"),
        port=sftp_server.port,
        known_host_keys="# comment\n\n" + sftp_server.host_key_line() + "\n",
        base_path=sftp_base_path,
    ) as storage:
        storage.upload(io.BytesIO(b"ok"), "a.txt")
        assert storage.exists("a.txt")


def test_auto_add_warns_on_every_connection(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="keg_storage")
    with SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(tmp_path / "no-such-file"),
        port=sftp_server.port,
        host_key_policy="auto_add",
        base_path=sftp_base_path,
    ) as storage:
        storage.exists("a")
        storage.close()  # the next call opens a new connection
        storage.exists("a")
    warnings = [r for r in caplog.records if "unverified" in r.getMessage()]
    assert len(warnings) == 2
    assert not (tmp_path / "no-such-file").exists()


def test_invalid_host_key_policy() -> None:
    with pytest.raises(ValueError, match="host_key_policy"):
        SFTPStorage("localhost", host_key_policy="trust-me")


# -- authentication --------------------------------------------------------------------------


def password_storage(server: SSHServer, password: str) -> SFTPStorage:
    return SFTPStorage(
        "127.0.0.1",
        PASSWORD_USER,
        known_hosts_fpath=str(server.known_hosts),
        port=server.port,
        password=password,
        base_path=str(server.password_user_dir),
    )


def test_password_auth_and_the_password_stays_secret(
    sftp_server: SSHServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = sftp_server.password
    with password_storage(sftp_server, secret) as storage:
        storage.upload(io.BytesIO(b"by password"), "pw/file.txt")
        assert read(storage, "pw/file.txt") == b"by password"
        storage.delete("pw/file.txt")
        assert secret not in repr(storage) and secret not in str(storage)
        assert secret not in repr(vars(storage))
    wrong = "not-" + secret
    with password_storage(sftp_server, wrong) as storage:
        with pytest.raises(StorageConnectionError, match="authentication failed") as excinfo:
            storage.exists("x")
        assert wrong not in str(excinfo.value) and wrong not in repr(excinfo.value)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert secret not in logged and wrong not in logged


def test_key_file_auth(backend_sftp: SFTPStorage) -> None:
    backend_sftp.upload(io.BytesIO(b"by key"), "k.txt")
    assert backend_sftp.exists("k.txt")


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pem: pem,
        lambda pem: pem.replace("\n", ""),
        lambda pem: pem.replace("\n", " "),
        lambda pem: pem.replace("\n", "\\n"),
    ],
    ids=["intact", "no-line-breaks", "spaces", "escaped-newlines"],
)
def test_pkey_as_pem_string(sftp_server: SSHServer, sftp_base_path: str, mangle: object) -> None:
    pem = sftp_server.client_key_pem.read_text()
    assert pem.startswith("-----BEGIN RSA PRIVATE KEY-----")
    with SFTPStorage(
        "127.0.0.1",
        "root",
        known_hosts_fpath=str(sftp_server.known_hosts),
        port=sftp_server.port,
        pkey=mangle(pem),  # type: ignore[operator]
        base_path=sftp_base_path,
    ) as storage:
        assert storage.list() == []


def test_pkey_object_and_openssh_format_string(sftp_server: SSHServer, sftp_base_path: str) -> None:
    openssh = sftp_server.client_key.read_text()
    for pkey in (paramiko.Ed25519Key.from_private_key_file(str(sftp_server.client_key)), openssh):
        with SFTPStorage(
            "127.0.0.1",
            "root",
            known_hosts_fpath=str(sftp_server.known_hosts),
            port=sftp_server.port,
            pkey=pkey,
            base_path=sftp_base_path,
        ) as storage:
            assert storage.list() == []


def test_unreadable_pkey_is_refused() -> None:
    with pytest.raises(ValueError, match="pkey"):
        SFTPStorage(
            "localhost", pkey="-----BEGIN RSA PRIVATE KEY-----garbage-----END RSA PRIVATE KEY-----"
        )


def test_encrypted_pkey_needs_its_passphrase(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path
) -> None:
    encrypted = tmp_path / "id_rsa_encrypted"
    key = paramiko.RSAKey.from_private_key_file(str(sftp_server.client_key_pem))
    key.write_private_key_file(str(encrypted), password="open sesame")
    pem = encrypted.read_text()
    assert "ENCRYPTED" in pem
    with pytest.raises(ValueError, match="passphrase"):
        SFTPStorage("127.0.0.1", pkey=pem)
    with SFTPStorage(
        "127.0.0.1",
        "root",
        known_hosts_fpath=str(sftp_server.known_hosts),
        port=sftp_server.port,
        pkey=pem.replace("\n", " "),
        passphrase="open sesame",
        base_path=sftp_base_path,
    ) as storage:
        assert storage.list() == []
        assert "open sesame" not in repr(vars(storage))


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with (
        SFTPStorage("127.0.0.1", "root", port=port, timeout=2, retry=0) as storage,
        pytest.raises(StorageConnectionError) as excinfo,
    ):
        storage.exists("x")
    assert str(excinfo.value) == (
        f"connection to SFTP at 127.0.0.1:{port} failed: Connection refused "
        "(backend SFTPStorage 'sftp', path 'x')"
    )


# -- the connection pool ---------------------------------------------------------------------


def test_connections_are_reused(backend_sftp: SFTPStorage) -> None:
    for index in range(50):
        backend_sftp.upload(io.BytesIO(b"x"), f"f{index}.txt")
        assert backend_sftp.exists(f"f{index}.txt")
    assert len(backend_sftp.list()) == 50
    assert backend_sftp.pool_stats().connections_opened == 1
    with backend_sftp.connection() as sftp:
        sock = sftp.get_channel().get_transport().sock
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
    backend_sftp.close()
    backend_sftp.close()
    assert backend_sftp.exists("f0.txt")  # reconnects after close()
    assert backend_sftp.pool_stats().connections_opened == 2


def test_pool_is_bounded(sftp_server: SSHServer, sftp_base_path: str) -> None:
    with SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(sftp_server.known_hosts),
        port=sftp_server.port,
        base_path=sftp_base_path,
        pool_size=1,
        sessions_per_connection=2,
        timeout=0.5,
    ) as storage:
        storage.upload(io.BytesIO(b"x"), "a.txt")
        first, second = storage.open("a.txt"), storage.open("a.txt")
        with pytest.raises(StorageConnectionError, match="no SFTP session became free"):
            storage.exists("a.txt")
        first.close()
        assert storage.exists("a.txt")
        assert second.read() == b"x"
        second.close()
        assert storage.pool_stats().connections_opened == 1


def test_threads_waiting_for_a_connection_share_its_sessions(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    """8 threads at once on 2 connections of 4 sessions: each opened connection's free sessions
    go to the waiting threads at once, and the pool never opens more than its size."""
    with SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(sftp_server.known_hosts),
        port=sftp_server.port,
        base_path=sftp_base_path,
        pool_size=2,
        sessions_per_connection=4,
        timeout=10,
    ) as storage:
        storage.upload(io.BytesIO(b"x"), "a.txt")
        storage.close()
        all_open = threading.Barrier(8, timeout=8)

        def hold_a_session() -> None:
            with storage.open("a.txt") as file:
                all_open.wait()
                assert file.read() == b"x"

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            for future in [pool.submit(hold_a_session) for _ in range(8)]:
                future.result(timeout=20)
        assert (
            storage.pool_stats().connections_opened - 1 <= 2
        )  # one before close(), then at most 2


def test_garbage_collected_storage_closes_its_connections(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    storage = SFTPStorage(
        "127.0.0.1",
        "root",
        str(sftp_server.client_key),
        str(sftp_server.known_hosts),
        port=sftp_server.port,
        base_path=sftp_base_path,
    )
    assert not storage.exists("a.txt")
    with storage.connection() as sftp:
        transport = sftp.get_channel().get_transport()
    assert transport.is_active()
    del storage
    gc.collect()
    assert not transport.is_active()


def test_dropped_connection_is_replaced(backend_sftp: SFTPStorage, sftp_server: SSHServer) -> None:
    data = os.urandom(MiB)
    backend_sftp.upload(io.BytesIO(data), "kept.bin")
    assert sftp_server.kill_sessions() > 0
    # The pooled connection is dead now; the next operations replace it transparently.
    assert backend_sftp.exists("kept.bin")
    out = io.BytesIO()
    backend_sftp.download("kept.bin", out)
    assert out.getvalue() == data
    assert [e.name for e in backend_sftp.list()] == ["kept.bin"]
    assert backend_sftp.pool_stats().connections_opened == 2


def test_connection_dropped_during_a_write_publishes_nothing(
    backend_sftp: SFTPStorage, sftp_server: SSHServer, sftp_base_path: str
) -> None:
    backend_sftp.upload(io.BytesIO(b"old"), "doc.bin")
    writer = backend_sftp.open("doc.bin", "wb")
    writer.write(os.urandom(2 * MiB))
    sftp_server.kill_sessions()
    with pytest.raises(StorageConnectionError):
        for _ in range(64):
            writer.write(os.urandom(MiB))
    writer.abort()
    assert writer.closed
    assert read(backend_sftp, "doc.bin") == b"old"
    # The temp file of the killed session was removed through a new connection.
    assert temp_files(sftp_base_path) == []
    assert [e.name for e in backend_sftp.list()] == ["doc.bin"]


def test_sixteen_threads_share_one_instance(backend_sftp: SFTPStorage) -> None:
    errors: list[BaseException] = []
    digests: dict[str, str] = {}
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            for round_ in range(4):
                data = os.urandom(256 * 1024 + worker * 1000 + round_)
                path = f"t{worker}/{round_}.bin"
                backend_sftp.upload(io.BytesIO(data), path)
                with lock:
                    digests[path] = hashlib.sha256(data).hexdigest()
                out = io.BytesIO()
                backend_sftp.download(path, out)
                assert hashlib.sha256(out.getvalue()).hexdigest() == digests[path]
                with backend_sftp.open(path) as remote:
                    remote.seek(1000)
                    assert remote.read(100) == data[1000:1100]
                backend_sftp.copy(path, path + ".copy")
                assert backend_sftp.stat(path + ".copy").size == len(data)
                backend_sftp.move(path + ".copy", path + ".moved")
                assert backend_sftp.exists(path + ".moved")
                assert not backend_sftp.exists(path + ".copy")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(worker,)) for worker in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for path, digest in digests.items():
        for name in (path, path + ".moved"):
            with backend_sftp.open(name) as remote:
                assert hashlib.sha256(remote.read()).hexdigest() == digest
    assert len(backend_sftp.list()) == 128
    assert backend_sftp.pool_stats().connections_opened <= 8


# -- files, paths and temp files -------------------------------------------------------------


def test_no_temp_files_after_aborted_or_failed_writes(
    backend_sftp: SFTPStorage, sftp_base_path: str
) -> None:
    backend_sftp.upload(io.BytesIO(b"old"), "d/doc.bin")
    writer = backend_sftp.open("d/doc.bin", "wb")
    writer.write(os.urandom(3 * MiB))
    assert len(temp_files(sftp_base_path)) == 1  # the pending write, beside its target
    writer.abort()
    with pytest.raises(RuntimeError), backend_sftp.open("d/doc.bin", "wb") as file:
        file.write(os.urandom(MiB))
        raise RuntimeError("failed")

    class Broken(io.RawIOBase):
        def readable(self) -> bool:
            return True

        def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
            raise OSError("source broke")

    with pytest.raises(OSError, match="source broke"):
        backend_sftp.upload(io.BufferedReader(Broken()), "d/doc.bin")
    assert temp_files(sftp_base_path) == []
    assert read(backend_sftp, "d/doc.bin") == b"old"


def test_pending_write_is_invisible_to_listings(
    backend_sftp: SFTPStorage, sftp_base_path: str
) -> None:
    backend_sftp.upload(io.BytesIO(b"x"), "dir/old.txt")
    with backend_sftp.open("dir/new.txt", "wb") as writer:
        writer.write(b"pending")
        assert len(temp_files(sftp_base_path)) == 1
        assert [e.name for e in backend_sftp.list()] == ["dir/old.txt"]
        assert [e.name for e in backend_sftp.list("dir", recursive=False)] == ["dir/old.txt"]
        assert backend_sftp.glob("dir/*") == backend_sftp.list("dir")
    assert [e.name for e in backend_sftp.list()] == ["dir/new.txt", "dir/old.txt"]


def test_temp_files_are_named_as_on_localfs_and_old_part_files_stay_hidden(
    backend_sftp: SFTPStorage, sftp_base_path: str
) -> None:
    backend_sftp.upload(io.BytesIO(b"x"), "d/kept.txt")
    leftover = Path(sftp_base_path, "d", ".keg-storage-0123456789abcdef.part")
    leftover.write_bytes(b"written before 1.0, interrupted")
    with backend_sftp.open("d/new.txt", "wb") as writer:
        writer.write(b"pending")
        pending = [name for name in temp_files(sftp_base_path) if name != leftover.name]
        assert len(pending) == 1
        assert re.fullmatch(r"\.keg-storage-[0-9a-f]{16}\.tmp", pending[0])
    assert [e.name for e in backend_sftp.list()] == ["d/kept.txt", "d/new.txt"]
    assert [e.name for e in backend_sftp.list("d/", recursive=False)] == [
        "d/kept.txt",
        "d/new.txt",
    ]
    assert temp_files(sftp_base_path) == [leftover.name]


def test_seek_reads_only_what_is_asked(backend_sftp: SFTPStorage) -> None:
    data = os.urandom(20 * MiB)
    backend_sftp.upload(io.BytesIO(data), "big.bin")
    with backend_sftp.open("big.bin") as remote:
        for offset in (19 * MiB, 7, 10 * MiB + 3, 0):
            remote.seek(offset)
            assert remote.read(1000) == data[offset : offset + 1000]
        # Random access never grew the read-ahead beyond the one request it needed.
        assert remote.requests_in_flight <= 1
        remote.seek(-5, io.SEEK_END)
        assert remote.read() == data[-5:]


def test_files_live_under_base_path(backend_sftp: SFTPStorage, sftp_base_path: str) -> None:
    backend_sftp.upload(io.BytesIO(b"here"), "/x//y/z.txt")
    assert Path(sftp_base_path, "x", "y", "z.txt").read_bytes() == b"here"
    location = backend_sftp.resolve("x/y/z.txt")
    assert location == SFTPLocation(
        "127.0.0.1", backend_sftp.port, f"{sftp_base_path}/x/y/z.txt", sftp_base_path
    )


def test_read_write_mode_changes_the_file_in_place(
    backend_sftp: SFTPStorage, sftp_base_path: str
) -> None:
    backend_sftp.upload(io.BytesIO(b"0123456789"), "rw.bin")
    inode = os.stat(Path(sftp_base_path, "rw.bin")).st_ino
    with backend_sftp.open("rw.bin", "r+b") as file:
        file.seek(8)
        file.write(b"AB")
        file.seek(0)
        assert file.read(3) == b"012"
        file.write(b"xyz")
        assert file.tell() == 6
        file.seek(0)
        assert file.read() == b"012xyz67AB"
    assert os.stat(Path(sftp_base_path, "rw.bin")).st_ino == inode
    with pytest.raises(FileNotFoundInStorageError):
        backend_sftp.open("missing.bin", "r+")


def test_streamed_copy_and_rename_fallback_without_extensions(
    backend_sftp: SFTPStorage, sftp_base_path: str
) -> None:
    """Servers without ``copy-data`` and ``posix-rename`` (OpenSSH has both): copies stream
    through the client on two sessions, publishing renames over the target."""
    data = os.urandom(5 * MiB + 3)
    backend_sftp.upload(io.BytesIO(data), "src.bin")
    backend_sftp.upload(io.BytesIO(b"old"), "dst/moved.bin")
    with backend_sftp.connection() as session:
        session.extensions.pop("copy-data")
        session.extensions.pop("posix-rename@openssh.com")
    backend_sftp.copy("src.bin", "dst/copy.bin")  # on the stripped session: streamed
    backend_sftp.move("src.bin", "dst/moved.bin")  # rename refused over a file: replaced
    with backend_sftp.connection() as leased:
        assert leased is session and "copy-data" not in leased.extensions
    assert Path(sftp_base_path, "dst", "copy.bin").read_bytes() == data
    assert Path(sftp_base_path, "dst", "moved.bin").read_bytes() == data
    assert sorted(e.name for e in backend_sftp.list()) == ["dst/copy.bin", "dst/moved.bin"]
    assert temp_files(sftp_base_path) == []


def test_permission_denied(sftp_server: SSHServer) -> None:
    with password_storage(sftp_server, sftp_server.password) as storage:
        storage.base_path = str(sftp_server.data_dir)  # owned by root, read-only for others
        with pytest.raises(StoragePermissionError) as excinfo:
            storage.upload(io.BytesIO(b"x"), "nope.txt")
    assert isinstance(excinfo.value, PermissionError)
    assert "nope.txt" in str(excinfo.value)


def test_import_without_paramiko_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['paramiko'] = None\n"
        "import keg_storage.backends.sftp as sftp\n"
        "from keg_storage.errors import MissingDependencyError\n"
        "try:\n"
        "    sftp.SFTPStorage('localhost')\n"
        "except MissingDependencyError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert 'pip install "keg-storage[sftp]"' in out


def test_cli_profile(sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path) -> None:
    """The ``keg-storage`` command builds SFTPStorage from a TOML profile's keywords."""
    from click.testing import CliRunner

    from keg_storage.cli import main

    pem = sftp_server.client_key_pem.read_text().replace("\n", " ")  # as a secret store has it
    config = tmp_path / "storage.toml"
    config.write_text(
        "[profiles.remote]\n"
        'backend = "sftp"\n'
        'host = "127.0.0.1"\n'
        f"port = {sftp_server.port}\n"
        'username = "root"\n'
        f'pkey = "{pem}"\n'
        f'known_host_keys = "{sftp_server.host_key_line()}"\n'
        f'base_path = "{sftp_base_path}"\n'
    )
    runner = CliRunner()
    args = ["--config", str(config)]
    result = runner.invoke(main, [*args, "put", "-", "docs/a.txt"], input=b"via the CLI")
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, [*args, "list", "--simple"]).output == "docs/a.txt\n"
    assert Path(sftp_base_path, "docs", "a.txt").read_bytes() == b"via the CLI"
    missing = runner.invoke(main, [*args, "get", "nope.txt", "-"])
    assert missing.exit_code != 0 and "nope.txt" in missing.output


# -- faults between the client and the server (tests/faults/proxy.py) ---------------------------


def test_transfers_start_over_after_a_dropped_connection(
    sftp_proxied: tuple[SFTPStorage, FaultProxy],
    sftp_base_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage, proxy = sftp_proxied
    data = os.urandom(7 * MiB + 11)
    progress: list[int] = []
    proxy.cut_after(3 * MiB, "upstream")
    caplog.set_level(logging.WARNING, "keg_storage.retry")
    storage.upload(io.BytesIO(data), "doc.bin", progress_callback=progress.append)
    # Issue 14, point 3: the restart is logged, with its cause and endpoint.
    # The reset reaches paramiko's reader thread or the channel first: either cause is true.
    retries = [r.getMessage() for r in caplog.records if r.name == "keg_storage.retry"]
    assert len(retries) == 1
    assert re.fullmatch(
        r"sftp 'sftp': upload doc\.bin failed \((Connection reset by peer|the server closed the "
        rf"connection)\) at 127\.0\.0\.1:{proxy.port}; retrying \(attempt 2 of 2\)",
        retries[0],
    ), retries
    assert not proxy.armed  # the cut fired, mid-upload
    assert Path(sftp_base_path, "doc.bin").read_bytes() == data
    assert progress == sorted(progress) and progress[-1] == len(data)
    assert temp_files(sftp_base_path) == []

    proxy.cut_after(3 * MiB, "downstream")
    target = io.BytesIO()
    storage.download("doc.bin", target)
    assert not proxy.armed
    assert target.getvalue() == data


def test_streaming_read_resumes_after_a_dropped_connection(
    sftp_proxied: tuple[SFTPStorage, FaultProxy], caplog: pytest.LogCaptureFixture
) -> None:
    storage, proxy = sftp_proxied
    # Far more than the reader's read-ahead: the cut must come while bytes are still on their
    # way (with 7 MiB, 3 runs in 30 had read ahead past it before it was armed).
    data = os.urandom(24 * MiB + 11)
    storage.upload(io.BytesIO(data), "doc.bin")
    with storage.open("doc.bin") as remote:
        assert remote.read(MiB) == data[:MiB]
        proxy.cut_after(2 * MiB, "downstream")
        caplog.set_level(logging.WARNING, "keg_storage.retry")
        assert remote.read() == data[MiB:]
    assert not proxy.armed
    retries = [r.getMessage() for r in caplog.records if r.name == "keg_storage.retry"]
    assert len(retries) == 1
    assert re.fullmatch(
        rf"sftp 'sftp': read doc\.bin at byte \d+ failed \(.+\) at 127\.0\.0\.1:{proxy.port}; "
        r"retrying \(attempt 2 of 2\)",
        retries[0],
    ), retries


def test_streaming_write_cut_off_raises_and_publishes_nothing(
    sftp_proxied: tuple[SFTPStorage, FaultProxy], sftp_base_path: str
) -> None:
    storage, proxy = sftp_proxied
    storage.upload(io.BytesIO(b"old"), "doc.bin")
    proxy.cut_after(3 * MiB, "upstream")
    with pytest.raises(StorageConnectionError), storage.open("doc.bin", "wb") as remote:
        for _ in range(8):
            remote.write(os.urandom(MiB))
    assert Path(sftp_base_path, "doc.bin").read_bytes() == b"old"
    assert temp_files(sftp_base_path) == []
    storage.upload(io.BytesIO(b"new"), "doc.bin")  # the same instance works on
    assert read(storage, "doc.bin") == b"new"


def test_refused_connection_is_a_connection_error(
    sftp_proxied: tuple[SFTPStorage, FaultProxy],
) -> None:
    storage, proxy = sftp_proxied
    proxy.refuse_new = True
    with pytest.raises(StorageConnectionError) as excinfo:
        storage.exists("a.txt")
    assert "SFTPStorage 'sftp'" in str(excinfo.value)
    proxy.clear()
    assert not storage.exists("a.txt")


def test_transfer_survives_a_server_restart(
    backend_sftp: SFTPStorage, sftp_server: SSHServer, sftp_base_path: str
) -> None:
    data = os.urandom(32 * MiB)
    restarts: list[int] = []

    def restart_once(count: int) -> None:
        if count >= 2 * MiB and not restarts:
            restarts.append(count)
            sftp_server.restart()

    backend_sftp.upload(io.BytesIO(data), "doc.bin", progress_callback=restart_once)
    assert restarts
    assert Path(sftp_base_path, "doc.bin").read_bytes() == data
    restarts.clear()
    target = io.BytesIO()
    backend_sftp.download("doc.bin", target, progress_callback=restart_once)
    assert restarts and target.getvalue() == data
    assert temp_files(sftp_base_path) == []


# -- symlinks on the server ------------------------------------------------------------------


@pytest.fixture
def linked(sftp_server: SSHServer, sftp_base_path: str) -> Iterator[tuple[Path, Path]]:
    """base_path holding symlinks made on the server: ``out`` and ``out.txt`` lead to a
    directory and a file outside base_path, ``in`` and ``in.txt`` to ones inside."""
    base = Path(sftp_base_path)
    outside = Path(tempfile.mkdtemp(dir=sftp_server.data_dir, prefix="outside-"))
    (outside / "secret.txt").write_bytes(b"secret")
    (outside / "sub").mkdir()
    (outside / "sub" / "deep.txt").write_bytes(b"deep")
    (base / "real").mkdir()
    (base / "real" / "a.txt").write_bytes(b"inside")
    (base / "mine.txt").write_bytes(b"mine")
    os.symlink(outside, base / "out")
    os.symlink(outside / "secret.txt", base / "out.txt")
    os.symlink(base / "real", base / "in")
    os.symlink(base / "real" / "a.txt", base / "in.txt")
    try:
        yield base, outside
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def tree(directory: Path) -> dict[str, bytes | None]:
    """Every entry under ``directory``, with the content of its files."""
    return {
        str(path.relative_to(directory)): path.read_bytes() if path.is_file() else None
        for path in sorted(directory.rglob("*"))
    }


Operation = Callable[[SFTPStorage, Path], object]
ESCAPES: dict[str, Operation] = {
    "read through dir": lambda s, _: read(s, "out/secret.txt"),
    "read through file": lambda s, _: read(s, "out.txt"),
    "read+write through file": lambda s, _: s.open("out.txt", "r+").write(b"X"),
    "stat through dir": lambda s, _: s.stat("out/secret.txt"),
    "stat through file": lambda s, _: s.stat("out.txt"),
    "exists through dir": lambda s, _: s.exists("out/secret.txt"),
    "exists through file": lambda s, _: s.exists("out.txt"),
    "write into dir": lambda s, _: s.upload(io.BytesIO(b"new"), "out/new.txt"),
    "write into missing dirs": lambda s, _: s.upload(io.BytesIO(b"new"), "out/x/y/new.txt"),
    "overwrite through dir": lambda s, _: s.upload(io.BytesIO(b"new"), "out/secret.txt"),
    "overwrite file link": lambda s, _: s.upload(io.BytesIO(b"new"), "out.txt"),
    "open w file link": lambda s, _: s.open("out.txt", "w").close(),
    "delete through dir": lambda s, _: s.delete("out/secret.txt"),
    "delete file link": lambda s, _: s.delete("out.txt"),
    "delete prunes through dir": lambda s, _: s.delete("out/sub/deep.txt"),
    "move from dir": lambda s, _: s.move("out/secret.txt", "stolen.txt"),
    "move from file link": lambda s, _: s.move("out.txt", "stolen.txt"),
    "move into dir": lambda s, _: s.move("mine.txt", "out/secret.txt"),
    "move over file link": lambda s, _: s.move("mine.txt", "out.txt"),
    "copy from dir": lambda s, _: s.copy("out/secret.txt", "stolen.txt"),
    "copy from file link": lambda s, _: s.copy("out.txt", "stolen.txt"),
    "copy into dir": lambda s, _: s.copy("mine.txt", "out/secret.txt"),
    "copy over file link": lambda s, _: s.copy("mine.txt", "out.txt"),
    "list dir": lambda s, _: s.list("out"),
    "list dir one level": lambda s, _: s.list("out/", recursive=False),
    "list below dir": lambda s, _: s.list("out/sub"),
    "get through file": lambda s, tmp: s.get("out.txt", str(tmp / "got")),
    "put into dir": lambda s, tmp: s.put(str(tmp / "local"), "out/put.txt"),
    "download through dir": lambda s, _: s.download("out/secret.txt", io.BytesIO()),
}


@pytest.mark.parametrize("operation", list(ESCAPES), ids=list(ESCAPES))
def test_symlinks_leaving_base_path_are_refused(
    backend_sftp: SFTPStorage, linked: tuple[Path, Path], tmp_path: Path, operation: str
) -> None:
    base, outside = linked
    (tmp_path / "local").write_bytes(b"local")
    before, before_base = tree(outside), tree(base)
    with pytest.raises(InvalidPathError) as excinfo:
        ESCAPES[operation](backend_sftp, tmp_path)
    assert "SFTPStorage 'sftp'" in str(excinfo.value) and "path 'out" in str(excinfo.value)
    assert tree(outside) == before
    assert tree(base) == before_base  # links and files in place, no temp file left
    assert not (tmp_path / "got").exists()


def test_symlinks_inside_base_path_keep_working(
    backend_sftp: SFTPStorage, linked: tuple[Path, Path]
) -> None:
    base, _ = linked
    assert read(backend_sftp, "in.txt") == b"inside"
    assert read(backend_sftp, "in/a.txt") == b"inside"
    assert backend_sftp.stat("in.txt").size == 6 and backend_sftp.exists("in/a.txt")
    backend_sftp.upload(io.BytesIO(b"via link"), "in/new.txt")
    assert (base / "real" / "new.txt").read_bytes() == b"via link"
    assert [e.name for e in backend_sftp.list("in")] == ["in/a.txt", "in/new.txt"]
    backend_sftp.copy("in.txt", "copied.txt")
    assert (base / "copied.txt").read_bytes() == b"inside"
    backend_sftp.move("in/new.txt", "moved.txt")
    assert (base / "moved.txt").read_bytes() == b"via link"
    backend_sftp.delete("in.txt")  # the link goes, its target stays
    assert not (base / "in.txt").is_symlink() and (base / "real" / "a.txt").exists()


def test_symlink_planted_later_is_refused_after_the_check_expires(
    backend_sftp: SFTPStorage, linked: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, outside = linked
    monkeypatch.setattr("keg_storage.backends.sftp_paths.DIR_CHECK_TTL", 0.0)  # expires at once
    (base / "d").mkdir()
    (base / "d" / "f.txt").write_bytes(b"ok")
    assert read(backend_sftp, "d/f.txt") == b"ok"
    (base / "d" / "f.txt").unlink()
    (base / "d").rmdir()
    os.symlink(outside, base / "d")
    (outside / "f.txt").write_bytes(b"outside")
    with pytest.raises(InvalidPathError):
        read(backend_sftp, "d/f.txt")
