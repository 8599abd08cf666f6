"""Vendor flavours, transfer syntaxes and enhanced multi-frame objects of the synthetic exam."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pydicom
import pytest
from pydicom.uid import EnhancedMRImageStorage, JPEG2000Lossless, JPEGLSLossless, RLELossless

from zeroclick.imaging.synthetic.cmr import generate_exam, minimum_images

N = minimum_images()


def _files(info):
    return sorted(info.dicom_dir.rglob("*.dcm"))


def _pixels_by_key(info):
    """(series number, instance number) -> stored pixel array."""
    out = {}
    for path in _files(info):
        ds = pydicom.dcmread(path)
        out[(int(ds.SeriesNumber), int(ds.InstanceNumber))] = ds.pixel_array
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    info = generate_exam(tmp_path_factory.mktemp("ref") / "exam", n_images=N, vendor="philips", seed=5)
    return info, _pixels_by_key(info)


@pytest.mark.parametrize("syntax, uid", [("jpegls", JPEGLSLossless), ("rle", RLELossless)])
def test_compressed_transfer_syntax_round_trips_pixels(tmp_path, reference, syntax, uid):
    ref_info, ref_pixels = reference
    info = generate_exam(tmp_path / "exam", n_images=N, vendor="philips", transfer_syntax=syntax, seed=5)
    pixels = {}
    for path in _files(info):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == uid
        pixels[(int(ds.SeriesNumber), int(ds.InstanceNumber))] = ds.pixel_array
    assert pixels.keys() == ref_pixels.keys()
    for key, arr in pixels.items():
        assert np.array_equal(arr, ref_pixels[key]), key


@pytest.mark.slow
def test_jpeg2000_exam_round_trips_pixels(tmp_path, reference):
    _, ref_pixels = reference
    info = generate_exam(tmp_path / "exam", n_images=N, vendor="philips", transfer_syntax="j2k", seed=5)
    for path in _files(info):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == JPEG2000Lossless
        assert np.array_equal(ds.pixel_array, ref_pixels[(int(ds.SeriesNumber), int(ds.InstanceNumber))])


def test_jpeg2000_writer_round_trips_pixels(tmp_path):
    from zeroclick.imaging.synthetic.cmr.writer import FrameInfo, SeriesWriter

    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.Rows, ds.Columns = 96, 80
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    pixels = np.random.default_rng(0).integers(0, 4096, (96, 80)).astype(np.uint16)
    frame = FrameInfo(1, "2.25.1.1", [0.0, 0.0, 0.0], 0.0, 12.5, None, "120000", None, 1, 1)
    SeriesWriter(ds, "j2k").write(pixels, frame, tmp_path / "a.dcm")
    back = pydicom.dcmread(tmp_path / "a.dcm")
    assert back.file_meta.TransferSyntaxUID == JPEG2000Lossless
    assert np.array_equal(back.pixel_array, pixels)
    assert float(back.TriggerTime) == 12.5


def test_issue_3_philips_trigger_times_do_not_repeat_per_slice(reference):
    info, _ = reference
    sax_uid = info.truth["truth_grids"]["cine_sax"]["series_instance_uid"]
    per_slice = defaultdict(list)
    for path in _files(info):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.SeriesInstanceUID == sax_uid:
            per_slice[tuple(ds.ImagePositionPatient)].append(float(ds.TriggerTime))
    rows = [tuple(sorted(v)) for v in per_slice.values()]
    n = info.truth["n_phases"]
    assert all(len(r) == n for r in rows)
    assert len(set(rows)) == len(rows)  # no two slices share their trigger times
    rr = info.truth["rr_interval_ms"]
    for r in rows:  # but phase k is still near k * RR / n
        assert np.allclose(r, np.arange(n) * rr / n, atol=0.04 * rr + 3.01)


def test_philips_rescale_and_headers(reference):
    info, _ = reference
    seen = set()
    for path in _files(info):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.Manufacturer == "Philips Medical Systems"
        seen.add(ds.SeriesDescription)
        if "R_IR" in ds.ImageType:  # PSIR: signed values through the intercept
            assert float(ds.RescaleIntercept) == -2048
        else:
            assert float(ds.RescaleSlope) == 1.25
    assert {"sBTFE_BH_SA", "sBTFE_BH_4CH", "PSIR_TFE_SA", "T1_MOLLI_SA", "Survey"} <= seen


def test_ge_flavour(tmp_path):
    info = generate_exam(tmp_path / "exam", n_images=N, vendor="ge", seed=2)
    descriptions = {}
    for path in _files(info):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.Manufacturer == "GE MEDICAL SYSTEMS"
        assert "RescaleSlope" not in ds or float(ds.RescaleSlope) == 1
        descriptions[ds.SeriesDescription] = ds.get("InversionTime")
    assert {"FIESTA CINE SAX", "MDE SAX", "PSIR MDE SAX", "MOLLI T1 SAX", "3-Plane Loc"} <= set(descriptions)
    assert float(descriptions["MDE SAX"]) == 300.0


def test_enhanced_multiframe_matches_single_frame(tmp_path, reference):
    ref_info, ref_pixels = reference
    info = generate_exam(tmp_path / "exam", n_images=N, vendor="philips", enhanced=True, seed=5)
    files = _files(info)
    assert len(files) == len(info.series)
    total = 0
    for path in files:
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == EnhancedMRImageStorage
        n = int(ds.NumberOfFrames)
        total += n
        per_frame = ds.PerFrameFunctionalGroupsSequence
        assert len(per_frame) == n
        iop = np.array(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
                       dtype=float)
        assert iop.shape == (6,)
        arr = ds.pixel_array.reshape(n, ds.Rows, ds.Columns)
        for k, item in enumerate(per_frame):
            fc = item.FrameContentSequence[0]
            assert len(fc.DimensionIndexValues) == 3
            assert item.PlanePositionSequence[0].ImagePositionPatient is not None
            # frame k of the series is single-frame instance k+1 of the same exam
            assert np.array_equal(arr[k], ref_pixels[(int(ds.SeriesNumber), k + 1)])
        if "CINE" in ds.ImageType:
            assert "CardiacSynchronizationSequence" in per_frame[0]
    assert total == N


def _dciodvfy_errors(path) -> list[str]:
    import shutil
    import subprocess

    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_files_pass_dciodvfy(tmp_path, reference):
    info, _ = reference
    firsts = {}
    for path in _files(info):
        firsts.setdefault(path.parent, path)
    for path in firsts.values():  # the first image of every series
        assert _dciodvfy_errors(path) == [], path
    enhanced = generate_exam(tmp_path / "mf", n_images=N, vendor="siemens", enhanced=True, seed=5)
    for path in _files(enhanced):
        assert _dciodvfy_errors(path) == [], path
