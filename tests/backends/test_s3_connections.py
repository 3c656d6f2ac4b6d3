"""The kept connections of S3's small direct requests (keg_storage.backends.keep_alive),
against the SeaweedFS test server, through the fault proxy, and over TLS (a TLS front of the
test's own, with a certificate authority of its own, before SeaweedFS): they are reused, a
kept connection the server closed is replaced without the client, TLS is checked as the client
checks it, and a client that goes through a proxy keeps every request."""

from __future__ import annotations

import contextlib
import datetime
import http.server
import io
import ipaddress
import logging
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from keg_storage import StorageConnectionError, StorageError
from keg_storage.backends.keep_alive import (
    MAX_ANSWER_BODY,
    Answer,
    KeepAliveConnections,
    Request,
)
from keg_storage.backends.s3 import S3Storage
from tests.backends.test_s3_direct import HeadObjects, PutObjects
from tests.faults.proxy import CUT_CAUSE, FaultProxy
from tests.fixtures.backend_s3 import make_storage
from tests.servers.seaweedfs import SeaweedFS

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def test_small_requests_share_one_kept_connection(
    s3_proxied: tuple[S3Storage, FaultProxy], s3_client: S3Client
) -> None:
    storage, proxy = s3_proxied
    puts, heads = PutObjects(storage.client), HeadObjects(storage.client)
    for number in range(20):
        storage.upload(io.BytesIO(b"%d" % number), f"k/{number}.txt")
        assert storage.exists(f"k/{number}.txt")
    assert proxy.stats.connections == 1
    assert puts.keys == heads.keys == []
    for number in range(20):
        body = s3_client.get_object(Bucket=storage.bucket, Key=f"k/{number}.txt")["Body"]
        assert body.read() == b"%d" % number


def test_a_kept_connection_the_server_closed_is_replaced(
    s3_proxied: tuple[S3Storage, FaultProxy], s3_client: S3Client
) -> None:
    """The server (here the proxy) drops the idle connection: the next upload goes once more
    on a new connection, without the client."""
    storage, proxy = s3_proxied
    puts = PutObjects(storage.client)
    storage.upload(io.BytesIO(b"first"), "a.txt")
    proxy.reset_all()
    storage.upload(io.BytesIO(b"second"), "a.txt")
    assert proxy.stats.connections == 2
    assert puts.keys == []
    assert s3_client.get_object(Bucket=storage.bucket, Key="a.txt")["Body"].read() == b"second"


def test_an_answer_cut_after_it_began_goes_through_the_client(
    s3_proxied: tuple[S3Storage, FaultProxy],
    s3_client: S3Client,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A part of the answer came and the connection broke: the upload is not sent again on a
    new connection of its own but through the client, whose retries apply; the retry log
    says so."""
    storage, proxy = s3_proxied
    puts = PutObjects(storage.client)
    storage.upload(io.BytesIO(b"first"), "a.txt")
    caplog.set_level(logging.WARNING, "keg_storage.retry")
    proxy.cut_after(20, "downstream")
    storage.upload(io.BytesIO(b"second"), "a.txt")
    assert not proxy.armed
    assert puts.keys == ["a.txt"]
    [line] = [r.getMessage() for r in caplog.records if r.name == "keg_storage.retry"]
    assert re.fullmatch(
        rf"s3 's3': PUT a\.txt failed \({CUT_CAUSE}\) at http://127\.0\.0\.1:{proxy.port}; "
        "sending it again through the SDK",
        line,
    ), line
    assert s3_client.get_object(Bucket=storage.bucket, Key="a.txt")["Body"].read() == b"second"


def test_a_client_behind_a_proxy_sends_every_request_through_it(
    seaweedfs: SeaweedFS, s3_bucket: str
) -> None:
    """Direct requests never bypass the client's proxy: with a proxy that answers nothing,
    the upload fails as the client's own request does."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{unused.getsockname()[1]}"
    config = Config(proxies={"http": dead_proxy}, connect_timeout=1, retries={"max_attempts": 1})
    with make_storage(seaweedfs, s3_bucket, client_config=config) as storage:
        with pytest.raises(StorageConnectionError) as error:
            storage.upload(io.BytesIO(b"x"), "proxied.txt")
        assert error.value.path == "proxied.txt"
        assert storage._clients.get().direct.connections is None  # type: ignore[union-attr]


# -- TLS ---------------------------------------------------------------------------------------
class Authority:
    """A certificate authority of the test's own and a server certificate it signed for
    127.0.0.1."""

    def __init__(self, directory: Path) -> None:
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keg-storage test CA")])
        ca = (
            self._builder(ca_name, ca_name, ca_key, now)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        address = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
        server = (
            self._builder(name, ca_name, key, now)
            .add_extension(x509.SubjectAlternativeName([address]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_file = directory / "ca.pem"
        self.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        self.cert_file = directory / "server.pem"
        self.cert_file.write_bytes(server.public_bytes(serialization.Encoding.PEM))
        self.key_file = directory / "server.key"
        self.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )

    @staticmethod
    def _builder(
        subject: x509.Name, issuer: x509.Name, key: Any, now: datetime.datetime
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
        )


class TLSFront:
    """Takes TLS connections on a loopback port and forwards their plain bytes to a server;
    counts the connections whose handshake succeeded."""

    def __init__(self, authority: Authority, port: int) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(authority.cert_file, authority.key_file)
        self.upstream = ("127.0.0.1", port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            secure = self.context.wrap_socket(client, server_side=True)
        except OSError:
            client.close()
            return
        self.handshakes += 1
        server = socket.create_connection(self.upstream)
        threading.Thread(target=self._pipe, args=(server, secure), daemon=True).start()
        self._pipe(secure, server)

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def tls_front(
    seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TLSFront, Authority]]:
    authority = Authority(tmp_path_factory.mktemp("tls"))
    front = TLSFront(authority, seaweedfs.ports["s3.port"])
    yield front, authority
    front.close()


def local_files(directory: Path, count: int) -> list[tuple[Path, str]]:
    """``count`` small local files and their keys ``many/<n>.txt``."""
    pairs = []
    for number in range(count):
        local = directory / f"{number}.txt"
        local.write_bytes(b"file %d" % number)
        pairs.append((local, f"many/{number}.txt"))
    return pairs


def tls_storage(seaweedfs: SeaweedFS, bucket: str, port: int) -> S3Storage:
    return S3Storage(
        bucket,
        seaweedfs.region,
        seaweedfs.access_key,
        seaweedfs.secret_key,
        endpoint_url=f"https://127.0.0.1:{port}",
        connect_timeout=2,
        read_timeout=5,
        max_attempts=1,
    )


def test_direct_requests_over_tls_trust_the_clients_ca_bundle(
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    s3_client: S3Client,
    tls_front: tuple[TLSFront, Authority],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The client trusts the CA bundle of ``AWS_CA_BUNDLE``: so do the direct requests, on one
    kept TLS connection, and a batch of ``upload_many`` on its 4 connections."""
    front, authority = tls_front
    monkeypatch.setenv("AWS_CA_BUNDLE", str(authority.ca_file))
    with tls_storage(seaweedfs, s3_bucket, front.port) as storage:
        puts, heads = PutObjects(storage.client), HeadObjects(storage.client)
        before = front.handshakes
        for number in range(5):
            storage.upload(io.BytesIO(b"tls %d" % number), f"tls/{number}.txt")
            assert storage.exists(f"tls/{number}.txt")
        assert front.handshakes - before == 1
        results = storage.upload_many(local_files(tmp_path, 20), max_concurrency=4)
        assert [result.error for result in results] == [None] * 20
        assert front.handshakes - before == 1 + 4
        assert puts.keys == heads.keys == []
    assert s3_client.get_object(Bucket=s3_bucket, Key="tls/4.txt")["Body"].read() == b"tls 4"
    for number in range(20):
        body = s3_client.get_object(Bucket=s3_bucket, Key=f"many/{number}.txt")["Body"]
        assert body.read() == b"file %d" % number


def test_direct_requests_over_tls_refuse_a_server_the_client_does_not_trust(
    seaweedfs: SeaweedFS,
    s3_bucket: str,
    s3_client: S3Client,
    tls_front: tuple[TLSFront, Authority],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Without the test's CA, the server's certificate is refused by the direct request as by
    the client: the upload fails with the client's error, nothing is stored."""
    front, _ = tls_front
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    with tls_storage(seaweedfs, s3_bucket, front.port) as storage:
        with pytest.raises(StorageError) as error:
            storage.upload(io.BytesIO(b"secret"), "untrusted.txt")
        assert error.value.path == "untrusted.txt"
        assert "certificate verify failed" in str(error.value)
        for result in storage.upload_many(local_files(tmp_path, 3), max_concurrency=4):
            assert isinstance(result.error, StorageError)
            assert "certificate verify failed" in str(result.error)
    assert "Contents" not in s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="untrusted")


# -- framings SeaweedFS does not send ----------------------------------------------------------
class Framings(http.server.BaseHTTPRequestHandler):
    """Answers by path: ``/close`` 200 closing the connection, ``/chunked`` 200 with a chunked
    body, ``/big`` 500 with a body larger than an answer kept; records each request's
    connection (its client port)."""

    protocol_version = "HTTP/1.1"
    ports: list[tuple[str, int]] = []

    def do_PUT(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.ports.append((self.path, self.client_address[1]))
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"3\r\nabc\r\n0\r\n\r\n")
            return
        body = b"x" * (MAX_ANSWER_BODY + 1) if self.path == "/big" else b""
        self.send_response(500 if body else 200)
        self.send_header("Content-Length", str(len(body)))
        if self.path == "/close":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def framings() -> Iterator[KeepAliveConnections]:
    Framings.ports = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Framings)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield KeepAliveConnections(f"http://127.0.0.1:{server.server_port}", None, [], (2, 2), 4)
    server.shutdown()
    server.server_close()


def put(
    connections: KeepAliveConnections, path: str, limit: int = MAX_ANSWER_BODY
) -> Answer | None:
    host = f"{connections.host}:{connections.port}"
    headers = [("Host", host), ("Content-Length", "1")]
    return connections.answer(Request("PUT", path, headers, b"x", limit))


def status(connections: KeepAliveConnections, path: str) -> int | None:
    answer = put(connections, path)
    return None if answer is None else answer.status


def test_an_answer_that_closes_its_connection_is_kept_by_nobody(
    framings: KeepAliveConnections,
) -> None:
    assert status(framings, "/close") == 200
    assert status(framings, "/close") == 200
    assert status(framings, "/chunked") == 200
    assert status(framings, "/chunked") == 200
    ports = [port for _, port in Framings.ports]
    assert ports[0] != ports[1] != ports[2] == ports[3]  # the chunked answer's kept


def test_connections_that_cannot_open_rest_and_say_why() -> None:
    """A refused connection: the caller is told why, and for REST_AFTER_FAILURE seconds no
    request is sent (the callers' SDKs take them, with their retries)."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    connections = KeepAliveConnections(f"http://127.0.0.1:{port}", None, [], (2, 2), 4)
    request = Request("HEAD", "/k", [("Host", f"127.0.0.1:{port}")], b"")
    failures: list[BaseException] = []
    assert connections.answer(request, failures.append) is None
    assert [type(failure) for failure in failures] == [ConnectionRefusedError]
    assert connections.resting()
    assert connections.answer(request, failures.append) is None
    assert len(failures) == 1


def test_an_answer_comes_whole_with_its_headers_and_body(
    framings: KeepAliveConnections,
) -> None:
    answer = put(framings, "/chunked")
    assert answer is not None
    assert (answer.status, answer.body) == (200, b"abc")
    assert answer.header("transfer-encoding") == "chunked"
    assert answer.header("etag") is None


def test_a_body_above_the_requests_limit_is_no_answer(framings: KeepAliveConnections) -> None:
    assert put(framings, "/chunked", limit=2) is None
    assert status(framings, "/chunked") == 200


def test_an_answer_too_large_to_keep_is_no_answer(framings: KeepAliveConnections) -> None:
    """The caller then sends the request through the client, which reads the error."""
    assert status(framings, "/big") is None
    assert status(framings, "/chunked") == 200
    assert Framings.ports[0][1] != Framings.ports[1][1]
