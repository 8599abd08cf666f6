"""Quality control: every condition that makes a number doubtful becomes a :class:`QcFlag`, never silence.

Severity ``error`` means the named measurements are not valid (the result status becomes ``partial``);
``warning`` means read them with care; ``info`` is context.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.function import slices_with
from zeroclick.pipelines.cardiac.result import FunctionResult, LgeResult, QcFlag

EF_RANGE_PERCENT = (5.0, 90.0)
LV_MASS_RANGE_G = (30.0, 500.0)
LV_EDV_RANGE_ML = (20.0, 600.0)
MAX_NORMAL_ANGLE_DEG = 10.0
LGE_TO_CINE_MYOCARDIUM_RANGE = (0.5, 1.5)
MAX_PLAUSIBLE_INFARCT_PERCENT = 75.0
LGE_FIELDS = ("infarct_ml", "infarct_percent_of_myocardium", "mvo_ml", "mvo_percent_of_myocardium", "myocardium_ml")

FUNCTION_FIELDS = ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "lv_sv_ml")
#: every number measured on the cine stack (what a missing slice or a wrong image changes)
CINE_FIELDS = ("lv_edv_ml", "lv_esv_ml", "lv_sv_ml", "lv_ef_percent", "rv_edv_ml", "rv_esv_ml", "rv_sv_ml",
               "rv_ef_percent", "myo_volume_ed_ml", "myo_mass_ed_g", "myo_volume_es_ml", "myo_mass_es_g",
               "lv_co_l_per_min", "lv_edv_index_ml_per_m2", "lv_esv_index_ml_per_m2", "lv_sv_index_ml_per_m2",
               "rv_edv_index_ml_per_m2", "rv_esv_index_ml_per_m2", "myo_mass_index_g_per_m2",
               "lv_ci_l_per_min_per_m2", "segment_thickness_mm", "segment_transmurality_percent")
ALL_LGE_FIELDS = (*LGE_FIELDS, "myocardium_mass_g", "cavity_ml", "infarct_g", "mvo_g", "gray_zone_g",
                  "gray_zone_percent_of_myocardium", "segment_transmurality_percent")
INDEXED_FIELDS = ("bsa_m2", "lv_edv_index_ml_per_m2", "lv_esv_index_ml_per_m2", "lv_sv_index_ml_per_m2",
                  "rv_edv_index_ml_per_m2", "rv_esv_index_ml_per_m2", "myo_mass_index_g_per_m2",
                  "lv_ci_l_per_min_per_m2")
#: largest in-plane rotation or tilt between the cine and LGE planes before segment matching is not valid (deg)
MAX_PLANE_ROTATION_DEG = 10.0
#: largest in-plane distance between the LV centres found on the cine (ED) and on the LGE (mm)
MAX_LV_OFFSET_MM = 10.0
#: plausible adult/child body size in DICOM units (PatientSize in metres, PatientWeight in kg)
HEIGHT_RANGE_M = (0.3, 2.5)
WEIGHT_RANGE_KG = (2.0, 350.0)


def check_masks(labels: Volume, *, phase: str, myo: int | tuple[int, ...] = 2, stage: str = "cine",
                es: Volume | None = None) -> list[QcFlag]:
    """Missing LV, gaps inside the LV slice range, and LV touching the first/last slice of the stack."""
    flags: list[QcFlag] = []
    myo_values = (myo,) if isinstance(myo, int) else myo
    lv = slices_with(labels.array, myo_values)
    n = labels.array.shape[0]
    if not lv:
        flags.append(QcFlag(f"{stage}_{phase}_no_lv", "error", f"no LV myocardium segmented on any {stage} slice at "
                            f"{phase}; check that the series is a short-axis stack through the ventricles", stage,
                            FUNCTION_FIELDS))
        return flags
    gaps = sorted(set(range(lv[0], lv[-1] + 1)) - set(lv))
    if gaps:
        flags.append(QcFlag(f"{stage}_{phase}_missing_slices", "warning",
                            f"no LV myocardium on slice(s) {gaps} between base and apex at {phase}: "
                            "segmentation failed there or the slice is corrupt; volumes miss that slice", stage))
    # coverage from the ED geometry only (the base descends in systole): see volume_rule.coverage_problems
    if phase in ("ED", "LGE") and (lv[0] == 0 or lv[-1] == n - 1):
        from zeroclick.pipelines.cardiac.volume_rule import coverage_problems

        cavity = (1,) if stage == "lge" else (3,)
        problems = coverage_problems(labels.array, labels.spacing_mm, myo=myo_values, cavity=cavity,
                                     es=None if es is None else es.array)
        if problems:
            flags.append(QcFlag(f"{stage}_{phase}_coverage", "warning",
                                f"base or apex lies outside the acquired slices at {phase}: {'; '.join(problems)} "
                                "(volumes are underestimated; acquire more slices)", stage))
    return flags


def check_function(f: FunctionResult) -> list[QcFlag]:
    """Implausible EF, mass and volumes."""
    flags: list[QcFlag] = []
    if f.lv_ef_percent is None or not (EF_RANGE_PERCENT[0] <= f.lv_ef_percent <= EF_RANGE_PERCENT[1]):
        flags.append(QcFlag("lv_ef_implausible", "error",
                            f"LV EF {f.lv_ef_percent} % is outside {EF_RANGE_PERCENT[0]:g}-{EF_RANGE_PERCENT[1]:g} %: "
                            "phase choice or segmentation is wrong; review ED/ES masks", "function",
                            ("lv_ef_percent", "lv_sv_ml", "lv_esv_ml")))
    if f.lv_esv_ml > f.lv_edv_ml:
        flags.append(QcFlag("lv_esv_above_edv", "error", "LV ESV exceeds EDV: ED and ES are swapped or wrong",
                            "function", FUNCTION_FIELDS))
    if not (LV_MASS_RANGE_G[0] <= f.myo_mass_ed_g <= LV_MASS_RANGE_G[1]):
        flags.append(QcFlag("lv_mass_implausible", "error",
                            f"LV mass {f.myo_mass_ed_g:.1f} g is outside {LV_MASS_RANGE_G[0]:g}-{LV_MASS_RANGE_G[1]:g} g",
                            "function", ("myo_mass_ed_g",)))
    if not (LV_EDV_RANGE_ML[0] <= f.lv_edv_ml <= LV_EDV_RANGE_ML[1]):
        flags.append(QcFlag("lv_edv_implausible", "warning",
                            f"LV EDV {f.lv_edv_ml:.1f} mL is outside {LV_EDV_RANGE_ML[0]:g}-{LV_EDV_RANGE_ML[1]:g} mL",
                            "function", ("lv_edv_ml",)))
    if f.rv_edv_ml <= 0:
        flags.append(QcFlag("rv_not_found", "warning", "no RV cavity segmented: RV values are not valid",
                            "function", ("rv_edv_ml", "rv_esv_ml", "rv_ef_percent")))
    return flags


def check_lge(r: LgeResult) -> list[QcFlag]:
    flags: list[QcFlag] = []
    if r.myocardium_ml <= 0:
        flags.append(QcFlag("lge_no_myocardium", "error", "no myocardium segmented on the LGE stack", "lge",
                            ("myocardium_ml", "infarct_ml", "infarct_percent_of_myocardium")))
    if (r.infarct_percent_of_myocardium or 0.0) > MAX_PLAUSIBLE_INFARCT_PERCENT:
        flags.append(QcFlag("lge_infarct_implausible", "error",
                            f"infarct is {r.infarct_percent_of_myocardium:.0f}% of the LGE myocardium: the LGE "
                            "segmentation is probably wrong; review the LGE masks", "lge", LGE_FIELDS))
    if r.remote_mean_signal is None and r.myocardium_ml > 0:
        flags.append(QcFlag("lge_no_remote", "warning", "no remote myocardium sector qualified: classical n-SD "
                            "and gray zone are not reported", "lge"))
    return flags


def check_lge_against_cine(r: LgeResult, f: FunctionResult) -> list[QcFlag]:
    """The LGE myocardium should be about the cine ED myocardium (same heart, similar coverage)."""
    if f.myo_volume_ed_ml <= 0:
        return []
    ratio = r.myocardium_ml / f.myo_volume_ed_ml
    lo, hi = LGE_TO_CINE_MYOCARDIUM_RANGE
    if lo <= ratio <= hi:
        return []
    return [QcFlag("lge_cine_myocardium_mismatch", "error",
                   f"LGE myocardium {r.myocardium_ml:.0f} mL vs cine ED myocardium {f.myo_volume_ed_ml:.0f} mL "
                   f"(ratio {ratio:.2f}, expected {lo:g}-{hi:g}): the LGE segmentation failed or the LGE stack covers "
                   "a different part of the heart; infarct figures are not valid", "lge", LGE_FIELDS)]


def _in_plane_axes(v: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (patient space) along the image rows and columns of a volume's slices."""
    a = np.asarray(v.affine, dtype=np.float64)
    col, row = a[:3, 2], a[:3, 1]  # array axes (slice, row, col): axis 2 runs along a row, axis 1 down a column
    return col / np.linalg.norm(col), row / np.linalg.norm(row)


def plane_rotation_deg(cine: Volume, lge: Volume) -> tuple[float, float]:
    """(tilt between the slice normals, in-plane rotation of the LGE image axes against the cine's) in degrees."""
    cos = float(abs(np.clip(cine.slice_normal @ lge.slice_normal, -1.0, 1.0)))
    tilt = float(np.degrees(np.arccos(cos)))
    c_x, c_y = _in_plane_axes(cine)
    l_x, _ = _in_plane_axes(lge)
    n = cine.slice_normal / np.linalg.norm(cine.slice_normal)
    l_x = l_x - (l_x @ n) * n  # the LGE row direction projected on the cine plane
    if np.linalg.norm(l_x) < 1e-6:
        return tilt, 90.0
    l_x /= np.linalg.norm(l_x)
    return tilt, float(abs(np.degrees(np.arctan2(l_x @ c_y, l_x @ c_x))))


def check_geometry(cine: Volume, lge: Volume, *, cine_labels: Volume | None = None,
                   lge_labels: Volume | None = None) -> list[QcFlag]:
    """Cine vs LGE: frame of reference, plane tilt and in-plane rotation, LV position, LGE outside the cine.

    Segment-wise transmurality matches LGE slices to cine slices by their grids; a rotated or shifted LGE puts
    the scar in the wrong AHA segment (issue 18: 30 degrees moved segment transmurality by up to 38 points),
    so beyond :data:`MAX_PLANE_ROTATION_DEG` / :data:`MAX_LV_OFFSET_MM` it is an ``error`` that invalidates it.
    """
    flags: list[QcFlag] = []
    if cine.frame_of_reference_uid and lge.frame_of_reference_uid and \
            cine.frame_of_reference_uid != lge.frame_of_reference_uid:
        flags.append(QcFlag("cine_lge_frame_of_reference", "warning", "cine and LGE have different frames of "
                            "reference (patient moved or different session): segment matching may be off", "lge"))
    tilt, rotation = plane_rotation_deg(cine, lge)
    if tilt > MAX_PLANE_ROTATION_DEG or rotation > MAX_PLANE_ROTATION_DEG:
        flags.append(QcFlag("cine_lge_orientation", "error",
                            f"cine and LGE slice planes differ by {tilt:.1f} deg (tilt) and {rotation:.1f} deg "
                            f"(in-plane rotation), more than {MAX_PLANE_ROTATION_DEG:g} deg: LGE scar cannot be "
                            "assigned to AHA segments; per-segment transmurality is not valid", "lge",
                            ("segment_transmurality_percent",)))
    if cine_labels is not None and lge_labels is not None:
        offset = lv_offset_mm(cine_labels, lge_labels, normal=cine.slice_normal)
        if offset is not None and offset > MAX_LV_OFFSET_MM:
            flags.append(QcFlag("cine_lge_position", "error",
                                f"the LV centre on the LGE lies {offset:.1f} mm (in plane) from the LV centre on "
                                f"the cine, more than {MAX_LV_OFFSET_MM:g} mm: the series do not line up (patient "
                                "moved or wrong positions); per-segment transmurality is not valid", "lge",
                                ("segment_transmurality_percent",)))
    normal = cine.slice_normal
    n_c, n_l = cine.spatial_shape[0], lge.spatial_shape[0]
    centre_c = np.array([0.0, cine.spatial_shape[1] / 2, cine.spatial_shape[2] / 2])
    centre_l = np.array([0.0, lge.spatial_shape[1] / 2, lge.spatial_shape[2] / 2])
    cine_pos = sorted(cine.index_to_lps(centre_c + [i, 0, 0]) @ normal for i in (0, n_c - 1))
    lge_pos = [lge.index_to_lps(centre_l + [i, 0, 0]) @ normal for i in range(n_l)]
    tol = cine.spacing_mm[0] / 2.0 + 1e-6
    outside = [i for i, p in enumerate(lge_pos) if p < cine_pos[0] - tol or p > cine_pos[1] + tol]
    if outside:
        flags.append(QcFlag("lge_outside_cine", "warning", f"LGE slice(s) {outside} lie outside the cine stack: "
                            "their segments take the insertion points of the nearest cine slice", "lge"))
    return flags


def _lv_centre_lps(labels: Volume, values: tuple[int, ...]) -> np.ndarray | None:
    idx = np.argwhere(np.isin(np.asarray(labels.array), values))
    if len(idx) == 0:
        return None
    return labels.index_to_lps(idx.mean(axis=0).astype(np.float64))


def lv_offset_mm(cine_labels: Volume, lge_labels: Volume, *, normal: np.ndarray) -> float | None:
    """In-plane distance between the LV (cavity + myocardium) centres of the cine ED and LGE masks (mm)."""
    c = _lv_centre_lps(cine_labels, (2, 3))  # ACDC: 2 myocardium, 3 LV cavity
    g = _lv_centre_lps(lge_labels, (1, 2, 3, 4))  # EMIDEC: cavity, myocardium, infarct, MVO
    if c is None or g is None:
        return None
    n = normal / np.linalg.norm(normal)
    d = np.asarray(g, dtype=np.float64) - np.asarray(c, dtype=np.float64)
    return float(np.linalg.norm(d - (d @ n) * n))


# ----------------------------------------------------------------------------------- inputs (from the scan)


#: rejections that do not take an image away from a series (copies, non-images; conflicts are flagged apart)
_HARMLESS_REJECTIONS = frozenset({"duplicate_identical", "duplicate_sop_instance_uid", "non_image", "dicomdir"})


def check_series(role: str, series: Any, rejected: Sequence[Any] = ()) -> list[QcFlag]:
    """What the scan already knows about a chosen series, as flags: missing slices inside the stack,
    conflicting duplicate SOP Instance UIDs and files of the series that the scan rejected (``error``: the
    volumes of that series are not valid), other geometry problems (``warning``). ``role`` is ``cine`` or
    ``lge``; ``rejected`` the scan's :class:`~zeroclick.imaging.dicom.scan.Rejected` files."""
    flags: list[QcFlag] = []
    affects = CINE_FIELDS if role == "cine" else ALL_LGE_FIELDS
    meta = getattr(series, "meta", None) or {}
    geometry = getattr(series, "geometry", None)
    gaps = tuple(getattr(geometry, "gaps", ()) or meta.get("gaps", ()))
    number = getattr(series, "number", None)
    if gaps:
        flags.append(QcFlag(f"{role}_missing_slice", "error",
                            f"series {number}: slice(s) missing inside the stack (gap after slice index "
                            f"{', '.join(str(g) for g in gaps)}): volumes and mass would be too small; "
                            "re-send the complete series", "inputs", affects))
    n_conflicts = int(meta.get("duplicate_sop_conflicts", 0) or 0)
    if n_conflicts:
        flags.append(QcFlag(f"{role}_duplicate_sop_instance_uid", "error",
                            f"series {number}: {n_conflicts} SOP Instance UID(s) appear twice with different pixels; "
                            "which image is right cannot be told, so its measurements are not valid: check the "
                            "export or the PACS", "inputs", affects))
    lost = Counter(r.code for r in rejected if r.series_instance_uid == getattr(series, "uid", None)
                   and r.code not in _HARMLESS_REJECTIONS)
    if lost:
        flags.append(QcFlag(f"{role}_rejected_images", "error",
                            f"series {number}: {sum(lost.values())} of its files could not be used ("
                            + ", ".join(f"{code} x{n}" for code, n in sorted(lost.items()))
                            + "): the stack misses those images, so its measurements are not valid; re-send them",
                            "inputs", affects))
    other = [p for p in getattr(series, "problems", ()) if not p.startswith(("gap between slices",
                                                                          "two files share one SOP"))]
    if other:
        flags.append(QcFlag(f"{role}_series_problems", "warning", f"series {number}: " + "; ".join(other[:3]),
                            "inputs"))
    return flags


def body_size(height: float | None, weight: float | None) -> tuple[float | None, float | None, list[str],
                                                                    list[QcFlag]]:
    """Plausible height (m) and weight (kg) from PatientSize/PatientWeight, with warnings and flags.

    A height written in centimetres (30-250) or millimetres (300-2,500) instead of metres is converted with a
    warning: those ranges cannot be a height in metres, so the reading is unambiguous. Any other implausible
    value is dropped with a ``warning`` flag: BSA and the indexed values are then not reported.
    """
    notes: list[str] = []
    flags: list[QcFlag] = []
    h_lo, h_hi = HEIGHT_RANGE_M
    if height is not None and not h_lo <= height <= h_hi:
        for factor, unit in ((100.0, "centimetres"), (1000.0, "millimetres")):
            if h_lo <= height / factor <= h_hi:
                notes.append(f"PatientSize {height:g} is not a height in metres; read as {unit}: "
                             f"{height / factor:.2f} m")
                height = height / factor
                break
        else:
            flags.append(QcFlag("patient_size_implausible", "warning",
                                f"PatientSize {height:g} is not a plausible height in metres (or cm/mm): BSA and "
                                "the indexed values are not reported; correct the header", "inputs",
                                INDEXED_FIELDS))
            height = None
    w_lo, w_hi = WEIGHT_RANGE_KG
    if weight is not None and not w_lo <= weight <= w_hi:
        flags.append(QcFlag("patient_weight_implausible", "warning",
                            f"PatientWeight {weight:g} is not a plausible weight in kg: BSA and the indexed values "
                            "are not reported; correct the header", "inputs", INDEXED_FIELDS))
        weight = None
    return height, weight, notes, flags
