"""keg-storage 0.5's ``SFTPStorage.connection()`` and ``create_client()``: the raw paramiko
clients, now leased from the pool (and returned to it) or owned by the caller."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import paramiko

from tests.fixtures.backend_sftp import make_storage
from tests.servers.sshd import SSHServer


def test_connection_is_leased_from_the_pool_and_returned(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    storage = make_storage(sftp_server, sftp_base_path)
    all_leased = threading.Barrier(8, timeout=30)

    def work(number: int) -> int:
        with storage.connection() as sftp:
            assert isinstance(sftp, paramiko.SFTPClient)
            with sftp.open(f"{sftp_base_path}/raw-{number}.txt", "wb") as remote:
                remote.write(b"%d" % number)
            all_leased.wait()  # eight clients leased at once, none of them shared
            return id(sftp)

    with storage, ThreadPoolExecutor(8) as pool:
        clients = set(pool.map(work, range(8)))
        assert len(clients) == 8
        assert storage.pool_stats().connections_opened == 8
        again = set(pool.map(work, range(8)))
        assert again == clients  # the same eight, returned to the pool and leased again
        assert storage.pool_stats().connections_opened == 8
        assert [e.name for e in storage.list()] == [f"raw-{n}.txt" for n in range(8)]
        with storage.connection() as sftp:
            sftp.chdir(sftp_base_path)
        assert storage.exists("raw-0.txt")  # a changed directory does not leak to the pool


def test_create_client_is_a_new_client_owned_by_the_caller(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    with make_storage(sftp_server, sftp_base_path) as storage:
        storage.upload(io.BytesIO(b"data"), "a.txt")
        client = storage.create_client()
        try:
            assert isinstance(client, paramiko.SSHClient)
            with client.open_sftp() as sftp:
                assert sftp.listdir(sftp_base_path) == ["a.txt"]
        finally:
            client.close()
        assert storage.exists("a.txt")
