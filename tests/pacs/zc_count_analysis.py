"""A stand-in analysis for listener tests on any study: one Basic Text SR saying how many images it saw.

Its UIDs are derived from the sorted input SOP Instance UIDs (like the real writers: the same inputs give the same
result UIDs), so a test can tell which set of images a result set came from. Called as ``module:function``.
"""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import BasicTextSRStorage, ExplicitVRLittleEndian, generate_uid


def sr_uid_for(sop_uids: list[str]) -> str:
    return generate_uid(entropy_srcs=[*sorted(sop_uids), "zc-count-sr"])


def analyse(in_dir: Path, out_dir: Path) -> list[Path]:
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(Path(in_dir).glob("*.dcm"))]
    uids = [str(h.SOPInstanceUID) for h in headers]
    sr = Dataset()
    sr.file_meta = FileMetaDataset()
    sr.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    sr.SOPClassUID = sr.file_meta.MediaStorageSOPClassUID = BasicTextSRStorage
    sr.SOPInstanceUID = sr.file_meta.MediaStorageSOPInstanceUID = sr_uid_for(uids)
    sr.SeriesInstanceUID = generate_uid(entropy_srcs=[*sorted(uids), "zc-count-series"])
    sr.StudyInstanceUID = headers[0].StudyInstanceUID
    sr.Modality, sr.Manufacturer, sr.SeriesNumber, sr.InstanceNumber = "SR", "zeroclick", 900, 1
    sr.ValueType, sr.ContinuityOfContent = "CONTAINER", "SEPARATE"
    sr.CompletionFlag, sr.VerificationFlag = "COMPLETE", "UNVERIFIED"
    text = Dataset()
    text.RelationshipType, text.ValueType, text.TextValue = "CONTAINS", "TEXT", f"{len(uids)} images analysed"
    sr.ContentSequence = [text]
    out = Path(out_dir) / "count_sr.dcm"
    sr.save_as(out, enforce_file_format=True)
    return [out]
