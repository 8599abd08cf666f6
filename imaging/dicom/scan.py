"""Whole-exam DICOM scan: find, read (headers only), validate, group, classify and lay out every series.

>>> exam = scan("exam_folder")                      # doctest: +SKIP
>>> [(s.number, s.classification.label, s.n_images) for s in exam.series]   # doctest: +SKIP
>>> cine = exam.find("cine_sax")[0].volume()        # pixels decoded only now   # doctest: +SKIP
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import pydicom.uid as uids
from pydicom.errors import InvalidDicomError as PydicomInvalidDicomError

from zeroclick.imaging.dicom.classify import CINE_LABELS, Classification, SeriesFeatures, classify_exam
from zeroclick.imaging.dicom.decode import decode_images, known_transfer_syntax
from zeroclick.imaging.dicom.geometry import Geometry, Image, build_geometry, survey
from zeroclick.imaging.dicom.headers import ENHANCED_MR_SOP_CLASSES, Header, forget_conversions, read_header
from zeroclick.imaging.dicom.identity import patient_key
from zeroclick.imaging.dicom.limits import Limits, check_series_pixels, default_limits, pixels_of
from zeroclick.imaging.dicom.sources import collect
from zeroclick.imaging.dicom.workers import _parallel, default_workers  # noqa: F401 - default_workers: public here too
from zeroclick.imaging.errors import (
    InvalidDicomError,
    InvalidSeriesError,
    Strictness,
    check_strictness,
    report_problem,
)
from zeroclick.imaging.volume import Volume

logger = logging.getLogger(__name__)

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
# SOP classes that carry no image even though some of them have pixel-like payloads.
_NON_IMAGE_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document (PDF/CDA)",
    "1.2.840.10008.5.1.4.1.1.66": "raw data / registration / segmentation",
    "1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.9.": "waveform",
}
_MR_IMAGE_SOP_CLASSES = frozenset({"1.2.840.10008.5.1.4.1.1.4"}) | ENHANCED_MR_SOP_CLASSES


@dataclass(frozen=True)
class Rejected:
    """A file that is not part of any series, with a short ``code`` and a reason that says what to do.

    ``series_instance_uid`` names the series the file claims to belong to when its header says so (QC then
    knows that series lost an image), ``""`` otherwise.
    """

    path: str
    reason: str
    code: str
    series_instance_uid: str = ""


@dataclass(frozen=True, eq=False)
class Series:
    """One series of one study: identity, class, geometry, problems; pixels only through :meth:`volume`."""

    uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    number: int | None
    description: str
    modality: str
    vendor: str
    sop_class_uid: str
    transfer_syntax_uid: str
    n_images: int
    orientation: tuple[float, ...] | None
    classification: Classification
    geometry: Geometry
    problems: tuple[str, ...]
    images: tuple[Image, ...] = field(repr=False)
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def series_instance_uid(self) -> str:
        return self.uid

    @property
    def label(self) -> str:
        return self.classification.label

    @property
    def ordered_images(self) -> list[Image]:
        """Images in volume order (phase-major), or in scan order when the series is not a regular grid."""
        layout = self.geometry.layout
        if layout is None or not self.geometry.regular:
            return list(self.images)
        return [self.images[i] for i in layout.reshape(-1) if i >= 0]

    @property
    def paths(self) -> list[str]:
        """File paths in volume order (same order as ``volume().sop_instance_uids`` flattened)."""
        return [im.path for im in self.ordered_images]

    def volume(self, *, dtype: Any = np.float32) -> Volume:
        """Decode the pixels now and return them with their geometry.

        Raises
        ------
        InvalidSeriesError
            When the images do not form one regular grid (mixed planes, sizes, unequal phase counts).
        MissingCodecError
            When the transfer syntax needs a decoder that is not installed.
        ResourceLimitError
            When the volume would hold more than ``max_pixels_per_series`` pixels (checked before decoding).
        """
        g = self.geometry
        if not g.regular or g.layout is None or g.affine is None or (g.layout < 0).any():
            raise InvalidSeriesError(
                f"series {self.number} ({self.label}) cannot be stacked into a volume: "
                + "; ".join(g.problems or ("irregular geometry",))
                + ". Re-export the series or pick another one."
            )
        images = self.ordered_images
        check_series_pixels(len(images), g.rows, g.cols, default_limits(), what=f"series {self.number} ({self.label})")
        pixels = decode_images(
            images,
            transfer_syntax=self.transfer_syntax_uid,
            bits_allocated=int(self.meta.get("bits_allocated", 16)),
            signed=bool(self.meta.get("pixel_representation", 0)),
            samples_per_pixel=int(self.meta.get("samples_per_pixel", 1)),
            dtype=dtype,
        )
        n_phases, n_slices = g.layout.shape
        uids_arr = np.array([im.sop_instance_uid for im in images], dtype=object)
        cine = g.time_axis is not None and n_phases > 1
        array: np.ndarray
        if cine:
            array = pixels.reshape(n_phases, n_slices, g.rows, g.cols)
            uids_arr = uids_arr.reshape(n_phases, n_slices)
        else:
            array = pixels.reshape(n_slices, g.rows, g.cols)
        spacing = (g.slice_spacing_mm or g.slice_thickness_mm or 1.0,
                   *(g.pixel_spacing_mm or (1.0, 1.0)))
        meta = dict(self.meta)
        meta.update(series_number=self.number, series_description=self.description, label=self.label,
                    time_axis=g.time_axis, problems=list(self.problems))
        if g.inversion_times_ms is not None:
            meta["inversion_times_ms"] = list(g.inversion_times_ms)
        # the first image's trigger time as the scan parsed it (non-cine series: LGE, T1 maps, MOLLI sources)
        meta["first_trigger_time_ms"] = None if images[0].trigger_time_ms is None else float(images[0].trigger_time_ms)
        meta["slice_positions_lps_mm"] = [list(images[i].position or ()) for i in range(n_slices)]
        if any(im.frame >= 0 for im in images):
            meta["frame_numbers"] = [im.frame + 1 for im in images]
        # Where each image came from, so writers (DICOM SEG/SR) re-read exactly these headers, not the whole folder.
        meta["source_paths_by_uid"] = {im.sop_instance_uid: im.path for im in images}
        return Volume(
            array=array,
            affine=g.affine,
            spacing_mm=spacing,  # type: ignore[arg-type]
            trigger_times_ms=g.trigger_times_ms if cine else None,
            sop_instance_uids=uids_arr,
            series_instance_uid=self.uid,
            study_instance_uid=self.study_instance_uid,
            frame_of_reference_uid=self.frame_of_reference_uid,
            source=os.path.dirname(images[0].path),
            meta=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "series_instance_uid": self.uid,
            "number": self.number,
            "description": self.description,
            "modality": self.modality,
            "vendor": self.vendor,
            "sop_class_uid": self.sop_class_uid,
            "transfer_syntax_uid": self.transfer_syntax_uid,
            "n_images": self.n_images,
            "label": self.label,
            "reasons": list(self.classification.reasons),
            "geometry": self.geometry.to_dict(),
            "problems": list(self.problems),
            "value_notes": list(self.meta.get("value_notes", ())),
        }


@dataclass(frozen=True, eq=False)
class Study:
    """The series of one StudyInstanceUID, in SeriesNumber order."""

    study_instance_uid: str
    series: tuple[Series, ...]


@dataclass(frozen=True, eq=False)
class Exam:
    """Everything found in a scan source: studies, their series, rejected files and exam-level problems."""

    studies: tuple[Study, ...]
    rejected: tuple[Rejected, ...]
    problems: tuple[str, ...]
    n_files: int
    _keep_alive: tuple[Any, ...] = field(default=(), repr=False)

    @property
    def series(self) -> list[Series]:
        return [s for st in self.studies for s in st.series]

    def find(self, label: str) -> list[Series]:
        """Series with classification ``label`` (see :data:`zeroclick.imaging.dicom.classify.LABELS`)."""
        return [s for s in self.series if s.label == label]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_files": self.n_files,
            "studies": [{"study_instance_uid": st.study_instance_uid,
                         "series": [s.to_dict() for s in st.series]} for st in self.studies],
            "rejected": [{"path": r.path, "code": r.code, "reason": r.reason} for r in self.rejected],
            "problems": list(self.problems),
        }


# ---------------------------------------------------------------------------------------------- reading


def _read_one(path: str, limits: Limits | None = None) -> tuple[str, Header | None, str, str]:
    """(path, header, code, reason); never raises."""
    try:
        size = os.path.getsize(path)
        if size == 0:
            return path, None, "empty_file", "zero-byte file: nothing to read; re-export or remove it"
        ceiling = (limits or _LIMITS).max_file_bytes
        if size > ceiling:
            return path, None, "file_too_large", f"{size} bytes, more than the ceiling of {ceiling} bytes per " \
                "file (max_file_bytes); raise it with ZEROCLICK_LIMITS if the file is genuine"
        return path, read_header(path, lazy=True), "", ""  # series-level fields are not needed per file
    except PydicomInvalidDicomError:
        return path, None, "not_dicom", "not a DICOM file (no DICM preamble, no readable dataset)"
    except OSError as exc:
        return path, None, "unreadable", f"cannot read the file ({exc.strerror or exc}); check permissions"
    except Exception as exc:  # noqa: BLE001 - any parser failure is a rejection, never a crash of the batch
        try:
            with open(path, "rb") as fh:
                fh.seek(128)
                is_part10 = fh.read(4) == b"DICM"
        except OSError:
            is_part10 = False
        if is_part10:
            return path, None, "truncated_header", f"DICOM header cannot be parsed ({type(exc).__name__}: {exc}); " \
                "the file is probably truncated or damaged: re-send it"
        return path, None, "not_dicom", f"not a DICOM file ({type(exc).__name__})"


def _read_chunk(paths: list[str]) -> list[tuple[str, Header | None, str, str]]:
    return [_read_one(p) for p in paths]


class _Accepted(NamedTuple):
    """What a worker sends back for a usable file (the full header is re-read once per series)."""

    path: str
    study_uid: str
    series_uid: str
    sop_uid: str
    size: tuple[int, int]
    instance_number: int
    images: list[Image]
    notes: tuple[str, ...] = ()


# The ceilings of the scan in progress (set by scan() before the workers fork; the defaults otherwise).
_LIMITS = Limits()


def _ingest_one(path: str) -> _Accepted | Rejected:
    """Read, validate and turn one file into images (runs in the worker processes); never raises."""
    path, head, code, reason = _read_one(path)
    if head is None:
        return Rejected(path, reason, code)
    try:
        rej = validate(path, head, limits=_LIMITS)
        if rej is not None:
            claimed = head.get("SeriesInstanceUID")
            return replace(rej, series_instance_uid=claimed) if isinstance(claimed, str) else rej
        return _Accepted(path, str(head["StudyInstanceUID"]), str(head["SeriesInstanceUID"]),
                         str(head["SOPInstanceUID"]), (int(head["Rows"]), int(head["Columns"])),
                         int(_scalar(head.get("InstanceNumber")) or 0), _images_of(path, head),
                         tuple(head.get("_notes", ())))
    except (ValueError, TypeError, IndexError, KeyError, OverflowError, ArithmeticError) as exc:
        # a header combination validate() did not foresee: a named rejection, never a crash of the batch
        return Rejected(path, f"header values cannot be used ({type(exc).__name__}: {exc}); check the export",
                        "unusable_header")


def _ingest_chunk(paths: list[str]) -> list[_Accepted | Rejected]:
    return [_ingest_one(p) for p in paths]


def read_headers(paths: list[str], *, workers: int | None = None) -> list[tuple[str, Header | None, str, str]]:
    """Read the headers of ``paths`` with up to ``workers`` processes (all cores by default)."""
    return _parallel(_read_chunk, paths, workers)


# ------------------------------------------------------------------------------------------- validation


def _tm_seconds(value: Any) -> float | None:
    if not value:
        return None
    text = str(value).replace(":", "")
    try:
        hh, mm = int(text[0:2]), int(text[2:4] or 0)
        ss = float(text[4:] or 0)
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def _non_image_kind(sop_class: str) -> str | None:
    for prefix, kind in _NON_IMAGE_PREFIXES.items():
        if sop_class.startswith(prefix):
            return kind
    return None


def _expected_pixel_bytes(h: Header) -> int:
    frames = int(h.get("NumberOfFrames") or 1)
    return int(h["Rows"]) * int(h["Columns"]) * frames * int(h.get("SamplesPerPixel") or 1) * \
        int(h.get("BitsAllocated") or 16) // 8


_GEOMETRY_LENGTHS: dict[str, tuple[int, ...]] = {"ImagePositionPatient": (3,), "ImageOrientationPatient": (6,),
                                                  "PixelSpacing": (1, 2)}
_CRITICAL_VALUES = ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated", "PixelRepresentation",
                    *_GEOMETRY_LENGTHS)


def _scalar(value: Any) -> Any:
    """The first value of a multi-valued element (a scalar field written twice), the value itself otherwise."""
    return value[0] if isinstance(value, tuple) and value else value


def _geometry_problem(g: Header) -> tuple[str, str] | None:
    """(code, reason) when the placement fields of ``g`` (a file or one frame) cannot place an image."""
    for key, n in _GEOMETRY_LENGTHS.items():
        value = g.get(key)
        if value is None:
            continue
        values = value if isinstance(value, tuple) else (value,)
        if not all(isinstance(v, (int, float)) for v in values):
            return "invalid_geometry", f"{key} holds non-numeric values"
        if len(values) not in n:
            return "invalid_geometry", f"{key} has {len(values)} values, expected {' or '.join(map(str, n))}"
        if not all(math.isfinite(v) for v in values):  # math, not numpy: 3-6 values per file (issue 16)
            return "invalid_geometry", f"{key} is not finite (NaN or infinity)"
    ps = g.get("PixelSpacing")
    if ps is not None and min(ps if isinstance(ps, tuple) else (ps,)) <= 0:
        return "invalid_geometry", f"PixelSpacing {ps} is not positive"
    o = g.get("ImageOrientationPatient")
    if isinstance(o, tuple) and len(o) == 6:
        row, col = [float(v) for v in o[:3]], [float(v) for v in o[3:]]
        nr, nc = math.sqrt(sum(v * v for v in row)), math.sqrt(sum(v * v for v in col))
        if not (0.9 < nr < 1.1 and 0.9 < nc < 1.1) or abs(sum(a * b for a, b in zip(row, col))) > 0.1:
            return "invalid_geometry", "ImageOrientationPatient is not two orthogonal unit vectors"
    return None


def validate(path: str, h: Header, *, limits: Limits | None = None) -> Rejected | None:
    """Why a readable file cannot be part of an image series, or ``None`` when it can."""
    limits = limits or _LIMITS
    sop_class = str(h.get("SOPClassUID") or h.get("_media_sop_class") or "")
    if sop_class == DICOMDIR_SOP_CLASS or h.get("_media_sop_class") == DICOMDIR_SOP_CLASS:
        return Rejected(path, "DICOMDIR (media directory, no image); the files it lists are scanned directly",
                        "dicomdir")
    syntax = h.get("_transfer_syntax", "")
    if syntax and not known_transfer_syntax(syntax):
        return Rejected(path, f"unknown transfer syntax {syntax}; convert the file to a standard syntax "
                              "(e.g. dcmconv +te) before analysis", "unknown_transfer_syntax")
    if h.get("_truncated_header"):
        return Rejected(path, "file ends in the middle of its header; it is truncated: re-send it", "truncated_file")
    if not (h.get("SOPClassUID") or h.get("SOPInstanceUID") or h.get("StudyInstanceUID")):
        if h.get("_no_preamble"):
            return Rejected(path, "not a DICOM file (no DICM preamble, no DICOM identifiers)", "not_dicom")
        return Rejected(path, "DICM preamble but no readable DICOM dataset; the file is corrupt: re-send it",
                        "corrupt_header")
    kind = None if sop_class in _MR_IMAGE_SOP_CLASSES else _non_image_kind(sop_class)
    if kind is not None:
        return Rejected(path, f"non-image object ({kind}, SOP class {sop_class}); not analysed", "non_image")
    if not h.get("SOPInstanceUID"):
        return Rejected(path, "missing SOPInstanceUID; the image cannot be referenced", "missing_sop_instance_uid")
    if not h.get("_has_pixels"):
        if ("Rows" in h and sop_class.startswith("1.2.840.10008.5.1.4.1.1.4")):
            return Rejected(path, "file ends before its pixel data; it is truncated: re-send it",
                            "truncated_pixel_data")
        return Rejected(path, f"no pixel data (SOP class {sop_class or 'unknown'}); not an image", "non_image")
    if not h.get("StudyInstanceUID"):
        return Rejected(path, "missing StudyInstanceUID; cannot tell which study the image belongs to",
                        "missing_study_instance_uid")
    if not h.get("SeriesInstanceUID"):
        return Rejected(path, "missing SeriesInstanceUID; cannot tell which series the image belongs to",
                        "missing_series_instance_uid")
    bad = [k for k in _CRITICAL_VALUES if k in h.get("_invalid", {})]
    if bad:
        return Rejected(path, f"{', '.join(bad)} not a valid number ({'; '.join(h.get('_notes', ())[:2])}); the "
                              "image cannot be shaped or placed: fix the export", "invalid_value")
    for key in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel", "BitsAllocated"):
        if isinstance(h.get(key), tuple):
            return Rejected(path, f"{key} has several values {h[key]}; expected one", "invalid_value")
    if not h.get("Rows") or not h.get("Columns"):
        return Rejected(path, "missing Rows/Columns; the pixel data cannot be shaped", "missing_image_size")
    n_pixels = pixels_of(h["Rows"], h["Columns"], h.get("NumberOfFrames") or 1, h.get("SamplesPerPixel") or 1)
    if n_pixels > limits.max_pixels_per_image:
        return Rejected(path, f"{h['Rows']} x {h['Columns']} x {h.get('NumberOfFrames') or 1} frame(s) = {n_pixels} "
                              f"pixels, more than the ceiling of {limits.max_pixels_per_image} per image "
                              "(max_pixels_per_image); not read", "image_too_large")
    if int(h.get("NumberOfFrames") or 1) < 1 or int(h.get("SamplesPerPixel") or 1) not in (1, 3):
        return Rejected(path, f"NumberOfFrames {h.get('NumberOfFrames')} / SamplesPerPixel "
                              f"{h.get('SamplesPerPixel')} cannot describe an MR image", "invalid_value")
    if int(h.get("BitsAllocated") or 16) not in (8, 16, 32):
        return Rejected(path, f"BitsAllocated {h.get('BitsAllocated')} is not 8, 16 or 32", "invalid_value")
    if h["_pixel_offset"] > 0 and h["_pixel_length"] >= 0:
        expected = _expected_pixel_bytes(h)
        available = h["_file_size"] - h["_pixel_offset"]
        if available < min(h["_pixel_length"], expected):
            return Rejected(path, f"pixel data truncated: {available} of {expected} bytes present; re-send the file",
                            "truncated_pixel_data")
        if syntax in (uids.ExplicitVRLittleEndian, uids.ImplicitVRLittleEndian) and \
                h["_pixel_length"] not in (expected, expected + 1):
            return Rejected(path, f"pixel data length {h['_pixel_length']} != Rows x Columns x frames x bytes = "
                                  f"{expected}; the file is inconsistent", "pixel_length_mismatch")
    elif h["_pixel_offset"] > 0 and h.get("_encapsulated_complete") is False:
        return Rejected(path, "compressed pixel data truncated (no sequence delimiter at the end); re-send the file",
                        "truncated_pixel_data")
    frames = h.get("_frames")
    for key, code in _PLACEMENT_KEYS:
        if not (h.get(key) if frames is None else all(f.get(key) or h.get(key) for f in frames)):
            return Rejected(path, f"missing {key}; the image cannot be placed in patient space", code)
    for g in ([h] if frames is None else [{**h, **f} for f in frames]):
        problem = _geometry_problem(g)
        if problem is not None:
            return Rejected(path, f"{problem[1]}; the image cannot be placed in patient space: fix the export",
                            problem[0])
    return None


_PLACEMENT_KEYS = (("ImageOrientationPatient", "missing_image_orientation_patient"),
                   ("ImagePositionPatient", "missing_image_position_patient"),
                   ("PixelSpacing", "missing_pixel_spacing"))


def _images_of(path: str, h: Header) -> list[Image]:
    def make(g: dict, frame: int) -> Image:  # g: the frame's fields over the file's (or the file's alone)
        it = g.get("ImageType", ())
        ti = _scalar(g.get("InversionTime"))
        ps = g["PixelSpacing"]
        return Image(
            path=path,
            frame=frame,
            sop_instance_uid=h["SOPInstanceUID"],
            instance_number=_scalar(h.get("InstanceNumber")),
            position=tuple(g["ImagePositionPatient"]),
            orientation=tuple(g["ImageOrientationPatient"]),
            pixel_spacing_mm=(float(ps[0]), float(ps[-1])) if isinstance(ps, tuple) else (float(ps), float(ps)),
            rows=int(h["Rows"]),
            cols=int(h["Columns"]),
            trigger_time_ms=_scalar(g.get("TriggerTime")),
            inversion_time_ms=ti if ti else None,
            echo_time_ms=_scalar(g.get("EchoTime")),
            acquisition_time_s=_tm_seconds(g.get("AcquisitionTime") or h.get("ContentTime")),
            temporal_position=_scalar(g.get("TemporalPositionIdentifier")),
            image_type=(it,) if isinstance(it, str) else tuple(it),
            rescale_slope=float(_scalar(g.get("RescaleSlope")) or 1.0),
            rescale_intercept=float(_scalar(g.get("RescaleIntercept")) or 0.0),
            slice_thickness_mm=_scalar(g.get("SliceThickness")),
            pixel_offset=int(h["_pixel_offset"]),
        )

    frames = h.get("_frames")
    if frames:
        return [make({**h, **f}, i) for i, f in enumerate(frames)]
    return [make(h, -1)]


def _same_content(a: tuple[str, Header], b: tuple[str, Header]) -> bool:
    ha = {k: v for k, v in a[1].items() if not k.startswith("_")}
    hb = {k: v for k, v in b[1].items() if not k.startswith("_")}
    if ha != hb or a[1]["_file_size"] != b[1]["_file_size"]:
        return False

    def digest(path: str, offset: int) -> str:
        with open(path, "rb") as fh:
            fh.seek(max(offset, 0))
            return hashlib.sha256(fh.read()).hexdigest()

    return digest(a[0], a[1]["_pixel_offset"]) == digest(b[0], b[1]["_pixel_offset"])


# ------------------------------------------------------------------------------------------- grouping

_TIME_AXIS = {**{lab: "trigger" for lab in CINE_LABELS}, "cine": "trigger", "flow": "trigger",
              "t1_molli_source": "inversion", "perfusion": "dynamic"}


_INDEPENDENT_SLICES = frozenset({"t1_molli_source", "t1_map", "t2_map", "perfusion", "flow", "localizer"})


def _as_tuple(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    return (v,) if isinstance(v, str) else tuple(str(x) for x in v)


def _features(uid: str, h: Header, images: list[Image]) -> SeriesFeatures:
    seen: dict[str, None] = {}
    for im in images:
        for t in im.image_type:
            seen.setdefault(t, None)
    return SeriesFeatures(
        series_instance_uid=uid,
        modality=str(h.get("Modality") or ""),
        image_type=_as_tuple(h.get("ImageType")) or images[0].image_type,
        sequence_name=str(h.get("SequenceName") or h.get("PulseSequenceName") or ""),
        scanning_sequence=_as_tuple(h.get("ScanningSequence")),
        sequence_variant=_as_tuple(h.get("SequenceVariant")),
        description=str(h.get("SeriesDescription") or ""),
        protocol_name=str(h.get("ProtocolName") or ""),
        phase_contrast=str(h.get("PhaseContrast") or "").upper() == "YES",
        echo_train_length=h.get("EchoTrainLength"),
        echo_time_ms=images[0].echo_time_ms,
        signed_pixels=bool(h.get("PixelRepresentation")) or any(im.rescale_intercept < 0 for im in images),
        complex_component=str(h.get("ComplexImageComponent") or "").upper(),
        survey=survey(images),
        frame_types=tuple(seen),
    )


def _series_meta(h: Header, images: list[Image]) -> dict[str, Any]:
    frames = h.get("_frames")
    if frames:  # enhanced objects keep timing values in the functional groups
        h = {**frames[0], **{k: v for k, v in h.items() if v is not None}}
    meta: dict[str, Any] = {
        "manufacturer": h.get("Manufacturer"),
        "modality": h.get("Modality"),
        "bits_allocated": h.get("BitsAllocated", 16),
        "pixel_representation": h.get("PixelRepresentation", 0),
        "samples_per_pixel": h.get("SamplesPerPixel", 1),
        "sequence_name": h.get("SequenceName") or h.get("PulseSequenceName"),
        "image_type": list(_as_tuple(h.get("ImageType"))),
        "contrast_bolus_agent": str(h.get("ContrastBolusAgent") or "").strip(),
    }
    hr = _scalar(h.get("HeartRate"))
    rr = _scalar(h.get("NominalInterval"))
    if not hr and isinstance(rr, (int, float)) and rr > 0:
        hr = 60000.0 / float(rr)
    for key, value in (("heart_rate_bpm", hr), ("patient_height_m", h.get("PatientSize")),
                       ("patient_weight_kg", h.get("PatientWeight")), ("echo_time_ms", images[0].echo_time_ms),
                       ("repetition_time_ms", h.get("RepetitionTime")), ("flip_angle_deg", h.get("FlipAngle")),
                       ("nominal_interval_ms", h.get("NominalInterval")),
                       ("slice_thickness_mm", images[0].slice_thickness_mm)):
        value = _scalar(value)
        if isinstance(value, (int, float)) and value:
            meta[key] = float(value)
    tis = sorted({im.inversion_time_ms for im in images if im.inversion_time_ms})
    if tis:
        meta["inversion_times_ms"] = tis
    return {k: v for k, v in meta.items() if v is not None}


def scan(
    source: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    strictness: Strictness = "warn",
    workers: int | None = None,
    limits: Limits | None = None,
) -> Exam:
    """Scan a folder (recursively), a list of files, a .zip or a .tar(.gz) of DICOM files.

    Reads headers only (fast reader, all cores), rejects what cannot be analysed with a named reason,
    groups images by StudyInstanceUID/SeriesInstanceUID, classifies every series and works out its
    geometry. Pixels are decoded later by :meth:`Series.volume`.

    Parameters
    ----------
    source
        Folder, file, list of files, or archive.
    strictness
        ``"warn"`` (default) records problems, logs and warns; ``"raise"`` raises at the first problem
        (:class:`~zeroclick.imaging.errors.InvalidDicomError` for files, :class:`~zeroclick.imaging.errors.InvalidSeriesError`
        for series); ``"ignore"`` only records them.
    workers
        Processes for header reading (default: the cores free now, see :func:`default_workers`).
    limits
        Ceilings on files, bytes and pixels (default: :func:`~zeroclick.imaging.dicom.limits.default_limits`).
        A source past a ceiling raises :class:`~zeroclick.imaging.errors.ResourceLimitError`; a file past one
        is rejected with a named code (``file_too_large``, ``image_too_large``).
    """
    global _LIMITS
    strictness = check_strictness(strictness)
    limits = limits or default_limits()
    paths, temps = collect(source, limits=limits)
    rejected: list[Rejected] = []
    accepted: list[_Accepted] = []
    previous, _LIMITS = _LIMITS, limits  # the forked header readers see the same ceilings
    forget_conversions()  # each scan pays for its own conversions (the forked readers start empty too)
    # No cyclic garbage collection while thousands of acyclic header objects are made (the readers inherit it):
    # collections there cost up to +0.13 s of a 0.18 s scan of 3,000 files (quiet 2-core, 6 runs each way).
    collecting = gc.isenabled()
    gc.disable()
    try:
        items = _parallel(_ingest_chunk, paths, workers)
    finally:
        _LIMITS = previous
        if collecting:
            gc.enable()
    for item in items:
        (rejected if isinstance(item, Rejected) else accepted).append(item)

    # Duplicate SOP Instance UIDs: identical copies are dropped quietly, conflicting ones rejected.
    by_sop: dict[str, _Accepted] = {}
    unique: list[_Accepted] = []
    series_notes: dict[str, list[str]] = {}
    conflicts: Counter[str] = Counter()
    for acc in sorted(accepted, key=lambda a: a.path):
        first = by_sop.get(acc.sop_uid)
        if first is None:
            by_sop[acc.sop_uid] = acc
            unique.append(acc)
        elif _same_content_safe(first.path, acc.path):
            rejected.append(Rejected(acc.path, f"identical copy of {os.path.basename(first.path)}; ignored",
                                     "duplicate_identical"))
        else:
            rejected.append(Rejected(acc.path, f"same SOP Instance UID as {os.path.basename(first.path)} but "
                                     "different content; kept the first, check the export", "duplicate_sop_instance_uid"))
            conflicts[first.series_uid] += 1
            series_notes.setdefault(first.series_uid, []).append(
                "two files share one SOP Instance UID with different content; kept the first")

    # Group into studies and series.
    groups: dict[str, dict[str, list[_Accepted]]] = {}
    for acc in unique:
        groups.setdefault(acc.study_uid, {}).setdefault(acc.series_uid, []).append(acc)

    exam_problems: list[str] = []
    if len(groups) > 1:
        exam_problems.append(f"{len(groups)} studies in one source; each is listed separately")
    studies = []
    for study_uid, series_groups in groups.items():
        prepared = []
        for uid, members in series_groups.items():
            sizes = Counter(m.size for m in members)
            main_size = sizes.most_common(1)[0][0]
            problems = list(series_notes.get(uid, []))
            kept = []
            for m in members:
                if m.size != main_size:
                    rejected.append(Rejected(m.path, f"image size {m.size[0]}x{m.size[1]} differs from the rest of "
                                                     f"its series ({main_size[0]}x{main_size[1]}); left out",
                                             "inconsistent_image_size", uid))
                else:
                    kept.append(m)
            if len(sizes) > 1:
                problems.append(f"{len(members) - len(kept)} image(s) of a different size left out")
            kept.sort(key=lambda m: (m.instance_number, m.path))
            representative = _representative(kept)  # series-level fields: read once per series
            if representative is None:
                rejected.extend(Rejected(m.path, "no file of its series has a readable header on a second read; "
                                         "the files changed during the scan or are corrupt", "unreadable")
                                for m in kept)
                continue
            images = [im for m in kept for im in m.images]
            notes = _value_notes(representative, kept)
            prepared.append((uid, representative, images, problems, len(kept), notes))
        if not prepared:
            continue
        classes = classify_exam([_features(uid, h, images) for uid, h, images, _, _, _ in prepared])
        series = []
        for uid, h, images, problems, n_files, notes in prepared:
            cls = classes[uid]
            geo = build_geometry(images, time_axis=_TIME_AXIS.get(cls.label),
                                 independent_slices=cls.label in _INDEPENDENT_SLICES)
            # a localizer is expected not to be one stack
            all_problems = tuple(problems) + (() if cls.label == "localizer" else geo.problems)
            syntax = h.get("_transfer_syntax", uids.ImplicitVRLittleEndian)
            series.append(Series(
                uid=uid,
                study_instance_uid=study_uid,
                frame_of_reference_uid=str(h.get("FrameOfReferenceUID") or ""),
                number=h.get("SeriesNumber"),
                description=str(h.get("SeriesDescription") or ""),
                modality=str(h.get("Modality") or ""),
                vendor=str(h.get("Manufacturer") or ""),
                sop_class_uid=str(h.get("SOPClassUID") or ""),
                transfer_syntax_uid=syntax,
                n_images=len(images),
                orientation=geo.orientation or images[0].orientation,
                classification=cls,
                geometry=geo,
                problems=all_problems,
                images=tuple(images),
                meta={**_series_meta(h, images), "enhanced": h.get("SOPClassUID") in ENHANCED_MR_SOP_CLASSES,
                      "n_files": n_files, "value_notes": notes, "duplicate_sop_conflicts": conflicts[uid],
                      "patient_key": patient_key(h), "gaps": list(geo.gaps)},
            ))
        series.sort(key=lambda s: (s.number if s.number is not None else 1 << 30, s.uid))
        studies.append(Study(study_instance_uid=study_uid, series=tuple(series)))
    studies.sort(key=lambda st: st.study_instance_uid)
    exam = Exam(studies=tuple(studies), rejected=tuple(sorted(rejected, key=lambda r: r.path)),
                problems=tuple(exam_problems), n_files=len(paths), _keep_alive=tuple(temps))
    _report(exam, strictness)
    return exam


def _same_content_safe(a: str, b: str) -> bool:
    """:func:`_same_content` of two files; a file that cannot be re-read counts as different."""
    try:
        return _same_content((a, read_header(a)), (b, read_header(b)))
    except Exception:  # noqa: BLE001 - re-reading a file that changed or broke: treat as a conflict
        return False


def _representative(kept: list[_Accepted]) -> Header | None:
    """The full header of the first member whose header reads again (series-level fields), or ``None``."""
    for m in kept[:3]:
        try:
            return read_header(m.path)
        except Exception:  # noqa: BLE001 - the file changed or broke since the first read
            logger.debug("second header read failed for one file of a series; trying the next")
    return None


def _value_notes(h: Header, members: list[_Accepted]) -> list[str]:
    """Distinct notes about header values (decimal commas, ignored non-numbers) of a series, with counts."""
    counts: Counter[str] = Counter(h.get("_notes", ()))
    for m in members:
        counts.update(set(m.notes) - set(h.get("_notes", ())))
    return [f"{note} ({n} files)" if n > 1 else note for note, n in counts.items()]


def _report(exam: Exam, strictness: Strictness) -> None:
    for msg in exam.problems:
        report_problem(msg, strictness, error=InvalidDicomError, logger=logger)
    by_code: dict[str, list[Rejected]] = {}
    for r in exam.rejected:
        if r.code in ("non_image", "dicomdir", "duplicate_identical"):
            logger.debug("skipped %s: %s", os.path.basename(r.path), r.reason)
            continue
        by_code.setdefault(r.code, []).append(r)
    for code, items in by_code.items():  # one message per kind of problem, not one per file
        first = items[0]
        more = f" (and {len(items) - 1} more file(s) with the same problem)" if len(items) > 1 else ""
        report_problem(f"{os.path.basename(first.path)} rejected ({code}): {first.reason}{more}", strictness,
                       error=InvalidDicomError, logger=logger)
    for s in exam.series:
        for p in s.problems:
            report_problem(f"series {s.number} ({s.label}): {p}", strictness, error=InvalidSeriesError, logger=logger)
        for note in s.meta.get("value_notes", ()):
            report_problem(f"series {s.number} ({s.label}): {note}", strictness, error=InvalidSeriesError,
                           logger=logger)
