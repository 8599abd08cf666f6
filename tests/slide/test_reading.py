"""Issue 6 (reading): OpenSlide + direct-tile fast path, MPP handling, levels, tissue, tile grid, reader."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from zeroclick.imaging.errors import SlideUnreadableError
from zeroclick.imaging.slide import (
    CorruptTileError,
    MissingMppError,
    TileReader,
    UnsupportedSlideError,
    detect_tissue,
    in_core,
    open_slide,
    read_tile,
    tile_grid,
)


def test_synthetic_slide_opens_with_fast_path(small_slide):
    with open_slide(small_slide.path) as slide:
        assert slide.meta.vendor == "aperio"
        assert slide.meta.mpp_x == pytest.approx(0.25) and slide.meta.mpp_source == "slide"
        assert slide.meta.fast_path and slide.meta.fast_path_max_diff <= 2
        assert slide.meta.level_count == 2


def test_issue_6_fast_path_matches_openslide_on_real_svs(shared_data):
    with open_slide(shared_data / "slides" / "CMU-1-Small-Region.svs") as slide:
        assert slide.has_fast_path
        w, h = slide.meta.dimensions
        fast = slide.read_region(0, 0, 0, w, h, fast=True).astype(np.int16)
        ref = slide.read_region_openslide(0, 0, 0, w, h).astype(np.int16)
        assert fast.shape == ref.shape == (h, w, 3)
        assert np.abs(fast - ref).max() <= 2
        # An unaligned window crossing tile borders and the right edge of the slide.
        a = slide.read_region(w - 300, 100, 0, 500, 333, fast=True).astype(np.int16)
        b = slide.read_region_openslide(w - 300, 100, 0, 500, 333).astype(np.int16)
        assert np.abs(a - b).max() <= 2


def test_best_level_for_mpp(small_slide):
    with open_slide(small_slide.path) as slide:  # levels: 0.25 and 1.0 µm/px
        assert slide.best_level_for_mpp(0.25) == 0
        assert slide.best_level_for_mpp(0.5) == 0
        assert slide.best_level_for_mpp(1.0) == 1
        assert slide.best_level_for_mpp(4.0) == 1


def _tiff_without_mpp(path):
    rng = np.random.default_rng(0)
    img = rng.integers(100, 200, (1024, 1024, 3), dtype=np.uint8)
    tifffile.imwrite(path, img, tile=(256, 256), compression="jpeg", metadata=None)


def test_missing_mpp_is_a_clear_error_unless_given(tmp_path):
    path = tmp_path / "nompp.tiff"
    _tiff_without_mpp(path)
    with pytest.raises(MissingMppError, match="mpp="):
        open_slide(path)
    with open_slide(path, mpp=0.5) as slide:
        assert slide.meta.mpp_x == 0.5 and slide.meta.mpp_source == "user"


def test_unreadable_and_unsupported(tmp_path):
    with pytest.raises(SlideUnreadableError, match="not found"):
        open_slide(tmp_path / "missing.svs")
    text = tmp_path / "notes.txt"
    text.write_text("not a slide")
    with pytest.raises(UnsupportedSlideError):
        open_slide(text)
    truncated = tmp_path / "trunc.svs"
    truncated.write_bytes(b"II*\x00" + b"\x00" * 10)
    with pytest.raises(SlideUnreadableError):
        open_slide(truncated)


def test_tissue_detection_matches_truth_area(small_slide):
    with open_slide(small_slide.path) as slide:
        tissue = detect_tissue(slide)
    assert tissue.area_mm2 == pytest.approx(small_slide.tissue_area_mm2, rel=0.15)
    polys = tissue.polygons()
    assert polys and all(len(ring) >= 4 and ring[0] == ring[-1] for poly in polys for ring in poly)


def test_tile_cores_partition_the_slide(small_slide):
    with open_slide(small_slide.path) as slide:
        grid = tile_grid(slide.meta.dimensions, slide.meta.level_downsamples, 0.25, target_mpp=0.5, level=0,
                         tile_px=256, overlap_px=32)
    w, h = small_slide.width_px, small_slide.height_px
    rng = np.random.default_rng(1)
    xs, ys = rng.uniform(0, w, 5000), rng.uniform(0, h, 5000)
    owners = sum(in_core(t, xs, ys).astype(int) for t in grid.tiles)
    assert np.all(owners == 1)
    assert grid.read_px == 512 and grid.scale0 == 2.0


def test_reader_processes_match_serial_reads(small_slide):
    with open_slide(small_slide.path) as slide:
        tissue = detect_tissue(slide)
        grid = tile_grid(slide.meta.dimensions, slide.meta.level_downsamples, 0.25, target_mpp=1.0, level=1,
                         tile_px=128, overlap_px=16, tissue=tissue)
        assert 0 < len(grid) < 42  # tissue restricts the grid (42 tiles cover the whole slide)
        parallel = {r.tile.index: r.rgb for r in TileReader(slide, grid, workers=2, prefetch=4)}
        assert sorted(parallel) == list(range(len(grid)))
        for t in grid.tiles[:: max(1, len(grid) // 5)]:
            assert np.array_equal(parallel[t.index], read_tile(slide, grid, t))


def test_issue_6_corrupt_tile_is_reported_and_skipped(small_slide, tmp_path):
    bad = tmp_path / "corrupt.tiff"
    shutil.copy(small_slide.path, bad)
    with tifffile.TiffFile(bad) as tif:
        page = tif.pages[0]
        tiles_across = -(-page.imagewidth // page.tilewidth)
        index = 2 * tiles_across + 9  # tile (9, 2): off the verification diagonal
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(bad, "r+b") as fh:
        fh.seek(offset + 2)
        fh.write(b"\x00\xff" * ((count - 4) // 2))
    with open_slide(bad) as slide:
        assert slide.has_fast_path
        with pytest.raises(CorruptTileError):
            slide.fast_reader.decode_tile(0, 9, 2)
        grid = tile_grid(slide.meta.dimensions, slide.meta.level_downsamples, 0.25, target_mpp=0.25, level=0,
                         tile_px=256, overlap_px=0)
        reads = list(TileReader(slide, grid, workers=0))
    failed = [r for r in reads if r.error]
    assert len(failed) == 1 and failed[0].rgb is None and (failed[0].tile.col, failed[0].tile.row) == (9, 2)
    assert all(r.rgb is not None for r in reads if not r.error)
