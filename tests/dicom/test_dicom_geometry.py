"""Geometry: slice order, phases, affine against the files themselves, quirks and their reports."""

from __future__ import annotations

import random
import shutil

import numpy as np
import pydicom
import pytest

from zeroclick.imaging.dicom import scan


def _ipp(path) -> np.ndarray:
    return np.array([float(v) for v in pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient])


def test_cine_volume_layout_affine_and_pixels(small_exam):
    exam = scan(small_exam[0])
    sax = exam.find("cine_sax")[0]
    vol = sax.volume()
    assert vol.array.shape == (10, 6, 16, 16)
    assert vol.array.dtype == np.float32
    assert vol.sop_instance_uids.shape == (10, 6)
    assert vol.trigger_times_ms is not None and len(vol.trigger_times_ms) == 10
    assert list(vol.trigger_times_ms) == sorted(vol.trigger_times_ms)
    paths = sax.paths
    assert len(paths) == 60
    flat_uids = vol.sop_instance_uids.reshape(-1)
    for k in (0, 7, 33, 59):
        ds = pydicom.dcmread(paths[k])
        assert ds.SOPInstanceUID == flat_uids[k]
        p, s = divmod(k, 6)
        np.testing.assert_array_equal(vol.array[p, s], ds.pixel_array.astype(np.float32))
        # affine maps (slice, row, col) to the image position, and along rows/columns to the cosines
        np.testing.assert_allclose(vol.affine @ [s, 0, 0, 1], [*_ipp(paths[k]), 1], atol=1e-3)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ps = [float(v) for v in ds.PixelSpacing]
        np.testing.assert_allclose(vol.affine @ [s, 2, 3, 1] - vol.affine @ [s, 0, 0, 1],
                                   [*(2 * ps[0] * iop[3:] + 3 * ps[1] * iop[:3]), 0], atol=1e-6)
    # slices ascend along the normal, spacing 8 mm
    assert vol.spacing_mm == pytest.approx((8.0, 1.5, 1.5), abs=1e-3)
    assert np.dot(vol.slice_normal, np.cross(iop[:3], iop[3:])) == pytest.approx(1.0)
    assert vol.meta["heart_rate_bpm"] == 60 and vol.meta["patient_height_m"] == 1.75
    assert "PatientName" not in str(vol.meta)


def test_file_order_and_names_do_not_matter(small_exam, tmp_path):
    src = small_exam[0] / "se002"
    files = sorted(src.glob("*.dcm"))
    random.Random(3).shuffle(files)
    for i, f in enumerate(files):
        shutil.copy(f, tmp_path / f"x{i:05d}")
    a = scan(src).series[0].volume()
    b = scan(tmp_path).series[0].volume()
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(a.affine, b.affine)


def test_issue_3_philips_trigger_times_that_differ_per_slice(small_exam):
    # the factory shifts trigger times by 0.3 ms per slice; phases must still be matched by rank
    sax = scan(small_exam[0]).find("cine_sax")[0]
    assert sax.geometry.n_phases == 10 and sax.geometry.regular
    assert any("matched by rank" in n for n in sax.geometry.notes)


def test_issue_3_missing_trigger_time_uses_instance_number(exam_copy, small_exam):
    for path in (exam_copy / "se002").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.TriggerTime
        ds.save_as(path)
    sax = scan(exam_copy).find("cine_sax")[0]
    assert sax.geometry.n_phases == 10 and sax.geometry.n_slices == 6
    assert any("InstanceNumber" in n for n in sax.geometry.notes)
    assert any("TriggerTime missing" in r for r in sax.classification.reasons)
    reference = scan(small_exam[0]).find("cine_sax")[0].volume()
    np.testing.assert_array_equal(sax.volume().array, reference.array)


def test_repeated_slice_keeps_latest_acquisition(exam_copy):
    lge = exam_copy / "se006"
    first = sorted(lge.glob("*.dcm"))[2]
    ds = pydicom.dcmread(first)
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".99"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.AcquisitionTime = "235959.000000"
    ds.save_as(lge / "repeat.dcm")
    s = [s for s in scan(exam_copy).series if s.number == 6][0]
    assert s.geometry.n_slices == 6
    assert any("repeated slice position" in p for p in s.problems)
    vol = s.volume()
    assert ds.SOPInstanceUID in set(vol.sop_instance_uids.tolist())


def test_missing_slice_is_reported_as_gap(exam_copy):
    files = sorted((exam_copy / "se006").glob("*.dcm"))
    files[3].unlink()  # slice 3 of 6
    s = [s for s in scan(exam_copy).series if s.number == 6][0]
    assert s.geometry.n_slices == 5
    assert s.geometry.gaps == (2,)
    assert any("gap between slices 2 and 3" in p for p in s.problems)
    vol = s.volume()
    assert vol.spacing_mm[0] == pytest.approx(8.0, abs=1e-3)


def test_unequal_phase_counts_are_reported_and_block_the_volume(exam_copy):
    from zeroclick.imaging.errors import InvalidSeriesError

    files = sorted((exam_copy / "se002").glob("*.dcm"))
    files[5].unlink()
    s = [s for s in scan(exam_copy).series if s.number == 2][0]
    assert any("unequal phase counts" in p for p in s.problems)
    with pytest.raises(InvalidSeriesError, match="unequal phase counts"):
        s.volume()


def test_mixed_pixel_spacing_is_reported(exam_copy):
    path = sorted((exam_copy / "se006").glob("*.dcm"))[1]
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = [1.2, 1.2]
    ds.save_as(path)
    s = [s for s in scan(exam_copy).series if s.number == 6][0]
    assert any("mixed pixel spacings" in p for p in s.problems)


def test_localizer_planes_are_not_a_problem(small_exam):
    loc = scan(small_exam[0]).find("localizer")[0]
    assert loc.problems == ()
    assert loc.geometry.regular is False


def test_issue_3_strict_mode_raises_on_a_gap(exam_copy):
    from zeroclick.imaging.errors import InvalidSeriesError

    sorted((exam_copy / "se006").glob("*.dcm"))[3].unlink()
    with pytest.raises(InvalidSeriesError, match="gap between slices 2 and 3"):
        scan(exam_copy, strictness="raise")
