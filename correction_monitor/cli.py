"""The ``correction-monitor`` command line: migrate, serve, admin, demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from correction_monitor.logs import configure_logging
from correction_monitor.settings import Settings


@contextlib.contextmanager
def resolved(settings: Settings) -> Iterator[Settings]:
    """Settings whose database and redis URLs are set: the environment's, or embedded
    servers started under ``data_dir`` for as long as the block runs."""
    if settings.database_url and settings.redis_url:
        yield settings
        return
    from correction_monitor.embedded import embedded_services

    with embedded_services(settings) as urls:
        yield settings.model_copy(
            update={"database_url": urls.database_url, "redis_url": urls.redis_url}
        )


def _migrate(settings: Settings) -> None:
    from correction_monitor.migrations import migrate

    assert settings.database_url
    migrate(settings.database_url)


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    with resolved(settings) as s:
        _migrate(s)
    print("database schema is up to date")
    return 0


# On shutdown, requests being answered get this long to finish, then are cut (open live
# feeds are ended at once by the application itself).
SHUTDOWN_TIMEOUT_S = 5.0


def use_event_loop(name: str) -> str:
    """Install the requested event loop implementation; returns the one in use."""
    if name == "uvloop":
        try:
            import uvloop
        except ImportError:
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return "uvloop"
    return "asyncio"


def _serve_worker(settings_json: str, sock: socket.socket) -> None:
    from correction_monitor.web import front
    from correction_monitor.web.app import init_app

    settings = Settings.model_validate_json(settings_json)
    configure_logging(settings.log_format, settings.log_level)
    use_event_loop(settings.event_loop)
    front.run(init_app(settings), sock, shutdown_timeout=SHUTDOWN_TIMEOUT_S)


def listen(settings: Settings) -> socket.socket:
    """The service's listening socket, shared by its worker processes (and the demo's)."""
    infos = socket.getaddrinfo(
        settings.http_host, settings.http_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    # One socket: an IPv4 address when the name has one ("localhost" → 127.0.0.1).
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(address)
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, workers: int) -> int:
    """Run the HTTP service with ``workers`` processes sharing one listening socket."""
    _migrate(settings)
    print(
        f"serving on http://{settings.http_host}:{settings.http_port} ({workers} worker(s))",
        flush=True,
    )
    if workers <= 1:
        with listen(settings) as sock:
            _serve_worker(settings.model_dump_json(), sock)
        return 0
    metrics_dir = tempfile.mkdtemp(prefix="cm-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    sock = listen(settings)
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(target=_serve_worker, args=(settings.model_dump_json(), sock), daemon=False)
        for _ in range(workers)
    ]
    for proc in procs:
        proc.start()
    sock.close()

    def stop(_signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for proc in procs:
        proc.join()
    return max((p.exitcode or 0) for p in procs)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {}
    if args.host:
        overrides["http_host"] = args.host
    if args.port is not None:
        overrides["http_port"] = args.port
    settings = settings.model_copy(update=overrides)
    with resolved(settings) as s:
        return serve(s, args.workers)


def cmd_create_officer(settings: Settings, args: argparse.Namespace) -> int:
    from correction_monitor.service.bootstrap import create_officer

    with resolved(settings) as s:
        _migrate(s)
        assert s.database_url
        try:
            officer_id = asyncio.run(
                create_officer(
                    s.database_url,
                    username=args.username,
                    password=args.password,
                    role=args.role,
                    org_code=args.org_unit,
                    org_name=args.org_name,
                    parent_code=args.parent,
                )
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    print(f"officer {args.username!r} ({args.role}) created with id {officer_id}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from correction_monitor.demo import run_demo

    if args.port is not None:
        settings = settings.model_copy(update={"http_port": args.port})
    with resolved(settings) as s:
        return run_demo(s, phones=not args.no_phones)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="correction-monitor",
        description="Location supervision for community correction (社区矫正).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("migrate", help="bring the database schema up to date (idempotent)")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host", help="listen address (default CM_HTTP_HOST)")
    p.add_argument("--port", type=int, help="listen port (default CM_HTTP_PORT, 8080)")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.set_defaults(func=cmd_serve)

    admin = sub.add_parser("admin", help="administration commands")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    p = admin_sub.add_parser("create-officer", help="create an officer (and the org unit)")
    p.add_argument("--username", required=True)
    p.add_argument("--password", required=True)
    p.add_argument(
        "--role",
        required=True,
        choices=["officer", "supervisor", "county_admin", "auditor", "admin"],
    )
    p.add_argument("--org-unit", required=True, help="org unit code; created when missing")
    p.add_argument("--org-name", help="name for the org unit when it is created")
    p.add_argument("--parent", help="parent org unit code for a newly created org unit")
    p.set_defaults(func=cmd_create_officer)

    p = sub.add_parser("demo", help="seed a demo county (XX县) and serve it with simulated phones")
    p.add_argument("--port", type=int, help="listen port (default CM_HTTP_PORT, 8080)")
    p.add_argument("--no-phones", action="store_true", help="do not run simulated phones")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    settings = settings.model_copy(update={"data_dir": Path(settings.data_dir).resolve()})
    code: int = args.func(settings, args)
    return code
