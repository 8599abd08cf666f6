"""Issue 12: slides the histology pipeline must refuse (named QC code, non-zero exit) and small full fields."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import tifffile

from zeroclick.imaging.slide.open import DpiDefaultMppError, ImplausibleMppError, open_slide
from zeroclick.pipelines.cli import main
from zeroclick.pipelines.histology import run


def _tiff(path, rgb, *, mpp=None, dpi=None):
    if mpp is not None:
        res, unit = (1e4 / mpp, 1e4 / mpp), "CENTIMETER"
    else:
        res, unit = (dpi, dpi), "INCH"
    tifffile.imwrite(path, rgb, photometric="rgb", tile=(256, 256), resolution=res, resolutionunit=unit)
    return path


def _he_like(shape=(512, 512)):
    """Pink stroma with purple discs on glass: enough colour to pass as brightfield H&E."""
    from skimage.draw import disk

    rgb = np.full(shape + (3,), 240, np.uint8)
    rgb[64:-64, 64:-64] = (230, 150, 190)
    rng = np.random.default_rng(1)
    for y, x in rng.integers(80, shape[0] - 80, (60, 2)):
        rr, cc = disk((y, x), 8, shape=shape)
        rgb[rr, cc] = (90, 60, 150)
    return rgb


def test_issue_12_bare_72_dpi_tiff_asks_for_mpp_quickly(tmp_path):
    path = _tiff(tmp_path / "screen.tif", _he_like(), dpi=72)
    t0 = time.perf_counter()
    code = main(["slide", str(path), "--out", str(tmp_path / "out")])
    assert time.perf_counter() - t0 < 5.0
    assert code == 3
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["qc"] == {"status": "refused", "code": "mpp_dpi_default"}
    assert "--mpp" in result["warnings"][0]
    with pytest.raises(DpiDefaultMppError, match="--mpp"):
        open_slide(path)
    with open_slide(path, mpp=0.5) as slide:  # the user's --mpp is taken
        assert slide.meta.mpp_source == "user"


@pytest.mark.parametrize("mpp", [0.05, 12.0])
def test_implausible_mpp_is_refused(tmp_path, mpp):
    path = _tiff(tmp_path / "odd.tif", _he_like(), mpp=mpp)
    with pytest.raises(ImplausibleMppError, match="--mpp"):
        open_slide(path)
    with pytest.raises(ImplausibleMppError):
        open_slide(_tiff(tmp_path / "ok.tif", _he_like(), mpp=0.5), mpp=mpp)


def test_issue_12_fluorescence_ndpi_is_refused(shared_data, tmp_path):
    code = main(["slide", str(shared_data / "slides" / "formats" / "fluorescence-dapi.ndpi"), "--out", str(tmp_path)])
    assert code == 3
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["qc"]["status"] == "refused" and result["qc"]["code"] == "not_brightfield_fluorescence"
    assert result["nuclei_density_per_mm2"] is None


def test_greyscale_and_ihc_are_refused(tmp_path):
    from skimage import data

    ihc = data.immunohistochemistry()  # real IHC (DAB + haematoxylin), scikit-image's sample
    res = run(_tiff(tmp_path / "ihc.tif", ihc, mpp=0.5), workers=0)
    assert res.qc["status"] == "refused" and res.qc["code"] == "not_he_ihc" and res.nuclei_count == 0
    grey = np.repeat(_he_like().mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    res = run(_tiff(tmp_path / "grey.tif", grey, mpp=0.5), workers=0)
    assert res.qc["status"] == "refused" and res.qc["code"] == "not_he_grayscale"
    res = run(_tiff(tmp_path / "he.tif", _he_like(), mpp=0.5), workers=0)
    assert res.qc["status"] == "ok" and res.qc["code"] is None and res.nuclei_count > 30


def test_slide_beyond_the_tile_bound_is_refused_before_reading(shared_data):
    res = run(shared_data / "slides" / "CMU-1-Small-Region.svs", workers=0, max_tiles=3)
    assert res.qc["status"] == "refused" and res.qc["code"] == "resource_bound"
    assert res.tiles_analysed == 0 and "max_tiles" in res.warnings[0]


def test_issue_12_small_field_full_of_tissue_is_tissue(shared_data, tmp_path):
    from zeroclick.pipelines.histology.annotations import read_rgb

    rgb = read_rgb(shared_data / "slides" / "nuclei" / "cpm15" / "image14.png")  # tissue edge to edge
    res = run(_tiff(tmp_path / "f.tif", rgb, mpp=0.25), workers=0)
    how = res.qc["tissue_detection"]
    assert res.qc["status"] == "ok" and how["method"] == "no_glass" and how["tissue_fraction"] > 0.95
    assert {"thumbnail_mpp", "saturation_threshold", "glass_fraction"} <= set(how)
