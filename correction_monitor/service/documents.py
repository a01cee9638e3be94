"""Printable documents (evidence bundles, patrol sheets): the font they need and the pool
they are drawn on.

Drawing a PDF is CPU work of tens to hundreds of milliseconds: it runs on a small pool of
threads per process, never on the event loop, and a missing font is a 503 ``font_missing``
(the operator's to fix) rather than a fault.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from correction_monitor.adapters.pdf import FontMissing, font_file
from correction_monitor.service.errors import TryAgain

RENDER_WORKERS = 2
"""Documents drawn at once per process; more wait their turn."""

_executor_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def _render_pool() -> ThreadPoolExecutor:
    """The process's pool for drawing documents, made on first use."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(RENDER_WORKERS, thread_name_prefix="documents-pdf")
        return _executor


def document_font(font: Path | None) -> Path:
    """The TrueType file documents are set in: ``font`` (``CM_PDF_FONT``) or the npm
    package's; ``font_missing`` (503) when there is none, before anything is read."""
    try:
        return font_file(font)
    except FontMissing as exc:
        raise TryAgain(
            "font_missing",
            f"{exc}: run `python3 dev.py` (npm ci in fonts/) or set CM_PDF_FONT",
        ) from exc


async def draw(render: Callable[..., bytes], *args: Any) -> bytes:
    """``render(*args)`` on the document pool; ``font_missing`` when the font went away
    between the check and the drawing."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(_render_pool(), render, *args)
    except FontMissing as exc:
        raise TryAgain("font_missing", str(exc)) from exc
