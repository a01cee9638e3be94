"""The wrk ingest benchmark: its Lua script's arguments, report and failure rules, and the
Lua script itself driven by wrk against a stand-in server."""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from correction_monitor.ingest.protocols.native import decode_native
from correction_monitor.loadgen import SIZE, SOUTH, STEP_DEG, WALK_HIGH, WALK_LOW, WEST

pytestmark = pytest.mark.unit

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "wrk_ingest.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wrk_ingest", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["wrk_ingest"] = module
    spec.loader.exec_module(module)
    return module


wrk_ingest = load_script()


def clean_report(**changes: Any) -> dict[str, Any]:
    report = {
        "duration_us": 5_000_000,
        "requests": 1000,
        "bytes": 90_000,
        "connect_errors": 0,
        "read_errors": 0,
        "write_errors": 0,
        "timeouts": 0,
        "status_errors": 0,
        "non_200": {},
        "first_error": "",
        "responses": 1000,
        "accepted": 100_000,
        "duplicates": 0,
        "rejected": 0,
        "unread": 0,
        "latency_p50_us": 15_000,
        "latency_p90_us": 25_000,
        "latency_p99_us": 40_000,
        "latency_mean_us": 16_000.5,
        "latency_max_us": 60_000,
    }
    return report | changes


def arg_map(args: list[str]) -> dict[str, str]:
    return dict(arg.split("=", 1) for arg in args)


def test_lua_args_name_the_mode_tokens_clock_and_the_county_in_1e7_degrees() -> None:
    tokens = Path("tokens.txt")
    args = arg_map(wrk_ingest.lua_args("single", tokens, 1_700_000_000_000, seed=7))
    assert args["mode"] == "single"
    assert args["tokens"] == "tokens.txt"
    assert (args["start_ms"], args["step_ms"], args["batch"]) == ("1700000000000", "1000", "100")
    assert args["seed"] == "7"
    assert args["step"] == str(round(STEP_DEG * 1e7)) == "2000"
    walk = [int(x) for x in args["walk"].split(",")]
    start = [int(x) for x in args["start"].split(",")]
    assert walk == [round(x * 1e7) for x in (*WALK_LOW, *WALK_HIGH)]
    county = [round(x * 1e7) for x in (WEST, SOUTH, WEST + SIZE, SOUTH + SIZE)]
    # lon_lo, lat_lo, lon_hi, lat_hi: start box inside the walk box inside the county
    assert county[0] < walk[0] < start[0] < start[2] < walk[2] < county[2]
    assert county[1] < walk[1] < start[1] < start[3] < walk[3] < county[3]


def test_the_report_line_is_found_among_wrk_s_own_output() -> None:
    output = (
        "Running 5s test @ http://127.0.0.1:8080\n  1 threads and 64 connections\n"
        'wrk_ingest {"requests":12,"non_200":{"403":2},"first_error":"403 {\\"e\\"}"}\n'
        "Requests/sec:   2.40\n"
    )
    report = wrk_ingest.parse_report(output)
    assert report == {"requests": 12, "non_200": {"403": 2}, "first_error": '403 {"e"}'}


def test_no_report_line_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'wrk_ingest"):
        wrk_ingest.parse_report("PANIC: unprotected error in call to Lua API\n")


def test_a_clean_run_has_no_failures() -> None:
    assert wrk_ingest.failures(clean_report()) == []
    # a handful is tolerated
    assert wrk_ingest.failures(clean_report(non_200={"503": 5}, rejected=5, timeouts=5)) == []


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"non_200": {"403": 4, "401": 3}, "first_error": "401 {}"}, "7 non-200 responses"),
        ({"rejected": 6}, "6 fixes rejected"),
        ({"duplicates": 100}, "100 fixes duplicates"),
        ({"unread": 9}, "9 200 responses without an accepted count"),
        ({"read_errors": 3, "connect_errors": 3}, "6 socket errors"),
        ({"timeouts": 6}, "6 requests timed out"),
        ({"accepted": 0}, "no fix accepted"),
    ],
)
def test_more_than_a_handful_of_anything_but_accepted_fixes_fails(
    changes: dict[str, Any], expected: str
) -> None:
    found = wrk_ingest.failures(clean_report(**changes))
    assert any(line.startswith(expected) for line in found), found


def test_failures_name_statuses_and_the_first_error() -> None:
    found = wrk_ingest.failures(
        clean_report(non_200={"403": 4, "401": 3}, first_error='401 {"error": 1}')
    )
    assert found == [
        "7 non-200 responses (3 × 401, 4 × 403)",
        'first: 401 {"error": 1}',
    ]


def test_the_devices_clock_starts_in_the_past_within_the_accepted_age() -> None:
    now_ms = time.time() * 1000
    start = wrk_ingest.first_fix_ms("batched", 60, 4000)
    # 400 k fixes/s × 60 s over 4000 devices, a second apart, and 10 minutes to spare
    assert start == pytest.approx(now_ms - (6000 + 600) * 1000, abs=5000)
    assert wrk_ingest.first_fix_ms("single", 3600, 4000) > now_ms - 6 * 86400 * 1000


def test_a_run_too_long_for_its_devices_is_refused() -> None:
    with pytest.raises(SystemExit, match="add devices"):
        wrk_ingest.first_fix_ms("batched", 3 * 3600, 4000)


# --- the Lua script under wrk ---------------------------------------------------------------

BAD = "revoked-token"


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
@pytest.mark.parametrize(("mode", "per_request"), [("batched", 100), ("single", 1)])
async def test_the_lua_script_sends_each_device_s_fixes_in_turn_and_counts_answers(
    tmp_path: Path, mode: str, per_request: int
) -> None:
    seen: list[tuple[str, bytes]] = []

    async def fixes(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        body = await request.read()
        seen.append((token, body))
        if token == BAD:
            return web.json_response({"error": {"code": "unauthorized"}}, status=401)
        n = len(orjson.loads(body)["fixes"])
        return web.json_response({"accepted": n - 1, "duplicates": 1, "rejected": []})

    app = web.Application()
    app.router.add_post("/api/v1/fixes", fixes)
    tokens = [f"device-{i}" for i in range(7)] + [BAD]
    token_file = tmp_path / "tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    start_ms = 1_700_000_000_000
    async with TestServer(app) as server:
        base = str(server.make_url("/")).rstrip("/")
        proc = await asyncio.create_subprocess_exec(
            *("wrk", "-t1", "-c2", "-d1s", "--latency", "-s", str(SCRIPT.with_suffix(".lua"))),
            *(base, "--", *wrk_ingest.lua_args(mode, token_file, start_ms)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    report = wrk_ingest.parse_report(out.decode())

    # round robin over the devices: each once a round
    assert len(seen) >= 2 * len(tokens)
    first = [token for token, _ in seen[: len(tokens)]]
    assert sorted(first) == sorted(tokens)
    counts: defaultdict[str, int] = defaultdict(int)
    for token, _ in seen:
        counts[token] += 1
    assert max(counts.values()) - min(counts.values()) <= 2

    # every device's fixes: native, accepted by the decoder, ids and timestamps strictly
    # increasing from start_ms a second apart, small steps inside the walk box
    args = arg_map(wrk_ingest.lua_args(mode, token_file, start_ms))
    lon_lo, lat_lo, lon_hi, lat_hi = (int(x) / 1e7 for x in args["walk"].split(","))
    by_device: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for token, body in seen:
        decoded = decode_native(body)
        assert decoded.rejected == []
        assert len(decoded.fixes) == per_request
        by_device[token] += orjson.loads(body)["fixes"]
    # wrk asks for one request before the run, to check it, and never sends it: the first
    # device's fixes start one request later
    firsts = sorted(int(sent[0]["id"]) for sent in by_device.values())
    assert firsts == [1] * (len(tokens) - 1) + [per_request + 1]
    for sent in by_device.values():
        ids = [int(f["id"]) for f in sent]
        assert ids == list(range(ids[0], ids[0] + len(sent)))
        assert [f["ts"] for f in sent] == [start_ms + 1000 * i for i in ids]
        assert all(8 <= f["accuracy_m"] <= 24 for f in sent)
        for f in sent:
            assert lon_lo <= f["lon"] <= lon_hi
            assert lat_lo <= f["lat"] <= lat_hi
        for a, b in itertools.pairwise(sent):
            assert abs(b["lon"] - a["lon"]) <= STEP_DEG + 1e-9
            assert abs(b["lat"] - a["lat"]) <= STEP_DEG + 1e-9

    # the answers, as counted by the script
    good = [body for token, body in seen if token != BAD]
    answered = report["responses"]
    assert answered in (len(seen), len(seen) - 1, len(seen) - 2)  # some in flight at the end
    assert report["requests"] == answered
    assert report["non_200"] == {"401": counts[BAD]} or report["non_200"] == {
        "401": counts[BAD] - 1
    }
    assert report["first_error"].startswith('401 {"error"')
    assert report["duplicates"] in range(len(good) - 2, len(good) + 1)
    assert report["accepted"] == report["duplicates"] * (per_request - 1)
    assert report["rejected"] == report["unread"] == 0
    assert 0 < report["latency_p50_us"] <= report["latency_p90_us"] <= report["latency_p99_us"]
    assert wrk_ingest.failures(report) != []  # the revoked device's 401s
