"""A throw-away OpenSSH server for the SFTP tests and benchmark.

``SSHServer`` generates its own host and client keys in a temporary directory, writes an sshd
config that listens on a free loopback port and serves only SFTP, and starts Debian's
``/usr/sbin/sshd`` in the foreground. Everything it creates lives under its work directory, and
``stop()`` ends the daemon and every per-connection process it forked. Used by
``tests/fixtures/backend_sftp.py`` and ``bench/sftp.py``; it needs no pytest.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
INSTALL_HINT = "install it: apt-get install openssh-server openssh-client (or run scripts/test)"

# A dedicated account for password authentication: root may only log in with a key.
PASSWORD_USER = "kegsftp"


class SSHServerError(RuntimeError):
    """The test sshd could not be configured or started."""


def free_port() -> int:
    """A loopback TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*args: str) -> str:
    proc = subprocess.run(args, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SSHServerError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _keygen(path: Path, key_type: str, *extra: str) -> None:
    _run(SSH_KEYGEN, "-q", "-t", key_type, *extra, "-N", "", "-C", "keg-test", "-f", str(path))


def ensure_password_user(password: str, home: Path) -> None:
    """Create (once) the local account used by password tests and set its password.

    The account's password hash is set explicitly: with ``UsePAM no`` sshd refuses a locked
    account, and a fresh random password per session keeps the account useless outside tests.
    """
    if subprocess.run(["id", "-u", PASSWORD_USER], capture_output=True, check=False).returncode:
        _run(
            "useradd", "--no-create-home", "--home-dir", str(home), "--shell", "/usr/sbin/nologin",
            PASSWORD_USER,
        )  # fmt: skip
    _run("usermod", "--home", str(home), PASSWORD_USER)
    entry = f"{PASSWORD_USER}:{password}"
    subprocess.run(["chpasswd"], input=entry, text=True, check=True, capture_output=True)


class SSHServer:
    """One sshd on ``127.0.0.1:<free port>`` serving SFTP, configured for root key logins.

    ``password_user=True`` also creates :data:`PASSWORD_USER` (idempotently), gives it a random
    password (``self.password``) and a writable directory ``self.password_user_dir``.
    """

    def __init__(self, workdir: Path, *, password_user: bool = False) -> None:
        self.workdir = Path(workdir)
        self.password_user = password_user
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.client_key = self.workdir / "id_ed25519"
        self.client_key_pem = self.workdir / "id_rsa_pem"
        self.known_hosts = self.workdir / "known_hosts"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.config = self.workdir / "sshd_config"
        self.log = self.workdir / "sshd.log"
        self.data_dir = self.workdir / "data"
        self.password = secrets.token_urlsafe(16)
        # Made in start(): outside ``workdir``, whose parents may be private to root.
        self.password_user_dir = Path()

    # -- setup -----------------------------------------------------------------------------
    def _check_installed(self) -> None:
        for binary in (SSHD, Path(SSH_KEYGEN)):
            if not binary.exists():
                raise SSHServerError(f"{binary} is missing; {INSTALL_HINT}")

    def _write_keys(self) -> None:
        _keygen(self.host_key, "ed25519")
        _keygen(self.client_key, "ed25519")
        # An RSA key in the classic PEM format, the form secret stores hand out.
        _keygen(self.client_key_pem, "rsa", "-b", "2048", "-m", "PEM")
        keys = (self.client_key, self.client_key_pem)
        pubs = [Path(f"{key}.pub").read_text().strip() for key in keys]
        self.authorized_keys.write_text("\n".join(pubs) + "\n")
        self.authorized_keys.chmod(0o644)

    def host_key_line(self, port: int | None = None) -> str:
        """The ``known_hosts`` line for this server: ``[127.0.0.1]:PORT <type> <base64>``;
        ``port`` names another port that reaches it (a proxy in front of it)."""
        key_type, key_b64 = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{port or self.port} {key_type} {key_b64}"

    def _write_config(self) -> None:
        lines = [
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            # Keys and config live under /tmp, which is world-writable.
            "StrictModes no",
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            "AllowTcpForwarding no",
            "X11Forwarding no",
            "PrintMotd no",
            # A connection pool opens many connections at once; OpenSSH's default is 10:30:100.
            "MaxStartups 200",
            "MaxSessions 64",
            "ClientAliveInterval 0",
            "LogLevel INFO",
        ]
        if self.password_user:
            lines += [f"Match User {PASSWORD_USER}", "    PasswordAuthentication yes"]
        self.config.write_text("\n".join(lines) + "\n")
        _run(str(SSHD), "-t", "-f", str(self.config))

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> SSHServer:
        self._check_installed()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Other users (the password account) must be able to traverse to their directory.
        self.workdir.chmod(0o755)
        self.data_dir.mkdir(mode=0o755, exist_ok=True)
        self._write_keys()
        if self.password_user:
            self.password_user_dir = Path(tempfile.mkdtemp(prefix="keg-sftp-user-"))
            ensure_password_user(self.password, self.password_user_dir)
            shutil.chown(self.password_user_dir, PASSWORD_USER, PASSWORD_USER)
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            self._write_config()
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [str(SSHD), "-D", "-e", "-f", str(self.config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_ready():
                self.known_hosts.write_text(self.host_key_line() + "\n")
                return self
            last_error = self.log.read_text(errors="replace")[-2000:]
            self._terminate()
        raise SSHServerError(f"sshd did not start; log tail:\n{last_error}")

    def restart(self) -> None:
        """Kill the daemon and every session (SIGKILL, as a crash would) and start it again
        on the same port with the same keys."""
        if self.proc is not None:
            for pid in [self.proc.pid, *self.session_pids()]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()
            self.proc = None
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not self._wait_ready():
            raise SSHServerError(f"sshd did not restart on port {self.port}")

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        return True
            except OSError:
                time.sleep(0.02)
        return False

    def session_pids(self) -> list[int]:
        """PIDs of the per-connection sshd processes (children of the listener)."""
        if self.proc is None:
            return []
        return _descendants(self.proc.pid)

    def kill_sessions(self) -> int:
        """Kill every server-side SSH session, as a server restart or a network drop would."""
        pids = self.session_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(pids)

    def stop(self) -> None:
        """Stop the daemon and its sessions and remove the password user's directory."""
        self._terminate()
        if self.password_user_dir.name.startswith("keg-sftp-user-"):
            shutil.rmtree(self.password_user_dir, ignore_errors=True)

    def _terminate(self) -> None:
        """SIGTERM the daemon and its sessions, SIGKILL what is left after 5 s."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        children = _descendants(proc.pid)
        for pid in [proc.pid, *children]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        deadline = time.monotonic() + 5
        while children and time.monotonic() < deadline:
            children = [pid for pid in children if _alive(pid)]
            time.sleep(0.05)
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> SSHServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def _descendants(root: int) -> list[int]:
    """Every live process below ``root``, found through /proc parent links."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        current = frontier.pop()
        kids = [pid for pid, ppid in parents.items() if ppid == current]
        found.extend(kids)
        frontier.extend(kids)
    return found
