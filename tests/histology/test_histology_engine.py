"""Issue 6 (classical engine speed-ups): each own implementation gives what the library function it replaces gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.draw import disk, ellipse
from skimage.measure import regionprops

from zeroclick.imaging.slide.tiles import Tile, TileGrid
from zeroclick.pipelines.histology.nuclei import (
    NUCLEUS_COLUMNS,
    ClassicalEngine,
    NucleiParams,
    binary_open3,
    box_mean,
    fill_object_holes,
    measure_nuclei,
    refine_band,
)
from zeroclick.pipelines.histology.stains import ruifrok

C = {name: i for i, name in enumerate(NUCLEUS_COLUMNS)}


def _random_masks(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = ndimage.uniform_filter(rng.random((3, 96, 80)), size=(1, 5, 5))
    return noise > np.quantile(noise, 0.6)


def test_binary_open3_equals_scipy_opening():
    masks = _random_masks(0)
    ours = binary_open3(masks)
    for m, o in zip(masks, ours):
        assert np.array_equal(o, ndimage.binary_opening(m, structure=np.ones((3, 3), bool)))


@pytest.mark.parametrize("k", [3, 5])
def test_box_mean_equals_uniform_filter(k):
    h = np.random.default_rng(1).random((2, 40, 33)).astype(np.float32)
    ref = ndimage.uniform_filter(h, size=(1, k, k), mode="nearest")
    assert np.allclose(box_mean(h, k), ref, atol=1e-6)


def test_object_holes_filled_as_scipy_fills_each_object():
    for m in _random_masks(2):
        labels, n = ndimage.label(m)
        expected = np.zeros_like(m)
        for i in range(1, n + 1):
            expected |= ndimage.binary_fill_holes(labels == i)
        assert (n > 10) and not np.array_equal(expected, m)  # the masks have holes to fill
        fg = fill_object_holes(labels, np.flatnonzero(labels))
        assert np.array_equal(labels > 0, expected)
        assert np.array_equal(fg, np.flatnonzero(expected))


def test_measurements_match_regionprops_and_geometry():
    labels = np.zeros((120, 140), np.int32)
    labels[ellipse(40, 50, 12, 20, rotation=0.4, shape=labels.shape)] = 1
    labels[disk((90, 100), 15, shape=labels.shape)] = 2
    labels[100:110, 10:20] = 3  # a 10 x 10 square: 40 pixel edges
    hae = np.random.default_rng(3).random(labels.shape).astype(np.float32)
    table = measure_nuclei(labels, 3, hae, 0.5)
    for row, rp in zip(table, regionprops(labels)):
        assert row[C["area_um2"]] == pytest.approx(rp.area * 0.25)
        assert (row[C["y_px"]], row[C["x_px"]]) == pytest.approx(rp.centroid)
        # Axes: pixels are unit squares here (+1/12 variance), points in regionprops: < 1% apart.
        assert row[C["major_axis_um"]] == pytest.approx(rp.axis_major_length * 0.5, rel=0.01)
        assert row[C["minor_axis_um"]] == pytest.approx(rp.axis_minor_length * 0.5, rel=0.01)
        assert row[C["eccentricity"]] == pytest.approx(rp.eccentricity, abs=0.01)
        assert row[C["mean_haematoxylin"]] == pytest.approx(hae[labels == rp.label].mean(), rel=1e-5)
        assert row[C["solidity"]] == pytest.approx(rp.solidity, abs=0.06)
    assert table[2, C["perimeter_um"]] == pytest.approx(40 * np.pi / 4 * 0.5)
    assert table[1, C["perimeter_um"]] == pytest.approx(2 * np.pi * 15 * 0.5, rel=0.05)  # a disc of radius 15


def _one_tile_grid(size: int) -> tuple[Tile, TileGrid]:
    tile = Tile(index=0, col=0, row=0, x0=0.0, y0=0.0, core_x0=0.0, core_y0=0.0, core_x1=size, core_y1=size)
    grid = TileGrid(tiles=(tile,), target_mpp=0.5, tile_px=size, overlap_px=0, level=0, level_downsample=1.0,
                    read_px=size, scale0=1.0, n_cols=1, n_rows=1)
    return tile, grid


def test_touching_nuclei_are_split_and_single_ones_are_not():
    # Two touching discs (radius 8 px = 4 µm at 0.5 µm/px) and one lone ellipse, as a threshold mask.
    mask = np.zeros((96, 96), bool)
    mask[disk((30, 30), 8)] = True
    mask[disk((30, 46), 8)] = True
    mask[ellipse(70, 60, 6, 9)] = True
    hae = np.where(mask, 1.0, 0.0).astype(np.float32)
    engine = ClassicalEngine(ruifrok(), 0.5)
    tile, grid = _one_tile_grid(96)
    result = engine.segment_tile(tile, hae, mask, grid)
    assert len(result.table) == 3
    xs = np.sort(result.table[:, C["x_px"]])
    assert xs == pytest.approx([30.5, 46.5, 60.5], abs=1.0)  # level-0 = tile pixels + 0.5 here


def test_cpu_deconvolution_equals_the_per_channel_formula():
    from zeroclick.pipelines.histology.stains import haematoxylin_luts

    rgb = np.random.default_rng(4).integers(0, 256, (2, 40, 72, 3), dtype=np.uint8)[:, :, ::2]  # not contiguous
    engine = ClassicalEngine(ruifrok(), 0.5)
    lut = haematoxylin_luts(ruifrok())
    ref = ndimage.uniform_filter(lut[0][rgb[..., 0]] + lut[1][rgb[..., 1]] + lut[2][rgb[..., 2]], size=(1, 3, 3),
                                 mode="nearest")
    hae, mask = engine.foreground(rgb)
    assert np.allclose(hae, ref, atol=1e-5)
    plain = ClassicalEngine(ruifrok(), 0.5, params=NucleiParams(local_contrast_fraction=0.0))
    assert np.array_equal(plain.foreground(rgb)[1], hae > engine.threshold)
    # The local-contrast rule only removes pixels: above the mean of their 24 µm surroundings by 0.1.
    assert not (mask & ~(hae > engine.threshold)).any()
    window = ndimage.uniform_filter(hae, size=(1, 48, 48), mode="nearest")
    clear = (hae > window + 0.3) & (hae > engine.threshold)  # far above any window mean: kept
    assert mask[clear].all()


def test_torch_foreground_path_matches_the_numpy_one_on_cpu_torch():
    # The GPU path (torch ops), run on CPU torch: same haematoxylin inside, same mask almost everywhere.
    rgb = np.random.default_rng(6).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    engine = ClassicalEngine(ruifrok(), 0.5)
    hae, mask = engine.foreground(rgb)
    hae_t, mask_t = engine.foreground_torch(rgb, torch.device("cpu"))
    assert hae_t.shape == hae.shape and mask_t.dtype == bool
    assert np.allclose(hae_t[:, 1:-1, 1:-1], hae[:, 1:-1, 1:-1], atol=1e-5)
    assert np.mean(mask_t != mask) < 0.02


def test_issue_12_a_bent_spindle_is_not_cut_but_two_touching_discs_are():
    # With the h-maxima rule (cut only at necks 0.5 µm deep): a long thin bent capsule (3 µm wide, 20 µm
    # long) stays one nucleus, and two touching discs (a 4 µm deep neck) still part.
    mask = np.zeros((96, 96), bool)
    for x in range(20, 60):
        y = 30 + int(round(0.002 * (x - 40) ** 2))
        mask[y - 3:y + 3, x] = True
    mask[disk((70, 30), 8)] = True
    mask[disk((70, 46), 8)] = True
    hae = np.where(mask, 1.0, 0.0).astype(np.float32)
    tile, grid = _one_tile_grid(96)
    result = ClassicalEngine(ruifrok(), 0.5).segment_tile(tile, hae, mask, grid)
    ys = np.sort(result.table[:, C["y_px"]])
    assert len(result.table) == 3 and ys[0] < 40 < ys[1]  # the spindle once, the discs twice


def test_issue_12_objects_keep_their_dark_core_not_their_pale_blur():
    from zeroclick.pipelines.histology.nuclei import trim_objects

    # A dark disc (H 1.0, radius 6) inside a pale halo (H 0.5, radius 9), and a small pale object left alone.
    hae = np.zeros((40, 60), np.float32)
    hae[disk((20, 20), 9)] = 0.5
    hae[disk((20, 20), 6)] = 1.0
    hae[disk((20, 48), 3)] = 0.4
    labels, n = ndimage.label(hae > 0)
    trimmed, m = trim_objects(labels, n, hae, 0.75, min_area_px=100)
    assert m == 2
    assert (trimmed[disk((20, 20), 9)] > 0).sum() == len(disk((20, 20), 6)[0])  # halo gone: mean 0.72 x 0.75 > 0.5
    assert (trimmed[disk((20, 48), 3)] > 0).all()  # 29 px < 100: untouched


def test_issue_12_boundary_band_takes_the_outline_from_the_unsmoothed_mask_only_near_it():
    # Detection mask: a disc of radius 10 px. The unsmoothed mask says radius 10.9 on the left half and 9
    # on the right half, is pale deep inside, and has a speck 6 px outside the disc: the outline follows
    # it within one pixel, the inside (deeper than one pixel) stays whole and the far speck stays out.
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(yy - 32, xx - 32)
    mask = (r <= 10)[None]
    edges = np.where(xx < 32, r <= 10.9, r <= 9)
    edges[32, 48] = True  # 16 px from the centre: 6 px outside the disc
    edges[27:38, 27:38] = False  # pale deep inside (r < 8)
    out = refine_band(mask, edges[None], 1)[0]
    left, right = out[:, :32], out[:, 32:]
    assert np.array_equal(left & (r[:, :32] > 9.5), (r[:, :32] <= 10.9) & (r[:, :32] > 9.5))
    assert not (right & (r[:, 32:] > 9.5)).any() and right[r[:, 32:] <= 9].all()
    assert not out[32, 48]
    assert out[30:35, 30:35].all()  # deep inside: from the detection mask, not the pale stripe


def test_issue_12_torch_path_gives_the_same_outline_pixels_as_numpy():
    rgb = np.random.default_rng(7).integers(0, 256, (2, 48, 40, 3), dtype=np.uint8)
    engine = ClassicalEngine(ruifrok(), 0.5)
    _, _, edges = engine.foreground_with_edges(rgb)
    _, _, edges_t = engine._foreground_torch(rgb, torch.device("cpu"))
    assert edges.shape == edges_t.shape and np.mean(edges != edges_t) < 0.02
    off = ClassicalEngine(ruifrok(), 0.5, params=NucleiParams(boundary_band_um=0))
    assert off.foreground_with_edges(rgb)[2] is None
