import numpy as np
import pytest

from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.lge import compute_lge


def _case():
    """Two slices, myocardium ring (labels 2) with an infarct block (3), an MVO core (4) and a gray band."""
    r, c = np.mgrid[:60, :60]
    rad = np.hypot(r - 30, c - 30)
    theta = np.degrees(np.arctan2(r - 30, c - 30)) % 360
    lab = np.zeros((2, 60, 60), np.uint8)
    lab[:, rad < 12] = 1
    ring = (rad >= 12) & (rad < 20)
    lab[:, ring] = 2
    infarct = ring & (theta >= 0) & (theta < 60)
    lab[:, infarct] = 3
    mvo = infarct & (rad < 14)
    lab[:, mvo] = 4
    img = np.where((r + c) % 2 == 0, 90.0, 110.0)[None].repeat(2, axis=0)  # remote: mean 100, SD ~10
    img[:, infarct] = 400.0
    img[:, mvo] = 40.0  # no-reflow core is dark
    gray = ring & (theta >= 180) & (theta < 190)
    img[:, gray] = 125.0  # remote mean + 2.5 SD
    return lab, img, int(ring.sum()), int(infarct.sum()), int(mvo.sum()), int(gray.sum())


def test_model_labels_give_exact_volumes():
    lab, img, n_ring, n_inf, n_mvo, _ = _case()
    v = Volume(lab, np.eye(4), (10.0, 1.5, 1.5))
    r = compute_lge(v, v.with_array(img))
    vox = 10 * 1.5 * 1.5 / 1000
    assert r.myocardium_ml == pytest.approx(2 * n_ring * vox)
    assert r.infarct_ml == pytest.approx(2 * n_inf * vox)
    assert r.mvo_ml == pytest.approx(2 * n_mvo * vox)
    assert r.infarct_percent_of_myocardium == pytest.approx(n_inf / n_ring * 100)
    assert r.mvo_percent_of_myocardium == pytest.approx(n_mvo / n_ring * 100)
    assert r.infarct_g == pytest.approx(r.infarct_ml * 1.05)


def test_classical_thresholds_and_gray_zone():
    lab, img, n_ring, n_inf, n_mvo, n_gray = _case()
    v = Volume(lab, np.eye(4), (10.0, 1.0, 1.0))
    r = compute_lge(v, v.with_array(img))
    assert r.remote_mean_signal == pytest.approx(100.0, abs=1.0)
    assert r.remote_sd_signal == pytest.approx(10.0, abs=0.5)
    by = {s.method: s for s in r.classical}
    assert set(by) == {"2sd", "3sd", "5sd", "6sd", "fwhm"}
    vox = 0.01
    # 2 SD finds the bright infarct + the 125 gray band; MVO is added from the model
    assert by["2sd"].infarct_ml == pytest.approx(2 * (n_inf + n_gray) * vox)
    assert by["3sd"].infarct_ml == pytest.approx(2 * n_inf * vox)
    assert by["fwhm"].infarct_ml == pytest.approx(2 * n_inf * vox)
    assert by["fwhm"].threshold_signal == pytest.approx(100.0 + 0.5 * (400.0 - 100.0), abs=1.0)
    assert r.gray_zone_ml == pytest.approx(2 * n_gray * vox)
    assert "2 SD" in r.gray_zone_definition


def test_without_image_only_model_values():
    lab, *_ = _case()
    r = compute_lge(Volume(lab, np.eye(4), (10.0, 1.0, 1.0)))
    assert r.classical == () and r.gray_zone_ml is None and r.remote_mean_signal is None
