"""Late gadolinium enhancement: model infarct/MVO and classical signal-intensity quantification.

Labels (EMIDEC): 0 background, 1 LV cavity, 2 healthy myocardium, 3 infarct, 4 MVO (no-reflow).
Myocardium = 2+3+4, infarct = 3+4 (MVO lies inside the infarct), mass = volume x 1.05 g/mL.

Classical rules, applied inside the model's myocardium on the LGE signal:

* **Remote myocardium** (chosen automatically): each LV slice is cut into six 60-degree sectors about the
  centroid of cavity + myocardium; among the sectors with at least 20 voxels and no model infarct (labels 3/4),
  the one with the lowest mean signal is remote. Its mean and SD define the n-SD thresholds.
* **n-SD** (n = 2, 3, 5, 6): infarct = myocardium voxels with signal > remote mean + n SD, plus the model's MVO
  voxels (MVO is dark on LGE and no threshold finds it; counting it keeps the rules comparable with the model).
* **FWHM**: infarct = myocardium voxels with signal >= half-way between the remote mean and the maximal
  signal in the model infarct (the whole myocardium when the model finds none), plus MVO. The classical rule
  takes 50% of the maximum, which assumes nulled myocardium at zero; real exports carry offsets (EMIDEC P087:
  remote ~2,030, infarct max ~2,610, so 50% of the maximum labelled 100% of the myocardium), so the half-maximum
  is taken above the remote baseline (50% of the maximum when no remote sector qualifies).
* **Gray zone** (peri-infarct, Yan et al., Circulation 2006;114:32-39): myocardium with signal between
  remote mean + 2 SD and remote mean + 3 SD.
"""

from __future__ import annotations

import numpy as np

from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.function import order_base_to_apex
from zeroclick.pipelines.cardiac.result import MYOCARDIAL_DENSITY_G_PER_ML, LgeResult, ThresholdScar

CAVITY, HEALTHY, INFARCT, MVO = 1, 2, 3, 4
MYOCARDIUM = (HEALTHY, INFARCT, MVO)
N_SD = (2, 3, 5, 6)
MIN_REMOTE_VOXELS = 20
GRAY_ZONE_DEFINITION = (
    "myocardium with LGE signal between remote mean + 2 SD and remote mean + 3 SD "
    "(Yan et al., Circulation 2006;114:32-39)"
)
REMOTE_DEFINITION = (
    "lowest-mean 60-degree myocardial sector (per slice, >= 20 voxels, no model infarct)"
)


def _percent(part: float, whole: float) -> float | None:
    return None if whole <= 0 else part / whole * 100.0


def remote_statistics(labels: np.ndarray, image: np.ndarray) -> tuple[float, float] | None:
    """Mean and SD of the automatically chosen remote myocardium, or ``None`` when no sector qualifies."""
    best: tuple[float, float] | None = None
    for s in range(labels.shape[0]):
        lab = labels[s]
        lv = np.isin(lab, (CAVITY, *MYOCARDIUM))
        if not lv.any():
            continue
        rr, cc = np.nonzero(lv)
        cr, cc0 = rr.mean(), cc.mean()
        rows, cols = np.nonzero(np.isin(lab, MYOCARDIUM))
        if rows.size == 0:
            continue
        sector = (np.degrees(np.arctan2(rows - cr, cols - cc0)) % 360.0 // 60.0).astype(int)
        values = image[s][rows, cols]
        infarct = np.isin(lab[rows, cols], (INFARCT, MVO))
        for k in range(6):
            sel = sector == k
            if sel.sum() < MIN_REMOTE_VOXELS or infarct[sel].any():
                continue
            mean = float(values[sel].mean())
            if best is None or mean < best[0]:
                best = (mean, float(values[sel].std(ddof=1)))
    return best


def _scar(method: str, mask: np.ndarray, threshold: float | None, myo_n: int, voxel_ml: float, definition: str):
    ml = float(mask.sum()) * voxel_ml
    return ThresholdScar(
        method=method, threshold_signal=threshold, infarct_ml=ml, infarct_g=ml * MYOCARDIAL_DENSITY_G_PER_ML,
        infarct_percent_of_myocardium=_percent(float(mask.sum()), float(myo_n)) or 0.0, definition=definition,
    )


def classical_quantification(labels: np.ndarray, image: np.ndarray, voxel_ml: float):
    """n-SD and FWHM infarcts, remote statistics and gray zone (see the module docstring)."""
    myo = np.isin(labels, MYOCARDIUM)
    myo_n = int(myo.sum())
    mvo = labels == MVO
    remote = remote_statistics(labels, image)
    scars: list[ThresholdScar] = []
    gray = None
    if remote is not None:
        mean, sd = remote
        for n in N_SD:
            thr = mean + n * sd
            scars.append(_scar(f"{n}sd", (myo & (image > thr)) | mvo, thr, myo_n, voxel_ml,
                               f"myocardium > remote mean + {n} SD, plus model MVO"))
        gray = myo & (image > mean + 2 * sd) & (image <= mean + 3 * sd)
    model_infarct = labels == INFARCT
    source = model_infarct if model_infarct.any() else myo
    if source.any():
        peak = float(image[source].max())
        baseline = remote[0] if remote is not None else 0.0
        thr = baseline + 0.5 * (peak - baseline)
        scars.append(_scar("fwhm", (myo & (image >= thr)) | mvo, thr, myo_n, voxel_ml,
                           "myocardium >= half-way between remote mean and maximal infarct signal, plus model MVO"))
    return remote, tuple(scars), gray


def compute_lge(labels: Volume, image: Volume | None = None) -> LgeResult:
    """LGE quantification from EMIDEC labels; classical rules too when the LGE ``image`` is given.

    Examples
    --------
    >>> lab = np.zeros((1, 10, 10), np.uint8); lab[0, 2:8, 2:8] = HEALTHY; lab[0, 2:4, 2:8] = INFARCT
    >>> r = compute_lge(Volume(lab, np.eye(4), (10.0, 1.0, 1.0)))
    >>> round(r.myocardium_ml, 3), round(r.infarct_percent_of_myocardium, 2)
    (0.36, 33.33)
    """
    lab = np.asarray(labels.array)
    v = labels.voxel_volume_ml
    counts = np.bincount(lab.astype(np.int64).ravel(), minlength=5)
    myo_ml = float(counts[HEALTHY] + counts[INFARCT] + counts[MVO]) * v
    inf_ml = float(counts[INFARCT] + counts[MVO]) * v
    mvo_ml = float(counts[MVO]) * v
    remote = None
    classical: tuple[ThresholdScar, ...] = ()
    gray_ml = None
    if image is not None:
        remote, classical, gray = classical_quantification(lab, np.asarray(image.array, dtype=np.float64), v)
        gray_ml = None if gray is None else float(gray.sum()) * v
    return LgeResult(
        myocardium_ml=myo_ml,
        myocardium_g=myo_ml * MYOCARDIAL_DENSITY_G_PER_ML,
        cavity_ml=float(counts[CAVITY]) * v,
        infarct_ml=inf_ml,
        infarct_g=inf_ml * MYOCARDIAL_DENSITY_G_PER_ML,
        infarct_percent_of_myocardium=_percent(inf_ml, myo_ml),
        mvo_ml=mvo_ml,
        mvo_g=mvo_ml * MYOCARDIAL_DENSITY_G_PER_ML,
        mvo_percent_of_myocardium=_percent(mvo_ml, myo_ml),
        remote_mean_signal=None if remote is None else remote[0],
        remote_sd_signal=None if remote is None else remote[1],
        remote_definition=REMOTE_DEFINITION if remote is not None else "no qualifying remote sector",
        classical=classical,
        gray_zone_ml=gray_ml,
        gray_zone_g=None if gray_ml is None else gray_ml * MYOCARDIAL_DENSITY_G_PER_ML,
        gray_zone_percent_of_myocardium=None if gray_ml is None else _percent(gray_ml, myo_ml),
        gray_zone_definition=GRAY_ZONE_DEFINITION if gray_ml is not None else "",
        lv_slices=tuple(sorted(order_base_to_apex(lab, lv_values=MYOCARDIUM, cavity_values=(CAVITY,)))),
    )
