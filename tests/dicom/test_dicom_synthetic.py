"""The scanner on whole generated exams (zeroclick.imaging.synthetic.cmr): every vendor flavour, syntax and enhanced.

The default run covers the three vendors (classic files) and Philips-style enhanced multi-frame; the full
vendor x transfer syntax x enhanced matrix is marked ``slow``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from zeroclick.imaging.dicom import scan
from zeroclick.imaging.dicom.headers import read_header_fast, read_header_pydicom

synthetic = pytest.importorskip("zeroclick.imaging.synthetic.cmr")

VENDORS = ("siemens", "ge", "philips")
SYNTAXES = ("explicit", "jpegls", "rle", "j2k")
QUICK = [("siemens", "explicit", False), ("ge", "explicit", False), ("philips", "explicit", False),
         ("philips", "explicit", True)]
FULL = [(v, t, e) for v in VENDORS for t in SYNTAXES for e in (False, True) if (v, t, e) not in QUICK]

_CACHE: dict[tuple[str, str, bool], Path] = {}


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    def make(vendor: str, ts: str, enhanced: bool) -> Path:
        key = (vendor, ts, enhanced)
        if key not in _CACHE:
            out = tmp_path_factory.mktemp(f"gen-{vendor}-{ts}-{int(enhanced)}")
            synthetic.generate_exam(out, n_images=synthetic.minimum_images(), vendor=vendor, transfer_syntax=ts,
                                    enhanced=enhanced, seed=11)
            _CACHE[key] = out
        return _CACHE[key]

    return make


def _check_exam(out: Path) -> None:
    truth = json.loads((out / "ground_truth.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clean generated exam must not warn
        exam = scan(out / "dicom", strictness="raise")
    expected = {s["series_instance_uid"]: s["expected_class"] for s in truth["series"]}
    got = {s.uid: s.label for s in exam.series}
    assert got == expected
    assert exam.rejected == ()
    n_images = {s["series_instance_uid"]: s["n_images"] for s in truth["series"]}
    assert {s.uid: s.n_images for s in exam.series} == n_images
    sax = exam.find("cine_sax")[0]
    vol = sax.volume()
    labels = synthetic.load_truth(out)
    assert vol.array.shape == labels["cine_sax"].array.shape
    np.testing.assert_allclose(vol.affine, labels["cine_sax"].affine, atol=1e-3)
    assert len(vol.trigger_times_ms) == truth["n_phases"]
    assert np.all(np.diff(vol.trigger_times_ms) > 0)
    assert vol.meta["heart_rate_bpm"] == pytest.approx(truth["heart_rate_bpm"], abs=1.0)
    assert vol.meta["patient_height_m"] == pytest.approx(truth["patient_height_m"], abs=0.01)
    lge_label = "lge_psir" if exam.find("lge_psir") and not exam.find("lge_mag") else "lge_mag"
    lge = exam.find(lge_label)[0].volume()
    assert lge.array.shape == labels["lge"].array.shape
    np.testing.assert_allclose(lge.affine, labels["lge"].affine, atol=1e-3)


@pytest.mark.parametrize("vendor,ts,enhanced", QUICK, ids=lambda v: str(v))
def test_generated_exam_classes_and_grids(generated, vendor, ts, enhanced):
    _check_exam(generated(vendor, ts, enhanced))


@pytest.mark.slow
@pytest.mark.parametrize("vendor,ts,enhanced", FULL, ids=lambda v: str(v))
def test_generated_exam_full_matrix(generated, vendor, ts, enhanced):
    _check_exam(generated(vendor, ts, enhanced))


@pytest.mark.parametrize("vendor,ts,enhanced", QUICK, ids=lambda v: str(v))
def test_fast_reader_identical_to_pydicom_on_generated_files(generated, vendor, ts, enhanced):
    files = sorted((generated(vendor, ts, enhanced) / "dicom").rglob("*.dcm"))
    assert files
    for path in files:
        fast = read_header_fast(str(path))
        assert fast is not None, path.name  # classic and enhanced files: no pydicom fallback
        ref = read_header_pydicom(str(path))
        assert fast == ref, path.name  # per-frame functional groups included
        if enhanced:
            assert len(fast["_frames"]) == fast["NumberOfFrames"] > 1


def test_real_dicom_file_reads_the_same_both_ways(shared_data):
    path = shared_data / "slides" / "highdicom_sm_image.dcm"
    fast = read_header_fast(str(path))
    ref = read_header_pydicom(str(path))
    assert ref["SOPInstanceUID"] and ref["Rows"] == 50 or ref["Rows"] > 0
    if fast is not None:  # it falls back on per-frame functional groups; when it does not, it must agree
        for key in ("_frames", "_encapsulated_complete"):
            ref.pop(key, None)
            fast.pop(key, None)
        assert fast == ref
