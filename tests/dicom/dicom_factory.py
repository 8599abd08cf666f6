"""Tiny pydicom-made MR exams with known geometry and classes for the zeroclick.imaging.dicom tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    MRImageStorage,
)


def _jpeg_baseline(a: np.ndarray) -> bytes:
    import imagecodecs

    return imagecodecs.jpeg8_encode(np.clip(a, 0, 255).astype(np.uint8), level=95)


def _jpeg_lossless(a: np.ndarray) -> bytes:
    import imagecodecs

    return imagecodecs.ljpeg_encode(a.astype(np.uint16), bitspersample=12)


# transfer syntaxes pydicom cannot encode: encoded with imagecodecs and encapsulated here
ENCAPSULATE = {JPEGBaseline8Bit: _jpeg_baseline, JPEGLosslessSV1: _jpeg_lossless}

ROOT = "1.2.826.0.1.3680043.10.1234."
LONG_AXIS = np.array([0.6, -0.5, -0.62])
LONG_AXIS = LONG_AXIS / np.linalg.norm(LONG_AXIS)
HEART_CENTRE = np.array([20.0, 30.0, -40.0])


def uid(*parts: object) -> str:
    return ROOT + ".".join(str(int(p)) for p in parts)


def _basis(long_axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """e1 = patient right-anterior projected on the short-axis plane, e2 = long_axis x e1."""
    rv = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)
    ref = rv - np.dot(rv, long_axis) * long_axis
    e1 = ref / np.linalg.norm(ref)
    return e1, np.cross(long_axis, e1)


def sax_orientation() -> tuple[float, ...]:
    e1, e2 = _basis(LONG_AXIS)
    # normal = row x col = e1 x e2 = LONG_AXIS
    return (*e1, *e2)


def lax_orientation(angle_deg: float) -> tuple[float, ...]:
    """A long-axis view containing the direction at ``angle_deg`` from e1 (towards e2) in the SAX plane."""
    e1, e2 = _basis(LONG_AXIS)
    a = np.radians(angle_deg)
    row = np.cos(a) * e1 + np.sin(a) * e2
    col = -LONG_AXIS
    return (*row, *col)


def write_mr(
    path: Path,
    *,
    study: str,
    series: str,
    sop: str,
    series_number: int,
    description: str = "",
    position: tuple[float, float, float],
    orientation: tuple[float, ...],
    pixel_spacing: tuple[float, float] = (1.5, 1.5),
    rows: int = 16,
    cols: int = 16,
    instance_number: int = 1,
    trigger_time: float | None = None,
    inversion_time: float | None = None,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "ND"),
    sequence_name: str = "*tfi2d1",
    scanning_sequence: str | list[str] = "GR",
    sequence_variant: str | list[str] = "SP",
    echo_time: float = 1.2,
    acquisition_time: str = "101010.000000",
    manufacturer: str = "SIEMENS",
    pixels: np.ndarray | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    signed: bool = False,
    transfer_syntax: str = ExplicitVRLittleEndian,
    frame_of_reference: str | None = None,
    extra: dict | None = None,
) -> Path:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(image_type)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop
    ds.AcquisitionTime = acquisition_time
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.SeriesDescription = description
    ds.PatientName = "Test^Anonymous"
    ds.PatientID = "ANON"
    ds.PatientSize = 1.75
    ds.PatientWeight = 72
    ds.ScanningSequence = scanning_sequence
    ds.SequenceVariant = sequence_variant
    ds.SequenceName = sequence_name
    ds.SliceThickness = 8
    ds.RepetitionTime = 40
    ds.EchoTime = echo_time
    if inversion_time is not None:
        ds.InversionTime = inversion_time
    if trigger_time is not None:
        ds.TriggerTime = trigger_time
    ds.HeartRate = 60
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [round(float(v), 4) for v in position]
    ds.ImageOrientationPatient = [round(float(v), 6) for v in orientation]
    ds.FrameOfReferenceUID = frame_of_reference or (study + ".9")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = list(pixel_spacing)
    ds.BitsAllocated = 8 if transfer_syntax == JPEGBaseline8Bit else 16
    ds.BitsStored = 8 if transfer_syntax == JPEGBaseline8Bit else (16 if signed else 12)
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    if slope is not None:
        ds.RescaleSlope = slope
        ds.RescaleIntercept = intercept or 0
    elif intercept is not None:
        ds.RescaleSlope = 1
        ds.RescaleIntercept = intercept
    for k, v in (extra or {}).items():
        setattr(ds, k, v)
    if pixels is None:
        pixels = (np.arange(rows * cols).reshape(rows, cols) + instance_number) % 4000
    ds.PixelData = np.asarray(pixels, dtype=np.int16 if signed else np.uint16).tobytes()
    if transfer_syntax == JPEGBaseline8Bit:
        ds.PixelData = np.clip(pixels, 0, 255).astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        ds.save_as(path, enforce_file_format=True)
    elif transfer_syntax in ENCAPSULATE:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.PixelData = encapsulate([ENCAPSULATE[transfer_syntax](np.asarray(pixels))])
        ds["PixelData"].VR = "OB"
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.compress(transfer_syntax)
        ds.save_as(path, enforce_file_format=True)
    return path


def _write_series(out: Path, study: str, number: int, description: str, slices: list[np.ndarray],
                  orientation: tuple[float, ...], *, n_phases: int = 1, trigger_times=None, **kw) -> list[Path]:
    series = uid(7, number)
    paths = []
    inst = 0
    for s, pos in enumerate(slices):
        for p in range(n_phases):
            inst += 1
            tt = None if trigger_times is None else trigger_times(s, p)
            each = {k: (v(s, p) if callable(v) else v) for k, v in kw.items()}
            paths.append(write_mr(
                out / f"se{number:03d}" / f"im{inst:04d}.dcm", study=study, series=series, sop=uid(8, number, inst),
                series_number=number, description=description, position=tuple(pos), orientation=orientation,
                instance_number=inst, trigger_time=tt, **each))
    return paths


def _sax_positions(n: int, spacing: float = 8.0) -> list[np.ndarray]:
    e1, e2 = _basis(LONG_AXIS)
    corner = HEART_CENTRE - 12 * e1 - 12 * e2
    return [corner + (s - n / 2) * spacing * LONG_AXIS for s in range(n)]


def _lax_position(orientation: tuple[float, ...]) -> list[np.ndarray]:
    row, col = np.array(orientation[:3]), np.array(orientation[3:])
    return [HEART_CENTRE - 12 * row - 12 * col]


EXPECTED = {
    1: "localizer", 2: "cine_sax", 3: "cine_lax_2ch", 4: "cine_lax_3ch", 5: "cine_lax_4ch", 6: "lge_mag",
    7: "lge_psir", 8: "t1_molli_source", 9: "t1_map", 10: "t2_map", 11: "t2w", 12: "perfusion", 13: "flow",
}
SAX_SLICES = 6
CINE_PHASES = 10


def make_exam(out: Path, *, study_number: int = 1, descriptions: bool = True, **common) -> dict[int, str]:
    """Write one small exam (13 series, one per class); returns series number -> expected class."""
    study = uid(5, study_number)
    d = (lambda s: s) if descriptions else (lambda s: "")
    sax = sax_orientation()
    tt = lambda s, p: 30.0 * p + 0.3 * s  # noqa: E731  (Philips-like: differs slightly per slice)
    # localizer: 3 orthogonal planes
    loc_orients = [(1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1), (0, 1, 0, 0, 0, -1)]
    series = uid(7, 1)
    for i, o in enumerate(loc_orients):
        write_mr(out / "se001" / f"im{i:04d}.dcm", study=study, series=series, sop=uid(8, 1, i + 1), series_number=1,
                 description=d("localizer"), position=(-100.0, -100.0, 0.0), orientation=o, instance_number=i + 1,
                 sequence_name="*fl2d1", **common)
    _write_series(out, study, 2, d("cine_sax"), _sax_positions(SAX_SLICES), sax, n_phases=CINE_PHASES,
                  trigger_times=tt, **common)
    for number, angle, name in ((3, 90.0, "cine_2ch"), (4, 125.0, "cine_3ch"), (5, 0.0, "cine_4ch")):
        o = lax_orientation(angle)
        _write_series(out, study, number, d(name), _lax_position(o), o, n_phases=CINE_PHASES, trigger_times=tt,
                      **common)
    ir = dict(scanning_sequence=["GR", "IR"], sequence_variant=["SP", "MP"], sequence_name="*tfl2d1")
    _write_series(out, study, 6, d("lge"), _sax_positions(SAX_SLICES), sax, inversion_time=300.0,
                  trigger_times=lambda s, p: 400.0, **ir, **common)
    _write_series(out, study, 7, d("lge_psir"), _sax_positions(SAX_SLICES), sax, inversion_time=300.0,
                  image_type=("DERIVED", "PRIMARY", "M", "PSIR"), intercept=-4096.0, **ir, **common)
    tis = [100.0, 180.0, 260.0, 1100.0, 1180.0, 1260.0, 2100.0, 3100.0]
    _write_series(out, study, 8, d("molli"), _sax_positions(1), sax, n_phases=len(tis),
                  inversion_time=lambda s, p: tis[p], trigger_times=lambda s, p: 500.0,
                  **{**ir, "sequence_name": "*tfi2d1_MOLLI"}, **common)
    _write_series(out, study, 9, d("t1map"), _sax_positions(1), sax, inversion_time=100.0,
                  image_type=("DERIVED", "PRIMARY", "T1 MAP", "MOCO"), **{**ir, "sequence_name": "*tfi2d1_MOLLI"},
                  **common)
    _write_series(out, study, 10, d("t2map"), _sax_positions(1), sax,
                  image_type=("DERIVED", "PRIMARY", "T2 MAP", "MOCO"), sequence_name="*tfi2d1_T2prep", **common)
    _write_series(out, study, 11, d("t2w_tse"), _sax_positions(3), sax, scanning_sequence=["SE", "IR"],
                  sequence_variant=["SK", "SP", "MP"], sequence_name="*tse2d1_17", echo_time=60.0,
                  inversion_time=170.0, **common)
    _write_series(out, study, 12, d("perfusion"), _sax_positions(3), sax, n_phases=20,
                  trigger_times=lambda s, p: 100.0 + 150 * s,
                  acquisition_time=lambda s, p: f"1010{10 + p:02d}.{s:06d}", sequence_name="*tfl2d1",
                  sequence_variant=["SK", "SP", "MP"], **common)
    o = lax_orientation(40.0)
    _write_series(out, study, 13, d("flow_ao"), _lax_position(o), o, n_phases=CINE_PHASES, trigger_times=tt,
                  image_type=("ORIGINAL", "PRIMARY", "P", "ND"), sequence_name="*fl2d1_v150in", **common)
    return dict(EXPECTED)


def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)
