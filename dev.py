#!/usr/bin/env python3
"""The newcomer's entry point: two commands, Python only.

    python3 dev.py demo [ARGS...]   set up .venv, then run `correction-monitor demo ARGS...`
    python3 dev.py test [ARGS...]   set up .venv, then ruff, ruff format --check, mypy and
                                    pytest ARGS... over the whole suite

Setting up .venv: created with `python3 -m venv` when missing; `pip install -e '.[dev]'` runs
only when pyproject.toml changed since the last successful install (its SHA-256 is kept in
.venv/.cm-pyproject.sha256).

Fetching the fonts: the CJK font that evidence documents embed (Noto Sans SC, OFL) is an npm
package pinned in fonts/package-lock.json; `npm ci` installs it into fonts/node_modules when
that lockfile changed since the last successful install (its SHA-256 is kept in
fonts/node_modules/.cm-lock.sha256). npm (Node.js) must be on PATH.

Servers for the tests: CM_DATABASE_URL / CM_REDIS_URL when set; otherwise the machine's
PostgreSQL on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 when they answer; otherwise the
embedded servers (real PostgreSQL and Redis from Python packages) are started for the run
in <data dir>/test and stopped after it.

Only the standard library is used here, so this runs before any dependency is installed.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
VENV_PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".cm-pyproject.sha256"
PYPROJECT = ROOT / "pyproject.toml"
FONTS = ROOT / "fonts"
FONTS_LOCK = FONTS / "package-lock.json"
FONTS_STAMP = FONTS / "node_modules" / ".cm-lock.sha256"

LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"
# pytest's exit status when it collected no test: a suite that ran nothing has not passed.
PYTEST_NO_TESTS = 5
MIN_PYTHON = (3, 11)

USAGE = """usage: python3 dev.py demo [ARGS...]   start the service with a seeded demo county
       python3 dev.py test [ARGS...]   lint, type-check and run every test (ARGS go to pytest)"""


def say(message: str) -> None:
    """Print a progress line of this script, flushed so it interleaves with child output."""
    print(f"dev.py: {message}", flush=True)


def fail(message: str) -> int:
    """Print a failure line and return the exit status to use (1)."""
    print(f"dev.py: FAILED: {message}", file=sys.stderr, flush=True)
    return 1


# ------------------------------------------------------------------------------------- the venv


def pyproject_digest() -> str:
    """SHA-256 of pyproject.toml plus the interpreter version, as stored in the stamp."""
    digest = hashlib.sha256(PYPROJECT.read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def ensure_venv() -> bool:
    """Create .venv and install the project into it when needed; False when that failed."""
    if not VENV_PYTHON.exists():
        say(f"creating {VENV.relative_to(ROOT)} with {sys.executable}")
        created = subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=False)
        if created.returncode != 0:
            fail("python3 -m venv failed (on Debian/Ubuntu: apt-get install python3-venv)")
            return False
    wanted = pyproject_digest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return True
    say("installing the project and its dev tools: pip install -e '.[dev]'")
    argv = [str(VENV_PYTHON), "-m", "pip", "install", "--disable-pip-version-check"]
    argv += ["--no-input", "-e", ".[dev]"]
    if os.environ.get("CI"):
        argv += ["--progress-bar", "off"]
    installed = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, check=False)
    if installed.returncode != 0:
        fail("pip install -e '.[dev]' failed (see above)")
        return False
    STAMP.write_text(wanted + "\n")
    return True


# ------------------------------------------------------------------------------------ the fonts


def ensure_fonts() -> bool:
    """Install the npm packages of fonts/ (the PDF font) with `npm ci` when its lockfile
    changed since the last successful install; False when that failed or npm is missing."""
    wanted = hashlib.sha256(FONTS_LOCK.read_bytes()).hexdigest()
    if FONTS_STAMP.exists() and FONTS_STAMP.read_text().strip() == wanted:
        return True
    npm = shutil.which("npm")
    if npm is None:
        fail(
            "npm is not on PATH; it fetches the font evidence documents embed "
            "(fonts/package.json). Install Node.js with npm (Debian/Ubuntu: apt-get install "
            "npm), then run this command again"
        )
        return False
    say("fetching the PDF font: npm ci in fonts/")
    argv = [npm, "ci", "--no-audit", "--no-fund"]
    if os.environ.get("CI"):
        argv += ["--progress=false"]
    installed = subprocess.run(argv, cwd=FONTS, stdin=subprocess.DEVNULL, check=False)
    if installed.returncode != 0:
        fail("npm ci in fonts/ failed (see above)")
        return False
    FONTS_STAMP.write_text(wanted + "\n")
    return True


# ------------------------------------------------------------------------------------ data dirs


def nobody_can_reach(path: Path) -> bool:
    """True when user ``nobody`` may traverse every folder down to ``path`` (inclusive).

    As root, the embedded PostgreSQL runs as ``nobody`` (PostgreSQL refuses root).
    """
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        return False
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid == nobody.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid == nobody.pw_gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def data_dir_env(env: dict[str, str]) -> Path:
    """The data dir base for embedded servers; set CM_DATA_DIR in ``env`` when we choose one.

    Default: .cm-data in the repo. As root in a checkout that ``nobody`` cannot reach (say
    under /root), a folder in the system temp dir instead, announced on the console.
    """
    if env.get("CM_DATA_DIR"):
        return Path(env["CM_DATA_DIR"])
    if os.geteuid() != 0 or nobody_can_reach(ROOT):
        return ROOT / ".cm-data"
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    base = Path(tempfile.gettempdir()) / f"correction-monitor-{tag}"
    base.mkdir(exist_ok=True)
    base.chmod(0o755)  # our own folder: the embedded PostgreSQL runs as nobody and must enter it
    say(
        f"{ROOT} is out of user nobody's reach and PostgreSQL will not run as root: "
        f"keeping embedded server data in {base} (set CM_DATA_DIR to choose)"
    )
    env["CM_DATA_DIR"] = str(base)
    return base


# --------------------------------------------------------------------------- local servers probe


def postgres_answers(host: str, port: int) -> bool:
    """True when a PostgreSQL server answers an SSLRequest on host:port (within 1 s)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            conn.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest: length, magic code
            return conn.recv(1) in (b"S", b"N")
    except OSError:
        return False


def redis_answers(host: str, port: int) -> bool:
    """True when a Redis server answers PING with PONG on host:port (within 1 s)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(7).startswith(b"+PONG")
    except OSError:
        return False


def choose_servers(env: dict[str, str]) -> list[str]:
    """Fill CM_DATABASE_URL / CM_REDIS_URL in ``env``; return a wrapper for what is missing.

    Returns the argv prefix that starts the embedded servers around the test command, or an
    empty list when every URL is known.
    """
    for name in ("CM_DATABASE_URL", "CM_REDIS_URL"):
        if not env.get(name):
            env.pop(name, None)
    missing = []
    if "CM_DATABASE_URL" in env:
        say("PostgreSQL: CM_DATABASE_URL from the environment")
    elif postgres_answers("127.0.0.1", 5432):
        env["CM_DATABASE_URL"] = LOCAL_DATABASE_URL
        say(f"PostgreSQL: this machine's, {LOCAL_DATABASE_URL}")
    else:
        missing.append("PostgreSQL")
    if "CM_REDIS_URL" in env:
        say("Redis: CM_REDIS_URL from the environment")
    elif redis_answers("127.0.0.1", 6379):
        env["CM_REDIS_URL"] = LOCAL_REDIS_URL
        say(f"Redis: this machine's, {LOCAL_REDIS_URL}")
    else:
        missing.append("Redis")
    if not missing:
        return []
    test_dir = data_dir_env(env) / "test"
    say(f"{' and '.join(missing)}: embedded, started for this run in {test_dir}")
    return [
        str(VENV_PYTHON),
        "-m",
        "correction_monitor.embedded",
        "run",
        "--data-dir",
        str(test_dir),
        "--",
    ]


# -------------------------------------------------------------------------------------- commands


def run_step(name: str, argv: list[str], env: dict[str, str]) -> int:
    """Run one check from the repo root, announce it and its outcome; return its status."""
    say(f"--- {name}")
    began = time.monotonic()
    code = subprocess.run(argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, check=False)
    status = code.returncode
    outcome = "ok" if status == 0 else f"exit status {status}"
    say(f"--- {name}: {outcome} ({time.monotonic() - began:.1f} s)")
    return status


def command_test(pytest_args: list[str]) -> int:
    """Lint, type-check and run the whole test suite; 0 only when every step passed."""
    if not ensure_venv() or not ensure_fonts():
        return 1
    env = dict(os.environ)
    bin_dir = VENV / "bin"
    failures = []
    checks = [
        ("ruff check", [str(bin_dir / "ruff"), "check", "."]),
        ("ruff format --check", [str(bin_dir / "ruff"), "format", "--check", "."]),
        ("mypy", [str(VENV_PYTHON), "-m", "mypy"]),
    ]
    for name, argv in checks:
        if run_step(name, argv, env) != 0:
            failures.append(name)
    wrapper = choose_servers(env)
    status = run_step("pytest", [*wrapper, str(VENV_PYTHON), "-m", "pytest", *pytest_args], env)
    if status == PYTEST_NO_TESTS:
        failures.append("pytest (no tests were collected)")
    elif status != 0:
        failures.append(f"pytest (exit status {status})")
    if failures:
        return fail("; ".join(failures))
    return 0


def command_demo(demo_args: list[str]) -> int:
    """Run `correction-monitor demo` from the venv, replacing this process."""
    if not ensure_venv() or not ensure_fonts():
        return 1
    cli = VENV / "bin" / "correction-monitor"
    if not cli.exists():
        STAMP.unlink(missing_ok=True)  # force a reinstall next time
        return fail(f"{cli} is missing; run `python3 dev.py demo` again to reinstall")
    env = dict(os.environ)
    if not (env.get("CM_DATABASE_URL") and env.get("CM_REDIS_URL")):
        data_dir_env(env)  # the demo starts embedded servers for what is unset
    sys.stdout.flush()
    # exec: Ctrl-C and SIGTERM reach the service directly, which then stops its servers.
    os.execve(cli, [str(cli), "demo", *demo_args], env)  # noqa: S606 - our own venv script
    return 0  # not reached


def main(argv: list[str]) -> int:
    """Dispatch ``demo`` / ``test``; everything after the command goes through untouched."""
    if sys.version_info < MIN_PYTHON:
        return fail(f"Python {'.'.join(map(str, MIN_PYTHON))}+ needed, this is {sys.version}")
    if not argv or argv[0] not in ("demo", "test"):
        print(USAGE, file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    os.chdir(ROOT)
    if argv[0] == "demo":
        return command_demo(argv[1:])
    return command_test(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
