"""The import rules between layers (docs/architecture.md, "Layers"), read from the source.

Each module's imports are taken from its syntax tree, at any depth (imports inside functions
and ``TYPE_CHECKING`` blocks count too: they are dependencies all the same).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "correction_monitor"
KERNEL = ROOT / "geofences"

IO_LIBRARIES = ("asyncpg", "redis", "aiohttp")

# The modules of web/ that may use adapters directly, each for a reason of its own. Routes
# never do: they reach storage only through the service layer's commands.
WEB_ADAPTER_USERS = {
    # The composition of the app: it opens the pool and the hot state it hands on.
    "correction_monitor/web/app.py",
    # The types of the shared objects under the app's keys (the hot state).
    "correction_monitor/web/keys.py",
    # Who is calling: every officer request looks its token up, before any command runs.
    "correction_monitor/web/auth.py",
    "correction_monitor/web/device_auth.py",
    # Which exceptions mean "PostgreSQL is away" (answered 503, not 500).
    "correction_monitor/web/middlewares.py",
}


def _modules(folder: Path) -> Iterator[Path]:
    yield from sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports; ``from a import b`` counts as both ``a`` and ``a.b``
    (``b`` may be a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _breaches() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    web = PACKAGE / "web"
    for path in _modules(PACKAGE):
        layer = path.relative_to(PACKAGE).parts[0]
        for name in _imports(path):
            # Only web/ builds on aiohttp's server side.
            if web not in path.parents and _within(name, "aiohttp.web"):
                found.add((_relative(path), name))
            # The service layer serves every entrypoint: it knows no web framework at all.
            if layer in ("domain", "service", "adapters", "ingest") and _within(name, "aiohttp"):
                found.add((_relative(path), name))
            # Routes and the ingest front reach storage only through the service layer.
            if (
                web in path.parents
                and _relative(path) not in WEB_ADAPTER_USERS
                and _within(name, "correction_monitor.adapters")
            ):
                found.add((_relative(path), name))
            # Nothing below the entrypoints imports them.
            if layer in ("domain", "service", "adapters", "ingest") and _within(
                name, "correction_monitor.web"
            ):
                found.add((_relative(path), name))
            # The domain is pure: no I/O library, nothing of the outer layers.
            if layer == "domain" and any(
                _within(name, outer)
                for outer in (
                    *IO_LIBRARIES,
                    "correction_monitor.service",
                    "correction_monitor.adapters",
                    "correction_monitor.ingest",
                    "correction_monitor.web",
                )
            ):
                found.add((_relative(path), name))
            # Adapters implement what the service layer needs; they never call it.
            if layer == "adapters" and any(
                _within(name, f"correction_monitor.{upper}") for upper in ("service", "ingest")
            ):
                found.add((_relative(path), name))
    for path in _modules(KERNEL):
        for name in _imports(path):
            if _within(name, "correction_monitor"):
                found.add((_relative(path), name))
    return found


def test_imports_follow_the_layers() -> None:
    assert sorted(_breaches()) == []


def test_the_web_modules_allowed_adapters_still_need_them() -> None:
    """The allow-list shrinks as modules stop needing it: an entry nothing justifies goes."""
    for relative in WEB_ADAPTER_USERS:
        names = _imports(ROOT / relative)
        assert any(_within(name, "correction_monitor.adapters") for name in names), relative


@pytest.mark.parametrize(
    ("source", "breach"),
    [
        ("from aiohttp import web\n", "aiohttp.web"),
        ("import aiohttp.web\n", "aiohttp.web"),
        ("def f():\n    from correction_monitor.web.keys import POOL\n", "correction_monitor.web"),
        ("from correction_monitor import web\n", "correction_monitor.web"),
    ],
)
def test_the_reader_sees_every_form_of_import(source: str, breach: str, tmp_path: Path) -> None:
    path = tmp_path / "m.py"
    path.write_text(source, encoding="utf-8")
    assert any(_within(name, breach) for name in _imports(path))
