"""Turn what the user gives (a DICOM exam, an ACDC patient folder, an EMIDEC LGE NIfTI) into :class:`CaseInputs`.

* DICOM folder / zip / tar: :func:`zeroclick.imaging.dicom.scan` classifies the exam; the cine short axis (``cine_sax``)
  and the LGE stack (``lge_psir``, else ``lge_mag``) are decoded, nothing else. Height, weight and heart rate
  come from the headers when present.
* ACDC patient folder: ``Info.cfg`` (or ``patientNNN_Info.cfg``) names ED and ES (1-based frames) and gives
  height (cm) and weight (kg); the images are ``patientNNN_frameXX.nii.gz`` (``*_gt`` label files are ignored)
  and, when present, ``patientNNN_4d.nii.gz``.
* EMIDEC-style LGE NIfTI file (``.nii`` / ``.nii.gz``): LGE only.

NIfTI files become Volumes through :func:`zeroclick.imaging.nifti.load` (orientation documented in imaging/volume.py).
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zeroclick.imaging.errors import InvalidInputError, InvalidSeriesError, ZeroClickError
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.qc import ALL_LGE_FIELDS, CINE_FIELDS, body_size, check_series
from zeroclick.pipelines.cardiac.result import QcFlag, SeriesReference

logger = logging.getLogger(__name__)

# PSIR first: the EMIDEC weights were trained on phase-sensitive reconstructions (the P087 export has the PSIR
# offset background). On the synthetic exam the model found the myocardium on PSIR (cavity Dice 0.955) and
# failed on the magnitude series (cavity Dice 0.17).
LGE_CLASSES = ("lge_psir", "lge_mag")
#: Stored value of zero signal in the EMIDEC PSIR exports (Siemens stores phase-sensitive images unsigned with
#: zero at 2048; P087's air reads 2041-2060). The reference pre-processing scales only the positive voxels, so
#: a signed PSIR (GE, Philips: RescaleIntercept -2048) loses its whole negative half: on a generated GE exam the
#: LGE myocardium Dice was 0.654 and infarct 3.7% as stored, 0.834 and 7.8% after the shift (= Siemens).
PSIR_ZERO_STORED = 2048.0
_FRAME_RE = re.compile(r"_frame(\d+)\.nii(\.gz)?$")


@dataclass(frozen=True, eq=False)
class CaseInputs:
    """The images of one case, ready for segmentation.

    ``cine`` is 4-D ``[phase, slice, row, col]`` (or ``None``); ``phase_numbers`` gives the original 0-based
    phase number of each entry of its phase axis when only some frames exist (ACDC frame files; ``None`` =
    the axis is complete); ``given_phases`` = (ED, ES) indices into that axis when the input names them.
    """

    kind: str
    source: str
    cine: Volume | None = None
    lge: Volume | None = None
    given_phases: tuple[int, int] | None = None
    phase_numbers: tuple[int, ...] | None = None
    height_m: float | None = None
    weight_kg: float | None = None
    heart_rate_bpm: float | None = None
    series: tuple[SeriesReference, ...] = ()
    warnings: tuple[str, ...] = ()
    stage_seconds: dict[str, float] = field(default_factory=dict)
    qc: tuple[QcFlag, ...] = ()  # what reading the input found (missing slices, duplicates, body size...)
    #: the magnitude LGE beside a PSIR ``lge`` (both reconstructions in the exam), for the magnitude path
    lge_magnitude: Volume | None = None
    #: T1 series (``t1_map`` and ``t1_molli_source`` Volumes, ``meta['label']`` says which)
    t1: tuple[Volume, ...] = ()


def nifti_to_volume(path: str | Path) -> Volume:
    """Load a NIfTI file into a Volume (docs/conventions.md orientation, through :func:`zeroclick.imaging.nifti.load`)."""
    from zeroclick.imaging.nifti import load

    return load(path)


def _parse_info_cfg(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text(errors="replace").splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            out[key.strip().lower()] = value.strip()
    return out


def _float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def _find_info(folder: Path) -> Path | None:
    for name in ("Info.cfg", "info.cfg"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*Info.cfg"))
    return found[0] if found else None


def load_acdc(folder: Path) -> CaseInputs:
    """An ACDC-style patient folder (Info.cfg + frame NIfTI files)."""
    info_path = _find_info(folder)
    if info_path is None:
        raise InvalidInputError(f"{folder}: no Info.cfg; an ACDC patient folder needs Info.cfg naming ED and ES")
    info = _parse_info_cfg(info_path)
    try:
        ed_frame, es_frame = int(info["ed"]), int(info["es"])
    except (KeyError, ValueError) as exc:
        raise InvalidInputError(f"{info_path.name}: needs integer 'ED:' and 'ES:' lines (1-based frames)") from exc
    frames = {int(m.group(1)): p for p in folder.iterdir()
              if (m := _FRAME_RE.search(p.name)) and "_gt" not in p.name}
    missing = [f for f in (ed_frame, es_frame) if f not in frames]
    if missing:
        four_d = sorted(folder.glob("*_4d.nii*"))
        if not four_d:
            raise InvalidInputError(f"{folder}: frame file(s) {missing} named in {info_path.name} are missing "
                                    "(expected patientNNN_frameXX.nii.gz or patientNNN_4d.nii.gz)")
        cine = nifti_to_volume(four_d[0])
        given = (ed_frame - 1, es_frame - 1)
        numbers = None  # the phase axis is the frame axis
    else:
        ed, es = nifti_to_volume(frames[ed_frame]), nifti_to_volume(frames[es_frame])
        if ed.array.shape != es.array.shape:
            raise InvalidInputError(f"{folder}: ED and ES frames have different shapes {ed.array.shape} vs "
                                    f"{es.array.shape}")
        cine = ed.with_array(np.stack([ed.array, es.array]), source=str(folder))
        given = (0, 1)
        numbers = (ed_frame - 1, es_frame - 1)
    height_cm = _float(info.get("patient's height") or info.get("height"))
    weight = _float(info.get("patient's weight") or info.get("weight"))
    return CaseInputs(
        kind="acdc", source=str(folder), cine=cine, given_phases=given, phase_numbers=numbers,
        height_m=None if height_cm is None else height_cm / 100.0, weight_kg=weight,
        series=(SeriesReference("cine_sax", "", description="ACDC cine short axis (NIfTI)",
                                n_images=int(np.prod(cine.array.shape[:2])), source=str(folder)),),
    )


def load_lge_nifti(path: Path) -> CaseInputs:
    """An EMIDEC-style LGE NIfTI file."""
    lge = nifti_to_volume(path)
    if lge.is_cine:
        raise InvalidInputError(f"{path.name}: 4-D NIfTI given as LGE; an LGE stack is 3-D")
    return CaseInputs(kind="nifti_lge", source=str(path), lge=lge,
                      series=(SeriesReference("lge", "", description="LGE short axis (NIfTI)",
                                              n_images=lge.spatial_shape[0], source=str(path)),))


def _meta(obj: Any, *names: str) -> float | None:
    for name in names:
        for holder in (getattr(obj, "meta", None) or {}, obj):
            value = holder.get(name) if isinstance(holder, dict) else getattr(holder, name, None)
            if _float(value) is not None:
                return _float(value)
    return None


def _pick_series(exam: Any, classes: tuple[str, ...], *, study: str | None = None) -> Any | None:
    """The largest series of the first class in ``classes`` that has one, preferring the study ``study``."""
    for label in classes:
        found = exam.find(label)
        if found is None:
            continue
        if isinstance(found, (list, tuple)):
            if not found:
                continue
            return max(found, key=lambda s: (getattr(s, "study_instance_uid", None) == study,
                                             getattr(s, "n_images", 0)))
        return found
    return None


def _volume_or_flag(series: Any, role: str, flags: list[QcFlag]) -> Volume | None:
    """``series.volume()``, or ``None`` and an ``error`` flag naming why the series cannot be stacked."""
    try:
        return series.volume()
    except (InvalidSeriesError, InvalidInputError) as exc:
        flags.append(QcFlag(f"{role}_unusable", "error", f"{role} series {getattr(series, 'number', '')} cannot be "
                            f"used: {exc}", "inputs", CINE_FIELDS if role == "cine" else ALL_LGE_FIELDS))
        return None


def _same_case(cine_s: Any, lge_s: Any, flags: list[QcFlag]) -> None:
    """Refuse cine and LGE of different patients; flag different studies (issue 18)."""
    keys = [(getattr(s, "meta", None) or {}).get("patient_key", "") for s in (cine_s, lge_s)]
    if all(keys) and keys[0] != keys[1]:
        raise InvalidInputError(
            f"cine series {cine_s.number} and LGE series {lge_s.number} belong to different patients "
            "(PatientID/PatientName/PatientBirthDate differ): one report cannot hold both; give one patient's "
            "exam at a time", code="mixed_patients")
    if cine_s.study_instance_uid != lge_s.study_instance_uid:
        flags.append(QcFlag("cine_lge_different_studies", "error",
                            f"cine series {cine_s.number} and LGE series {lge_s.number} come from different studies "
                            "of the same patient (another day or session): per-segment transmurality combines "
                            "them and is not valid", "inputs", ("segment_transmurality_percent",)))


def _split_series(exam: Any, chosen: Any, role: str) -> list[QcFlag]:
    """A series UID found in several studies: the files disagree about their study (mixed exports)."""
    same = [s for s in exam.series if s.uid == chosen.uid]
    if len(same) <= 1:
        return []
    return [QcFlag(f"{role}_mixed_studies", "error",
                   f"the files of {role} series {chosen.number} name {len(same)} different studies; only those of "
                   "one study were used, so its measurements are not valid: check the export", "inputs",
                   CINE_FIELDS if role == "cine" else ALL_LGE_FIELDS)]


def _reference(role: str, series: Any, vol: Volume) -> SeriesReference:
    return SeriesReference(
        role=role,
        series_instance_uid=vol.series_instance_uid or str(getattr(series, "series_instance_uid", "") or ""),
        study_instance_uid=vol.study_instance_uid,
        frame_of_reference_uid=vol.frame_of_reference_uid,
        description=str(getattr(series, "description", "") or ""),
        n_images=int(getattr(series, "n_images", 0) or 0),
        source=vol.source,
    )


def _optional_volume(series: Any, warnings: list[str]) -> Volume | None:
    """Decode an optional series (magnitude LGE beside PSIR, T1); a failure is a warning, not an error."""
    try:
        return series.volume()
    except (ZeroClickError, ValueError) as exc:
        warnings.append(f"series {getattr(series, 'number', '?')} ({series.label}) not used: {exc}")
        return None


def load_dicom(source: Path) -> CaseInputs:
    """A DICOM exam (folder, zip or tar) through :func:`zeroclick.imaging.dicom.scan`."""
    try:
        from zeroclick.imaging.dicom import scan
    except ImportError as exc:
        raise InvalidInputError("DICOM input needs zeroclick.imaging.dicom.scan, which this installation lacks") from exc
    t0 = time.perf_counter()
    exam = scan(source)
    t_scan = time.perf_counter() - t0
    cine_s = _pick_series(exam, ("cine_sax",))
    lge_s = _pick_series(exam, LGE_CLASSES, study=None if cine_s is None else cine_s.study_instance_uid)
    if cine_s is None and lge_s is None:
        raise InvalidInputError(f"{source}: no cine short-axis and no LGE series found in the exam; "
                                "run `zeroclick scan` to see how its series were classified", code="no_series")
    warnings: list[str] = [f"exam: {p}" for p in exam.problems]
    if exam.rejected:
        codes = Counter(r.code for r in exam.rejected)
        warnings.append(f"exam: {len(exam.rejected)} file(s) not used (" + ", ".join(
            f"{code} x{n}" for code, n in sorted(codes.items())) + "); `zeroclick scan` lists them")
    flags: list[QcFlag] = []
    if cine_s is not None and lge_s is not None:
        _same_case(cine_s, lge_s, flags)
    for role, s in (("cine", cine_s), ("lge", lge_s)):
        if s is not None:
            flags += check_series(role, s, exam.rejected) + _split_series(exam, s, role)
            warnings += [f"series {s.number}: {note}" for note in s.meta.get("value_notes", ())]
    t0 = time.perf_counter()
    cine = _volume_or_flag(cine_s, "cine", flags) if cine_s is not None else None
    lge = _volume_or_flag(lge_s, "lge", flags) if lge_s is not None else None
    mag_s = _pick_series(exam, ("lge_mag",)) if lge_s is not None and lge_s.label == "lge_psir" else None
    lge_magnitude = _optional_volume(mag_s, warnings) if mag_s is not None else None  # issue 17: both paths
    t1 = tuple(v for label in ("t1_map", "t1_molli_source") for s in exam.find(label)
               if (v := _optional_volume(s, warnings)) is not None)
    if cine is None and lge is None:
        reasons = "; ".join(q.message for q in flags if q.severity == "error")
        raise InvalidSeriesError(f"{source}: neither the cine nor the LGE series can be used: {reasons}",
                                 code="no_usable_series")
    t_decode = time.perf_counter() - t0
    if cine is None:
        warnings.append("no cine short-axis series: function and AHA thickness are not measured")
    if lge is None:
        warnings.append("no LGE series: infarct and MVO are not measured")
    if cine is not None and not cine.is_cine:
        cine = cine.with_array(cine.array[None])
    if lge is not None and lge.is_cine:
        warnings.append("LGE series has several images per position: the first of each is used")
        lge = lge.phase(0)
    if lge is not None and lge_s is not None and lge_s.label == "lge_psir" and float(np.min(lge.array)) < 0:
        lge = lge.with_array(np.asarray(lge.array, np.float32) + PSIR_ZERO_STORED)
        warnings.append(f"signed PSIR LGE: +{PSIR_ZERO_STORED:g} added so that zero signal sits at "
                        f"{PSIR_ZERO_STORED:g}, as in the EMIDEC data the LGE weights learned (n-SD/FWHM unaffected)")
    series = tuple(_reference(role, s, v) for role, s, v in (("cine_sax", cine_s, cine), ("lge", lge_s, lge))
                   if v is not None)
    ref = cine_s if cine_s is not None else lge_s
    ref_vol = cine if cine is not None else lge
    height = _meta(ref_vol, "patient_height_m", "PatientSize") or _meta(ref, "patient_height_m", "PatientSize")
    weight = _meta(ref_vol, "patient_weight_kg", "PatientWeight") or _meta(ref, "patient_weight_kg", "PatientWeight")
    height, weight, size_notes, size_flags = body_size(height, weight)  # metres vs centimetres (issue 18)
    warnings += size_notes
    flags += size_flags
    hr = _meta(cine, "heart_rate_bpm", "HeartRate") if cine is not None else None
    if hr is None and cine is not None:
        rr = _meta(cine, "nominal_interval_ms", "NominalInterval")
        hr = None if rr is None else 60000.0 / rr
    return CaseInputs(
        kind="dicom", source=str(source), cine=cine, lge=lge, height_m=height, weight_kg=weight,
        heart_rate_bpm=hr, series=series, warnings=tuple(warnings),
        stage_seconds={"scan": t_scan, "decode": t_decode}, lge_magnitude=lge_magnitude, t1=t1,
        qc=tuple(flags),
    )


def load_case(source: str | Path) -> CaseInputs:
    """Dispatch on what ``source`` is; raises :class:`InvalidInputError` with what to do when it is none."""
    path = Path(source)
    if not path.exists():
        raise InvalidInputError(f"{source}: no such file or folder")
    name = path.name.lower()
    if path.is_file() and (name.endswith(".nii") or name.endswith(".nii.gz")):
        return load_lge_nifti(path)
    if path.is_dir() and _find_info(path) is not None:
        return load_acdc(path)
    if path.is_dir() or name.endswith((".zip", ".tar", ".tar.gz", ".tgz")):
        return load_dicom(path)
    raise InvalidInputError(f"{source}: not a DICOM folder/zip/tar, an ACDC patient folder (Info.cfg) or an "
                            "LGE NIfTI file")
