"""Quality control: every condition that makes a number doubtful becomes a :class:`QcFlag`, never silence.

Severity ``error`` means the named measurements are not valid (the result status becomes ``partial``);
``warning`` means read them with care; ``info`` is context.
"""

from __future__ import annotations

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


def check_masks(labels: Volume, *, phase: str, myo: int | tuple[int, ...] = 2, stage: str = "cine") -> list[QcFlag]:
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
    if lv[0] == 0 or lv[-1] == n - 1:
        ends = [e for e, hit in (("first", lv[0] == 0), ("last", lv[-1] == n - 1)) if hit]
        flags.append(QcFlag(f"{stage}_{phase}_coverage", "warning",
                            f"LV myocardium reaches the {' and '.join(ends)} slice of the stack at {phase}: "
                            "base or apex may lie outside the acquired slices (volumes may be underestimated)",
                            stage))
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


def check_geometry(cine: Volume, lge: Volume) -> list[QcFlag]:
    """Cine vs LGE: frame of reference, slice orientation, and LGE slices outside the cine coverage."""
    flags: list[QcFlag] = []
    if cine.frame_of_reference_uid and lge.frame_of_reference_uid and \
            cine.frame_of_reference_uid != lge.frame_of_reference_uid:
        flags.append(QcFlag("cine_lge_frame_of_reference", "warning", "cine and LGE have different frames of "
                            "reference (patient moved or different session): segment matching may be off", "lge"))
    cos = float(abs(np.clip(cine.slice_normal @ lge.slice_normal, -1.0, 1.0)))
    angle = float(np.degrees(np.arccos(cos)))
    if angle > MAX_NORMAL_ANGLE_DEG:
        flags.append(QcFlag("cine_lge_orientation", "warning", f"cine and LGE slice planes differ by {angle:.1f} deg: "
                            "per-segment transmurality uses approximate insertion points", "lge"))
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
