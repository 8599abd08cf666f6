"""Synthetic H&E whole-slide images with exact nuclei ground truth.

The scene is analytic: low-resolution fields (tissue, region type, stain texture) plus a list of
elliptical nuclei with known centre, axes, angle and class. Every pyramid level is rendered from the
same scene at its own scale, strip by strip, and streamed tile by tile into a pyramidal JPEG TIFF, so
memory does not grow with the slide (a 50,000 x 50,000 slide stays far below 2 GB RSS).

Colour follows the Beer-Lambert model with the Ruifrok & Johnston H&E stain vectors, so colour
deconvolution recovers haematoxylin and eosin concentrations as a real scanner image would give them.

The file carries an Aperio-style ``ImageDescription`` (``Aperio Image Library ... |MPP = 0.25|AppMag = 40``)
and TIFF resolution tags, so OpenSlide reports it as vendor ``aperio`` with ``openslide.mpp-x``.

Ground truth written next to the slide (``OUT.tiff`` -> ``OUT.nuclei.csv``, ``OUT.nuclei.geojson``,
``OUT.truth.json``):

- one row / feature per nucleus: centre in level-0 pixels and µm, semi-axes, angle, area in µm², class;
- the exact tissue area in mm² (tissue is defined on a grid of ``TRUTH_CELL_PX`` level-0 pixels).

Example
-------
>>> from zeroclick.imaging.synthetic.slide import generate_slide
>>> info = generate_slide("/tmp/demo.tiff", width=2048, height=2048, seed=1)  # doctest: +SKIP
>>> info.n_nuclei > 0  # doctest: +SKIP
True
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.spatial import cKDTree

from zeroclick.imaging.errors import InvalidInputError

logger = logging.getLogger(__name__)

TILE_PX = 256
TRUTH_CELL_PX = 32  # level-0 pixels per cell of the low-resolution scene fields
JPEG_QUALITY = 90
MIN_LEVEL_PX = 512  # no pyramid level smaller than this along its longer side

CLASS_NAMES: tuple[str, ...] = ("tumor", "lymphocyte", "stromal")
CLASS_COLOURS: dict[str, tuple[int, int, int]] = {
    "tumor": (200, 0, 0),
    "lymphocyte": (160, 90, 160),
    "stromal": (150, 200, 150),
}

# Ruifrok & Johnston (2001) optical-density vectors, normalised (same as skimage.color.rgb_from_hed).
_H_OD = np.array([0.65, 0.70, 0.29], dtype=np.float32)
_E_OD = np.array([0.07, 0.99, 0.11], dtype=np.float32)
_H_OD /= np.linalg.norm(_H_OD)
_E_OD /= np.linalg.norm(_E_OD)
_GLASS_OD = np.array([0.030, 0.034, 0.026], dtype=np.float32)
_LN10 = math.log(10.0)

# Per class: (spacing of the candidate grid µm, major axis range µm, minor/major ratio range,
# haematoxylin optical density range). Sizes follow typical H&E nuclei at 40x.
_NUCLEUS_KINDS: dict[str, dict[str, tuple[float, float] | float]] = {
    "tumor": {"spacing_um": 15.0, "major_um": (9.0, 13.0), "ratio": (0.70, 0.95), "od": (0.85, 1.10)},
    "lymphocyte": {"spacing_um": 9.5, "major_um": (5.5, 7.0), "ratio": (0.88, 1.0), "od": (1.20, 1.50)},
    "stromal": {"spacing_um": 17.0, "major_um": (10.0, 15.0), "ratio": (0.28, 0.40), "od": (0.80, 1.00)},
}
_CHUNK_TILES = 16  # tiles rendered together along a row (bounded memory: 256 x 4096 pixels)
_STROMA_KEEP = 0.35  # fraction of stromal grid points that hold a fibroblast-like nucleus
_GAP_UM = 2.0  # minimum free space between the rims of two nuclei


@dataclass(frozen=True)
class SlideInfo:
    """What :func:`generate_slide` wrote, with the exact ground truth figures."""

    path: Path
    width_px: int
    height_px: int
    mpp: float
    seed: int
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    tile_px: int
    n_nuclei: int
    nuclei_per_class: dict[str, int]
    tissue_area_mm2: float
    nuclei_csv: Path
    nuclei_geojson: Path
    truth_json: Path
    elapsed_s: float
    file_size_mb: float = field(default=0.0)

    @property
    def nuclei_density_per_mm2(self) -> float:
        """Ground-truth nuclei per mm² of tissue."""
        return self.n_nuclei / self.tissue_area_mm2 if self.tissue_area_mm2 > 0 else 0.0

    def summary(self) -> dict:
        """A JSON-ready dict (paths as strings)."""
        return {
            "path": str(self.path),
            "width_px": self.width_px,
            "height_px": self.height_px,
            "mpp": self.mpp,
            "seed": self.seed,
            "level_dimensions": [list(d) for d in self.level_dimensions],
            "level_downsamples": list(self.level_downsamples),
            "tile_px": self.tile_px,
            "n_nuclei": self.n_nuclei,
            "nuclei_per_class": dict(self.nuclei_per_class),
            "tissue_area_mm2": round(self.tissue_area_mm2, 6),
            "nuclei_density_per_mm2": round(self.nuclei_density_per_mm2, 3),
            "nuclei_csv": str(self.nuclei_csv),
            "nuclei_geojson": str(self.nuclei_geojson),
            "truth_json": str(self.truth_json),
            "file_size_mb": round(self.file_size_mb, 2),
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass(frozen=True)
class _Scene:
    """Analytic scene: low-resolution fields (one value per TRUTH_CELL_PX cell) and the nuclei table."""

    width: int
    height: int
    mpp: float
    tissue: np.ndarray  # float32 (gh, gw): 1 inside tissue, 0 outside
    fields: torch.Tensor  # float32 (3, gh, gw): tissue, eosin OD, diffuse haematoxylin OD (smoothed)
    # nuclei, level-0 pixel units: x, y, a (semi-major), b (semi-minor), angle rad, od, class index
    nuclei: np.ndarray  # float64 (n, 7)
    texture: np.ndarray  # float32 (P, P) periodic stain texture around 1.0
    texture_wide: torch.Tensor  # the texture tiled to cover any block at any offset
    noise_wide: torch.Tensor  # periodic sensor noise (grey levels), tiled likewise


def truth_paths(out_path: str | os.PathLike) -> tuple[Path, Path, Path]:
    """The ground-truth files written next to ``out_path``: (nuclei CSV, nuclei GeoJSON, truth JSON)."""
    p = Path(out_path)
    stem = p.with_suffix("")
    return (
        stem.with_name(stem.name + ".nuclei.csv"),
        stem.with_name(stem.name + ".nuclei.geojson"),
        stem.with_name(stem.name + ".truth.json"),
    )


def generate_slide(
    out_path: str | os.PathLike,
    *,
    width: int,
    height: int,
    mpp: float = 0.25,
    seed: int = 0,
    jpeg_quality: int = JPEG_QUALITY,
) -> SlideInfo:
    """Write a synthetic H&E pyramidal tiled TIFF with known nuclei, and its ground truth.

    Parameters
    ----------
    out_path
        Output ``.tiff`` / ``.svs`` path; written atomically (temporary name, then rename).
    width, height
        Level-0 size in pixels (at least 512 each).
    mpp
        Microns per pixel at level 0 (0.25 = 40x, 0.5 = 20x).
    seed
        Seed of the scene; the same seed gives the same nuclei table and pixels.
    jpeg_quality
        JPEG quality of the tiles (1-100).

    Returns
    -------
    SlideInfo
        Sizes, pyramid, nuclei counts per class, tissue area and the paths written.
    """
    if width < 512 or height < 512:
        raise InvalidInputError(f"slide size {width}x{height} is too small; use at least 512x512 pixels")
    if not (0.05 <= mpp <= 10.0):
        raise InvalidInputError(f"mpp={mpp} is outside 0.05-10 µm/px; typical scans are 0.25 (40x) or 0.5 (20x)")
    import tifffile

    t0 = time.perf_counter()
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    scene = _build_scene(width, height, mpp, seed)
    downsamples = _level_downsamples(width, height)
    dims = tuple((math.ceil(width / d), math.ceil(height / d)) for d in downsamples)
    tmp = out.with_name(out.name + ".partial")
    app_mag = 10.0 / mpp
    with tifffile.TiffWriter(tmp, bigtiff=width * height * 3 > 2**31) as tw:
        for level, (d, (lw, lh)) in enumerate(zip(downsamples, dims)):
            if level == 0:
                desc = (
                    f"Aperio Image Library v12.0.15 \n{width}x{height} ({TILE_PX}x{TILE_PX}) JPEG/RGB "
                    f"Q={jpeg_quality}|AppMag = {app_mag:g}|MPP = {mpp:.4f}|Filename = zeroclick-synthetic"
                    f"|ScanScope ID = ZEROCLICK|Seed = {seed}"
                )
            else:
                desc = f"Aperio Image Library v12.0.15 \n{width}x{height} -> {lw}x{lh} - |Downsample = {d}"
            res = 1e4 / (mpp * d)  # pixels per centimetre
            tw.write(
                _level_tiles(scene, d, lw, lh, seed=seed * 1009 + level),
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(TILE_PX, TILE_PX),
                compression="jpeg",
                compressionargs={"level": int(jpeg_quality)},
                description=desc,
                resolution=(res, res),
                resolutionunit="CENTIMETER",
                metadata=None,
                software="zeroclick synthetic slide",
            )
    os.replace(tmp, out)
    csv_path, geojson_path, truth_path = _write_truth(out, scene, seed, downsamples, dims)
    counts = {name: int(np.sum(scene.nuclei[:, 6] == k)) for k, name in enumerate(CLASS_NAMES)}
    info = SlideInfo(
        path=out,
        width_px=width,
        height_px=height,
        mpp=mpp,
        seed=seed,
        level_dimensions=dims,
        level_downsamples=tuple(float(d) for d in downsamples),
        tile_px=TILE_PX,
        n_nuclei=int(len(scene.nuclei)),
        nuclei_per_class=counts,
        tissue_area_mm2=_tissue_area_mm2(scene),
        nuclei_csv=csv_path,
        nuclei_geojson=geojson_path,
        truth_json=truth_path,
        elapsed_s=time.perf_counter() - t0,
        file_size_mb=out.stat().st_size / 1e6,
    )
    logger.info("synthetic slide %dx%d: %d nuclei in %.1f s", width, height, info.n_nuclei, info.elapsed_s)
    return info


# --------------------------------------------------------------------------------------------- scene


def _level_downsamples(width: int, height: int) -> list[int]:
    out = [1]
    while max(width, height) / (out[-1] * 4) >= MIN_LEVEL_PX:
        out.append(out[-1] * 4)
    return out


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std, smooth random field."""
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="wrap")
    return (f - f.mean()) / (f.std() + 1e-6)


def _build_scene(width: int, height: int, mpp: float, seed: int) -> _Scene:
    rng = np.random.default_rng(seed)
    gh, gw = math.ceil(height / TRUTH_CELL_PX), math.ceil(width / TRUTH_CELL_PX)
    cell_um = TRUTH_CELL_PX * mpp
    yy, xx = np.mgrid[0:gh, 0:gw].astype(np.float32)
    # Tissue: 1-3 irregular fragments (ellipses distorted by smooth noise), then a clean binary mask.
    blob = np.zeros((gh, gw), np.float32)
    n_frag = int(rng.integers(1, 4))
    for _ in range(n_frag):
        cy, cx = rng.uniform(0.3, 0.7) * gh, rng.uniform(0.3, 0.7) * gw
        ry, rx = rng.uniform(0.22, 0.36) * gh, rng.uniform(0.22, 0.36) * gw
        th = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dx * np.cos(th) + dy * np.sin(th)) / rx
        v = (-dx * np.sin(th) + dy * np.cos(th)) / ry
        blob = np.maximum(blob, 1.0 - (u * u + v * v))
    edge_sigma = max(2.0, min(gh, gw) / 40)
    blob += 0.18 * _smooth_noise(rng, (gh, gw), edge_sigma)
    mask = ndimage.binary_opening(blob > 0.15, iterations=2)
    mask = ndimage.binary_fill_holes(mask)
    labels, n_lab = ndimage.label(mask)
    sizes_mm2 = ndimage.sum_labels(mask, labels, np.arange(1, n_lab + 1)) * (cell_um / 1000.0) ** 2
    mask = np.isin(labels, 1 + np.flatnonzero(sizes_mm2 >= 0.03))  # drop specks < 0.03 mm²
    tissue = mask.astype(np.float32)
    # Regions inside tissue: tumour nests, lymphoid aggregates, stroma elsewhere (class index per cell).
    nest_sigma = max(1.5, 120.0 / cell_um)  # nests ~ a few hundred µm across
    nests = _smooth_noise(rng, (gh, gw), nest_sigma) > 0.35
    lymph = np.zeros((gh, gw), bool)
    for _ in range(int(rng.integers(2, 5))):
        cy, cx = rng.uniform(0, gh), rng.uniform(0, gw)
        r = rng.uniform(60, 160) / cell_um
        lymph |= (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    region = np.full((gh, gw), 2, np.int8)  # stromal
    region[nests] = 0
    region[lymph] = 1
    region[~mask] = -1
    # Background stain per region (optical density), with slow variation.
    tone = 1.0 + 0.08 * _smooth_noise(rng, (gh, gw), max(2.0, 400.0 / cell_um))
    eosin = (np.select([region == 0, region == 1, region == 2], [0.15, 0.12, 0.22], 0.0) * tone).astype(np.float32)
    haem = (np.select([region == 0, region == 1, region == 2], [0.07, 0.05, 0.03], 0.0) * tone).astype(np.float32)
    # Nuclei sit at least one cell (8 µm at 0.25 µm/px) inside the tissue edge.
    nuclear_region = np.where(ndimage.binary_erosion(mask, iterations=1), region, -1)
    nuclei = _place_nuclei(rng, nuclear_region, mpp, width, height)
    texture = _periodic_texture(rng)
    noise = rng.normal(0.0, 1.5, texture.shape).astype(np.float32)
    reps = (2, (_CHUNK_TILES * TILE_PX) // texture.shape[1] + 2)
    # Smooth the region steps over ~1 cell so edges are not staircased at level 0.
    fields = np.stack([tissue, eosin, haem])
    fields = ndimage.gaussian_filter(fields, (0, 0.7, 0.7), mode="nearest").astype(np.float32)
    return _Scene(
        width, height, mpp, tissue, torch.from_numpy(fields), nuclei, texture,
        torch.from_numpy(np.tile(texture, reps)), torch.from_numpy(np.tile(noise, reps)),
    )


def _place_nuclei(rng: np.random.Generator, region: np.ndarray, mpp: float, width: int, height: int) -> np.ndarray:
    """Jittered grids per class, kept where the region matches, then thinned to a minimum rim gap."""
    rows = []
    for k, name in enumerate(CLASS_NAMES):
        kind = _NUCLEUS_KINDS[name]
        sp = float(kind["spacing_um"]) / mpp  # type: ignore[arg-type]
        gy, gx = np.mgrid[sp / 2 : height : sp, sp / 2 : width : sp]
        y = gy.ravel() + rng.uniform(-0.3, 0.3, gy.size) * sp
        x = gx.ravel() + rng.uniform(-0.3, 0.3, gx.size) * sp
        ok = (x > 0) & (y > 0) & (x < width) & (y < height)
        x, y = x[ok], y[ok]
        cls = region[(y // TRUTH_CELL_PX).astype(int), (x // TRUTH_CELL_PX).astype(int)]
        keep = cls == k
        if name == "stromal":
            keep &= rng.uniform(size=x.size) < _STROMA_KEEP
        x, y = x[keep], y[keep]
        n = x.size
        lo, hi = kind["major_um"]  # type: ignore[misc]
        major = rng.uniform(lo, hi, n) / mpp
        rlo, rhi = kind["ratio"]  # type: ignore[misc]
        minor = major * rng.uniform(rlo, rhi, n)
        olo, ohi = kind["od"]  # type: ignore[misc]
        rows.append(
            np.column_stack(
                [x, y, major / 2, minor / 2, rng.uniform(0, np.pi, n), rng.uniform(olo, ohi, n), np.full(n, k)]
            )
        )
    nuc = np.concatenate(rows) if rows else np.zeros((0, 7))
    # Nuclei must stay inside the slide and clear of each other (rim gap >= _GAP_UM).
    a = nuc[:, 2]
    inside = (nuc[:, 0] - a > 1) & (nuc[:, 1] - a > 1) & (nuc[:, 0] + a < width - 1) & (nuc[:, 1] + a < height - 1)
    nuc = nuc[inside]
    order = rng.permutation(len(nuc))
    nuc = nuc[order]
    tree = cKDTree(nuc[:, :2])
    gap = _GAP_UM / mpp
    max_a = float(nuc[:, 2].max()) if len(nuc) else 0.0
    removed = np.zeros(len(nuc), bool)
    for i, j in sorted(tree.query_pairs(2 * max_a + gap)):
        if removed[i] or removed[j]:
            continue
        d = float(np.hypot(*(nuc[i, :2] - nuc[j, :2])))
        if d < nuc[i, 2] + nuc[j, 2] + gap:
            removed[j] = True
    nuc = nuc[~removed]
    return nuc[np.lexsort((nuc[:, 0], nuc[:, 1]))]


def _periodic_texture(rng: np.random.Generator, period: int = 512) -> np.ndarray:
    """A periodic fibrous texture around 1.0 (multiplies stain density)."""
    fine = _smooth_noise(rng, (period, period), 1.2)
    fibres = ndimage.gaussian_filter(rng.standard_normal((period, period)).astype(np.float32), (0.8, 6.0), mode="wrap")
    fibres = (fibres - fibres.mean()) / (fibres.std() + 1e-6)
    return (1.0 + 0.12 * fine + 0.18 * fibres).astype(np.float32)


def _tissue_area_mm2(scene: _Scene) -> float:
    cell_mm = TRUTH_CELL_PX * scene.mpp / 1000.0
    gh, gw = scene.tissue.shape
    # Cells on the right/bottom border are only partly inside the slide.
    wy = np.full(gh, 1.0)
    wy[-1] = (scene.height - (gh - 1) * TRUTH_CELL_PX) / TRUTH_CELL_PX
    wx = np.full(gw, 1.0)
    wx[-1] = (scene.width - (gw - 1) * TRUTH_CELL_PX) / TRUTH_CELL_PX
    return float(np.sum((scene.tissue > 0.5) * wy[:, None] * wx[None, :]) * cell_mm * cell_mm)


# --------------------------------------------------------------------------------------------- render


def _level_tiles(scene: _Scene, d: int, lw: int, lh: int, *, seed: int) -> Iterator[np.ndarray]:
    """Tiles of one level in TIFF order (row-major), rendered strip by strip (bounded memory)."""
    rng = np.random.default_rng(seed)
    chunk_tiles = _CHUNK_TILES
    n_tx = math.ceil(lw / TILE_PX)
    # Nuclei sorted by y: find those touching a strip with searchsorted.
    ys = scene.nuclei[:, 1]
    for ty in range(math.ceil(lh / TILE_PX)):
        y0 = ty * TILE_PX
        lo = np.searchsorted(ys, (y0 - 1) * d - 64 / scene.mpp)
        hi = np.searchsorted(ys, (y0 + TILE_PX + 1) * d + 64 / scene.mpp)
        strip_nuclei = scene.nuclei[lo:hi]
        for cx in range(0, n_tx, chunk_tiles):
            x0 = cx * TILE_PX
            ncols = min(chunk_tiles, n_tx - cx) * TILE_PX
            block = _render_block(scene, d, x0, y0, ncols, TILE_PX, strip_nuclei, rng)
            for k in range(ncols // TILE_PX):
                yield block[:, k * TILE_PX : (k + 1) * TILE_PX]


def _upsample_fields(scene: _Scene, d: int, x0: int, y0: int, w: int, h: int) -> torch.Tensor:
    """Bilinear samples of the scene fields (tissue, eosin, haem) at the level-d pixel centres of a block.

    Equals sampling the global bilinear interpolant (cell centres, edges clamped): the block is cut from
    the cell grid with a margin, edge-padded, upsampled with ``F.interpolate(align_corners=False)`` and
    cropped. This is ~10x faster than per-pixel gathers on these 2-core machines.
    """
    s = TRUTH_CELL_PX / d  # level-d pixels per cell (32, 8, 2, 0.5 ...)
    m = max(1, math.ceil(1 / s))  # margin in cells so that m * s is a whole number of pixels
    c0y, c0x = y0 * d // TRUTH_CELL_PX, x0 * d // TRUTH_CELL_PX  # blocks start on cell boundaries
    ny, nx = math.ceil(h / s), math.ceil(w / s)
    gh, gw = scene.fields.shape[1:]
    iy = np.clip(np.arange(c0y - m, c0y + ny + m), 0, gh - 1)
    ix = np.clip(np.arange(c0x - m, c0x + nx + m), 0, gw - 1)
    patch = scene.fields[:, iy][:, :, ix]
    out_h, out_w = round(len(iy) * s), round(len(ix) * s)
    up = F.interpolate(patch[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    off = round(m * s)
    return up[:, off : off + h, off : off + w]


def _render_block(
    scene: _Scene, d: int, x0: int, y0: int, w: int, h: int, nuclei: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """RGB uint8 block of level ``d`` pixels [y0:y0+h, x0:x0+w]."""
    per = scene.texture.shape[0]
    ny0 = int(rng.integers(per))
    noise = scene.noise_wide[ny0 : ny0 + h, x0 % per : x0 % per + w]
    fields = _upsample_fields(scene, d, x0, y0, w, h)
    out = torch.empty((h, w, 3), dtype=torch.uint8)
    if not bool((fields[0] > 0.01).any()):
        for c in range(3):
            out[..., c] = (255.0 * math.exp(-_LN10 * float(_GLASS_OD[c])) + noise).clamp_(0, 255)
        return out.numpy()
    tex = scene.texture_wide[y0 % per : y0 % per + h, x0 % per : x0 % per + w]
    eos = fields[1] * tex
    hae = fields[2] * (2.0 - tex)
    nuc = np.zeros((h, w), np.float32)
    _draw_nuclei(nuc, nuclei, d, x0, y0, tex.numpy())
    nuc_h = torch.from_numpy(nuc)
    eos *= 1.0 - 0.6 * nuc_h.clamp(max=1.0)
    hae += nuc_h
    for c in range(3):
        # Beer-Lambert: I = 255 * 10^-(OD) per channel.
        od = hae * (_LN10 * float(_H_OD[c])) + eos * (_LN10 * float(_E_OD[c])) + _LN10 * float(_GLASS_OD[c])
        out[..., c] = od.neg_().exp_().mul_(255.0).add_(noise).clamp_(0, 255)
    return out.numpy()


def _draw_nuclei(out: np.ndarray, nuclei: np.ndarray, d: int, x0: int, y0: int, tex: np.ndarray) -> None:
    """Add soft-edged elliptical nuclei (haematoxylin optical density) into ``out`` (level-d pixels)."""
    h, w = out.shape
    for x, y, a, b, th, od, _k in nuclei:
        # Nucleus geometry in this level's pixel units.
        xl, yl, al, bl = x / d - x0 - 0.5, y / d - y0 - 0.5, a / d, b / d
        r = al + 1.5
        i0, i1 = max(0, int(yl - r)), min(h, int(yl + r) + 2)
        j0, j1 = max(0, int(xl - r)), min(w, int(xl + r) + 2)
        if i0 >= i1 or j0 >= j1:
            continue
        dy = np.arange(i0, i1, dtype=np.float32)[:, None] - yl
        dx = np.arange(j0, j1, dtype=np.float32)[None, :] - xl
        c, s = math.cos(th), math.sin(th)
        u = (dx * c + dy * s) / al
        v = (-dx * s + dy * c) / bl
        rho = np.sqrt(u * u + v * v)
        # Distance to the rim in pixels (approximately), soft over ~1 pixel; rim slightly darker.
        dist = (1.0 - rho) * bl
        profile = np.clip(dist + 0.5, 0.0, 1.0)
        shade = od * (0.85 + 0.25 * rho) * (1.6 - 0.6 * tex[i0:i1, j0:j1])
        np.maximum(out[i0:i1, j0:j1], profile * shade, out=out[i0:i1, j0:j1])


# --------------------------------------------------------------------------------------------- truth


def _write_truth(
    out: Path, scene: _Scene, seed: int, downsamples: list[int], dims: tuple[tuple[int, int], ...]
) -> tuple[Path, Path, Path]:
    csv_path, geojson_path, truth_path = truth_paths(out)
    mpp = scene.mpp
    nuc = scene.nuclei
    with open(csv_path, "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(
            ["id", "x_px", "y_px", "x_um", "y_um", "class", "major_axis_um", "minor_axis_um", "angle_deg",
             "area_um2", "haematoxylin_od"]
        )
        for i, (x, y, a, b, th, od, k) in enumerate(nuc):
            wr.writerow(
                [i, f"{x:.2f}", f"{y:.2f}", f"{x * mpp:.3f}", f"{y * mpp:.3f}", CLASS_NAMES[int(k)],
                 f"{2 * a * mpp:.3f}", f"{2 * b * mpp:.3f}", f"{math.degrees(th):.2f}",
                 f"{math.pi * a * b * mpp * mpp:.3f}", f"{od:.3f}"]
            )
    # QuPath-style GeoJSON, streamed feature by feature (level-0 pixel coordinates).
    t = np.linspace(0, 2 * np.pi, 17)[:-1]
    with open(geojson_path, "w") as fh:
        fh.write('{"type": "FeatureCollection", "features": [\n')
        for i, (x, y, a, b, th, _od, k) in enumerate(nuc):
            px = x + a * np.cos(t) * math.cos(th) - b * np.sin(t) * math.sin(th)
            py = y + a * np.cos(t) * math.sin(th) + b * np.sin(t) * math.cos(th)
            ring = [[round(float(u), 1), round(float(v), 1)] for u, v in zip(px, py)]
            ring.append(ring[0])
            name = CLASS_NAMES[int(k)]
            feat = {
                "type": "Feature",
                "id": f"truth-{i}",
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {
                    "objectType": "detection",
                    "classification": {"name": name, "color": list(CLASS_COLOURS[name])},
                    "measurements": {"area_um2": round(math.pi * a * b * mpp * mpp, 3)},
                },
            }
            fh.write(("," if i else "") + json.dumps(feat) + "\n")
        fh.write("]}\n")
    area = _tissue_area_mm2(scene)
    truth = {
        "width_px": scene.width,
        "height_px": scene.height,
        "mpp": mpp,
        "seed": seed,
        "level_downsamples": downsamples,
        "level_dimensions": [list(x) for x in dims],
        "tissue_area_mm2": area,
        "tissue_cell_px": TRUTH_CELL_PX,
        "n_nuclei": int(len(nuc)),
        "nuclei_per_class": {name: int(np.sum(nuc[:, 6] == k)) for k, name in enumerate(CLASS_NAMES)},
        "nuclei_density_per_mm2": len(nuc) / area if area > 0 else 0.0,
        "class_names": list(CLASS_NAMES),
    }
    truth_path.write_text(json.dumps(truth, indent=2) + "\n")
    return csv_path, geojson_path, truth_path


def load_truth_nuclei(out_path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read the ground-truth CSV written next to a synthetic slide into arrays.

    Returns a dict with ``x_px``, ``y_px``, ``area_um2`` (float arrays) and ``class`` (str array).
    """
    csv_path = truth_paths(out_path)[0]
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {
        "x_px": np.array([float(r["x_px"]) for r in rows]),
        "y_px": np.array([float(r["y_px"]) for r in rows]),
        "area_um2": np.array([float(r["area_um2"]) for r in rows]),
        "class": np.array([r["class"] for r in rows]),
    }
