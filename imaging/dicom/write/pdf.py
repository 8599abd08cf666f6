"""Encapsulated PDF (DICOM Encapsulated PDF Storage) in the study of a source image.

highdicom has no encapsulated-document class, so the object is assembled with pydicom from the
modules of the IOD (PS3.3 A.45.1): Patient, General Study, Encapsulated Document Series, General and
SC Equipment, Encapsulated Document, SOP Common. Patient and study attributes are copied from the
source image so the report lands in the same study.
"""

from __future__ import annotations

import datetime as _dt

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian

from zeroclick.imaging._version import __version__
from zeroclick.imaging.dicom.write.seg import MANUFACTURER, MODEL_NAME
from zeroclick.imaging.errors import InvalidInputError

__all__ = ["ENCAPSULATED_PDF_STORAGE", "encapsulated_pdf"]

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"

# Patient and General Study attributes copied from the source (type 2 ones are written empty if absent).
_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "IssuerOfPatientID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
    "StudyDescription",
    "SpecificCharacterSet",
)
_TYPE2 = {"PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber"}


def encapsulated_pdf(
    pdf: bytes,
    source: Dataset,
    *,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    series_description: str,
    document_title: str,
    software_versions: str = __version__,
    instance_number: int = 1,
    when: _dt.datetime | None = None,
) -> Dataset:
    """Wrap PDF bytes into an Encapsulated PDF dataset in the study of ``source``.

    Parameters
    ----------
    pdf
        The PDF file content (must start with ``%PDF``).
    source
        Any image of the study (its patient and study attributes are copied; pixels are not needed).
    series_instance_uid, sop_instance_uid, series_number, series_description
        Attributes of the new object.
    document_title
        Shown by PACS viewers as the document name.
    when
        Content date/time (default: now, UTC).

    Returns
    -------
    pydicom.dataset.Dataset
        Ready for ``save_as(path, enforce_file_format=True)``.

    Raises
    ------
    InvalidInputError
        When ``pdf`` is not a PDF or ``source`` has no StudyInstanceUID.
    """
    if not pdf.startswith(b"%PDF"):
        raise InvalidInputError("encapsulated_pdf needs the bytes of a PDF file (they start with %PDF)")
    if "StudyInstanceUID" not in source:
        raise InvalidInputError("the source image has no StudyInstanceUID: cannot place the report in its study")
    when = when or _dt.datetime.now(_dt.timezone.utc)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(ENCAPSULATED_PDF_STORAGE)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    for keyword in _PATIENT_STUDY:
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
        elif keyword in _TYPE2:
            setattr(ds, keyword, "")
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = sop_instance_uid
    # Encapsulated Document Series
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_instance_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description
    # General + SC Equipment
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = MODEL_NAME
    ds.SoftwareVersions = software_versions
    ds.ConversionType = "WSD"
    # Encapsulated Document
    ds.InstanceNumber = instance_number
    ds.ContentDate = when.strftime("%Y%m%d")
    ds.ContentTime = when.strftime("%H%M%S")
    ds.AcquisitionDateTime = when.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = document_title[:64]
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    return ds
