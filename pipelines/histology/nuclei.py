"""Classical nuclei segmentation: haematoxylin threshold + distance-transform watershed, and morphometry.

The per-pixel part (colour deconvolution, smoothing, threshold) runs batched: numpy lookup tables on the
CPU, torch on a GPU. Labelling, watershed of touching nuclei and measurements run per tile on the CPU
with scipy / scikit-image, and on the CPU the pipeline runs the whole engine inside its tile-reading
processes. Measurements are computed for all objects of a tile at once from label histograms
(``np.bincount``) instead of ``regionprops`` (about 10x faster here for ~100 objects per tile); the
watershed runs only on the few objects per tile that look like touching nuclei.

Only objects whose centroid lies in the tile's *core* are kept, so nuclei on tile overlaps are counted
once (see :mod:`zeroclick.imaging.slide.tiles`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.segmentation import watershed

from zeroclick.imaging.slide.tiles import Tile, TileGrid
from zeroclick.pipelines.histology.stains import StainMatrix, haematoxylin_batch, haematoxylin_luts

logger = logging.getLogger(__name__)

NUCLEUS_CLASSES: tuple[str, ...] = ("lymphocyte", "spindle", "other")

# Columns of the per-nucleus table (level-0 pixels for positions, µm for sizes).
NUCLEUS_COLUMNS: tuple[str, ...] = (
    "x_px", "y_px", "area_um2", "perimeter_um", "major_axis_um", "minor_axis_um", "eccentricity",
    "solidity", "mean_haematoxylin", "class_index", "tile_index", "orientation_rad",
)


_SQUARE = np.ones((3, 3), bool)  # 8-connectivity


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
    # A clump is cut only between centres that stand this much (distance to the outline) above the neck
    # between them (h-maxima): spindles and bent nuclei with a flat ridge stay whole. 0: off.
    split_min_depth_um: float = 0.5
    # Each object keeps only its pixels above this fraction of its own mean haematoxylin (the blur of a
    # dark nucleus spreads past its edge; touching nuclei part at their paler contact). 0: off.
    object_trim_fraction: float = 0.75
    trim_min_area_um2: float = 60.0  # smaller objects are left whole
    smooth_sigma_um: float = 0.5
    # Boundary refinement: the smoothing above (it keeps pale, noisy nuclei whole) also rounds and moves
    # edges by up to its half-width. Pixels within this distance of the opened mask's outline (inside
    # or out) are decided again on the unsmoothed haematoxylin against the same per-pixel cut. Tuned on
    # the MoNuSeg training half (issue 12, AJI 0.558 -> 0.568; 1 µm: 0.563); 0: off.
    boundary_band_um: float = 0.5
    threshold_fraction: float = 0.35  # of the slide's 99th-percentile haematoxylin concentration
    # Adaptive to each tile's own background: a nuclear pixel is also this much (fraction of the 99th
    # percentile) above the mean haematoxylin around it (a window of background_window_um); <= 0: off.
    # Tuned on the training halves of MoNuSeg and CPM-15 (issue 12): dense, dark tiles and purple
    # neuropil no longer pass as nuclei wholesale.
    local_contrast_fraction: float = 0.1
    background_window_um: float = 24.0
    lymph_max_area_um2: float = 50.0  # a 8 µm disc; 60 let trimmed tumour nuclei pass (issue 12)
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
    # Label image of the tile (only on request): label k + 1 is table row k, 0 elsewhere.
    labels: np.ndarray | None = field(default=None, repr=False)


class ClassicalEngine:
    """Weights-free nuclei engine. ``device`` runs the per-pixel stage; the rest is CPU.

    Per 512² tile at 0.5 µm/px (~90 nuclei), measured on the 2-core development machine under load 3-4
    (ms per tile, before -> after the own implementations below): deconvolution + smoothing 10.6 -> 4.5,
    opening 6.8 -> 0.5, clump splitting 8.4 -> 3.2, measurements and solidity 8.6 -> 4.3; the whole
    engine 37.7 -> ~14 with the later changes (hole filling, shared label sums). Real H&E has more
    nuclei and clumps: on the CMU-1 SVS (~105 nuclei, ~28 clump candidates per tile) ~40 ms per tile.
    """

    name = "classical"

    def __init__(self, stains: StainMatrix, mpp: float, *, device: torch.device | None = None,
                 params: NucleiParams | None = None) -> None:
        self.stains = stains
        self.mpp = float(mpp)
        self.device = device or torch.device("cpu")
        self.params = params or NucleiParams()
        self.threshold = self.params.threshold_fraction * stains.max_h_concentration
        self._luts = haematoxylin_luts(stains)
        # H of each (red, green) pair, indexed by the little-endian uint16 of the two bytes (r + 256 g).
        self._lut_rg = np.ascontiguousarray(self._luts[0][None, :] + self._luts[1][:, None]).ravel()

    @property
    def runs_in_workers(self) -> bool:
        """True on the CPU: the pipeline then runs the engine inside its tile-reading processes."""
        return self.device.type == "cpu"

    def foreground(self, rgb_batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Haematoxylin concentration and nuclei mask for a (B, H, W, 3) uint8 batch (CPU numpy out)."""
        h, mask, _ = self.foreground_with_edges(rgb_batch)
        return h, mask

    def foreground_with_edges(self, rgb_batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """:meth:`foreground`, plus the unsmoothed haematoxylin against the same per-pixel cut (the
        pixels :func:`refine_band` decides the outline with) when ``boundary_band_um`` is on, else None."""
        if self.device.type != "cpu":
            return self._foreground_torch(rgb_batch, self.device)
        # Lookup tables (OD of the grey levels x the stain inverse) with np.take: one for the
        # (red, green) byte pair read as a uint16, one for blue: 2.3 ms per 512² tile here vs 3.2
        # for three per-channel tables, 5.6 for fancy indexing and ~10 for the torch ops.
        rgb = np.ascontiguousarray(rgb_batch)
        flat = rgb.reshape(-1)
        rg = np.ndarray((flat.size // 3,), dtype="<u2", buffer=flat, strides=(3,))
        raw = np.take(self._lut_rg, rg).reshape(rgb.shape[:-1])
        raw += np.take(self._luts[2], rgb[..., 2])
        k = self._smooth_px()
        h = box_mean(raw, k) if k > 1 else raw
        return self._masks(h, raw if k > 1 else None)

    def _smooth_px(self) -> int:
        return 2 * int(round(self.params.smooth_sigma_um / self.mpp)) + 1

    def _masks(self, h: np.ndarray, raw: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        cut = self.threshold_cut(h)
        edges = raw > cut if raw is not None and self.params.boundary_band_um > 0 else None
        return h, h > cut, edges

    def threshold_mask(self, h: np.ndarray) -> np.ndarray:
        """Nuclear pixels of a (B, H, W) haematoxylin stack: above the slide's threshold and above the
        local background by ``local_contrast_fraction`` of the slide's 99th percentile."""
        return h > self.threshold_cut(h)

    def threshold_cut(self, h: np.ndarray) -> np.ndarray | np.float32:
        """The haematoxylin level (per pixel, or one for all) that a nuclear pixel of ``h`` exceeds."""
        p = self.params
        cut = np.float32(self.threshold)
        if p.local_contrast_fraction > 0:
            window = max(3, int(round(p.background_window_um / self.mpp)))
            contrast = np.float32(p.local_contrast_fraction * self.stains.max_h_concentration)
            cut = np.maximum(cut, local_mean(h, window) + contrast)
        return cut

    def foreground_torch(self, rgb_batch: np.ndarray, device: torch.device) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`foreground` with torch ops on ``device`` (the GPU path; also runs on the CPU). At the
        tile's outermost pixels the smoothing averages the pixels inside instead of repeating the edge."""
        h, mask, _ = self._foreground_torch(rgb_batch, device)
        return h, mask

    def _foreground_torch(self, rgb_batch: np.ndarray,
                          device: torch.device) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        k = self._smooth_px()
        x = torch.from_numpy(np.ascontiguousarray(rgb_batch)).to(device, non_blocking=True)
        with torch.no_grad():
            raw = haematoxylin_batch(x, self.stains)
            ht = raw
            if k > 1:  # box smoothing: avg_pool2d is ~10x faster than a separable conv2d on CPU
                ht = F.avg_pool2d(raw[:, None], k, stride=1, padding=k // 2, count_include_pad=False)[:, 0]
        return self._masks(ht.cpu().numpy(), raw.cpu().numpy() if k > 1 else None)

    def segment_batch(self, tiles: list[Tile], rgb_batch: np.ndarray, grid: TileGrid,
                      *, keep_labels: bool = False) -> list[TileNuclei]:
        hae, mask, edges = self.foreground_with_edges(rgb_batch)
        mask = binary_open3(mask)
        if edges is not None:
            mask = refine_band(mask, edges, max(1, int(round(self.params.boundary_band_um / self.mpp))))
        return [self.segment_tile(t, hae[i], mask[i], grid, keep_labels=keep_labels, opened=True)
                for i, t in enumerate(tiles)]

    def segment_tile(self, tile: Tile, hae: np.ndarray, mask: np.ndarray, grid: TileGrid,
                     *, keep_labels: bool = False, opened: bool = False) -> TileNuclei:
        """Nuclei of one tile from its haematoxylin image and threshold mask (``opened``: already opened)."""
        p = self.params
        if not opened:
            mask = binary_open3(mask[None])[0]
        labels, n = ndimage.label(mask)
        if p.object_trim_fraction > 0 and n:
            labels, n = trim_objects(labels, n, hae, p.object_trim_fraction,
                                     min_area_px=p.trim_min_area_um2 / self.mpp**2)
        fg = fill_object_holes(labels, np.flatnonzero(labels))
        # fg: the labelled pixels; the split below relabels pixels but never adds or removes one.
        sums = _label_sums(labels, fg, n, hae)
        origin_x, origin_y = grid.level_origin(tile)
        # The tile's core in tile pixels, one pixel wider all round (only to skip splitting clumps whose
        # pieces cannot be kept; the exact test on level-0 centroids is below).
        core = ((tile.core_x0 - origin_x) / grid.scale0 - 1.5, (tile.core_y0 - origin_y) / grid.scale0 - 1.5,
                (tile.core_x1 - origin_x) / grid.scale0 + 0.5, (tile.core_y1 - origin_y) / grid.scale0 + 0.5)
        if n:
            n_before = n
            labels, n, split = self._split_clumps(labels, n, fg, sums, core)
            if len(split):  # sums again for the split objects and their new pieces only
                changed = np.zeros(n + 1, bool)
                changed[split] = True
                changed[n_before + 1:] = True
                grown = np.zeros((sums.shape[0], n + 1))
                grown[:, : n_before + 1] = sums
                grown[:, changed] = _label_sums(labels, fg[changed[labels.ravel()[fg]]], n, hae)[:, changed]
                sums = grown
        # Labels 1..n (split pieces appended); empty or tiny ones fall out with the area filter below.
        table, outline = _measure(labels, n, self.mpp, fg, sums)
        ids = np.arange(1, n + 1)
        # Tile pixels -> level-0 pixels; keep the nuclei centred in this tile's core.
        table[:, 0] = origin_x + (table[:, 0] + 0.5) * grid.scale0
        table[:, 1] = origin_y + (table[:, 1] + 0.5) * grid.scale0
        keep = ((table[:, 0] >= tile.core_x0) & (table[:, 0] < tile.core_x1)
                & (table[:, 1] >= tile.core_y0) & (table[:, 1] < tile.core_y1)
                & (table[:, 2] >= p.min_area_um2) & (table[:, 2] <= p.max_area_um2)
                & (table[:, 4] <= p.max_major_axis_um))
        table, ids = table[keep], ids[keep]
        # Solidity only for the nuclei this tile keeps (their outline pixels carry the hull).
        table[:, 7] = solidity_many(labels, ids, fg=outline, area=sums[0, ids])
        solid = table[:, 7] >= p.min_solidity
        table, ids = table[solid], ids[solid]
        table[:, 9] = self.classify(table)
        table[:, 10] = tile.index
        return TileNuclei(tile, table, float(table[:, 2].sum()) if len(table) else 0.0,
                          relabel_kept(labels, ids) if keep_labels else None)

    def _split_clumps(self, labels: np.ndarray, n: int, fg: np.ndarray, sums: np.ndarray,
                      core: tuple[float, float, float, float]) -> tuple[np.ndarray, int, np.ndarray]:
        """Distance-transform watershed on objects that are too large or not ellipse-like.

        "Not ellipse-like": area below ``split_ellipse_ratio`` of the area of the object's moment
        ellipse (two touching equal discs give 0.89, a single digital ellipse ~0.97-1.0). Only those
        objects (a few per tile) are cropped and split, and only when some of their pieces could
        have their centroid in the tile's ``core`` (x0, y0, x1, y1 in tile pixels); the rest of the
        tile is not touched. ``fg``: flat indices of the labelled pixels; ``sums``: their
        :func:`_label_sums`. Returns the labels, their number and the labels that were split.
        """
        p = self.params
        area, _, _, sxx, syy, sxy, _ = _from_sums(sums)
        area_um2 = area * self.mpp * self.mpp
        l1, l2 = _eigen(sxx, syy, sxy)
        ratio = area / np.maximum(4 * np.pi * np.sqrt(l1 * l2), 1e-9)  # area / moment-ellipse area
        candidates = (area_um2 >= p.min_area_um2) & ((area_um2 > p.split_area_um2) | (ratio < p.split_ellipse_ratio))
        if not candidates.any():
            return labels, n, np.zeros(0, np.int64)
        # Bounding boxes of the candidates from their pixels (find_objects scans the whole tile).
        is_cand = np.zeros(n + 1, bool)
        is_cand[1:] = candidates
        pix = fg[is_cand[labels.ravel()[fg]]]
        lab = labels.ravel()[pix]
        order = np.argsort(lab, kind="stable")
        pix, lab = pix[order], lab[order]
        starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        yy, xx = np.divmod(pix, labels.shape[1])
        y0, y1 = np.minimum.reduceat(yy, starts), np.maximum.reduceat(yy, starts) + 1
        x0, x1 = np.minimum.reduceat(xx, starts), np.maximum.reduceat(xx, starts) + 1
        inside = (x1 - 1 >= core[0]) & (x0 < core[2]) & (y1 - 1 >= core[1]) & (y0 < core[3])
        ks = np.flatnonzero(inside)
        if len(ks) == 0:
            return labels, n, np.zeros(0, np.int64)
        min_distance = max(1, int(p.peak_distance_um / self.mpp))
        size = 2 * min_distance + 1
        # All candidates at once, packed on one canvas with min_distance empty pixels between them
        # (the maximum filter then cannot see a neighbour): one distance transform, maximum filter,
        # labelling and watershed per tile instead of one per object (the watershed costs ~1.5 ms a
        # call). The same pieces up to watershed ties (a few pixels per tile).
        idxs = lab[starts[ks]]
        objs = [labels[y0[k]:y1[k], x0[k]:x1[k]] == idx for k, idx in zip(ks, idxs)]
        canvas, corners = _pack(objs, min_distance)
        dist = ndimage.distance_transform_edt(canvas)  # background all round: distances from the outline
        # Peaks: maxima of the distance within min_distance (plateaus are one peak). A maximum filter
        # and a labelling instead of skimage's peak_local_max: ~0.1 vs ~0.9 ms per object here.
        peaks = (dist == ndimage.maximum_filter(dist, size=size, mode="constant")) & canvas
        markers, n_markers = ndimage.label(peaks, structure=_SQUARE)
        # Which object each peak is in (objects never touch on the canvas).
        owner = np.zeros(canvas.shape, np.int64)
        for j, (obj, (y, x)) in enumerate(zip(objs, corners)):
            owner[y:y + obj.shape[0], x:x + obj.shape[1]][obj] = j
        own = np.zeros(n_markers + 1, np.int64)
        own[markers[peaks]] = owner[peaks]
        if not (np.bincount(own[1:], minlength=len(objs)) >= 2).any():
            return labels, n, np.zeros(0, np.int64)
        parts = watershed(-dist, markers, mask=canvas)
        if p.split_min_depth_um > 0:  # re-join pieces whose neck is not that much below both centres
            parts = parts_merged_at_shallow_necks(parts, dist, n_markers, p.split_min_depth_um / self.mpp)
        # The pieces left and their rank in their object (labels follow raster order, as in the crop).
        ids = np.unique(parts[parts > 0])
        order = ids[np.argsort(own[ids], kind="stable")]
        n_peaks = np.bincount(own[ids], minlength=len(objs))
        rank = np.zeros(n_markers + 1, np.int64)
        rank[order] = np.arange(len(ids)) - np.repeat(np.cumsum(n_peaks) - n_peaks, n_peaks) + 1
        if not (n_peaks >= 2).any():
            return labels, n, np.zeros(0, np.int64)
        next_label = n + 1
        split = []
        for j in np.flatnonzero(n_peaks >= 2).tolist():
            k, idx, obj = ks[j], int(idxs[j]), objs[j]
            y, x = corners[j]
            region = labels[y0[k]:y1[k], x0[k]:x1[k]]
            local = rank[parts[y:y + obj.shape[0], x:x + obj.shape[1]][obj]]
            region[obj] = np.where(local == 1, idx, local - 2 + next_label)
            next_label += int(n_peaks[j]) - 1
            split.append(idx)
        return labels, next_label - 1, np.array(split, np.int64)

    def classify(self, table: np.ndarray) -> np.ndarray:
        """Lymphocyte-like (small, round, dark), spindle (elongated), other: index into NUCLEUS_CLASSES."""
        p = self.params
        area, ecc, sol, mean_h = table[:, 2], table[:, 6], table[:, 7], table[:, 8]
        lymph = ((area >= p.lymph_min_area_um2) & (area <= p.lymph_max_area_um2)
                 & (ecc <= p.lymph_max_eccentricity) & (sol >= p.lymph_min_solidity)
                 & (mean_h >= p.lymph_min_h_fraction * self.stains.max_h_concentration))
        spindle = ~lymph & (ecc >= p.spindle_min_eccentricity)
        return np.where(lymph, 0, np.where(spindle, 1, 2)).astype(np.float64)


def parts_merged_at_shallow_necks(parts: np.ndarray, dist: np.ndarray, n: int, depth: float) -> np.ndarray:
    """Watershed pieces (labels 1..n of ``parts`` over the distance map ``dist``) joined where the pass
    between two touching pieces (the highest of the lower ``dist`` across their shared edge) is less
    than ``depth`` below the lower of their two peaks: the pair test of h-maxima, without its
    morphological reconstruction (~17 ms per real H&E tile here for ``skimage.morphology.h_maxima``)."""
    peak = np.zeros(n + 1)
    np.maximum.at(peak, parts.ravel(), dist.ravel())
    keys, values = [], []
    for a, b, da, db in ((parts[:, :-1], parts[:, 1:], dist[:, :-1], dist[:, 1:]),
                         (parts[:-1], parts[1:], dist[:-1], dist[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        lo, hi = np.minimum(a[edge], b[edge]), np.maximum(a[edge], b[edge])
        keys.append(lo.astype(np.int64) * (n + 1) + hi)
        values.append(np.minimum(da[edge], db[edge]))
    key, value = np.concatenate(keys), np.concatenate(values)
    if len(key) == 0:
        return parts
    order = np.argsort(key, kind="stable")
    key, value = key[order], value[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    saddle = np.maximum.reduceat(value, starts)
    a, b = np.divmod(key[starts], n + 1)
    shallow = np.minimum(peak[a], peak[b]) - saddle < depth
    root = np.arange(n + 1)

    def find(i: int) -> int:
        while root[i] != i:
            root[i] = root[root[i]]
            i = int(root[i])
        return i

    for i, j in zip(a[shallow].tolist(), b[shallow].tolist()):  # a few pairs per tile
        ri, rj = find(i), find(j)
        if ri != rj:
            root[max(ri, rj)] = min(ri, rj)
    return np.array([find(i) for i in range(n + 1)])[parts]


def trim_objects(labels: np.ndarray, n: int, hae: np.ndarray, fraction: float, *,
                 min_area_px: float = 0.0) -> tuple[np.ndarray, int]:
    """Drop the pixels of each object of at least ``min_area_px`` pixels that lie below ``fraction`` of
    the object's mean haematoxylin; label again."""
    flat = labels.ravel()
    fg = np.flatnonzero(flat)
    lab = flat[fg]
    h = hae.ravel()[fg].astype(np.float64)
    area = np.bincount(lab, minlength=n + 1)
    mean_h = np.bincount(lab, h, n + 1) / np.maximum(area, 1)
    cut = np.where(area >= min_area_px, fraction * mean_h, -np.inf)
    mask = np.zeros(labels.size, bool)
    mask[fg[h >= cut[lab]]] = True
    return ndimage.label(mask.reshape(labels.shape))


def local_mean(h: np.ndarray, window_px: int) -> np.ndarray:
    """Mean of each (H, W) image of a (B, H, W) stack over about ``window_px`` square, computed on
    blocks of ``window_px // 6`` pixels (a smooth background, not an edge-preserving filter)."""
    f = max(1, window_px // 6)
    b, hh, ww = h.shape
    hc, wc = -(-hh // f), -(-ww // f)
    k = max(1, int(round(window_px / f)))

    padded = np.pad(h, ((0, 0), (0, hc * f - hh), (0, wc * f - ww)), mode="edge")
    coarse = ndimage.uniform_filter(padded.reshape(b, hc, f, wc, f).mean(axis=(2, 4)), (1, k, k), mode="nearest")
    return np.repeat(np.repeat(coarse, f, axis=1), f, axis=2)[:, :hh, :ww]


def relabel_kept(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The label image with only the objects ``ids`` left, relabelled so that ``ids[k]`` becomes k + 1."""
    lut = np.zeros(int(max(labels.max(initial=0), ids.max(initial=0))) + 1, np.int32)
    lut[np.asarray(ids, np.int64)] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lut[labels]


def box_mean(h: np.ndarray, k: int) -> np.ndarray:
    """Mean over a ``k`` x ``k`` box of each (H, W) image of a (B, H, W) stack, edges repeated.

    The same values as ``ndimage.uniform_filter(h, (1, k, k), mode="nearest")`` (to float32 rounding), as
    ``k`` shifted additions per axis: 1.3 vs 4.9 ms per 512² float32 tile here.
    """
    r = k // 2
    p = np.pad(h, ((0, 0), (r, r), (r, r)), mode="edge")
    rows = p[:, :, : p.shape[2] - 2 * r].copy()
    for d in range(1, k):
        rows += p[:, :, d : d + h.shape[2]]
    out = rows[:, : h.shape[1]].copy()
    for d in range(1, k):
        out += rows[:, d : d + h.shape[1]]
    out *= np.float32(1.0 / (k * k))
    return out


def refine_band(mask: np.ndarray, edges: np.ndarray, band_px: int) -> np.ndarray:
    """Each (H, W) ``mask`` of a (B, H, W) stack with its pixels within ``band_px`` (8-connected steps) of
    its outline, inside or outside, taken from ``edges``; deeper inside and farther out unchanged. Pixels
    outside the tile count as background (a mask pixel on the tile's edge is in the band). Shifted ANDs /
    ORs as in :func:`binary_open3`: ~0.5 ms per 512² tile for a one-pixel band, vs ~7 for ndimage."""
    inner, outer = mask, mask
    for _ in range(band_px):
        inner, outer = erode3(inner), dilate3(outer)
    return inner | (outer & edges)


def binary_open3(mask: np.ndarray) -> np.ndarray:
    """Binary opening with a 3 x 3 square of each (H, W) mask of a (B, H, W) stack.

    Identical to ``ndimage.binary_opening(m, structure=np.ones((3, 3)))`` (pixels outside count as
    background for the erosion), as separable shifted ANDs / ORs: 0.5 vs 6.8 ms per 512² tile here.
    """
    return dilate3(erode3(mask))


def erode3(mask: np.ndarray) -> np.ndarray:
    """Erosion with a 3 x 3 square of each (H, W) mask of a (B, H, W) stack, pixels outside background."""
    e1 = np.zeros_like(mask)
    e1[:, :, 1:-1] = mask[:, :, :-2] & mask[:, :, 1:-1] & mask[:, :, 2:]
    e2 = np.zeros_like(mask)
    e2[:, 1:-1] = e1[:, :-2] & e1[:, 1:-1] & e1[:, 2:]
    return e2


def dilate3(mask: np.ndarray) -> np.ndarray:
    """Dilation with a 3 x 3 square of each (H, W) mask of a (B, H, W) stack."""
    d1 = mask.copy()
    d1[:, :, 1:] |= mask[:, :, :-1]
    d1[:, :, :-1] |= mask[:, :, 1:]
    d2 = d1.copy()
    d2[:, 1:] |= d1[:, :-1]
    d2[:, :-1] |= d1[:, 1:]
    return d2


def fill_object_holes(labels: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Fill the holes of each labelled object in place; returns the flat indices of the labelled pixels.

    A hole is a pocket of background (4-connected, as ``ndimage.binary_fill_holes`` sees it) enclosed
    by one object. Objects with holes are found from the Euler number of each object's pixels seen as
    closed unit squares (corners - edges + squares: 1 without holes), counted on the foreground pixels
    ``fg`` only; only those few objects are filled, each in its bounding box (all stacked on one
    canvas for a single ``ndimage.binary_fill_holes`` call). That replaces labelling the whole tile's background to fill the
    mask's holes: ~1.5 vs 3.4 ms per 512² tile here (the engine 16.5 -> 15.0 ms). Unlike filling the
    whole mask, a background pocket closed only by several touching objects together is not filled
    (it is no object's hole): on the real CMU-1 SVS 2,628 of 2,639 nuclei stay as they were, 2,642 in all.
    """
    if len(fg) == 0:
        return fg
    width = labels.shape[1] + 2
    padded = np.pad(labels, 1).ravel()
    yy, xx = np.divmod(fg, labels.shape[1])
    at = (yy + 1) * width + xx + 1
    lab = padded[at]

    def same(offset: int) -> np.ndarray:
        return (padded[at + offset] == lab).astype(np.float64)

    left, right, up, down = same(-1), same(1), same(-width), same(width)
    # Each corner of a pixel is shared by the object's pixels around it: count it 1 / (how many).
    corners = (1 / (1 + left + up + same(-width - 1)) + 1 / (1 + right + up + same(-width + 1))
               + 1 / (1 + left + down + same(width - 1)) + 1 / (1 + right + down + same(width + 1)))
    m = int(lab.max()) + 1
    squares = np.bincount(lab, minlength=m)
    edges = 4 * squares - np.bincount(lab, right + down, m)  # shared edges counted once
    euler = np.bincount(lab, corners, m) - edges + squares
    holed = np.flatnonzero(euler[1:] < 0.5) + 1
    if len(holed) == 0:
        return fg
    is_holed = np.zeros(m, bool)
    is_holed[holed] = True
    pick = is_holed[lab]
    plab, py, px = lab[pick], yy[pick], xx[pick]
    order = np.argsort(plab, kind="stable")
    plab, py, px = plab[order], py[order], px[order]
    starts = np.flatnonzero(np.r_[True, plab[1:] != plab[:-1]])
    y0, y1 = np.minimum.reduceat(py, starts), np.maximum.reduceat(py, starts) + 1
    x0, x1 = np.minimum.reduceat(px, starts), np.maximum.reduceat(px, starts) + 1
    objs = [labels[y0[k]:y1[k], x0[k]:x1[k]] == idx for k, idx in enumerate(plab[starts])]
    canvas, corners = _pack(objs, 1)  # one fill for all of them (a ring of background round each)
    # Holes: background components off the canvas border (one labelling; binary_fill_holes dilates
    # from the border to convergence, ~3x slower here).
    bg, n_bg = ndimage.label(~canvas)
    outside = np.zeros(n_bg + 1, bool)
    for edge in (bg[0], bg[-1], bg[:, 0], bg[:, -1]):
        outside[edge] = True
    filled = canvas | ~outside[bg]
    for k, (idx, obj, (y, x)) in enumerate(zip(plab[starts], objs, corners)):
        region = labels[y0[k]:y1[k], x0[k]:x1[k]]
        # Objects inside a hole are absorbed, as filling the mask did.
        region[filled[y:y + obj.shape[0], x:x + obj.shape[1]] & ~obj] = idx
    return np.flatnonzero(labels)


def _pack(masks: list[np.ndarray], gap: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Masks packed in rows (tallest first) on one roughly square empty canvas, with at least ``gap``
    empty pixels around each; returns the canvas and each mask's (top, left) corner."""
    heights = [m.shape[0] for m in masks]
    area = sum((m.shape[0] + gap) * (m.shape[1] + gap) for m in masks)
    width = max(max(m.shape[1] for m in masks) + 2 * gap, int(math.sqrt(area)) + gap)
    corners: list[tuple[int, int]] = [(0, 0)] * len(masks)
    top, left, shelf = gap, gap, 0
    for i in sorted(range(len(masks)), key=lambda i: -heights[i]):
        h, w = masks[i].shape
        if left + w + gap > width:  # next row
            top, left, shelf = top + shelf + gap, gap, 0
        corners[i] = (top, left)
        left += w + gap
        shelf = max(shelf, h)
    canvas = np.zeros((top + shelf + gap, width), bool)
    for m, (y, x) in zip(masks, corners):
        canvas[y:y + m.shape[0], x:x + m.shape[1]] = m
    return canvas, corners


_HULL_DIRECTIONS = 16


def solidity_many(labels: np.ndarray, ids: np.ndarray, *, fg: np.ndarray | None = None,
                  area: np.ndarray | None = None) -> np.ndarray:
    """Solidity (area / convex area) of the objects ``ids`` of a label image, all at once.

    The convex area is that of the circumscribed polygon whose sides are the objects' supporting lines
    (through pixel centres) in 16 directions, counted in pixels as scikit-image's ``convex_image`` does;
    the polygon contains the hull and exceeds it by at most ~1.3% (a disc). It reads 0.00-0.05 lower
    than ``regionprops().solidity`` on small test shapes (discs, ellipses, an L; thresholds below are
    set for it). Measured here: one vectorised pass per tile instead of one Qhull hull per object
    (~10x less time per tile of ~90 nuclei).

    ``fg``: flat indices of the pixels to use, if known: all labelled pixels, or only the objects'
    outline pixels (a pixel with a 4-neighbour outside the object) together with ``area`` (pixels per
    id). The hull is the same (the pixel farthest along any direction is an outline pixel) for ~4x
    fewer pixels.
    """
    ids = np.asarray(ids, dtype=np.int64)
    out = np.ones(len(ids))
    if len(ids) == 0:
        return out
    if fg is None:
        fg = np.flatnonzero(labels)
    lab = labels.ravel()[fg]
    lut = np.full(max(int(lab.max()), int(ids.max())) + 1, -1, np.int64)
    lut[ids] = np.arange(len(ids))
    obj = lut[lab]
    fg, obj = fg[obj >= 0], obj[obj >= 0]
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
    if area is None:
        area = np.bincount(obj, minlength=len(ids))
    return np.minimum(1.0, area / np.maximum(hull_pixels, 1.0))


def _label_sums(labels: np.ndarray, pix: np.ndarray, n: int, hae: np.ndarray | None = None) -> np.ndarray:
    """Per-label pixel sums (rows: count, x, y, xx, yy, xy, haematoxylin; columns: labels 0..n) over
    the pixels with flat indices ``pix``. Sums add up, so split objects are redone from their pixels alone."""
    lab = labels.ravel()[pix]
    yy, xx = np.divmod(pix, labels.shape[1])
    yy, xx = yy.astype(np.float64), xx.astype(np.float64)
    m = n + 1
    h = hae.ravel()[pix].astype(np.float64) if hae is not None else None
    return np.stack([np.bincount(lab, minlength=m).astype(np.float64)]
                    + [np.bincount(lab, w, m) for w in (xx, yy, xx * xx, yy * yy, xx * yy)]
                    + [np.bincount(lab, h, m) if h is not None else np.zeros(m)])


def _from_sums(sums: np.ndarray):
    """Area, centroid, central second moments (+1/12: each pixel a unit square) and mean haematoxylin
    of labels 1..n from :func:`_label_sums`."""
    area = sums[0, 1:]
    safe = np.maximum(area, 1)
    cx, cy = sums[1, 1:] / safe, sums[2, 1:] / safe
    sxx = sums[3, 1:] / safe - cx * cx + 1 / 12
    syy = sums[4, 1:] / safe - cy * cy + 1 / 12
    sxy = sums[5, 1:] / safe - cx * cy
    return area, cx, cy, sxx, syy, sxy, sums[6, 1:] / safe


def _eigen(sxx: np.ndarray, syy: np.ndarray, sxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues (larger, smaller) of the 2 x 2 second-moment matrices."""
    common = np.sqrt(np.maximum(((sxx - syy) / 2) ** 2 + sxy**2, 0))
    return (sxx + syy) / 2 + common, np.maximum((sxx + syy) / 2 - common, 0)


def measure_nuclei(labels: np.ndarray, n: int, hae: np.ndarray, mpp: float, *, solidity: bool = True,
                   fg: np.ndarray | None = None) -> np.ndarray:
    """Per-object morphometry for labels 1..n (tile pixel positions, sizes in µm), all objects at once.

    Everything is computed from the foreground pixels only (~10-20% of a tile) with ``np.bincount``:
    2.3 ms per 512² tile of ~100 objects here, vs ~45 ms for ``regionprops``. ``solidity=False``
    leaves the solidity column at 1; ``fg``: flat indices of the labelled pixels, if known.
    """
    if n == 0:
        return np.zeros((0, len(NUCLEUS_COLUMNS)))
    if fg is None:
        fg = np.flatnonzero(labels)
    sums = _label_sums(labels, fg, n, hae)
    out, outline = _measure(labels, n, mpp, fg, sums)
    if solidity:
        out[:, 7] = solidity_many(labels, np.arange(1, n + 1), fg=outline, area=sums[0, 1:])
    return out


def _measure(labels: np.ndarray, n: int, mpp: float, fg: np.ndarray, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nuclei table (solidity left at 1) from the label sums, and the outline pixels (flat indices)."""
    out = np.zeros((n, len(NUCLEUS_COLUMNS)))
    if n == 0:
        return out, fg[:0]
    area, cx, cy, sxx, syy, sxy, mean_h = _from_sums(sums)
    l1, l2 = _eigen(sxx, syy, sxy)
    major, minor = 4 * np.sqrt(l1), 4 * np.sqrt(l2)
    ecc = np.sqrt(np.clip(1 - l2 / np.maximum(l1, 1e-12), 0, 1))
    # Perimeter: 4-neighbour pixel edges between an object and anything else (outside the tile
    # included), x pi/4 (digital-length bias); neighbours looked up for foreground pixels only.
    width = labels.shape[1] + 2
    padded = np.pad(labels, 1).ravel()
    yy, xx = np.divmod(fg, labels.shape[1])
    at = (yy + 1) * width + xx + 1
    lab = padded[at]
    boundary = ((padded[at - 1] != lab).astype(np.int64) + (padded[at + 1] != lab)
                + (padded[at - width] != lab) + (padded[at + width] != lab))
    perim = np.bincount(lab, boundary, n + 1)[1:] * (math.pi / 4)
    out[:, 0], out[:, 1] = cx, cy
    out[:, 2] = area * mpp * mpp
    out[:, 3] = perim * mpp
    out[:, 4], out[:, 5] = major * mpp, minor * mpp
    out[:, 6] = ecc
    out[:, 7] = 1.0
    out[:, 8] = mean_h
    out[:, 11] = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # major axis angle from +x towards +y (image rows)
    return out, fg[boundary > 0]
