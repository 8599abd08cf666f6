"""Issue 15: resource ceilings (files, bytes, pixels, archive expansion) and hostile header values, each named."""

from __future__ import annotations

import io
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.dicom.dicom_factory import sax_orientation, uid, write_mr
from tests.fuzz import rawdicom
from zeroclick.imaging.dicom import scan
from zeroclick.imaging.dicom.headers import read_header
from zeroclick.imaging.dicom.limits import Limits, default_limits
from zeroclick.imaging.errors import ResourceLimitError, ZeroClickWarning

ROWS, COLUMNS, NUMBER_OF_FRAMES = 0x00280010, 0x00280011, 0x00280008
PATIENT_SIZE, IMAGE_POSITION, IMAGE_ORIENTATION = 0x00101020, 0x00200032, 0x00200037


def _image(folder: Path, i: int = 1) -> Path:
    o = sax_orientation()
    normal = np.cross(o[:3], o[3:])
    return write_mr(folder / f"im{i:04d}.dcm", study=uid(5, 70), series=uid(7, 70), sop=uid(8, 70, i), series_number=1,
                    description="cine_sax", position=tuple(8.0 * i * normal), orientation=o, instance_number=i,
                    trigger_time=0.0)


def _codes(exam) -> set[str]:
    return {r.code for r in exam.rejected}


def test_attackers_million_by_million_header_is_rejected_without_allocating(tmp_path):
    path = _image(tmp_path)
    raw = path.read_bytes()
    # Rows/Columns claim 1,000,000 each (written with VR UL: US cannot hold it), 16 bytes of pixels
    huge = rawdicom.set_value(rawdicom.set_value(raw, ROWS, (10**6).to_bytes(4, "little"), b"UL"),
                              COLUMNS, (10**6).to_bytes(4, "little"), b"UL")
    frames = rawdicom.set_value(raw, NUMBER_OF_FRAMES, b"1000000", b"IS")
    frames = rawdicom.set_us(rawdicom.set_us(frames, ROWS, 65535), COLUMNS, 65535)
    (tmp_path / "huge.dcm").write_bytes(huge)
    (tmp_path / "frames.dcm").write_bytes(frames)
    path.unlink()
    tracemalloc.start()
    with pytest.warns(ZeroClickWarning, match="image_too_large"):
        exam = scan(tmp_path, workers=1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert {r.code for r in exam.rejected} == {"image_too_large"} and len(exam.rejected) == 2
    assert not exam.series
    assert peak < 50 * 2**20  # 10^12 pixels were never allocated


def test_zip_bomb_is_refused_before_extraction(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("im0001.dcm", "w") as member:  # 96 MiB of zeros, ~100 KiB packed (ratio ~1000)
            chunk = bytes(1 << 20)
            for _ in range(96):
                member.write(chunk)
    assert bomb.stat().st_size < 1 << 20
    with pytest.raises(ResourceLimitError, match="zip bomb") as info:
        scan(bomb, workers=1)
    assert info.value.code == "archive_bomb"


def test_tar_bomb_and_archive_size_ceiling(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tf:
        data = bytes(80 << 20)
        info = tarfile.TarInfo("im0001.dcm")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    with pytest.raises(ResourceLimitError, match="looks like a zip bomb"):
        scan(bomb, workers=1)
    # an honest archive above a lowered total ceiling
    honest = tmp_path / "exam.zip"
    with zipfile.ZipFile(honest, "w") as zf:
        for i in range(3):
            zf.write(_image(tmp_path / "src", i + 1), f"im{i}.dcm")
    with pytest.raises(ResourceLimitError, match="max_archive_bytes") as info:
        scan(honest, workers=1, limits=Limits(max_archive_bytes=1000))
    assert info.value.code == "archive_too_large"
    assert len(scan(honest, workers=1).series) == 1


def test_files_per_exam_and_bytes_per_file_ceilings(tmp_path):
    for i in range(4):
        _image(tmp_path, i + 1)
    with pytest.raises(ResourceLimitError, match="max_files") as info:
        scan(tmp_path, workers=1, limits=Limits(max_files=3))
    assert info.value.code == "too_many_files"
    with pytest.warns(ZeroClickWarning, match="file_too_large"):
        exam = scan(tmp_path, workers=1, limits=Limits(max_file_bytes=100))
    assert _codes(exam) == {"file_too_large"} and not exam.series


def test_a_volume_past_the_series_ceiling_is_refused_before_decoding(tmp_path, monkeypatch):
    for i in range(3):
        _image(tmp_path, i + 1)
    series = scan(tmp_path, workers=1).series[0]
    assert series.volume().array.shape[-2:] == (16, 16)
    monkeypatch.setenv("ZEROCLICK_LIMITS", "max_pixels_per_series=700")  # 3 x 16 x 16 = 768 pixels
    with pytest.raises(ResourceLimitError, match="max_pixels_per_series") as info:
        series.volume()
    assert info.value.code == "series_too_large"


def test_limits_from_the_environment(monkeypatch):
    monkeypatch.setenv("ZEROCLICK_LIMITS", "max_files=7, max_archive_ratio=12.5")
    assert default_limits() == Limits(max_files=7, max_archive_ratio=12.5)
    monkeypatch.setenv("ZEROCLICK_LIMITS", "max_filez=7")
    with pytest.raises(ResourceLimitError, match="known limits"):
        default_limits()


@pytest.mark.parametrize("value, expected", [(b"1,58", 1.58), (b"1.58", 1.58), (b"+1,5", 1.5)])
def test_decimal_comma_is_read_as_the_decimal_it_means_with_a_note(tmp_path, value, expected):
    path = _image(tmp_path)
    path.write_bytes(rawdicom.set_value(path.read_bytes(), PATIENT_SIZE, value, b"DS"))
    h = read_header(str(path))
    assert h["PatientSize"] == pytest.approx(expected)
    assert bool(h.get("_notes")) is (b"," in value)


@pytest.mark.parametrize("value", [b"--5", b"0x10", b"12 34", "1.5".encode("utf-16"), b"nan", b"inf"])
def test_non_numbers_are_ignored_with_a_note(tmp_path, value):
    path = _image(tmp_path)
    path.write_bytes(rawdicom.set_value(path.read_bytes(), PATIENT_SIZE, value, b"DS"))
    h = read_header(str(path))
    assert "PatientSize" not in h and h["_invalid"] == {"PatientSize": True}
    with pytest.warns(ZeroClickWarning, match="PatientSize value"):
        exam = scan(tmp_path, workers=1)
    assert exam.series and "patient_height_m" not in exam.series[0].meta


@pytest.mark.parametrize("tag, value, code", [
    (IMAGE_POSITION, b"--5\\0\\0", "invalid_value"),
    (IMAGE_POSITION, b"nan\\0\\0", "invalid_value"),
    (IMAGE_POSITION, b"1e999\\0\\0", "invalid_value"),
    (IMAGE_POSITION, b"1\\2", "invalid_geometry"),
    (IMAGE_ORIENTATION, b"1\\0\\0", "invalid_geometry"),
    (IMAGE_ORIENTATION, b"0\\0\\0\\0\\0\\0", "invalid_geometry"),
    (IMAGE_ORIENTATION, b"1\\0\\0\\1\\0\\0", "invalid_geometry"),
])
def test_geometry_that_cannot_place_an_image_is_a_named_rejection(tmp_path, tag, value, code):
    path = _image(tmp_path)
    path.write_bytes(rawdicom.set_value(path.read_bytes(), tag, value, b"DS"))
    with pytest.warns(ZeroClickWarning):
        exam = scan(tmp_path, workers=1)
    assert _codes(exam) == {code} and not exam.series


def test_a_lenient_multi_value_is_noted_on_every_file_and_memoised_values_stay_exact(tmp_path):
    """The scan's memo of multi-valued conversions (issue 16) must not drop the note of a lenient reading on the
    second file with the same bytes, nor change a value read from the memo."""
    from zeroclick.imaging.dicom.headers import forget_conversions

    forget_conversions()
    first, second = _image(tmp_path, 1), _image(tmp_path, 2)
    for path in (first, second):
        path.write_bytes(rawdicom.set_value(path.read_bytes(), IMAGE_POSITION, b"1,5\\-2,25\\3", b"DS"))
    for path in (first, second, first):
        h = read_header(str(path))
        assert h["ImagePositionPatient"] == pytest.approx((1.5, -2.25, 3.0))
        assert h.get("_notes"), "the decimal-comma reading must be noted on every file"
    warm = read_header(str(_image(tmp_path / "clean", 3)))  # orientation bytes already converted above
    forget_conversions()
    cold = read_header(str(tmp_path / "clean" / "im0003.dcm"))
    assert warm["ImageOrientationPatient"] == cold["ImageOrientationPatient"] == pytest.approx(sax_orientation(), abs=1e-5)
    assert not warm.get("_notes") and not cold.get("_notes")
