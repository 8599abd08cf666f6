"""A tile grid at a target µm/px, with overlap, restricted to tissue.

Tiles are ``tile_px`` square at the target resolution and step by ``tile_px - overlap_px``. Each tile
owns a *core*: the ``stride`` x ``stride`` square in its middle. Cores partition the plane, so an object
whose centre falls in the core of the tile that found it is counted exactly once, and it is whole in
that tile as long as it is smaller than ``overlap_px`` (at the target resolution).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from zeroclick.imaging.errors import InvalidInputError

SAME_RESOLUTION_TOLERANCE = 0.05  # a level within 5% of the target µm/px is read without resampling


@dataclass(frozen=True)
class Tile:
    """One tile: where to read it and which part of it it owns (all boxes in level-0 pixels)."""

    index: int
    col: int
    row: int
    x0: float  # level-0 origin of the tile
    y0: float
    core_x0: float
    core_y0: float
    core_x1: float
    core_y1: float


@dataclass(frozen=True)
class TileGrid:
    """The tiles to analyse, and how to read them from the slide."""

    tiles: tuple[Tile, ...]
    target_mpp: float
    tile_px: int  # at the target resolution
    overlap_px: int
    level: int  # pyramid level read
    level_downsample: float
    read_px: int  # pixels read at ``level`` per tile side (resized to tile_px when != tile_px)
    scale0: float  # level-0 pixels per target pixel
    n_cols: int = 0  # grid columns / rows over the whole slide (tissue or not)
    n_rows: int = 0

    @property
    def stride_px(self) -> int:
        return self.tile_px - self.overlap_px

    def __len__(self) -> int:
        return len(self.tiles)

    def level_origin(self, tile: Tile) -> tuple[int, int]:
        """The tile's origin in level-0 pixels, rounded to whole pixels of the level read."""
        ds = self.level_downsample
        return int(round(tile.x0 / ds) * ds), int(round(tile.y0 / ds) * ds)


def tile_grid(
    dimensions: tuple[int, int],
    level_downsamples: tuple[float, ...],
    mpp0: float,
    *,
    target_mpp: float,
    level: int,
    tile_px: int = 512,
    overlap_px: int = 64,
    tissue=None,
    min_tissue_fraction: float = 0.02,
) -> TileGrid:
    """Tiles covering the slide (or its tissue) at ``target_mpp``.

    Parameters
    ----------
    dimensions
        Level-0 (width, height).
    level_downsamples, level
        The pyramid, and the level to read (see ``Slide.best_level_for_mpp``).
    mpp0
        µm/px at level 0.
    tissue
        A :class:`zeroclick.imaging.slide.tissue.TissueMask`; tiles whose core holds less than
        ``min_tissue_fraction`` tissue are left out.
    """
    if tile_px <= 0 or not (0 <= overlap_px < tile_px) or overlap_px % 2:
        raise InvalidInputError(
            f"tile_px={tile_px}, overlap_px={overlap_px}: need 0 <= overlap < tile and an even overlap"
        )
    w0, h0 = dimensions
    ds = level_downsamples[level]
    if abs(target_mpp / (mpp0 * ds) - 1.0) <= SAME_RESOLUTION_TOLERANCE:
        target_mpp = mpp0 * ds  # e.g. 0.499 µm/px read as is for a 0.5 target: no resampling
    scale0 = target_mpp / mpp0  # level-0 pixels per target pixel
    read_px = int(round(tile_px * scale0 / ds))
    stride = tile_px - overlap_px
    half = overlap_px // 2
    n_cols = math.ceil(w0 / (stride * scale0))
    n_rows = math.ceil(h0 / (stride * scale0))
    tiles: list[Tile] = []
    for r in range(n_rows):
        for c in range(n_cols):
            cx0, cy0 = c * stride * scale0, r * stride * scale0
            cx1, cy1 = min(w0, (c + 1) * stride * scale0), min(h0, (r + 1) * stride * scale0)
            if tissue is not None and tissue.fraction_in(cx0, cy0, cx1, cy1) < min_tissue_fraction:
                continue
            tiles.append(
                Tile(
                    index=len(tiles), col=c, row=r,
                    x0=cx0 - half * scale0, y0=cy0 - half * scale0,
                    core_x0=cx0, core_y0=cy0, core_x1=cx1, core_y1=cy1,
                )
            )
    return TileGrid(
        tiles=tuple(tiles), target_mpp=target_mpp, tile_px=tile_px, overlap_px=overlap_px, level=level,
        level_downsample=float(ds), read_px=read_px, scale0=scale0, n_cols=n_cols, n_rows=n_rows,
    )


def in_core(tile: Tile, x0: np.ndarray, y0: np.ndarray) -> np.ndarray:
    """Which level-0 points lie in the tile's core (half-open box)."""
    return (x0 >= tile.core_x0) & (x0 < tile.core_x1) & (y0 >= tile.core_y0) & (y0 < tile.core_y1)
