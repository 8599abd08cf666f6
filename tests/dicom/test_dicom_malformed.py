"""Bad input: every malformed file ends in a named reason; nothing crashes; nothing is dropped silently."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    BasicTextSRStorage,
    EncapsulatedPDFStorage,
    ExplicitVRLittleEndian,
    GrayscaleSoftcopyPresentationStateStorage,
)

from zeroclick.imaging.dicom import scan
from zeroclick.imaging.errors import (
    InvalidDicomError,
    InvalidInputError,
    InvalidSeriesError,
    ZeroClickWarning,
)


def _edit(src: Path, dst: Path, change) -> Path:
    ds = pydicom.dcmread(src)
    change(ds)
    ds.save_as(dst)
    return dst


def _non_image(dst: Path, sop_class: str, study: str) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = study + ".77." + str(len(sop_class))
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = study + ".78"
    ds.Modality = "SR" if "88" in sop_class else ("DOC" if "104" in sop_class else "PR")
    if sop_class == EncapsulatedPDFStorage:
        ds.EncapsulatedDocument = b"%PDF-1.4 minimal"
        ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.save_as(dst, enforce_file_format=True)
    return dst


# file name -> expected rejection code
CASES = {
    "zero_byte.dcm": "empty_file",
    "text.dcm": "not_dicom",
    "random_after_preamble.dcm": "corrupt_header",
    "truncated_header.dcm": "truncated_file",
    "truncated_pixels.dcm": "truncated_pixel_data",
    "pixel_length.dcm": "pixel_length_mismatch",
    "no_study.dcm": "missing_study_instance_uid",
    "no_series.dcm": "missing_series_instance_uid",
    "no_sop.dcm": "missing_sop_instance_uid",
    "no_ipp.dcm": "missing_image_position_patient",
    "no_iop.dcm": "missing_image_orientation_patient",
    "no_spacing.dcm": "missing_pixel_spacing",
    "zz_conflict.dcm": "duplicate_sop_instance_uid",
    "zz_copy.dcm": "duplicate_identical",
    "DICOMDIR": "dicomdir",
    "sr.dcm": "non_image",
    "pr.dcm": "non_image",
    "pdf.dcm": "non_image",
    "unknown_syntax.dcm": "unknown_transfer_syntax",
    "other_size.dcm": "inconsistent_image_size",
}


@pytest.fixture(scope="module")
def corpus(small_exam, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    lge = sorted((small_exam[0] / "se006").glob("*.dcm"))
    good = out / "good"
    good.mkdir()
    for f in lge:
        shutil.copy(f, good / f.name)
    bad = out / "x_bad"
    bad.mkdir()
    src = lge[0]
    raw = src.read_bytes()
    ds0 = pydicom.dcmread(src)
    study = ds0.StudyInstanceUID
    (bad / "zero_byte.dcm").write_bytes(b"")
    (bad / "text.dcm").write_text("this is not DICOM\n" * 20)
    (bad / "random_after_preamble.dcm").write_bytes(
        bytes(128) + b"DICM" + np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    (bad / "truncated_header.dcm").write_bytes(raw[:400])
    (bad / "truncated_pixels.dcm").write_bytes(raw[:-100])

    def new_uid(ds, k):
        ds.SOPInstanceUID = ds.SOPInstanceUID + f".9{k}"
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

    edits = {
        "pixel_length.dcm": lambda ds: (new_uid(ds, 1), setattr(ds, "Rows", 20)),
        "no_study.dcm": lambda ds: (new_uid(ds, 2), delattr(ds, "StudyInstanceUID")),
        "no_series.dcm": lambda ds: (new_uid(ds, 3), delattr(ds, "SeriesInstanceUID")),
        "no_sop.dcm": lambda ds: delattr(ds, "SOPInstanceUID"),
        "no_ipp.dcm": lambda ds: (new_uid(ds, 4), delattr(ds, "ImagePositionPatient")),
        "no_iop.dcm": lambda ds: (new_uid(ds, 5), delattr(ds, "ImageOrientationPatient")),
        "no_spacing.dcm": lambda ds: (new_uid(ds, 6), delattr(ds, "PixelSpacing")),
        "zz_conflict.dcm": lambda ds: setattr(ds, "PixelData", bytes(len(ds.PixelData))),
        "other_size.dcm": lambda ds: (new_uid(ds, 7), setattr(ds, "Rows", 8),
                                      setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 2])),
    }
    for name, change in edits.items():
        _edit(src, bad / name, change)
    shutil.copy(src, bad / "zz_copy.dcm")
    dicomdir = _non_image(bad / "DICOMDIR", "1.2.840.10008.1.3.10", study)
    assert dicomdir.exists()
    _non_image(bad / "sr.dcm", BasicTextSRStorage, study)
    _non_image(bad / "pr.dcm", GrayscaleSoftcopyPresentationStateStorage, study)
    _non_image(bad / "pdf.dcm", EncapsulatedPDFStorage, study)
    # a transfer syntax nobody knows: patch the UID in the file meta (same length keeps the group length)
    patched = raw.replace(b"1.2.840.10008.1.2.1\x00", b"1.2.840.99999.1.2.1\x00", 1)
    assert patched != raw
    (bad / "unknown_syntax.dcm").write_bytes(patched)
    # a second study in the same folder
    other = out / "other_study"
    other.mkdir()
    for i, f in enumerate(lge[:3]):
        _edit(f, other / f.name, lambda ds, i=i: (setattr(ds, "StudyInstanceUID", study + ".2"),
                                                  setattr(ds, "SeriesInstanceUID", ds.SeriesInstanceUID + ".2"),
                                                  new_uid(ds, 50 + i)))
    return out


def test_every_bad_file_has_a_named_reason(corpus):
    assert len(CASES) >= 15
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroClickWarning)
        exam = scan(corpus)
    codes = {Path(r.path).name: r.code for r in exam.rejected}
    assert codes == CASES
    for r in exam.rejected:
        assert len(r.reason) > 15
    # nothing silently dropped: every file is in a series or rejected
    used = {p for s in exam.series for p in s.paths}
    assert len(used) + len(exam.rejected) == exam.n_files == len([p for p in corpus.rglob("*") if p.is_file()])


def test_two_studies_are_split_and_reported(corpus):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ZeroClickWarning)
        exam = scan(corpus)
    assert len(exam.studies) == 2
    assert sorted(len(st.series) for st in exam.studies) == [1, 1]
    assert any("2 studies" in p for p in exam.problems)
    lge = max(exam.series, key=lambda s: s.n_images)
    assert lge.n_images == 6 and lge.label == "lge_mag"
    assert any("different content" in p for p in lge.problems)
    assert lge.volume().array.shape == (6, 16, 16)


def test_strictness_raise_stops_at_the_first_problem(corpus):
    with pytest.raises((InvalidDicomError, InvalidSeriesError)):
        scan(corpus, strictness="raise")
    with pytest.raises(InvalidInputError, match="strictness"):
        scan(corpus, strictness="loud")  # type: ignore[arg-type]


def test_strictness_warn_and_ignore(corpus):
    with pytest.warns(ZeroClickWarning, match="truncated"):
        scan(corpus / "x_bad", strictness="warn")
    with warnings.catch_warnings():
        warnings.simplefilter("error", ZeroClickWarning)
        exam = scan(corpus / "x_bad", strictness="ignore")
    assert {r.code for r in exam.rejected} >= {"empty_file", "non_image"}


def test_clean_series_passes_strict_mode(corpus):
    exam = scan(corpus / "good", strictness="raise")
    assert [s.label for s in exam.series] == ["lge_mag"]


def test_no_preamble_dataset_is_read_through_pydicom(small_exam, tmp_path):
    src = sorted((small_exam[0] / "se006").glob("*.dcm"))[0]
    ds = pydicom.dcmread(src)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    raw = tmp_path / "raw.dcm"
    ds.preamble = None
    ds.save_as(raw, enforce_file_format=False)
    assert raw.read_bytes()[128:132] != b"DICM"
    exam = scan([raw], strictness="raise")
    assert exam.series[0].n_images == 1
    np.testing.assert_array_equal(exam.series[0].volume().array[0], ds.pixel_array)
