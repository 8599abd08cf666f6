"""Whole-slide images: open (OpenSlide + direct-tile fast path), tissue, tile grids and prefetching readers.

Names are imported on first use (PEP 562), so ``zeroclick.imaging.slide.open`` alone stays light: the
command line checks a slide's µm/px in about a second before it loads scikit-image and torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "CorruptTileError": "fastread", "TiffTileReader": "fastread", "gpu_jpeg_available": "fastread",
    "MissingMppError": "open", "Slide": "open", "SlideMeta": "open", "UnsupportedSlideError": "open",
    "open_slide": "open",
    "CachedTileAssembler": "reader", "TileBatch": "reader", "TileRead": "reader", "TileReader": "reader",
    "default_workers": "reader", "read_tile": "reader",
    "Tile": "tiles", "TileGrid": "tiles", "in_core": "tiles", "tile_grid": "tiles",
    "TissueMask": "tissue", "TissueParams": "tissue", "detect_tissue": "tissue", "detect_tissue_rgb": "tissue",
}

if TYPE_CHECKING:
    from zeroclick.imaging.slide.fastread import CorruptTileError, TiffTileReader, gpu_jpeg_available
    from zeroclick.imaging.slide.open import (
        MissingMppError,
        Slide,
        SlideMeta,
        UnsupportedSlideError,
        open_slide,
    )
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


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))

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
