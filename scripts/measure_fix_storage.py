"""Measure bytes on disk per stored fix (heap + index) for 1 M fixes.

Creates a scratch database on the server of CM_DATABASE_URL (default: the local
PostgreSQL), migrates it, COPYs fixes in the shape the ingest pipeline writes them (batches of
100 fixes per subject, subjects interleaved, a day's partition), vacuums, prints the figures
and a JSON line, and drops the database.

    .venv/bin/python scripts/measure_fix_storage.py [--fixes 1000000] [--subjects 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import numpy as np

from correction_monitor.migrations import migrate

COLUMNS = ("ts", "subject_id", "device_id", "lon_e7", "lat_e7", "client_key", "accuracy_m", "flags")


async def measure(server_url: str, fixes: int, subjects: int) -> dict[str, float]:
    name = f"cm_storage_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(server_url)._replace(path="/" + name))
    try:
        await asyncio.to_thread(migrate, url)
        conn = await asyncpg.connect(url)
        day = datetime(2026, 11, 20, tzinfo=UTC)
        await conn.execute("SELECT cm_ensure_fix_partition($1::date)", day.date())
        rng = np.random.default_rng(7)
        per_batch = 100
        rounds = fixes // (subjects * per_batch)
        written = 0
        for r in range(rounds):
            records = []
            for sid in range(1, subjects + 1):
                base = day + timedelta(seconds=r * per_batch * 30)
                lon = 1164000000 + int(rng.integers(0, 10_000_000))
                lat = 399000000 + int(rng.integers(0, 10_000_000))
                for i in range(per_batch):
                    records.append(
                        (
                            base + timedelta(seconds=30 * i),
                            sid,
                            sid,
                            lon + i * 37,
                            lat - i * 23,
                            int(rng.integers(-(2**31), 2**31 - 1)),
                            12,
                            0,
                        )
                    )
            await conn.copy_records_to_table("fixes", records=records, columns=COLUMNS)
            written += len(records)
        await conn.execute("VACUUM ANALYZE fixes")
        part = "fixes_" + day.strftime("%Y%m%d")
        heap = await conn.fetchval("SELECT pg_table_size($1)", part)
        index = await conn.fetchval("SELECT pg_indexes_size($1)", part)
        await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    return {
        "fixes": written,
        "heap_bytes": heap,
        "index_bytes": index,
        "heap_bytes_per_fix": round(heap / written, 2),
        "index_bytes_per_fix": round(index / written, 2),
        "bytes_per_fix": round((heap + index) / written, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixes", type=int, default=1_000_000)
    parser.add_argument("--subjects", type=int, default=10_000)
    args = parser.parse_args()
    server = os.environ.get("CM_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    result = asyncio.run(measure(server, args.fixes, args.subjects))
    print(f"fixes stored:        {result['fixes']:,}")
    print(f"heap (table):        {result['heap_bytes']:,} B = {result['heap_bytes_per_fix']} B/fix")
    print(
        f"index:               {result['index_bytes']:,} B = {result['index_bytes_per_fix']} B/fix"
    )
    print(f"total on disk:       {result['bytes_per_fix']} B/fix (target <= 80)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
