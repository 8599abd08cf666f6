"""Classical nuclei segmentation: haematoxylin threshold + distance-transform watershed, and morphometry.

The per-pixel part (colour deconvolution, smoothing, threshold) runs batched in torch on the engine's
device; labelling, watershed of touching nuclei and measurements run per tile on the CPU with
scipy / scikit-image. Measurements are computed for all objects of a tile at once from label
histograms (``np.bincount``) instead of ``regionprops`` (about 10x faster here for ~100 objects per
tile); solidity uses one convex hull per object.

Only objects whose centroid lies in the tile's *core* are kept, so nuclei on tile overlaps are counted
once (see :mod:`imaging.slide.tiles`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.segmentation import watershed

from imaging.slide.tiles import Tile, TileGrid
from pipelines.histology.stains import StainMatrix, haematoxylin_batch, haematoxylin_luts

logger = logging.getLogger(__name__)

NUCLEUS_CLASSES: tuple[str, ...] = ("lymphocyte", "spindle", "other")

# Columns of the per-nucleus table (level-0 pixels for positions, µm for sizes).
NUCLEUS_COLUMNS: tuple[str, ...] = (
    "x_px", "y_px", "area_um2", "perimeter_um", "major_axis_um", "minor_axis_um", "eccentricity",
    "solidity", "mean_haematoxylin", "class_index", "tile_index", "orientation_rad",
)


@dataclass(frozen=True)
class NucleiParams:
    """Segmentation and lymphocyte-proxy parameters, in µm / µm²."""

    min_area_um2: float = 8.0
    max_area_um2: float = 400.0
    max_major_axis_um: float = 30.0  # longer objects are stroma / folds, not nuclei
    min_solidity: float = 0.65
    split_area_um2: float = 110.0  # objects larger than this, or not ellipse-like, go through the watershed
    split_ellipse_ratio: float = 0.92
    peak_distance_um: float = 3.0  # minimum distance between two nucleus centres in one clump
    smooth_sigma_um: float = 0.5
    threshold_fraction: float = 0.35  # of the slide's 99th-percentile haematoxylin concentration
    lymph_max_area_um2: float = 60.0
    lymph_min_area_um2: float = 12.0
    lymph_max_eccentricity: float = 0.75
    lymph_min_solidity: float = 0.85
    lymph_min_h_fraction: float = 0.8  # mean H at least this fraction of the slide's 99th percentile
    spindle_min_eccentricity: float = 0.9


@dataclass(frozen=True)
class TileNuclei:
    """Nuclei kept for one tile (rows follow :data:`NUCLEUS_COLUMNS`) and its nuclear area."""

    tile: Tile
    table: np.ndarray  # float64 (n, len(NUCLEUS_COLUMNS))
    nuclear_area_um2: float  # of the kept nuclei
    labels: np.ndarray | None = field(default=None, repr=False)  # label image (kept only on request)


class ClassicalEngine:
    """Weights-free nuclei engine. ``device`` runs the per-pixel stage; the rest is CPU."""

    name = "classical"

    def __init__(self, stains: StainMatrix, mpp: float, *, device: torch.device | None = None,
                 params: NucleiParams | None = None) -> None:
        self.stains = stains
        self.mpp = float(mpp)
        self.device = device or torch.device("cpu")
        self.params = params or NucleiParams()
        self.threshold = self.params.threshold_fraction * stains.max_h_concentration

    def foreground(self, rgb_batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Haematoxylin concentration and nuclei mask for a (B, H, W, 3) uint8 batch (CPU numpy out)."""
        k = 2 * int(round(self.params.smooth_sigma_um / self.mpp)) + 1
        if self.device.type == "cpu":
            # numpy lookup tables + scipy box filter: ~3x faster than the torch ops on these CPUs.
            lut = haematoxylin_luts(self.stains)
            h = lut[0][rgb_batch[..., 0]] + lut[1][rgb_batch[..., 1]] + lut[2][rgb_batch[..., 2]]
            if k > 1:
                h = ndimage.uniform_filter(h, size=(1, k, k), mode="nearest")
            return h, h > self.threshold
        x = torch.from_numpy(np.ascontiguousarray(rgb_batch)).to(self.device, non_blocking=True)
        with torch.no_grad():
            h = haematoxylin_batch(x, self.stains)
            k = 2 * int(round(self.params.smooth_sigma_um / self.mpp)) + 1
            if k > 1:  # box smoothing: avg_pool2d is ~10x faster than a separable conv2d on CPU
                h = F.avg_pool2d(h[:, None], k, stride=1, padding=k // 2, count_include_pad=False)[:, 0]
            mask = h > self.threshold
        return h.cpu().numpy(), mask.cpu().numpy()

    def segment_batch(self, tiles: list[Tile], rgb_batch: np.ndarray, grid: TileGrid,
                      *, keep_labels: bool = False) -> list[TileNuclei]:
        hae, mask = self.foreground(rgb_batch)
        return [self.segment_tile(t, hae[i], mask[i], grid, keep_labels=keep_labels) for i, t in enumerate(tiles)]

    def segment_tile(self, tile: Tile, hae: np.ndarray, mask: np.ndarray, grid: TileGrid,
                     *, keep_labels: bool = False) -> TileNuclei:
        p = self.params
        px_um2 = self.mpp * self.mpp
        mask = ndimage.binary_opening(mask, structure=np.ones((3, 3), bool))
        mask = _fill_holes(mask)
        labels, n = ndimage.label(mask)
        if n:
            labels, n = self._split_clumps(labels, n, hae, px_um2)
        # Labels 1..n (split pieces appended); empty or tiny ones fall out with the area filter below.
        table = measure_nuclei(labels, n, hae, self.mpp, solidity=False)
        ids = np.arange(1, n + 1)
        # Tile pixels -> level-0 pixels; keep the nuclei centred in this tile's core.
        origin_x, origin_y = grid.level_origin(tile)
        table[:, 0] = origin_x + (table[:, 0] + 0.5) * grid.scale0
        table[:, 1] = origin_y + (table[:, 1] + 0.5) * grid.scale0
        keep = ((table[:, 0] >= tile.core_x0) & (table[:, 0] < tile.core_x1)
                & (table[:, 1] >= tile.core_y0) & (table[:, 1] < tile.core_y1)
                & (table[:, 2] >= p.min_area_um2) & (table[:, 2] <= p.max_area_um2)
                & (table[:, 4] <= p.max_major_axis_um))
        table, ids = table[keep], ids[keep]
        # Solidity only for the nuclei this tile keeps.
        table[:, 7] = solidity_many(labels, ids)
        table = table[table[:, 7] >= p.min_solidity]
        table[:, 9] = self.classify(table)
        table[:, 10] = tile.index
        return TileNuclei(tile, table, float(table[:, 2].sum()) if len(table) else 0.0,
                          labels if keep_labels else None)

    def _split_clumps(self, labels: np.ndarray, n: int, hae: np.ndarray, px_um2: float) -> tuple[np.ndarray, int]:
        """Distance-transform watershed on objects that are too large or not ellipse-like.

        "Not ellipse-like": area below ``split_ellipse_ratio`` of the area of the object's moment
        ellipse (two touching equal discs give 0.89, a single digital ellipse ~0.97-1.0).
        """
        p = self.params
        m = measure_nuclei(labels, n, hae, self.mpp, solidity=False)
        area = m[:, 2]
        ratio = area / np.maximum(np.pi / 4 * m[:, 4] * m[:, 5], 1e-9)
        candidates = (area >= p.min_area_um2) & ((area > p.split_area_um2) | (ratio < p.split_ellipse_ratio))
        if not candidates.any():
            return labels, n
        out = labels
        next_label = n + 1
        slices = ndimage.find_objects(labels)
        for idx in np.flatnonzero(candidates) + 1:
            sl = slices[idx - 1]
            obj = labels[sl] == idx
            dist = ndimage.distance_transform_edt(obj)
            peaks = peak_local_max(dist, min_distance=max(1, int(p.peak_distance_um / self.mpp)),
                                   labels=obj.astype(np.int32), exclude_border=False)
            if len(peaks) < 2:
                continue
            markers = np.zeros(obj.shape, np.int32)
            markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
            parts = watershed(-dist, markers, mask=obj)
            region = out[sl]
            region[obj] = np.where(parts[obj] == 1, idx, parts[obj] - 2 + next_label)
            next_label += len(peaks) - 1
        return out, next_label - 1

    def classify(self, table: np.ndarray) -> np.ndarray:
        """Lymphocyte-like (small, round, dark), spindle (elongated), other: index into NUCLEUS_CLASSES."""
        p = self.params
        area, ecc, sol, mean_h = table[:, 2], table[:, 6], table[:, 7], table[:, 8]
        lymph = ((area >= p.lymph_min_area_um2) & (area <= p.lymph_max_area_um2)
                 & (ecc <= p.lymph_max_eccentricity) & (sol >= p.lymph_min_solidity)
                 & (mean_h >= p.lymph_min_h_fraction * self.stains.max_h_concentration))
        spindle = ~lymph & (ecc >= p.spindle_min_eccentricity)
        return np.where(lymph, 0, np.where(spindle, 1, 2)).astype(np.float64)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill holes: background components that do not touch the border (one labelling pass; ~3x faster
    here than ``ndimage.binary_fill_holes``, which dilates to convergence)."""
    bg, _ = ndimage.label(~mask)
    border = np.unique(np.concatenate([bg[0], bg[-1], bg[:, 0], bg[:, -1]]))
    return ~np.isin(bg, border[border > 0])


_HULL_DIRECTIONS = 16


def solidity_many(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Solidity (area / convex area) of the objects ``ids`` of a label image, all at once.

    The convex area is that of the circumscribed polygon whose sides are the objects' supporting lines
    (through pixel centres) in 16 directions, counted in pixels as scikit-image's ``convex_image`` does;
    the polygon contains the hull and exceeds it by at most ~1.3% (a disc). It reads 0.00-0.05 lower
    than ``regionprops().solidity`` on small test shapes (discs, ellipses, an L; thresholds below are
    set for it). Measured here: one vectorised pass per tile instead of one Qhull hull per object
    (~10x less time per tile of ~90 nuclei).
    """
    ids = np.asarray(ids, dtype=np.int64)
    out = np.ones(len(ids))
    if len(ids) == 0:
        return out
    flat = labels.ravel()
    fg = np.flatnonzero(np.isin(flat, ids))
    lut = np.full(int(labels.max()) + 1, -1, np.int64)
    lut[ids] = np.arange(len(ids))
    obj = lut[flat[fg]]
    y, x = np.divmod(fg, labels.shape[1])
    theta = np.arange(_HULL_DIRECTIONS) * (2 * np.pi / _HULL_DIRECTIONS)
    c, s = np.cos(theta), np.sin(theta)
    # Support offset of each object along each normal (through pixel centres): pixels grouped by object
    # once, then one maximum.reduceat per direction (ufunc.at is ~20x slower per element).
    order = np.argsort(obj, kind="stable")
    obj, x, y = obj[order], x[order].astype(np.float64), y[order].astype(np.float64)
    starts = np.flatnonzero(np.r_[True, obj[1:] != obj[:-1]])
    present = obj[starts]
    h = np.zeros((len(ids), _HULL_DIRECTIONS))
    for k in range(_HULL_DIRECTIONS):
        h[present, k] = np.maximum.reduceat(x * c[k] + y * s[k], starts)
    # Vertices: intersections of consecutive supporting lines n_k . p = h_k.
    k1 = np.roll(np.arange(_HULL_DIRECTIONS), -1)
    det = c * s[k1] - s * c[k1]  # sin(2 pi / 16), the same for all k
    vx = (h * s[k1] - h[:, k1] * s) / det
    vy = (c * h[:, k1] - c[k1] * h) / det
    dx, dy = np.roll(vx, -1, axis=1) - vx, np.roll(vy, -1, axis=1) - vy
    hull_area = 0.5 * np.abs(np.sum(vx * np.roll(vy, -1, axis=1) - np.roll(vx, -1, axis=1) * vy, axis=1))
    hull_perimeter = np.sum(np.hypot(dx, dy), axis=1)
    # Pixels inside a convex polygon through pixel centres ~ area + perimeter / 2 + 1 (Pick's theorem),
    # which is what scikit-image's convex_image counts.
    hull_pixels = hull_area + hull_perimeter / 2 + 1
    area = np.bincount(obj, minlength=len(ids))
    return np.minimum(1.0, area / np.maximum(hull_pixels, 1.0))


def measure_nuclei(labels: np.ndarray, n: int, hae: np.ndarray, mpp: float, *, solidity: bool = True) -> np.ndarray:
    """Per-object morphometry for labels 1..n (tile pixel positions, sizes in µm), all objects at once.

    ``solidity=False`` leaves the solidity column at 1.
    """
    out = np.zeros((n, len(NUCLEUS_COLUMNS)))
    if n == 0:
        return out
    flat = labels.ravel()
    fg = np.flatnonzero(flat)  # foreground only: ~10-20% of a tile's pixels
    lab = flat[fg]
    yy, xx = np.divmod(fg, labels.shape[1])
    yy, xx = yy.astype(np.float64), xx.astype(np.float64)
    m = n + 1
    area = np.bincount(lab, minlength=m)[1:].astype(np.float64)
    safe = np.maximum(area, 1)
    cx = np.bincount(lab, xx, m)[1:] / safe
    cy = np.bincount(lab, yy, m)[1:] / safe
    # Central second moments -> ellipse axes (same definition as skimage regionprops).
    sxx = np.bincount(lab, xx * xx, m)[1:] / safe - cx * cx + 1 / 12
    syy = np.bincount(lab, yy * yy, m)[1:] / safe - cy * cy + 1 / 12
    sxy = np.bincount(lab, xx * yy, m)[1:] / safe - cx * cy
    common = np.sqrt(np.maximum(((sxx - syy) / 2) ** 2 + sxy**2, 0))
    l1 = (sxx + syy) / 2 + common
    l2 = np.maximum((sxx + syy) / 2 - common, 0)
    major, minor = 4 * np.sqrt(l1), 4 * np.sqrt(l2)
    ecc = np.sqrt(np.clip(1 - l2 / np.maximum(l1, 1e-12), 0, 1))
    mean_h = np.bincount(lab, hae.ravel()[fg].astype(np.float64), m)[1:] / safe
    # Perimeter: boundary pixel edges between an object and anything else, x pi/4 (digital-length bias).
    edges = np.zeros(m)
    for a, b in ((labels[:, 1:], labels[:, :-1]), (labels[1:, :], labels[:-1, :])):
        diff = a != b
        edges += np.bincount(a[diff], minlength=m) + np.bincount(b[diff], minlength=m)
    padded_edges = np.bincount(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]), minlength=m)
    perim = (edges + padded_edges)[1:] * (math.pi / 4)
    solid = solidity_many(labels, np.arange(1, n + 1)) if solidity else np.ones(n)
    out[:, 0], out[:, 1] = cx, cy
    out[:, 2] = area * mpp * mpp
    out[:, 3] = perim * mpp
    out[:, 4], out[:, 5] = major * mpp, minor * mpp
    out[:, 6] = ecc
    out[:, 7] = solid
    out[:, 8] = mean_h
    out[:, 11] = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # major axis angle from +x towards +y (image rows)
    return out
