"""Fork safety (CONTRACT §7): a backend used before ``os.fork()`` works in the child, which
builds its own clients and pools and never touches the parent's; the parent keeps working.
Every backend, on its real server; the gunicorn ``--preload`` test runs the demo app."""

from __future__ import annotations

import io
import os
import pickle
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from keg_storage.backends.base import StorageBackend
from keg_storage.backends.memory import MemoryStorage
from tests.conftest import BACKENDS
from tests.fixtures.backend_sftp import make_storage
from tests.servers.sshd import SSHServer, free_port

CHILD_TIMEOUT = 60.0
"""The bound on a child's work: on the code before fork safety, an SFTP child hung forever."""


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest) -> Iterator[StorageBackend]:
    yield request.getfixturevalue(f"backend_{request.param}")


def in_child(work: Callable[[], Any]) -> Any:
    """``work()`` run in a forked child, its result (or its error) sent back through a pipe."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's exit handlers
        try:
            os.close(read_end)
            try:
                outcome: tuple[str, Any] = ("ok", work())
            except BaseException as exc:
                outcome = ("error", f"{type(exc).__name__}: {exc}")
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(pickle.dumps(outcome))
        finally:
            os._exit(0)
    os.close(write_end)
    data = b""
    deadline = time.monotonic() + CHILD_TIMEOUT
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            if select.select([read_end], [], [], remaining)[0]:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                data += chunk
        else:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the forked child did not finish within {CHILD_TIMEOUT} s")
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)
    status, value = pickle.loads(data)
    assert status == "ok", f"the child failed: {value}"
    return value


def child_work(storage: StorageBackend, tmp: Path) -> dict[str, Any]:
    """Every kind of operation, as a forked worker would do them."""
    source = tmp / "child-source.bin"
    source.write_bytes(b"from the child")
    storage.put(str(source), "child/a.bin")
    storage.get("child/a.bin", str(tmp / "child-got.bin"))
    out = io.BytesIO()
    storage.download("parent.txt", out)
    result = {
        "got": (tmp / "child-got.bin").read_bytes(),
        "parent": out.getvalue(),
        "list": [entry.name for entry in storage.list("child")],
        "size": storage.stat("child/a.bin").size,
    }
    storage.upload(io.BytesIO(b"kept"), "child/kept.txt")
    storage.delete("child/a.bin")
    result["exists"] = storage.exists("child/a.bin")
    return result


def test_child_works_and_parent_keeps_working(storage: StorageBackend, tmp_path: Path) -> None:
    storage.upload(io.BytesIO(b"parent"), "parent.txt")
    assert storage.exists("parent.txt")  # clients, pools and sessions exist before the fork

    result = in_child(lambda: child_work(storage, tmp_path))

    assert result == {
        "got": b"from the child",
        "parent": b"parent",
        "list": ["child/a.bin"],
        "size": 14,
        "exists": False,
    }
    if not isinstance(storage, MemoryStorage):  # a memory store is copied, not shared
        assert [entry.name for entry in storage.list()] == ["child/kept.txt", "parent.txt"]
        with storage.open("child/kept.txt") as remote:
            assert remote.read() == b"kept"
    storage.upload(io.BytesIO(b"after"), "parent.txt")
    with storage.open("parent.txt") as remote:
        assert remote.read() == b"after"


NETWORK_STATE: dict[str, Callable[[Any], tuple[object, ...]]] = {
    "s3": lambda storage: (storage.client, storage.single_try_client),
    "azure": lambda storage: (storage.clients(),),
    "sftp": lambda storage: (storage.transport.pool,),
}
"""What each network backend keeps for the network: its clients, or its pool of sessions."""


@pytest.mark.parametrize("backend", list(NETWORK_STATE))
def test_child_builds_its_own_clients(request: pytest.FixtureRequest, backend: str) -> None:
    storage: Any = request.getfixturevalue(f"backend_{backend}")
    state = NETWORK_STATE[backend]
    storage.upload(io.BytesIO(b"x"), "x.txt")
    parent = [id(obj) for obj in state(storage)]

    def child() -> tuple[list[int], list[int]]:
        storage.exists("x.txt")
        return [id(obj) for obj in state(storage)], [id(obj) for obj in state(storage)]

    # The parent's objects stay alive in the child, so new ones cannot reuse their ids.
    first, again = in_child(child)
    assert set(first).isdisjoint(parent)
    assert again == first  # built once in the child, then shared
    assert [id(obj) for obj in state(storage)] == parent and storage.exists("x.txt")


def test_sftp_child_never_touches_the_parents_connection(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    with make_storage(sftp_server, sftp_base_path, pool_size=1) as storage:
        storage.upload(io.BytesIO(b"parent"), "p.txt")
        pool = storage.transport.pool
        opened = pool.stats().connections_opened

        def child() -> bytes:
            with storage.open("p.txt") as remote:
                data = remote.read()
            storage.close()  # closes the child's connections only
            return data

        assert in_child(child) == b"parent"
        # The parent's one pooled session still works: no reconnection was needed.
        for _ in range(3):
            with storage.open("p.txt") as remote:
                assert remote.read() == b"parent"
        assert storage.transport.pool is pool and pool.stats().connections_opened == opened


def test_sftp_child_exit_leaves_the_parents_connection(
    sftp_server: SSHServer, sftp_base_path: str
) -> None:
    """A child that exits normally (atexit, as a gunicorn worker does) closes nothing of its
    parent's: the finalizer closes only the child's own pool."""
    with make_storage(sftp_server, sftp_base_path, pool_size=1) as storage:
        storage.upload(io.BytesIO(b"parent"), "p.txt")
        pool = storage.transport.pool
        opened = pool.stats().connections_opened
        pid = os.fork()
        if pid == 0:
            try:
                storage.transport.finalizer()  # what the interpreter's exit runs
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        assert storage.exists("p.txt") and pool.stats().connections_opened == opened


# -- gunicorn --preload ------------------------------------------------------------------------

PRELOAD_APP = '''
"""A demo app whose SFTP backend is used at import, in gunicorn's master, before it forks."""
import io
import os
import time

from flask import Response

from keg_storage_ta import create_app

app = create_app(
    {
        "SECRET_KEY": "gunicorn-test",
        "KEG_STORAGE_PROFILES": [
            (
                "keg_storage.backends.sftp:SFTPStorage",
                {
                    "name": "sftp",
                    "host": "127.0.0.1",
                    "port": int(os.environ["TEST_SFTP_PORT"]),
                    "username": "root",
                    "key_filename": os.environ["TEST_SFTP_KEY"],
                    "known_hosts_fpath": os.environ["TEST_SFTP_KNOWN_HOSTS"],
                    "base_path": os.environ["TEST_SFTP_BASE"],
                    "linked_endpoint": "demo.link",
                    "secret_key": "gunicorn-test",
                },
            )
        ],
    },
    instance_path=os.environ["TEST_INSTANCE"],
)
with app.app_context():
    backend = app.storage.get_interface()
    backend.upload(io.BytesIO(b"preloaded"), "preloaded.txt")
    assert backend.exists("preloaded.txt")


@app.route("/test-download/<int:number>")
def test_download(number: int) -> Response:
    time.sleep(0.05)  # a worker stays busy a moment, so concurrent requests reach both
    data = io.BytesIO()
    app.storage.get_interface().download("preloaded.txt", data)
    return Response(data.getvalue(), headers={"X-Worker-Pid": str(os.getpid())})
'''


def test_demo_app_under_gunicorn_preload_serves_from_both_workers(
    sftp_server: SSHServer, sftp_base_path: str, tmp_path: Path
) -> None:
    (tmp_path / "preload_app.py").write_text(PRELOAD_APP)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(Path(__file__).parent.parent)]),
        "TEST_SFTP_PORT": str(sftp_server.port),
        "TEST_SFTP_KEY": str(sftp_server.client_key),
        "TEST_SFTP_KNOWN_HOSTS": str(sftp_server.known_hosts),
        "TEST_SFTP_BASE": sftp_base_path,
        "TEST_INSTANCE": str(tmp_path / "instance"),
    }
    gunicorn = [sys.executable, "-m", "gunicorn", "--preload", "-w", "2", "--threads", "1"]
    server = subprocess.Popen(
        [*gunicorn, "-b", f"127.0.0.1:{port}", "--graceful-timeout", "5", "preload_app:app"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"http://127.0.0.1:{port}/test-download"
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{url}/0", timeout=10).close()
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.communicate()[1].decode()
                assert time.monotonic() < deadline, "gunicorn did not start within 30 s"
                time.sleep(0.1)

        def download(number: int) -> tuple[int, bytes, str]:
            with requests.get(f"{url}/{number}", timeout=20) as response:
                return response.status_code, response.content, response.headers["X-Worker-Pid"]

        with ThreadPoolExecutor(4) as executor:
            results = list(executor.map(download, range(40)))
        assert {(status, body) for status, body, _ in results} == {(200, b"preloaded")}
        workers = {pid for _, _, pid in results}
        assert len(workers) == 2 and str(server.pid) not in workers
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)
    assert b"Traceback" not in stderr, stderr.decode()
