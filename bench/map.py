#!/usr/bin/env python3
"""Map tile benchmark: 500 units with boundaries and 10 cameras drawn in headless Chromium.

Issue 14's target: the map tile for 500 units with 10 cameras draws in <= 200 ms. A
synthetic province (a grid of 500 wobbly polygons, ~200 vertices each as an admin's file
would have them) goes through the server's own check and simplification
(ioc/core/catalogue/boundaries.py, as `ioc areas import-geojson` does), then the page's
map tile (dashboards/static/js/map.js, through tiles.js as every page loads it) is given
the answers of /breakdown, /areas/geometry and /cameras and the hub's tile message:

    data -> painted   from creating the tile with the answers in hand to the second
                      animation frame after its drawing (the browser has painted it)
    values again      a live reading's refetch: new values for the same units, redrawn

Static files are served from dashboards/static by a local HTTP server; the answers are given
in the page (no API): this measures the drawing, not PostgreSQL. Prints figures, medians of
--runs runs; the last line is one JSON object.

    python bench/map.py [--units 500] [--cameras 10] [--runs 7]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import json
import math
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:1] = [str(REPO)]

import orjson  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402

from ioc.core.catalogue.boundaries import read_boundaries  # noqa: E402

CHROMIUM = os.environ.get("IOC_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
LON0, LAT0, CELL = 105.80, 20.70, 0.012  # a grid over Hà Nam's latitude, cells ~1.3 km


def province(units: int, vertices: int, seed: int = 14) -> dict[str, Any]:
    """A FeatureCollection of `units` wobbly cells in a near-square grid."""
    rng = random.Random(seed)
    cols = math.ceil(math.sqrt(units))
    features = []
    for i in range(units):
        cx, cy = LON0 + (i % cols + 0.5) * CELL, LAT0 - (i // cols + 0.5) * CELL
        ring = []
        for k in range(vertices):
            a = 2 * math.pi * k / vertices
            r = CELL * 0.48 * (1 + 0.06 * math.sin(5 * a + i) + 0.01 * rng.random())
            ring.append([round(cx + r * math.cos(a), 7), round(cy + r * math.sin(a), 7)])
        ring.append(ring[0])
        features.append({"type": "Feature", "properties": {"code": f"U{i:04d}"},
                         "geometry": {"type": "Polygon", "coordinates": [ring]}})
    return {"type": "FeatureCollection", "features": features}


def answers(units: int, cameras: int, vertices: int, tolerance: float) -> tuple[dict[str, Any], float, int, int]:
    doc = orjson.dumps(province(units, vertices))
    codes = [f"U{i:04d}" for i in range(units)]
    t0 = time.perf_counter()
    found = read_boundaries(doc, "bench.geojson", set(codes), tolerance_m=tolerance)
    simplify_s = time.perf_counter() - t0
    lons = [p[0] for b in found for poly in b.geometry["coordinates"] for p in poly[0]]
    lats = [p[1] for b in found for poly in b.geometry["coordinates"] for p in poly[0]]
    geometry = {"area": "P", "level": "commune", "bbox": [min(lons), min(lats), max(lons), max(lats)],
                "units": [{"code": b.code, "name_vi": f"Xã {b.code}", "name_en": f"{b.code} Commune", "level": "commune",
                           "lat": b.lat, "lon": b.lon, "boundary": b.geometry, "vertices": b.vertices} for b in found]}
    rows = [{"code": c, "name_vi": f"Xã {c}", "name_en": f"{c} Commune", "value": None if i % 37 == 0 else 60 + (i * 7) % 40,
             "numerator": None, "denominator": None, "n": 1, "reason": None, "status": None, "rank": None}
            for i, c in enumerate(codes)]
    breakdown = {"kpi": "tthc.on_time_rate", "area": "P", "level": "commune", "by": "unit", "kind": "ratio",
                 "unit": "%", "unit_en": "%", "target": None, "better": "higher", "total": {"value": 80.0}, "rows": rows,
                 "previous": None}
    rng = random.Random(3)
    cams = [{"id": f"cam-{k}", "name": f"Camera {k}", "lat": rng.uniform(min(lats), max(lats)),
             "lon": rng.uniform(min(lons), max(lons))} for k in range(cameras)]
    tile = {"kpi": "tthc.on_time_rate", "area": "P", "level": None, "changed_at": None,
            "cameras": [{"id": c["id"], "name": c["name"], "state": "ok" if k % 4 else "offline"} for k, c in enumerate(cams)],
            "alerts": [{"id": 1, "severity": "critical", "camera": "cam-0", "area": None, "message_vi": "x", "message_en": "x"}]}
    data = {"breakdown": breakdown, "geometry": geometry, "cameras": cams, "tile": tile}
    return data, simplify_s, sum(b.source_vertices for b in found), sum(b.vertices for b in found)


PAGE = """<!doctype html><html><head><meta charset="utf-8"><link rel="stylesheet" href="/css/wall.css">
<style>#host { width: 1920px; height: 1080px; position: relative; display: flex; }</style></head>
<body><div id="host"></div></body></html>"""

MEASURE = """async ({ data, again }) => {
  const { createTile } = await import("/js/tiles.js");
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const host = document.getElementById("host");
  host.replaceChildren();
  const answers = (path) => Promise.resolve(path.startsWith("/api/v1/breakdown") ? data.breakdown
    : path.startsWith("/api/v1/areas/geometry") ? data.geometry : data.cameras);
  const ctx = { lang: () => "vi", serverNow: () => Date.now() / 1000, api: answers };
  const def = { id: "m", kind: "map", kpi: "tthc.on_time_rate", area: "P", x: 0, y: 0, w: 4, h: 4,
                title_vi: "Bản đồ", title_en: "Map" };
  const t0 = performance.now();
  const tile = createTile(def, ctx);
  host.append(tile.el);
  tile.el.style.width = "100%";
  const drawn = () => new Promise((r) => tile.el.addEventListener("ioc-map-drawn", r, { once: true }));
  tile.update(data.tile);
  await drawn();
  const firstScript = performance.now() - t0;
  await frame(); await frame();
  const first = performance.now() - t0;
  let second = null;
  let secondScript = null;
  if (again) {
    data.breakdown.rows.forEach((r, i) => { if (r.value !== null) r.value = 60 + ((i * 11) % 40); });
    const t1 = performance.now();
    tile.load();
    await drawn();
    secondScript = performance.now() - t1;
    await frame(); await frame();
    second = performance.now() - t1;
  }
  const paths = tile.el.querySelectorAll(".map-unit").length;
  const cams = tile.el.querySelectorAll(".map-camera").length;
  tile.destroy();
  return { first, second, firstScript, secondScript, paths, cams };
}"""


def serve_static() -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(REPO / "dashboards" / "static"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    data, simplify_s, source_vertices, vertices = answers(args.units, args.cameras, args.vertices, args.tolerance)
    print(f"{args.units} units: {source_vertices} vertices simplified to {vertices} at {args.tolerance:g} m "
          f"in {simplify_s * 1000:.0f} ms (pure Python, server side)")
    server, base = serve_static()
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = await browser.new_page(viewport={"width": 1920, "height": 1080})
            await page.route(f"{base}/bench.html", lambda route: route.fulfill(body=PAGE, content_type="text/html"))
            await page.goto(f"{base}/bench.html")
            firsts, seconds = [], []
            for i in range(args.runs + 1):  # the first run loads and compiles the modules: not counted
                out = await page.evaluate(MEASURE, {"data": data, "again": True})
                assert out["paths"] == args.units and out["cams"] == args.cameras, out
                if i:
                    firsts.append(out["first"])
                    seconds.append(out["second"])
                    print(f"run {i}: data -> painted {out['first']:.1f} ms (drawn by the script at "
                          f"{out['firstScript']:.1f}), values again {out['second']:.1f} ms ({out['secondScript']:.1f})")
            await browser.close()
    finally:
        server.shutdown()
    result = {"bench": "map", "units": args.units, "cameras": args.cameras, "runs": args.runs,
              "source_vertices": source_vertices, "vertices": vertices, "tolerance_m": args.tolerance,
              "simplify_ms": round(simplify_s * 1000, 1),
              "painted_ms_median": round(statistics.median(firsts), 1), "painted_ms_max": round(max(firsts), 1),
              "values_again_ms_median": round(statistics.median(seconds), 1), "target_ms": 200}
    print(f"median data -> painted {result['painted_ms_median']} ms (max {result['painted_ms_max']}), "
          f"values again {result['values_again_ms_median']} ms; target <= 200 ms")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--units", type=int, default=500)
    ap.add_argument("--cameras", type=int, default=10)
    ap.add_argument("--vertices", type=int, default=200, help="vertices per unit in the source file")
    ap.add_argument("--tolerance", type=float, default=30.0, help="simplification tolerance, m")
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))))


if __name__ == "__main__":
    main()
