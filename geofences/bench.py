"""Benchmark of the geometry kernel: ``python -m geofences.bench [--quick]``.

(a) Classification of fixes against one ~2,000-vertex county-sized polygon (a synthetic noisy
star), compared with bare ``shapely.contains_xy`` and with a naive loop over shapely Points using
``buffer``/``within`` (timed on a sample and extrapolated).

Prints human-readable figures, then one JSON line with every figure. Timings are wall-clock on
one thread (numpy and GEOS do not multithread these calls).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import shapely

from geofences.classify import PreparedArea, classify, metres_per_degree

FloatArray = npt.NDArray[np.float64]


def noisy_star(
    lon0: float, lat0: float, radius_m: float, vertices: int, rng: np.random.Generator
) -> shapely.Polygon:
    """A county-like polygon: a lobed outline with random-walk roughness, simple by construction.

    Parameters
    ----------
    lon0, lat0 : float
        Centre, degrees.
    radius_m : float
        Mean radius, metres.
    vertices : int
        Number of vertices.
    rng : numpy.random.Generator
        Randomness source.

    Returns
    -------
    shapely.Polygon
        A valid polygon in WGS-84 degrees.
    """
    east, north = metres_per_degree(lat0)
    ang = (np.arange(vertices) + rng.uniform(0.0, 0.9, vertices)) * (2 * math.pi / vertices)
    lobes = 0.25 * np.sin(rng.integers(3, 8) * ang + rng.uniform(0, 2 * math.pi))
    walk = np.cumsum(rng.standard_normal(vertices)) * 0.01
    walk -= np.linspace(0.0, walk[-1], vertices)  # close the random walk smoothly
    r = radius_m * np.clip(1.0 + lobes + walk, 0.3, 2.0)
    return shapely.Polygon(
        np.column_stack((lon0 + r * np.cos(ang) / east, lat0 + r * np.sin(ang) / north))
    )


def realistic_accuracies(n: int, rng: np.random.Generator) -> FloatArray:
    """Mostly 5-50 m GPS fixes with 3 % coarse (network) fixes of 0.5-3 km."""
    acc = rng.uniform(5.0, 50.0, n)
    coarse = rng.random(n) < 0.03
    acc[coarse] = rng.uniform(500.0, 3_000.0, int(coarse.sum()))
    return acc


def fixes_around(
    poly: shapely.Polygon, n: int, rng: np.random.Generator
) -> tuple[FloatArray, FloatArray]:
    """Fixes uniformly over the polygon's bounding box widened by a fifth."""
    x0, y0, x1, y1 = poly.bounds
    dx, dy = (x1 - x0) * 0.1, (y1 - y0) * 0.1
    return rng.uniform(x0 - dx, x1 + dx, n), rng.uniform(y0 - dy, y1 + dy, n)


def best_of(repeats: int, fn: Callable[[], object]) -> float:
    """Fastest wall time of several runs, seconds."""
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def bench_single(n: int, naive_sample: int) -> dict[str, float]:
    """Part (a): one county polygon."""
    rng = np.random.default_rng(1)
    poly = noisy_star(116.4, 40.0, 25_000.0, 2_000, rng)
    assert poly.is_valid
    t = time.perf_counter()
    area = PreparedArea(poly)
    prepare_s = time.perf_counter() - t
    lon, lat = fixes_around(poly, n, rng)
    acc = realistic_accuracies(n, rng)
    classify(area, lon[:1000], lat[:1000], acc[:1000])  # warm caches
    ours = best_of(3, lambda: classify(area, lon, lat, acc))
    codes = classify(area, lon, lat, acc)

    prepared = shapely.Polygon(poly.exterior)
    shapely.prepare(prepared)
    bare = best_of(3, lambda: shapely.contains_xy(prepared, lon, lat))

    # The naive way: a metric buffer per fix, then within/disjoint, one Python call at a time.
    area_proj = area.projected
    x, y = area.project(lon[:naive_sample], lat[:naive_sample])

    def naive() -> None:
        for i in range(naive_sample):
            disc = shapely.Point(x[i], y[i]).buffer(acc[i], quad_segs=8)
            if not disc.within(area_proj):
                disc.disjoint(area_proj)

    naive_s = best_of(1, naive) / naive_sample * n
    return {
        "a_vertices": float(len(poly.exterior.coords) - 1),
        "a_prepare_s": prepare_s,
        "a_fixes": float(n),
        "a_fixes_per_s": n / ours,
        "a_contains_xy_per_s": n / bare,
        "a_naive_per_s": n / naive_s,
        "a_speedup_vs_naive": naive_s / ours,
        "a_cost_vs_contains_xy": ours / bare,
        "a_uncertain_share": float(np.mean(codes == 0)),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print figures plus a final JSON line."""
    parser = argparse.ArgumentParser(
        prog="python -m geofences.bench", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    args = parser.parse_args(argv)
    if args.quick:
        a = bench_single(n=200_000, naive_sample=500)
    else:
        a = bench_single(n=1_000_000, naive_sample=2_000)
    print("(a) one county polygon, realistic accuracies")
    print(f"    vertices                 {a['a_vertices']:>14,.0f}")
    print(f"    prepare                  {a['a_prepare_s'] * 1e3:>14.1f} ms")
    print(
        f"    classify (disc)          {a['a_fixes_per_s']:>14,.0f} fixes/s  (target >= 1,000,000)"
    )
    print(f"    bare contains_xy (point) {a['a_contains_xy_per_s']:>14,.0f} fixes/s")
    print(f"    naive Point.buffer/within{a['a_naive_per_s']:>14,.0f} fixes/s")
    print(f"    speed-up over naive      {a['a_speedup_vs_naive']:>14,.0f} x")
    print(f"    cost vs bare contains_xy {a['a_cost_vs_contains_xy']:>14.2f} x")
    print(f"    uncertain share          {a['a_uncertain_share']:>14.2%}")
    print(json.dumps({"quick": args.quick, **a}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
