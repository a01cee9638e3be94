"""Decode throughput of the native fix protocol, in fixes per second on one core.

Run on demand: ``.venv/bin/python -m tests.unit.protocols.bench_native``. Prints one line
per payload shape and a JSON summary; 100-fix batches, best of several repeats, so the
figure is the decoder's speed rather than the machine's momentary load.
"""

from __future__ import annotations

import json
import timeit
from typing import Any

import orjson

from correction_monitor.ingest.protocols.native import decode_native

BATCH = 100
CALLS = 300
REPEATS = 15


def batch(shape: str) -> bytes:
    """A 100-fix body of one of the shapes: minimal, typical, full_offset."""
    fixes: list[dict[str, Any]] = []
    for i in range(BATCH):
        fix: dict[str, Any] = {"lat": 39.9 + i * 1e-5, "lon": 116.4 + i * 1e-5}
        if shape == "minimal":
            fix |= {"ts": 1_714_550_400_000 + i * 5000, "accuracy_m": 12}
        elif shape == "typical":
            fix |= {
                "ts": f"2024-05-01T08:{i % 60:02d}:{i % 60:02d}.250Z",
                "accuracy_m": 12.5,
                "id": f"f-{i}",
                "speed_mps": 1.3,
                "bearing": 87.5,
                "battery": 64,
                "provider": "gps",
            }
        else:
            fix |= {
                "ts": f"2024-05-01T16:{i % 60:02d}:{i % 60:02d}.250+08:00",
                "accuracy_m": 12.5,
                "id": f"f-{i}",
                "crs": "gcj02",
                "speed_mps": 1.3,
                "bearing": 87.5,
                "altitude_m": 48.0,
                "battery": 64,
                "provider": "fused",
                "mock": False,
            }
        fixes.append(fix)
    return orjson.dumps({"fixes": fixes})


def fixes_per_second(body: bytes) -> float:
    assert len(decode_native(body).fixes) == BATCH
    best = min(timeit.repeat(lambda: decode_native(body), number=CALLS, repeat=REPEATS))
    return BATCH * CALLS / best


def main() -> None:
    results = {
        shape: fixes_per_second(batch(shape)) for shape in ("minimal", "typical", "full_offset")
    }
    for shape, rate in results.items():
        print(f"{shape:12s} {rate:12,.0f} fixes/s")
    print(json.dumps({"benchmark": "decode_native", "batch": BATCH, "fixes_per_s": results}))


if __name__ == "__main__":
    main()
