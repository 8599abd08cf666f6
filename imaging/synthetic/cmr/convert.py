"""``nifti_to_dicom``: wrap a NIfTI volume (e.g. a real ACDC / EMIDEC case) into a DICOM MR series.

Orientation follows docs/conventions.md: DICOM pixel rows/columns are NIfTI y/x (the 2-D image of slice ``z`` is
``data[:, :, z].T``), and the patient geometry is the NIfTI affine converted from RAS to LPS, so that
``Volume.affine = diag(-1, -1, 1, 1) @ nifti_affine @ P`` holds for the series read back from DICOM.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage

from zeroclick.imaging.errors import InvalidInputError

from .writer import FrameInfo, SeriesWriter, transfer_syntax_uid

logger = logging.getLogger(__name__)

_FLIP = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class ConvertedSeries:
    """What :func:`nifti_to_dicom` wrote."""

    out_dir: Path
    files: tuple[Path, ...]
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    shape_xyz: tuple[int, ...]
    spacing_mm: tuple[float, float, float]  # (x = between columns, y = between rows, z = between slices)
    rescale_slope: float
    rescale_intercept: float
    warnings: tuple[str, ...]


def _geometry(img: nib.Nifti1Image) -> tuple[np.ndarray, tuple[float, float, float], list[str]]:
    """Direction cosines (3x3, columns x/y/z in RAS), spacing, and warnings about the affine."""
    aff = np.asarray(img.affine, dtype=np.float64)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    norms = np.linalg.norm(aff[:3, :3], axis=0)
    warnings: list[str] = []
    if np.any(norms == 0):
        raise InvalidInputError("the NIfTI affine is singular; fix the file's sform/qform before converting")
    directions = aff[:3, :3] / norms
    if not np.allclose(norms, zooms, rtol=1e-3):
        warnings.append(
            f"affine column lengths {np.round(norms, 4).tolist()} differ from the header voxel sizes "
            f"{[round(z, 4) for z in zooms]}: used the header voxel sizes with the affine's directions")
    return directions, zooms, warnings  # type: ignore[return-value]


def _stored(data: np.ndarray) -> tuple[np.ndarray, float, float, int, int]:
    """(stored uint16/int16 array, slope, intercept, bits stored, pixel representation)."""
    finite = data[np.isfinite(data)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    integral = np.all(np.mod(finite, 1) == 0)
    if integral and lo >= 0 and hi <= 65535:
        bits = 12 if hi < 4096 else 16
        return data.astype(np.uint16), 1.0, 0.0, bits, 0
    if integral and lo >= -32768 and hi <= 32767:
        return data.astype(np.int16), 1.0, 0.0, 16, 1
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.clip(np.rint((np.nan_to_num(data, nan=lo) - lo) / slope), 0, 65535).astype(np.uint16)
    return stored, slope, lo, 16, 0


def nifti_to_dicom(nifti_path: str | Path, out_dir: str | Path, *, series_description: str = "NIfTI import",
                   modality: str = "MR", series_number: int = 1, patient_name: str = "NIFTI^IMPORT",
                   patient_id: str | None = None, study_instance_uid: str | None = None,
                   frame_of_reference_uid: str | None = None, trigger_times_ms: list[float] | None = None,
                   transfer_syntax: str = "explicit") -> ConvertedSeries:
    """Write a 3-D (``x, y, z``) or 4-D cine (``x, y, z, t``) NIfTI volume as single-frame DICOM MR images.

    Parameters
    ----------
    nifti_path
        The NIfTI file (``.nii`` / ``.nii.gz``).
    out_dir
        Folder for the files (``IM00001.dcm`` ..., slice-major, then phase).
    series_description, series_number, patient_name, patient_id
        Header values; the patient ID defaults to one derived from the file's SHA-256 (no real identity).
    study_instance_uid, frame_of_reference_uid
        Pass the same values to put several converted volumes in one study / frame of reference
        (e.g. the ED and ES frames of one ACDC patient); derived from the file content otherwise.
    trigger_times_ms
        One per phase of a 4-D volume; default: the NIfTI time step (``pixdim[4]``, ms) or 1 ms steps.
    transfer_syntax
        ``"explicit"``, ``"jpegls"``, ``"rle"`` or ``"j2k"`` (lossless).

    Notes
    -----
    Integer-valued data are stored exactly (uint16, or int16 for negative values); other data are
    scaled to uint16 with RescaleSlope/RescaleIntercept (round-trip error at most slope / 2).

    Examples
    --------
    >>> s = nifti_to_dicom("patient101_frame01.nii.gz", "p101_ed", series_description="ACDC ED")  # doctest: +SKIP
    >>> len(s.files)  # doctest: +SKIP
    10
    """
    if modality != "MR":
        raise InvalidInputError(f"modality={modality!r}: only 'MR' is supported (MR Image Storage)")
    transfer_syntax_uid(transfer_syntax)
    path = Path(nifti_path)
    if not path.exists():
        raise InvalidInputError(f"{path} does not exist")
    try:
        img = cast(nib.Nifti1Image, nib.load(path))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise InvalidInputError(f"{path} is not a NIfTI file nibabel can read: {exc}") from exc
    data = np.asarray(img.dataobj)
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim not in (3, 4):
        raise InvalidInputError(f"{path} has shape {data.shape}; expected x,y,z or x,y,z,t")
    n_phases = data.shape[3] if data.ndim == 4 else 1
    if trigger_times_ms is not None and len(trigger_times_ms) != n_phases:
        raise InvalidInputError(f"trigger_times_ms has {len(trigger_times_ms)} values for {n_phases} phases")
    directions, zooms, warnings = _geometry(img)
    for w in warnings:
        logger.warning("%s: %s", path.name, w)

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    root = "2.25." + str(int(digest[:30], 16))
    study_uid = study_instance_uid or f"{root}.1"
    series_uid = f"{root}.2.{series_number}"
    for_uid = frame_of_reference_uid or f"{root}.3"
    stored, slope, intercept, bits, representation = _stored(data)

    lps = _FLIP @ directions  # columns: x (image columns), y (image rows), z (slices) in LPS
    row_dir, col_dir = lps[:, 0], lps[:, 1]
    origin_ras = np.asarray(img.affine, dtype=np.float64)[:3, 3]
    step = lps[:, 2] * zooms[2]
    origin = _FLIP @ origin_ras
    normal = np.cross(row_dir, col_dir)

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
    ds.SOPClassUID = MRImageStorage
    ds.StudyDate = "20260101"
    ds.StudyTime = "120000"
    ds.AccessionNumber = ""
    ds.Modality = modality
    ds.Manufacturer = "zeroclick nifti_to_dicom"
    ds.ReferringPhysicianName = ""
    ds.SeriesDescription = series_description
    ds.PatientName = patient_name
    ds.PatientID = patient_id or f"NIFTI-{digest[:12]}"
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.ScanningSequence = "RM"
    ds.SequenceVariant = "NONE"
    ds.ScanOptions = ""
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = f"{zooms[2]:.6g}"
    ds.SpacingBetweenSlices = f"{zooms[2]:.6g}"
    ds.EchoTrainLength = "1"
    if n_phases > 1:
        ds.CardiacNumberOfImages = str(n_phases)
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = str(series_number)
    ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*row_dir, *col_dir)]
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = int(data.shape[1])
    ds.Columns = int(data.shape[0])
    ds.PixelSpacing = [f"{zooms[1]:.6g}", f"{zooms[0]:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = representation
    ds.RescaleIntercept = f"{intercept:.10g}"
    ds.RescaleSlope = f"{slope:.10g}"
    ds.RescaleType = "US"

    if trigger_times_ms is None and n_phases > 1:
        dt = float(img.header.get_zooms()[3]) if len(img.header.get_zooms()) > 3 else 0.0
        trigger_times_ms = [t * (dt if dt > 0 else 1.0) for t in range(n_phases)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    writer = SeriesWriter(ds, transfer_syntax)
    files = []
    for z in range(data.shape[2]):
        position = origin + z * step
        for t in range(n_phases):
            inst = z * n_phases + t + 1
            pixels = stored[:, :, z, t].T if data.ndim == 4 else stored[:, :, z].T
            frame = FrameInfo(
                instance_number=inst, sop_instance_uid=f"{series_uid}.{inst}", position=list(position),
                slice_location=float(np.dot(normal, position)),
                trigger_time_ms=None if trigger_times_ms is None else float(trigger_times_ms[t]),
                inversion_time_ms=None, acquisition_time="120000", temporal_position=None,
                in_stack_position=z + 1, temporal_index=t + 1)
            target = out / f"IM{inst:05d}.dcm"
            writer.write(np.ascontiguousarray(pixels), frame, target)
            files.append(target)
    return ConvertedSeries(out, tuple(files), study_uid, series_uid, for_uid, tuple(int(s) for s in data.shape),
                           zooms, slope, intercept, tuple(warnings))
