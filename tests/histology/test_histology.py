"""Issue 6 (analysis and outputs): known nuclei found, real slides end to end, bad input, viewer outputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tifffile

from zeroclick.imaging.errors import ZeroClickWarning
from zeroclick.imaging.slide import MissingMppError, open_slide
from zeroclick.imaging.synthetic.slide import generate_slide, load_truth_nuclei
from zeroclick.pipelines.histology import run
from zeroclick.pipelines.histology.evaluation import match_detections


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("histo")
    info = generate_slide(d / "syn.tiff", width=3072, height=3072, mpp=0.25, seed=11)
    result = run(info.path, out_dir=d / "out", workers=2, batch_size=4)
    return info, result, d / "out"


def test_issue_6_synthetic_detection_f1_and_count(synthetic_run):
    info, result, _ = synthetic_run
    truth = load_truth_nuclei(info.path)
    pred = np.column_stack([result.nuclei.column("x_px"), result.nuclei.column("y_px")])
    score, _ = match_detections(pred, np.column_stack([truth["x_px"], truth["y_px"]]), radius=4.0 / 0.25)
    assert score.f1 >= 0.90
    assert abs(result.nuclei_count - info.n_nuclei) / info.n_nuclei <= 0.05
    # Density per mm² of tissue close to the truth (tissue detected on a thumbnail: 10%).
    assert result.nuclei_density_per_mm2 == pytest.approx(info.nuclei_density_per_mm2, rel=0.10)
    assert result.qc["status"] == "ok" and result.tiles_failed == 0


def test_lymphocyte_proxy_finds_lymphocyte_like_nuclei(synthetic_run):
    info, result, _ = synthetic_run
    truth = load_truth_nuclei(info.path)
    pred = np.column_stack([result.nuclei.column("x_px"), result.nuclei.column("y_px")])
    _, m = match_detections(pred, np.column_stack([truth["x_px"], truth["y_px"]]), radius=16.0)
    pred_cls = np.array(result.nuclei.class_names())[m[:, 0]]
    true_cls = truth["class"][m[:, 1]]
    lymph = true_cls == "lymphocyte"
    assert lymph.sum() > 20
    assert np.mean(pred_cls[lymph] == "lymphocyte") > 0.7  # recall of the proxy
    assert np.mean(true_cls[pred_cls == "lymphocyte"] == "lymphocyte") > 0.9  # precision
    # Stromal (fibroblast-like) nuclei are elongated: the spindle class.
    assert np.mean(pred_cls[true_cls == "stromal"] == "spindle") > 0.8


def test_overlapping_tiles_count_each_nucleus_once(synthetic_run):
    _, result, _ = synthetic_run
    xy = np.column_stack([result.nuclei.column("x_px"), result.nuclei.column("y_px")])
    d = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=2) if len(xy) < 4000 else None
    assert d is not None
    np.fill_diagonal(d, np.inf)
    assert d.min() > 4.0 / 0.25  # no two detections of the same nucleus (nuclei are > 4 µm apart)


def test_outputs_are_viewer_ready(synthetic_run):
    info, result, out = synthetic_run
    gj = json.loads((out / "annotations.geojson").read_text())
    kinds = [f["properties"]["objectType"] for f in gj["features"]]
    assert kinds.count("detection") == result.nuclei_count and kinds.count("annotation") >= 1
    nucleus = next(f for f in gj["features"] if f["properties"]["objectType"] == "detection")
    assert nucleus["geometry"]["type"] == "Polygon"
    ring = nucleus["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and {"Area um^2", "Eccentricity"} <= set(nucleus["properties"]["measurements"])
    # Heatmap TIFF covers the same physical extent as the slide (resolution tags), and is pyramidal.
    with tifffile.TiffFile(out / "heatmap.tiff") as tif:
        page = tif.pages[0]
        x_res = page.tags["XResolution"].value
        px_per_cm = x_res[0] / x_res[1]
        width_um = page.imagewidth / px_per_cm * 1e4
        grid_um = json.loads(page.description)["level0_px_per_pixel"] * page.imagewidth * info.mpp
        assert width_um == pytest.approx(grid_um, rel=1e-3)
        assert info.width_px * info.mpp <= width_um < info.width_px * info.mpp + 512 * 0.5 * 1.01
        assert len(page.subifds or ()) >= 1
    result_json = json.loads((out / "result.json").read_text())
    assert result_json["nuclei_count"] == result.nuclei_count
    assert result_json["nuclei_density_per_mm2"] == pytest.approx(result.nuclei_density_per_mm2)
    meta = json.loads((out / "run_metadata.json").read_text())
    assert meta["versions"]["torch"] and meta["device"] == "cpu" and "tiles_s" in meta["timings_s"]
    assert (out / "overlay.png").stat().st_size > 1000 and (out / "heatmap.png").exists()
    lines = (out / "nuclei.csv").read_text().splitlines()
    assert len(lines) == result.nuclei_count + 1


def test_result_is_deterministic_across_worker_counts(synthetic_run):
    info, result, _ = synthetic_run
    serial = run(info.path, workers=0, batch_size=3)
    assert serial.nuclei_count == result.nuclei_count
    assert np.array_equal(serial.nuclei.data, result.nuclei.data)


def test_issue_6_real_svs_end_to_end(shared_data, tmp_path):
    result = run(shared_data / "slides" / "CMU-1-Small-Region.svs", out_dir=tmp_path, workers=1)
    assert result.qc["status"] == "ok" and result.qc["fast_path"]
    assert result.target_mpp == pytest.approx(0.499)  # read at its native 0.499 µm/px, not resampled
    assert 0.3 < result.tissue_area_mm2 < 1.2  # 2220 x 2967 px at 0.499 µm/px = 1.64 mm², ~40% tissue
    assert 1000 < result.nuclei_density_per_mm2 < 8000  # plausible H&E nuclei density
    assert 5 < result.cellularity_percent < 40
    assert 15 < result.median_nucleus_area_um2 < 80
    assert (tmp_path / "overlay.png").exists()


def test_issue_6_dicom_wsi_end_to_end(shared_data, tmp_path):
    # The highdicom test slide is 50 x 50 px of blank glass (mean 244, std < 2): no tissue, no density.
    result = run(shared_data / "slides" / "highdicom_sm_image.dcm", out_dir=tmp_path)
    assert result.qc["status"] == "no_tissue"
    assert result.nuclei_density_per_mm2 is None and result.nuclei_count == 0
    assert any("no tissue" in w for w in result.warnings)
    assert json.loads((tmp_path / "result.json").read_text())["qc"]["status"] == "no_tissue"
    assert result.provenance["slide"]["vendor"] == "dicom"


def test_blank_slide_reports_no_tissue(tmp_path):
    img = np.full((1024, 1024, 3), 242, np.uint8)
    path = tmp_path / "blank.tiff"
    tifffile.imwrite(path, img, tile=(256, 256), compression="jpeg", metadata=None)
    result = run(path, mpp=0.5)
    assert result.qc["status"] == "no_tissue" and result.nuclei_density_per_mm2 is None


def test_missing_mpp_needs_mpp_argument(tmp_path):
    path = tmp_path / "nompp.tiff"
    tifffile.imwrite(path, np.full((512, 512, 3), 200, np.uint8), tile=(256, 256), compression="jpeg",
                     metadata=None)
    with pytest.raises(MissingMppError):
        run(path)


def test_issue_6_corrupt_tile_counted_in_result(synthetic_run, tmp_path):
    info, clean, _ = synthetic_run
    bad = tmp_path / "corrupt.tiff"
    shutil.copy(info.path, bad)
    with open_slide(info.path) as slide:
        lay = slide.fast_reader.levels[0]
    # Break a level-0 JPEG tile inside the tissue, away from the diagonal used for verification.
    truth = load_truth_nuclei(info.path)
    k = int(np.argmax(truth["x_px"] - truth["y_px"]))
    tx, ty = int(truth["x_px"][k] // lay.tile_w), int(truth["y_px"][k] // lay.tile_h)
    with tifffile.TiffFile(bad) as tif:
        page = tif.pages[0]
        index = ty * lay.tiles_across + tx
        offset, count = page.dataoffsets[index], page.databytecounts[index]
    with open(bad, "r+b") as fh:
        fh.seek(offset + 2)
        fh.write(b"\x00\xff" * ((count - 4) // 2))
    with pytest.warns(ZeroClickWarning, match="could not be decoded"):
        result = run(bad, workers=0)
    assert result.tiles_failed >= 1 and result.qc["status"] == "partial"
    assert result.tiles_analysed == result.tiles_total - result.tiles_failed
    assert any("could not be read" in w for w in result.warnings)
    assert result.nuclei_count < clean.nuclei_count
    with pytest.raises(Exception, match="tile"):
        run(bad, workers=0, strictness="raise")


def test_cli_slide(run_cli, synthetic_run, tmp_path):
    info, result, _ = synthetic_run
    code, out, _ = run_cli("slide", str(info.path), "--out", str(tmp_path / "cli"), "--workers", "0", "--json")
    assert code == 0
    assert json.loads(out)["nuclei_count"] == result.nuclei_count
    code, _, err = run_cli("slide", str(tmp_path / "missing.svs"), "--out", str(tmp_path / "x"))
    assert code == 3 and "not found" in err
