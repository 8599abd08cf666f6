"""Biventricular function from short-axis label masks: volumes, EF, SV, cardiac output, mass, BSA indices.

Label convention (ACDC): 0 background, 1 RV cavity, 2 LV myocardium, 3 LV cavity.

Slice rules (documented in the README):

* Volumes are Simpson's summation: voxel count x voxel volume (slice spacing x pixel area) over every slice
  of the label stacks given (papillary muscles and trabeculae belong to the cavity). Which basal and apical
  slices count is decided before, by :mod:`zeroclick.pipelines.cardiac.volume_rule` (SCMR 2020 rules by default,
  ``reference`` = every labelled voxel as the published code); the labels passed here are the counted ones.
* LV slices are the slices whose ED mask contains LV myocardium. The base is the end of that range whose
  outer quarter holds the slice with the largest LV cavity area (docs/conventions.md); the apex is the other end.
* Myocardial mass = myocardial volume x 1.05 g/mL.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.result import MYOCARDIAL_DENSITY_G_PER_ML, FunctionResult

RV, MYO, LV = 1, 2, 3


def label_volumes_ml(labels: np.ndarray, voxel_volume_ml: float) -> dict[int, float]:
    """Volume in mL of each label value 1..max in a label array."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64).ravel(), minlength=5)
    return {int(k): float(counts[k]) * voxel_volume_ml for k in range(1, len(counts))}


def slices_with(labels: np.ndarray, values: Sequence[int]) -> tuple[int, ...]:
    """Indices of the slices (axis 0 of a 3-D array) containing any of ``values``."""
    present = np.isin(labels, list(values)).reshape(labels.shape[0], -1).any(axis=1)
    return tuple(int(i) for i in np.flatnonzero(present))


def order_base_to_apex(
    labels: np.ndarray, *, lv_values: Sequence[int] = (MYO,), cavity_values: Sequence[int] = (LV,)
) -> tuple[int, ...]:
    """LV slice indices ordered base -> apex (docs/conventions.md rule).

    The LV slices are those containing ``lv_values``; the base is the end whose outer quarter holds the
    slice with the largest cavity area. Ties go to the lower slice index.

    Examples
    --------
    >>> lab = np.zeros((4, 5, 5), np.uint8); lab[:, 2, 2] = MYO; lab[3, 1:4, 1:4] = LV
    >>> order_base_to_apex(lab)
    (3, 2, 1, 0)
    """
    idx = slices_with(labels, lv_values)
    if len(idx) < 2:
        return idx
    cav = np.isin(labels[list(idx)], list(cavity_values)).reshape(len(idx), -1).sum(axis=1)
    q = max(1, int(math.ceil(len(idx) / 4)))
    first, last = cav[:q].max(), cav[-q:].max()
    return idx if first >= last else tuple(reversed(idx))


def bsa_mosteller_m2(height_m: float | None, weight_kg: float | None) -> float | None:
    """Body surface area (Mosteller): sqrt(height_cm x weight_kg / 3600); ``None`` when either is unknown."""
    if not height_m or not weight_kg or height_m <= 0 or weight_kg <= 0:
        return None
    return math.sqrt(height_m * 100.0 * weight_kg / 3600.0)


def _ef(edv: float, esv: float) -> float | None:
    return None if edv <= 0 else (edv - esv) / edv * 100.0


def _index(value: float | None, bsa: float | None) -> float | None:
    return None if value is None or bsa is None else value / bsa


def compute_function(
    ed: Volume,
    es: Volume,
    *,
    heart_rate_bpm: float | None = None,
    height_m: float | None = None,
    weight_kg: float | None = None,
    lv_curve_ml: Sequence[float] = (),
    rv_curve_ml: Sequence[float] = (),
) -> FunctionResult:
    """Function from ED and ES label volumes (3-D, ACDC labels) on their own grids.

    Examples
    --------
    >>> aff = np.eye(4)
    >>> ed = np.zeros((2, 10, 10), np.uint8); ed[:, 2:8, 2:8] = MYO; ed[:, 3:7, 3:7] = LV
    >>> es = ed.copy(); es[:, 3:7, 3:7] = MYO; es[:, 4:6, 4:6] = LV
    >>> f = compute_function(Volume(ed, aff, (10, 1, 1)), Volume(es, aff, (10, 1, 1)))
    >>> f.lv_edv_ml, f.lv_esv_ml, f.lv_ef_percent
    (0.32, 0.08, 75.0)
    """
    ved = label_volumes_ml(ed.array, ed.voxel_volume_ml)
    ves = label_volumes_ml(es.array, es.voxel_volume_ml)
    lv_edv, lv_esv = ved[LV], ves[LV]
    rv_edv, rv_esv = ved[RV], ves[RV]
    myo_ed, myo_es = ved[MYO], ves[MYO]
    lv_sv, rv_sv = lv_edv - lv_esv, rv_edv - rv_esv
    bsa = bsa_mosteller_m2(height_m, weight_kg)
    hr = heart_rate_bpm if heart_rate_bpm and heart_rate_bpm > 0 else None
    lv_co = None if hr is None else lv_sv * hr / 1000.0
    rv_co = None if hr is None else rv_sv * hr / 1000.0
    order = order_base_to_apex(ed.array)
    return FunctionResult(
        lv_edv_ml=lv_edv,
        lv_esv_ml=lv_esv,
        lv_sv_ml=lv_sv,
        lv_ef_percent=_ef(lv_edv, lv_esv),
        rv_edv_ml=rv_edv,
        rv_esv_ml=rv_esv,
        rv_sv_ml=rv_sv,
        rv_ef_percent=_ef(rv_edv, rv_esv),
        myo_volume_ed_ml=myo_ed,
        myo_mass_ed_g=myo_ed * MYOCARDIAL_DENSITY_G_PER_ML,
        myo_volume_es_ml=myo_es,
        myo_mass_es_g=myo_es * MYOCARDIAL_DENSITY_G_PER_ML,
        heart_rate_bpm=hr,
        lv_co_l_per_min=lv_co,
        rv_co_l_per_min=rv_co,
        bsa_m2=bsa,
        lv_edv_index_ml_per_m2=_index(lv_edv, bsa),
        lv_esv_index_ml_per_m2=_index(lv_esv, bsa),
        lv_sv_index_ml_per_m2=_index(lv_sv, bsa),
        rv_edv_index_ml_per_m2=_index(rv_edv, bsa),
        rv_esv_index_ml_per_m2=_index(rv_esv, bsa),
        myo_mass_index_g_per_m2=_index(myo_ed * MYOCARDIAL_DENSITY_G_PER_ML, bsa),
        lv_ci_l_per_min_per_m2=_index(lv_co, bsa),
        lv_slices=tuple(sorted(order)),
        base_slice=order[0] if order else None,
        apex_slice=order[-1] if order else None,
        lv_volume_curve_ml=tuple(float(v) for v in lv_curve_ml),
        rv_volume_curve_ml=tuple(float(v) for v in rv_curve_ml),
    )
