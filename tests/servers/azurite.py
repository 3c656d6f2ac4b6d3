"""Azurite, Microsoft's Azure Storage emulator, run as a child process on a free loopback port.

Shared by the pytest fixtures (tests/fixtures/backend_azure.py) and the benchmark
(bench/azure.py). Only the blob service runs. The binary comes from the project's cache, where
``scripts/test`` installs it; nothing is installed globally and nothing is left running.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ACCOUNT = "devstoreaccount1"
# The emulator's well-known development key (public, documented by Microsoft; not a secret).
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
AZURITE_VERSION = "3.35.0"
INSTALL_COMMAND = (
    f"npm install --prefix .cache/azurite --no-audit --no-fund azurite@{AZURITE_VERSION}"
)
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0


def repo_root() -> Path:
    """The directory holding pyproject.toml, found upwards from this file."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    raise RuntimeError(f"no pyproject.toml above {here}")


def azurite_binary() -> Path:
    """Path of ``azurite-blob`` in the project cache; a clear error when it is not installed."""
    binary = repo_root() / ".cache" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        raise RuntimeError(
            f"Azurite is not installed at {binary}. Run scripts/test (the project's test "
            f"command) once, or install it by hand from the repository root: {INSTALL_COMMAND}"
        )
    return binary


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if the process is still alive after STOP_TIMEOUT seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(eq=False)
class Azurite:
    """A running emulator: where to reach it and how to authenticate."""

    port: int
    location: Path
    process: subprocess.Popen[bytes]
    account: str = ACCOUNT
    key: str = ACCOUNT_KEY

    @property
    def account_url(self) -> str:
        return f"http://{HOST}:{self.port}/{self.account}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.key};BlobEndpoint={self.account_url};"
        )

    def restart(self, graceful: bool = False) -> None:
        """Kill Azurite with SIGKILL, as a crash would, and start it again on the same port and
        the same data directory; returns once the port accepts connections.

        Azurite saves its metadata database only every 5 s (LokiJS autosave), so changes made
        in the last seconds before a SIGKILL are lost, exactly as on a real crash.
        ``graceful=True`` stops it with SIGTERM instead, on which it saves everything.
        """
        if graceful:
            stop_process(self.process)
        elif self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            self.process = _launch(self.port, self.location)
            if _wait_for_port(self.process, self.port, deadline):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"Azurite did not restart on port {self.port}; its output is in "
                    f"{self.location / 'azurite.log'}"
                )
            time.sleep(0.2)


def _launch(port: int, location: Path) -> subprocess.Popen[bytes]:
    """Start ``azurite-blob`` on ``port`` with its data under ``location``."""
    with (location / "azurite.log").open("ab") as log:
        return subprocess.Popen(
            [
                str(azurite_binary()),
                "--blobHost",
                HOST,
                "--blobPort",
                str(port),
                "--location",
                str(location / "data"),
                "--skipApiVersionCheck",
                "--disableTelemetry",
                "--silent",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _wait_for_port(process: subprocess.Popen[bytes], port: int, deadline: float) -> bool:
    """True once ``port`` accepts connections; False if the process died first."""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.2):
            return True
        time.sleep(0.05)
    return False


@contextlib.contextmanager
def run_azurite(location: Path, attempts: int = 3) -> Iterator[Azurite]:
    """Start ``azurite-blob`` storing its data under ``location``; stop it on exit.

    The port is picked free at runtime; if another process grabs it before Azurite binds it,
    the start is retried on a new port. The TCP port is open before this yields, so the first
    SDK request never hits the Azure SDK's slow retry path for a refused connection.
    """
    azurite_binary()
    location.mkdir(parents=True, exist_ok=True)
    log_path = location / "azurite.log"
    for _ in range(attempts):
        port = free_port()
        server = Azurite(port=port, location=location, process=_launch(port, location))
        try:
            if _wait_for_port(server.process, port, time.monotonic() + START_TIMEOUT):
                yield server
                return
        finally:
            stop_process(server.process)
    raise RuntimeError(
        f"Azurite did not start after {attempts} attempts; its output is in {log_path}:\n"
        + log_path.read_text(errors="replace")[-2000:]
    )
