"""SFTP-specific behaviour of SFTPStorage against OpenSSH's sshd (the harness in
tests/servers/sshd.py)."""

from __future__ import annotations

import io
import os
import socket

import paramiko

from tests.servers.sshd import PASSWORD_USER, SSHServer


def plain_client(server: SSHServer, **auth: object) -> paramiko.SSHClient:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client = paramiko.SSHClient()
    client.load_host_keys(str(server.known_hosts))
    client.connect(
        "127.0.0.1", port=server.port, sock=sock, allow_agent=False, look_for_keys=False, **auth
    )
    return client


def test_harness_serves_sftp_to_plain_paramiko(sftp_server: SSHServer) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
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
