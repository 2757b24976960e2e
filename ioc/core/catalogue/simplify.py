"""Line simplification for the wall's map: Douglas-Peucker in metres, in pure Python.

An admin's boundary file may carry a vertex every few metres; the wall draws a province on a
few hundred pixels, so the server keeps only the vertices that move a ring by more than a
tolerance (metres) and the pages draw a fraction of the points. Coordinates are projected to
a local plane (equirectangular about the feature's centre: within a province the error is far
below any sensible tolerance), so the tolerance means the same east-west and north-south.
numpy is not used (it belongs to the camera service only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQUATOR = 111_320.0

Point = tuple[float, float]


class LocalPlane:
    """Longitude/latitude <-> metres east/north of a reference point."""

    def __init__(self, lon0: float, lat0: float) -> None:
        self.lon0, self.lat0 = lon0, lat0
        self.kx = M_PER_DEG_LON_EQUATOR * max(math.cos(math.radians(lat0)), 1e-6)

    def to_xy(self, p: Sequence[float]) -> Point:
        return ((p[0] - self.lon0) * self.kx, (p[1] - self.lat0) * M_PER_DEG_LAT)

    def to_lonlat(self, x: float, y: float) -> Point:
        return (self.lon0 + x / self.kx, self.lat0 + y / M_PER_DEG_LAT)


def segment_distance(p: Point, a: Point, b: Point) -> float:
    """Distance from p to the segment a-b (to a itself when a == b)."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    d2 = dx * dx + dy * dy
    if d2 == 0.0:
        return math.hypot(p[0] - a[0], p[1] - a[1])
    t = max(0.0, min(1.0, ((p[0] - a[0]) * dx + (p[1] - a[1]) * dy) / d2))
    return math.hypot(p[0] - a[0] - t * dx, p[1] - a[1] - t * dy)


def douglas_peucker(points: Sequence[Point], tolerance: float) -> list[int]:
    """Indices of the points kept (first and last always): every dropped point lies within
    `tolerance` of the segment that replaced it. Iterative (a ring of 100,000 vertices must
    not hit the recursion limit)."""
    n = len(points)
    if n <= 2:
        return list(range(n))
    keep = [False] * n
    keep[0] = keep[n - 1] = True
    stack = [(0, n - 1)]
    tol2 = tolerance * tolerance
    while stack:
        i, j = stack.pop()
        (ax, ay), (bx, by) = points[i], points[j]
        dx, dy = bx - ax, by - ay
        d2 = dx * dx + dy * dy
        far, far_d = -1, tol2
        # segment_distance inlined, squared: this loop is the whole cost of an import
        for k in range(i + 1, j):
            px, py = points[k]
            ex, ey = px - ax, py - ay
            if d2 > 0.0:
                t = (ex * dx + ey * dy) / d2
                if t > 1.0:
                    ex, ey = px - bx, py - by
                elif t > 0.0:
                    ex, ey = ex - t * dx, ey - t * dy
            e2 = ex * ex + ey * ey
            if e2 > far_d:
                far, far_d = k, e2
        if far >= 0:
            keep[far] = True
            stack.append((i, far))
            stack.append((far, j))
    return [i for i in range(n) if keep[i]]


def simplify_ring(ring: Sequence[Point], tolerance: float, *, minimum: int) -> list[Point]:
    """A closed ring (first point repeated last) simplified; at least `minimum` points
    (counting the closing one) when the ring had them, by adding back the points farthest
    from what is kept: an exterior ring never collapses to a line."""
    kept = douglas_peucker(ring, tolerance)
    if len(kept) < minimum <= len(ring):
        chosen = set(kept)
        while len(chosen) < minimum:
            ordered = sorted(chosen)
            best, best_d = -1, -1.0
            for a, b in zip(ordered, ordered[1:]):
                for k in range(a + 1, b):
                    d = segment_distance(ring[k], ring[a], ring[b])
                    if d > best_d:
                        best, best_d = k, d
            if best < 0:
                break
            chosen.add(best)
        kept = sorted(chosen)
    return [ring[i] for i in kept]


def ring_area(ring: Sequence[Point]) -> tuple[float, float, float]:
    """(signed area, centroid x * area, centroid y * area) of a closed ring: the shoelace sums
    a polygon's centroid is built from."""
    a = cx = cy = 0.0
    for (x0, y0), (x1, y1) in zip(ring, ring[1:]):
        cross = x0 * y1 - x1 * y0
        a += cross
        cx += (x0 + x1) * cross
        cy += (y0 + y1) * cross
    return a / 2.0, cx / 6.0, cy / 6.0
