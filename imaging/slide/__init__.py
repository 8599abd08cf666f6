"""Whole-slide images: open (OpenSlide + direct-tile fast path), tissue, tile grids and prefetching readers."""

from zeroclick.imaging.slide.fastread import CorruptTileError, TiffTileReader, gpu_jpeg_available
from zeroclick.imaging.slide.open import MissingMppError, Slide, SlideMeta, UnsupportedSlideError, open_slide
from zeroclick.imaging.slide.reader import (
    CachedTileAssembler,
    TileBatch,
    TileRead,
    TileReader,
    default_workers,
    read_tile,
)
from zeroclick.imaging.slide.tiles import Tile, TileGrid, in_core, tile_grid
from zeroclick.imaging.slide.tissue import TissueMask, TissueParams, detect_tissue, detect_tissue_rgb

__all__ = [
    "CachedTileAssembler",
    "CorruptTileError",
    "MissingMppError",
    "Slide",
    "SlideMeta",
    "TiffTileReader",
    "Tile",
    "TileBatch",
    "TileGrid",
    "TileRead",
    "TileReader",
    "TissueMask",
    "TissueParams",
    "UnsupportedSlideError",
    "default_workers",
    "detect_tissue",
    "detect_tissue_rgb",
    "gpu_jpeg_available",
    "in_core",
    "open_slide",
    "read_tile",
    "tile_grid",
]
