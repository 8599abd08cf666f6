"""Per-tile and per-slide features from the nuclei table and the tissue mask."""

from __future__ import annotations

import numpy as np

from zeroclick.imaging.slide.tiles import TileGrid
from zeroclick.imaging.slide.tissue import TissueMask
from zeroclick.pipelines.histology.nuclei import NUCLEUS_CLASSES, NUCLEUS_COLUMNS
from zeroclick.pipelines.histology.result import TILE_COLUMNS

_C = {name: i for i, name in enumerate(NUCLEUS_COLUMNS)}
LYMPHOCYTE = NUCLEUS_CLASSES.index("lymphocyte")
SPINDLE = NUCLEUS_CLASSES.index("spindle")


def tile_table(grid: TileGrid, analysed: set[int], nuclei: np.ndarray, tissue: TissueMask, mpp0: float) -> np.ndarray:
    """One row per analysed tile (columns :data:`TILE_COLUMNS`)."""
    rows = []
    tile_of = nuclei[:, _C["tile_index"]].astype(int) if len(nuclei) else np.zeros(0, int)
    counts = np.bincount(tile_of, minlength=len(grid))
    lymph = np.bincount(tile_of, (nuclei[:, _C["class_index"]] == LYMPHOCYTE).astype(float), minlength=len(grid))
    area_sum = np.bincount(tile_of, nuclei[:, _C["area_um2"]] if len(nuclei) else None, minlength=len(grid))
    for t in grid.tiles:
        if t.index not in analysed:
            continue
        frac = tissue.fraction_in(t.core_x0, t.core_y0, t.core_x1, t.core_y1)
        core_mm2 = (t.core_x1 - t.core_x0) * (t.core_y1 - t.core_y0) * (mpp0 / 1000.0) ** 2
        tissue_mm2 = frac * core_mm2
        n = int(counts[t.index])
        rows.append([
            t.index, t.col, t.row, t.core_x0, t.core_y0, t.core_x1, t.core_y1, frac, n,
            n / tissue_mm2 if tissue_mm2 > 0 else np.nan,
            lymph[t.index],
            area_sum[t.index] / n if n else np.nan,
            100.0 * area_sum[t.index] / (tissue_mm2 * 1e6) if tissue_mm2 > 0 else np.nan,
        ])
    return np.array(rows, dtype=np.float64).reshape(-1, len(TILE_COLUMNS))


def slide_features(nuclei: np.ndarray, tissue_area_mm2: float) -> dict[str, float | int | None]:
    """Slide-level summaries; densities per mm² of tissue, ``None`` when there is no tissue."""
    n = int(len(nuclei))
    has_tissue = tissue_area_mm2 > 0
    area = nuclei[:, _C["area_um2"]] if n else np.zeros(0)
    cls = nuclei[:, _C["class_index"]].astype(int) if n else np.zeros(0, int)
    n_lymph = int(np.sum(cls == LYMPHOCYTE))
    return {
        "nuclei_count": n,
        "nuclei_density_per_mm2": n / tissue_area_mm2 if has_tissue else None,
        "cellularity_percent": 100.0 * float(area.sum()) / (tissue_area_mm2 * 1e6) if has_tissue else None,
        "lymphocyte_count": n_lymph,
        "lymphocyte_density_per_mm2": n_lymph / tissue_area_mm2 if has_tissue else None,
        "lymphocyte_fraction_percent": 100.0 * n_lymph / n if n else None,
        "spindle_fraction_percent": 100.0 * float(np.sum(cls == SPINDLE)) / n if n else None,
        "mean_nucleus_area_um2": float(area.mean()) if n else None,
        "median_nucleus_area_um2": float(np.median(area)) if n else None,
        "mean_nucleus_eccentricity": float(nuclei[:, _C["eccentricity"]].mean()) if n else None,
    }


def density_grid(grid: TileGrid, tiles: np.ndarray) -> np.ndarray:
    """Nuclei density per mm² of tissue on the whole tile grid (rows x cols), NaN where nothing was analysed."""
    out = np.full((max(1, grid.n_rows), max(1, grid.n_cols)), np.nan)
    if len(tiles):
        col = tiles[:, TILE_COLUMNS.index("col")].astype(int)
        row = tiles[:, TILE_COLUMNS.index("row")].astype(int)
        out[row, col] = tiles[:, TILE_COLUMNS.index("nuclei_density_per_mm2")]
    return out
