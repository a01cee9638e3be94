"""Benchmarks of night-patrol routing (correction_monitor.domain.routing).

(a) One night for 1,000 subjects' homes over a 40 × 40 km county and 10 teams: the wall
    time of ``solve`` with the default budget, and its plan against a run ten times longer.
(b) Solomon's RC208 (best known 776.1) solved through the same ``solve``, with Euclidean
    distances injected: the gap to 776.1 at the default budget and at 10 s.

RC208 is read from PyVRP's source distribution (its tests/data), downloaded with pip into
a temporary folder when ``--rc208`` does not point at a copy.

    .venv/bin/python scripts/bench_routing.py [--rc208 PATH] [--skip-county] [--skip-rc208]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import vrplib

from correction_monitor.domain.routing import RoutingProblem, RoutingResult, Stop, Team, solve

RC208_BEST_KNOWN = 776.1
PYVRP_VERSION = "0.14.1"
NIGHT = 20 * 3600.0


def county_night(seed: int, n_stops: int = 1000, n_teams: int = 10) -> RoutingProblem:
    """Homes spread over ~40 × 40 km around 39.9°N, 116.4°E; stations inside the county."""
    rng = random.Random(seed)  # noqa: S311 (synthetic homes, not secrets)
    lon0, lat0 = 116.2, 39.7
    dlon, dlat = 40_000 / (111_320 * math.cos(math.radians(39.9))), 40_000 / 110_950
    stops = tuple(
        Stop(
            key=i,
            lon=lon0 + rng.random() * dlon,
            lat=lat0 + rng.random() * dlat,
            prize=rng.choice([1.0, 1.0, 2.0, 3.0, 5.0]),
            required=rng.random() < 0.03,  # ~30 overdue subjects
        )
        for i in range(n_stops)
    )
    teams = tuple(
        Team(
            key=100 + k,
            lon=lon0 + (0.2 + 0.6 * rng.random()) * dlon,
            lat=lat0 + (0.2 + 0.6 * rng.random()) * dlat,
            capacity=40,
            window_start_s=NIGHT,
            window_end_s=NIGHT + 4 * 3600,
            speed_mps=30 / 3.6,
            stop_s=rng.choice([10, 12, 15]) * 60.0,
        )
        for k in range(n_teams)
    )
    return RoutingProblem(stops=stops, teams=teams, detour_factor=1.3, time_limit_s=4.0, seed=seed)


def describe(result: RoutingResult) -> str:
    visits = sum(len(r.stops) for r in result.routes)
    reasons: dict[str, int] = {}
    for _, why in result.unassigned:
        reasons[why] = reasons.get(why, 0) + 1
    km = sum(r.distance_m for r in result.routes) / 1000
    return (
        f"visits {visits}, feasible {result.feasible}, objective {result.objective:,.0f}, "
        f"geodesic {km:,.1f} km, left out {reasons}"
    )


def bench_county() -> None:
    problem = county_night(seed=7)
    print("(a) 1,000 homes over 40 × 40 km, 10 teams, 20:00–24:00, 30 km/h, 10–15 min a stop")
    times = []
    for _ in range(3):
        started = time.perf_counter()
        result = solve(problem)
        times.append(time.perf_counter() - started)
    print(
        f"    default budget: wall {min(times):.2f} s best of 3 (all: "
        + ", ".join(f"{t:.2f}" for t in times)
        + ")"
    )
    print(f"    {describe(result)}")
    longer = RoutingProblem(
        stops=problem.stops,
        teams=problem.teams,
        detour_factor=problem.detour_factor,
        time_limit_s=60.0,
        seed=problem.seed,
        max_iterations=10 * (problem.max_iterations or _default_iterations(problem)),
    )
    started = time.perf_counter()
    long_result = solve(longer)
    print(f"    10× iterations: wall {time.perf_counter() - started:.2f} s")
    print(f"    {describe(long_result)}")
    print(f"    default vs longer objective: {result.objective / long_result.objective - 1:+.2%}")


def _default_iterations(problem: RoutingProblem) -> int:
    from correction_monitor.domain.routing import _default_iterations as default

    return default(len(problem.stops))


def find_rc208(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    folder = Path(tempfile.gettempdir()) / "pyvrp-sdist"
    found = sorted(folder.glob("pyvrp-*/tests/data/RC208.vrp"))
    if found:
        return found[-1]
    folder.mkdir(exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            f"pyvrp=={PYVRP_VERSION}",
            "--no-binary",
            ":all:",
            "--no-deps",
            "-d",
            str(folder),
        ],
        check=True,
    )
    archive = folder / f"pyvrp-{PYVRP_VERSION}.tar.gz"
    member = f"pyvrp-{PYVRP_VERSION}/tests/data/RC208.vrp"
    with tarfile.open(archive) as tar:
        tar.extract(member, folder, filter="data")
    return folder / member


def rc208_problem(path: Path, time_limit_s: float, max_iterations: int) -> RoutingProblem:
    """RC208 as a routing problem: 25 identical teams at the depot, Euclidean distances.

    Distances and times are scaled by 100 so that the module's whole-metre, whole-second
    integer view of the search loses nothing that matters; ETAs and the objective are exact.
    """
    inst = vrplib.read_instance(str(path))
    scale = 100.0
    coords = np.asarray(inst["node_coord"], dtype=np.float64)
    windows = np.asarray(inst["time_window"], dtype=np.float64)
    service = np.broadcast_to(np.asarray(inst["service_time"], dtype=np.float64), len(coords))
    demand = np.asarray(inst["demand"], dtype=np.int64)
    n_vehicles = int(inst["vehicles"])
    capacity = int(inst["capacity"])
    diff = coords[:, None, :] - coords[None, :, :]
    euclid = np.sqrt((diff**2).sum(axis=2)) * scale
    # Locations: the teams' starts (all the depot, node 0), then the clients 1..100.
    order = [0] * n_vehicles + list(range(1, len(coords)))
    matrix = euclid[np.ix_(order, order)]
    teams = tuple(
        Team(
            key=k,
            lon=float(coords[0, 0]),
            lat=float(coords[0, 1]),
            capacity=capacity,
            window_start_s=windows[0, 0] * scale,
            window_end_s=windows[0, 1] * scale,
            speed_mps=1.0,
            stop_s=float(service[1]) * scale,
        )
        for k in range(n_vehicles)
    )
    stops = tuple(
        Stop(
            key=i,
            lon=float(coords[i, 0]),
            lat=float(coords[i, 1]),
            prize=0.0,
            required=True,
            demand=int(demand[i]),
            earliest_s=windows[i, 0] * scale,
            latest_s=windows[i, 1] * scale,
        )
        for i in range(1, len(coords))
    )
    return RoutingProblem(
        stops=stops,
        teams=teams,
        detour_factor=1.0,
        time_limit_s=time_limit_s,
        seed=1,
        max_iterations=max_iterations,
        distances_m=matrix,
    )


def bench_rc208(path: Path) -> None:
    print(f"(b) Solomon RC208 from {path} (best known {RC208_BEST_KNOWN})")
    runs = [("default budget", 30.0, None, 1)] + [("10 s", 10.0, 10**9, seed) for seed in (1, 2, 3)]
    for label, limit, iterations, seed in runs:
        base = rc208_problem(path, limit, 1)
        problem = RoutingProblem(
            stops=base.stops,
            teams=base.teams,
            detour_factor=1.0,
            time_limit_s=limit,
            seed=seed,
            max_iterations=iterations,
            distances_m=base.distances_m,
        )
        started = time.perf_counter()
        result = solve(problem)
        wall = time.perf_counter() - started
        cost = result.objective / 100
        used = sum(1 for r in result.routes if r.stops)
        print(
            f"    {label}, seed {seed}: wall {wall:.1f} s, cost {cost:.1f} with {used} routes, "
            f"feasible {result.feasible}, gap {cost / RC208_BEST_KNOWN - 1:+.2%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rc208", help="path to RC208.vrp (default: from PyVRP's sdist)")
    parser.add_argument("--skip-county", action="store_true")
    parser.add_argument("--skip-rc208", action="store_true")
    args = parser.parse_args()
    print(
        f"load average: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
        f"{os.getloadavg()[2]:.2f}, cores {os.cpu_count()}"
    )
    if not args.skip_county:
        bench_county()
    if not args.skip_rc208:
        bench_rc208(find_rc208(args.rc208))


if __name__ == "__main__":
    main()
