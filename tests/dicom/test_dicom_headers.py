"""The fast header reader gives exactly the fields pydicom gives, and falls back to pydicom when unsure."""

from __future__ import annotations

from pathlib import Path

import dicom_factory
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian

from zeroclick.imaging.dicom.headers import read_header, read_header_fast, read_header_pydicom


def _public(h: dict) -> dict:
    return {k: v for k, v in h.items() if not k.startswith("_") or k in ("_pixel_offset", "_pixel_length",
                                                                         "_transfer_syntax", "_file_size")}


def assert_same_fields(path: Path) -> dict:
    fast = read_header_fast(str(path))
    assert fast is not None, f"fast reader fell back on {path.name}"
    ref = read_header_pydicom(str(path))
    assert _public(fast) == _public(ref)
    return fast


def test_fast_reader_matches_pydicom_on_every_file_of_the_exam(small_exam):
    files = sorted(small_exam[0].rglob("*.dcm"))
    assert len(files) > 100
    for path in files:
        h = assert_same_fields(path)
        assert h["SOPInstanceUID"] == pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def _one(tmp_path: Path, **kw) -> Path:
    return dicom_factory.write_mr(tmp_path / "one.dcm", study="1.2.3", series="1.2.3.4", sop="1.2.3.4.5",
                                  series_number=1, position=(0.0, 0.0, 0.0), orientation=(1, 0, 0, 0, 1, 0), **kw)


def test_implicit_vr_file(tmp_path):
    h = assert_same_fields(_one(tmp_path, transfer_syntax=ImplicitVRLittleEndian))
    assert h["_transfer_syntax"] == ImplicitVRLittleEndian
    assert h["ImageOrientationPatient"] == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


@pytest.mark.parametrize("implicit", [False, True])
def test_nested_undefined_length_sequences_and_large_private_blocks_are_skipped(tmp_path, implicit):
    inner = Dataset()
    inner.ReferencedSOPInstanceUID = "1.2.3.999"
    inner.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    deeper = Dataset()
    deeper.CodeValue = "X"
    inner.PurposeOfReferenceCodeSequence = Sequence([deeper])
    path = _one(tmp_path, transfer_syntax=ImplicitVRLittleEndian if implicit else pydicom.uid.ExplicitVRLittleEndian,
                extra={"ReferencedImageSequence": Sequence([inner, inner])}, description="with sequences")
    ds = pydicom.dcmread(path)
    block = ds.private_block(0x0029, "SIEMENS CSA HEADER", create=True)
    block.add_new(0x10, "OB", bytes(20000))  # pushes the pixel data past the first read
    ds.save_as(path)
    h = assert_same_fields(path)
    assert h["SeriesDescription"] == "with sequences"
    assert h["_pixel_offset"] > 20000


def test_non_latin_charset_goes_to_pydicom(tmp_path):
    path = _one(tmp_path, description="Herz", extra={"SpecificCharacterSet": "ISO_IR 144"})
    assert read_header_fast(str(path)) is None
    h = read_header(str(path))
    assert h["_reader"] == "pydicom" and h["SeriesDescription"] == "Herz"


def test_pixel_offset_points_at_the_pixels(tmp_path):
    pixels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    path = _one(tmp_path, pixels=pixels)
    h = read_header(str(path))
    raw = path.read_bytes()[h["_pixel_offset"]: h["_pixel_offset"] + h["_pixel_length"]]
    np.testing.assert_array_equal(np.frombuffer(raw, "<u2").reshape(16, 16), pixels)
