"""DICOM writers: Segmentation (SEG), TID 1500 measurement report (SR), encapsulated PDF.

All objects carry Manufacturer "zeroclick", the zeroclick SoftwareVersions and deterministic UIDs
(:func:`derived_uid`). :func:`save_atomically` writes a dataset under a temporary name, fsyncs and
renames it, so a reader never sees half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydicom.dataset import Dataset

from zeroclick.imaging.dicom.write.pdf import ENCAPSULATED_PDF_STORAGE, encapsulated_pdf
from zeroclick.imaging.dicom.write.seg import MANUFACTURER, SegmentSpec, segmentation_from_labels
from zeroclick.imaging.dicom.write.sr import MeasurementItem, SegmentMeasurements, measurement_report
from zeroclick.imaging.dicom.write.uids import derived_uid

__all__ = [
    "ENCAPSULATED_PDF_STORAGE",
    "MANUFACTURER",
    "MeasurementItem",
    "SegmentMeasurements",
    "SegmentSpec",
    "derived_uid",
    "encapsulated_pdf",
    "measurement_report",
    "save_atomically",
    "segmentation_from_labels",
]


def save_atomically(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as a DICOM file at ``path`` via a temporary name, fsync and rename.

    Returns
    -------
    pathlib.Path
        The final path.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            ds.save_as(fh, enforce_file_format=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    return final
