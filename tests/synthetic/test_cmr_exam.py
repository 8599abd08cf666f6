"""Synthetic cardiac MR exam: files, geometry, timing, and ground truth against the labels."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import pytest

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.imaging.synthetic.cmr import generate_exam, load_truth, minimum_images


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("cmr") / "exam"
    info = generate_exam(out, n_images=400, seed=11)
    datasets = [pydicom.dcmread(p) for p in sorted((out / "dicom").rglob("*.dcm"))]
    return info, datasets


def _by_series(datasets):
    groups = defaultdict(list)
    for ds in datasets:
        groups[ds.SeriesInstanceUID].append(ds)
    return groups


def test_every_file_opens_and_counts_add_up(exam):
    info, datasets = exam
    assert len(datasets) == 400 == info.n_images
    gt = json.loads(info.ground_truth_path.read_text())
    groups = _by_series(datasets)
    assert {s["series_instance_uid"]: s["n_images"] for s in gt["series"]} == {k: len(v) for k, v in groups.items()}
    assert {ds.StudyInstanceUID for ds in datasets} == {info.study_instance_uid}
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 400
    classes = {s["expected_class"] for s in gt["series"]}
    assert {"localizer", "cine_sax", "cine_lax_2ch", "cine_lax_3ch", "cine_lax_4ch", "lge_mag", "lge_psir",
            "t1_molli_source", "t1_map", "perfusion"} <= classes
    for ds in datasets[:: 37]:
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
        assert "SYNTHETIC" in str(ds.PatientName)


def test_positions_lie_on_planes_consistent_with_orientation(exam):
    _, datasets = exam
    for uid, group in _by_series(datasets).items():
        iop = np.array(group[0].ImageOrientationPatient, dtype=float)
        row, col = iop[:3], iop[3:]
        assert abs(np.dot(row, col)) < 1e-6 and abs(np.linalg.norm(row) - 1) < 1e-6
        normal = np.cross(row, col)
        if group[0].SeriesDescription == "localizer":
            continue  # three orthogonal planes in one series
        p0 = np.array(group[0].ImagePositionPatient, dtype=float)
        offsets = []
        for ds in group:
            assert np.allclose(np.array(ds.ImageOrientationPatient, dtype=float), iop)
            d = np.array(ds.ImagePositionPatient, dtype=float) - p0
            in_plane = d - np.dot(d, normal) * normal
            assert np.linalg.norm(in_plane) < 1e-3, uid  # a stack along the normal, no in-plane shift
            offsets.append(float(np.dot(d, normal)))
        distinct = np.unique(np.round(offsets, 3))
        if len(distinct) > 1 and "SpacingBetweenSlices" in group[0]:
            steps = np.diff(distinct)
            assert np.allclose(steps, steps[0], atol=1e-3)
            if "cine" in group[0].SeriesDescription or "psir" in group[0].SeriesDescription:
                assert steps[0] == pytest.approx(float(group[0].SpacingBetweenSlices), abs=1e-3)


def test_cine_phase_counts_and_trigger_times(exam):
    info, datasets = exam
    gt = info.truth
    sax = [ds for ds in datasets if ds.SeriesInstanceUID == gt["truth_grids"]["cine_sax"]["series_instance_uid"]]
    per_slice = defaultdict(list)
    for ds in sax:
        per_slice[tuple(np.round(np.array(ds.ImagePositionPatient, dtype=float), 3))].append(float(ds.TriggerTime))
    n = gt["n_phases"]
    rr = 60000.0 / float(sax[0].HeartRate)
    assert int(sax[0].CardiacNumberOfImages) == n
    for times in per_slice.values():
        assert len(times) == n
        assert np.allclose(sorted(times), np.arange(n) * rr / n, atol=0.6)  # siemens: exact repeat per slice


def test_truth_labels_agree_with_analytic_figures(exam):
    info, _ = exam
    gt = json.loads(info.ground_truth_path.read_text())
    truth = load_truth(info.out_dir)
    cine, lge = truth["cine_sax"], truth["lge"]
    vox = cine.voxel_volume_ml
    es = gt["es_phase"]
    counted = {
        "lv_edv_ml": (cine.array[0] == 3).sum() * vox,
        "lv_esv_ml": (cine.array[es] == 3).sum() * vox,
        "rv_edv_ml": (cine.array[0] == 1).sum() * vox,
        "rv_esv_ml": (cine.array[es] == 1).sum() * vox,
        "myo_volume_ed_ml": (cine.array[0] == 2).sum() * vox,
        "lge_myocardium_ml": (lge.array >= 2).sum() * lge.voxel_volume_ml,
        "infarct_ml": (lge.array >= 3).sum() * lge.voxel_volume_ml,
    }
    for key, value in counted.items():
        assert value == pytest.approx(gt[key], rel=0.01), key
    # the MVO core is ~25 pixels per slice, so its pixelisation error is about 3%: absolute tolerance
    assert (lge.array == 4).sum() * lge.voxel_volume_ml == pytest.approx(gt["mvo_ml"], abs=0.1)
    assert gt["lv_ef_percent"] == pytest.approx(100 * (gt["lv_edv_ml"] - gt["lv_esv_ml"]) / gt["lv_edv_ml"], abs=0.01)
    assert gt["myo_mass_ed_g"] == pytest.approx(1.05 * gt["myo_volume_ed_ml"], rel=1e-4)
    curve = [(cine.array[p] == 3).sum() for p in range(cine.array.shape[0])]
    assert int(np.argmin(curve)) == es and int(np.argmax(curve)) == gt["ed_phase"] == 0
    assert 0 < gt["mvo_ml"] < gt["infarct_ml"] < gt["lge_myocardium_ml"]


def test_segment_transmurality_from_labels_matches_analytic(exam):
    info, _ = exam
    gt = info.truth
    analytic = gt["segment_transmurality_percent"]
    labels = gt["label_figures"]["segment_transmurality_percent"]
    assert set(analytic) == {str(s) for s in range(1, 17)}
    for s in analytic:
        assert labels[s] == pytest.approx(analytic[s], abs=3.0), s
    # LAD territory: anterior / anteroseptal / apical segments infarcted, inferolateral spared
    assert analytic["13"] > 20 and analytic["8"] > 10
    for s in ("3", "4", "5", "10", "11", "15"):
        assert analytic[s] == 0.0


def test_truth_grid_matches_dicom_geometry(exam):
    info, datasets = exam
    truth = load_truth(info.out_dir)
    cine = truth["cine_sax"]
    sax = [ds for ds in datasets if ds.SeriesInstanceUID == cine.series_instance_uid]
    iop = np.array(sax[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    ipps = sorted({tuple(np.array(ds.ImagePositionPatient, dtype=float)) for ds in sax},
                  key=lambda p: float(np.dot(p, normal)))
    n_slices = len(ipps)
    assert cine.array.shape == (info.truth["n_phases"], n_slices, sax[0].Rows, sax[0].Columns)
    assert np.allclose(cine.affine[:3, 3], ipps[0], atol=1e-3)
    assert np.allclose(cine.affine[:3, 0], np.array(ipps[1]) - np.array(ipps[0]), atol=1e-3)
    ps = [float(v) for v in sax[0].PixelSpacing]
    assert np.allclose(cine.affine[:3, 1], iop[3:] * ps[0], atol=1e-5)
    assert np.allclose(cine.affine[:3, 2], iop[:3] * ps[1], atol=1e-5)


def test_small_exam_is_refused_with_a_clear_error(tmp_path: Path):
    with pytest.raises(InvalidInputError, match="minimum"):
        generate_exam(tmp_path / "x", n_images=minimum_images() - 1)
    with pytest.raises(InvalidInputError, match="vendor"):
        generate_exam(tmp_path / "y", n_images=400, vendor="toshiba")


@pytest.mark.slow
def test_3000_image_exam_is_fast_and_exact(tmp_path: Path):
    import os

    info = generate_exam(tmp_path / "exam", n_images=3000, seed=0)
    files = list(info.dicom_dir.rglob("*.dcm"))
    assert len(files) == 3000 == sum(s.n_images for s in info.series)
    sizes = {s.key: (s.n_images, s.n_files) for s in info.series}
    assert sizes["cine_sax"][0] >= 12 * 25 and sizes["cine_lax_4ch"][0] >= 25
    assert sum(n for k, (n, _) in sizes.items() if k.startswith("perfusion")) >= 3 * 50
    # <= 20 s on two idle cores: the CPU time is the load-independent part of that budget
    assert info.cpu_s <= 2 * 20.0, info.summary()
    if os.getloadavg()[0] < 1.5:  # the wall-clock target only means something on a quiet machine
        assert info.elapsed_s <= 20.0, info.summary()
    gt = info.truth
    assert gt["n_phases"] >= 25 and gt["label_figures"]["es_phase_by_labels"] == gt["es_phase"]
    for key in ("lv_edv_ml", "lv_esv_ml", "rv_edv_ml", "myo_volume_ed_ml", "infarct_ml"):
        assert gt["label_figures"][key] == pytest.approx(gt[key], rel=0.01), key
