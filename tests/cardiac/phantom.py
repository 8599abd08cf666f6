"""Analytic short-axis phantoms for the quantification tests (exact voxel counts, known geometry).

Geometry: identity affine, so patient y (LPS posterior) = row: the smaller row is anterior.
The RV crescent touches the LV myocardium between image angles 180 and 300 degrees (angle =
atan2(row offset, col offset)), so the anterior insertion point is at 300 degrees, the inferior one at
180 degrees and the septum at 240 degrees. Relative AHA angle phi = (300 - theta) mod 360.
"""

from __future__ import annotations

import numpy as np

from imaging.volume import Volume

N = 96
CENTRE = 48.0


def polar(n: int = N):
    r, c = np.mgrid[:n, :n]
    rad = np.hypot(r - CENTRE, c - CENTRE)
    theta = np.degrees(np.arctan2(r - CENTRE, c - CENTRE)) % 360.0
    return rad, theta


def sax_slice(cavity_mm: float, wall_mm: float, *, rv: bool = True, n: int = N) -> np.ndarray:
    """ACDC labels: LV cavity disc, myocardial annulus, RV crescent over 180..300 degrees (1 mm pixels)."""
    rad, theta = polar(n)
    lab = np.zeros((n, n), np.uint8)
    lab[rad < cavity_mm] = 3
    lab[(rad >= cavity_mm) & (rad < cavity_mm + wall_mm)] = 2
    if rv:
        outer = cavity_mm + wall_mm
        lab[(rad >= outer) & (rad < outer + 12) & (theta > 180) & (theta < 300)] = 1
    return lab


def volume(labels: np.ndarray, slice_mm: float = 8.0, affine: np.ndarray | None = None) -> Volume:
    aff = np.diag([slice_mm, 1.0, 1.0, 1.0]) if affine is None else affine
    return Volume(labels, aff, (slice_mm, 1.0, 1.0), series_instance_uid="1.2.3")
