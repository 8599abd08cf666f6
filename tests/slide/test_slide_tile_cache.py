"""Issue 6 (reading speed): tiles assembled from the decoded-tile cache are the tiles read_tile gives."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile

from zeroclick.imaging.errors import AnalysisError
from zeroclick.imaging.slide import TileReader, detect_tissue, open_slide, read_tile, tile_grid
from zeroclick.imaging.slide.reader import CachedTileAssembler


def _grid(slide, target_mpp, tile_px, overlap_px, tissue=None):
    mpp0 = slide.meta.mpp_x
    return tile_grid(slide.meta.dimensions, slide.meta.level_downsamples, mpp0, target_mpp=target_mpp,
                     level=slide.best_level_for_mpp(target_mpp), tile_px=tile_px, overlap_px=overlap_px,
                     tissue=tissue)


@pytest.fixture(scope="module")
def odd_slide(tmp_path_factory):
    """A 1001 x 777 JPEG tiled TIFF (edges not on tile or 2-pixel boundaries)."""
    path = tmp_path_factory.mktemp("odd") / "odd.tiff"
    rng = np.random.default_rng(5)
    img = ndimage_smooth(rng.integers(0, 255, (777, 1001, 3), dtype=np.uint8))
    tifffile.imwrite(path, img, tile=(256, 256), compression="jpeg", metadata=None)
    return path


def ndimage_smooth(img: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.uniform_filter(img, size=(5, 5, 1))


@pytest.mark.parametrize("target_mpp, tile_px, overlap_px", [(0.5, 128, 16), (0.25, 200, 24), (0.4, 100, 10)])
def test_cached_tiles_equal_read_tile_at_the_edges(odd_slide, target_mpp, tile_px, overlap_px):
    # 0.5: whole factor 2 (cached, reduced); 0.25: factor 1 (cached); 0.4: 1.6 (falls back to read_tile).
    with open_slide(odd_slide, mpp=0.25) as slide:
        assert slide.has_fast_path
        grid = _grid(slide, target_mpp, tile_px, overlap_px)
        assembler = CachedTileAssembler(slide, grid)
        assert assembler.enabled == (target_mpp != 0.4)
        for tile in grid.tiles:
            assert np.array_equal(assembler.read(tile), read_tile(slide, grid, tile))
        if assembler.enabled:  # overlapping tiles share decoded slide tiles: each decoded once
            lay = slide.fast_reader.levels[0]
            assert assembler.decoded == lay.tiles_across * lay.tiles_down == 16
            assert assembler.requested > assembler.decoded


def test_map_batches_in_workers_equals_serial(small_slide):
    with open_slide(small_slide.path) as slide:
        grid = _grid(slide, 0.5, 256, 32, tissue=detect_tissue(slide))
        assert len(grid) > 8

        def means(tiles, rgb):
            return [(t.index, float(rgb[k].mean())) for k, t in enumerate(tiles)]

        parallel = dict(x for b in TileReader(slide, grid, workers=2, chunk=3).map_batches(means) for x in b.result)
        serial = dict(x for b in TileReader(slide, grid, workers=0, chunk=5).map_batches(means) for x in b.result)
    assert sorted(parallel) == list(range(len(grid)))
    assert parallel == serial


def _boom(tiles, rgb):
    raise ValueError("engine bug")


def test_a_failing_analysis_stops_the_run_instead_of_counting_bad_tiles(small_slide):
    with open_slide(small_slide.path) as slide:
        grid = _grid(slide, 1.0, 128, 16)
        with pytest.raises(AnalysisError, match="engine bug"):
            list(TileReader(slide, grid, workers=2).map_batches(_boom))


def test_corrupt_tile_comes_back_as_failed_in_map_batches(small_slide, tmp_path):
    bad = tmp_path / "corrupt.tiff"
    shutil.copy(small_slide.path, bad)
    with tifffile.TiffFile(bad) as tif:
        page = tif.pages[0]
        index = 2 * (-(-page.imagewidth // page.tilewidth)) + 9  # level-0 tile (9, 2)
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(bad, "r+b") as fh:
        fh.seek(offset + 2)
        fh.write(b"\x00\xff" * ((count - 4) // 2))
    with open_slide(bad) as slide:
        grid = _grid(slide, 0.25, 256, 0)
        batches = list(TileReader(slide, grid, workers=2, chunk=4).map_batches(lambda tiles, rgb: len(tiles)))
    failed = [r for b in batches for r in b.failed]
    assert [(r.tile.col, r.tile.row) for r in failed] == [(9, 2)] and "could not be decoded" in failed[0].error
    assert sum(b.result or 0 for b in batches) == len(grid) - 1


def test_scaled_jpeg_decoding_stays_close_to_the_block_mean(small_slide):
    with open_slide(small_slide.path) as slide:
        grid = _grid(slide, 0.5, 256, 32, tissue=detect_tissue(slide))
        exact = CachedTileAssembler(slide, grid)
        scaled = CachedTileAssembler(slide, grid, scaled_jpeg=True)
        assert scaled.scaled and not exact.scaled
        diffs = [np.abs(exact.read(t).astype(np.int16) - scaled.read(t)) for t in grid.tiles[:6]]
    assert 0 < np.mean([d.mean() for d in diffs]) <= 2.0
    assert max(np.percentile(d, 99) for d in diffs) <= 10
