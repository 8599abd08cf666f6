"""Ground truth of a synthetic exam: exact analytic figures, label volumes (NIfTI) and their reader.

Analytic figures integrate the phantom's cross-sections (closed forms for the LV circles, 1-D quadrature
with 7,200 angular steps for the RV crescent, the infarct band and the AHA sectors); label figures count
voxels of the truth labels (voxel volume = pixel area x slice spacing, the docs/conventions.md convention).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.imaging.volume import Volume

from . import phantom as ph
from .geometry import Plane

MYOCARDIAL_DENSITY_G_PER_ML = 1.05
TRUTH_FILES = {"cine_sax": "cine_sax_labels.nii.gz", "lge": "lge_labels.nii.gz", "t1": "t1_labels.nii.gz"}
#: How a segment's T1 is defined (the pipeline's rule, zeroclick.pipelines.cardiac.t1, applied to exact labels).
T1_SEGMENT_RULE = ("mean T1 over the segment's myocardial core (labels 2-4 minus a 1-pixel rim at the "
                   "endocardium and epicardium); ECV from the segment means and the blood-pool T1")

# AHA sectors (docs/conventions.md): psi in degrees from the anterior insertion point through the septum.
_BASAL = (2, 3, 4, 5, 6, 1)
_APICAL = (14, 15, 16, 13)


def aha_segment(psi_deg: np.ndarray, level: int) -> np.ndarray:
    """AHA segment number (1-16) at angle ``psi_deg`` on level 0 (basal), 1 (mid) or 2 (apical)."""
    psi = np.mod(np.asarray(psi_deg, dtype=np.float64), 360.0)
    if level < 2:
        idx = np.minimum((psi // 60.0).astype(int), 5)
        return np.asarray(_BASAL)[idx] + 6 * level
    septal_centre = ph.INSERTION_HALF_ANGLE_DEG  # bisector of the insertion angles (0 and 2 alpha)
    idx = np.mod(((psi - septal_centre + 45.0) // 90.0).astype(int), 4)
    return np.asarray(_APICAL)[idx]


def lv_levels(slices_base_to_apex: list[int]) -> dict[int, int]:
    """Slice index -> AHA level (0 basal, 1 mid, 2 apical) by numpy.array_split into three."""
    out = {}
    for level, part in enumerate(np.array_split(np.asarray(slices_base_to_apex, dtype=int), 3)):
        for s in part:
            out[int(s)] = level
    return out


def without_apical_cap(base_to_apex: list[int], has_cavity) -> list[int]:
    """The slices that take segments 1-16: the apical end slices without LV cavity are the apical cap (segment
    17, "myocardium beyond the end of the LV cavity", Cerqueira et al. 2002). At least three remain."""
    out = list(base_to_apex)
    while len(out) > 3 and not has_cavity(out[-1]):
        out.pop()
    return out


def volume_affine(planes: tuple[Plane, ...]) -> np.ndarray:
    """4x4 (slice, row, col, 1) -> LPS affine of a stack of parallel planes (zeroclick.imaging.volume contract)."""
    p0 = planes[0]
    step = (np.array(planes[1].origin) - np.array(p0.origin)) if len(planes) > 1 else p0.normal
    aff = np.eye(4)
    aff[:3, 0] = step
    aff[:3, 1] = np.array(p0.col_dir) * p0.spacing_mm[0]
    aff[:3, 2] = np.array(p0.row_dir) * p0.spacing_mm[1]
    aff[:3, 3] = p0.origin
    return aff


_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
_P = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)


def save_labels(path: Path, labels: np.ndarray, affine: np.ndarray) -> None:
    """Write labels ``[phase,] slice, row, col`` as NIfTI ``[x=col, y=row, z=slice(, t)]``, RAS affine."""
    data = labels.transpose(3, 2, 1, 0) if labels.ndim == 4 else labels.transpose(2, 1, 0)
    img = nib.Nifti1Image(np.ascontiguousarray(data.astype(np.uint8)), _FLIP @ affine @ _P)
    img.header.set_xyzt_units("mm", "msec")
    tmp = path.with_name(path.name + ".part.nii.gz")
    nib.save(img, tmp)
    tmp.replace(path)


def load_truth(out_dir: str | Path) -> dict[str, Volume]:
    """Truth labels of a generated exam as Volumes on the exact grids of their series.

    Returns ``{"cine_sax": Volume [phase, slice, row, col] (ACDC labels), "lge": Volume [slice, row, col]
    (EMIDEC labels), "t1": Volume [slice, row, col] (EMIDEC labels on the MOLLI / T1 map grid)}``; affines in
    LPS like the DICOM series' Volumes.

    Examples
    --------
    >>> truth = load_truth("exam")  # doctest: +SKIP
    >>> truth["cine_sax"].array.shape  # doctest: +SKIP
    (30, 14, 224, 256)
    """
    out_dir = Path(out_dir)
    gt_path = out_dir / "ground_truth.json"
    if not gt_path.exists():
        raise InvalidInputError(f"{out_dir} has no ground_truth.json: generate it with zeroclick synth cmr")
    gt = json.loads(gt_path.read_text())
    out: dict[str, Volume] = {}
    for key, name in TRUTH_FILES.items():
        if key not in gt["truth_grids"]:  # exams generated before the file existed
            continue
        img = cast(nib.Nifti1Image, nib.load(out_dir / "truth" / name))
        data = np.asarray(img.dataobj, dtype=np.uint8)
        array = data.transpose(3, 2, 1, 0) if data.ndim == 4 else data.transpose(2, 1, 0)
        affine = _FLIP @ img.affine @ _P
        spacing = tuple(float(np.linalg.norm(affine[:3, i])) for i in range(3))
        info = gt["truth_grids"][key]
        out[key] = Volume(
            array=np.ascontiguousarray(array), affine=affine, spacing_mm=spacing,  # type: ignore[arg-type]
            trigger_times_ms=tuple(info["trigger_times_ms"]) if info.get("trigger_times_ms") else None,
            series_instance_uid=info["series_instance_uid"], study_instance_uid=gt["study_instance_uid"],
            frame_of_reference_uid=gt["frame_of_reference_uid"], source=str(out_dir / "truth" / name),
            meta={"labels": info["labels"]},
        )
    return out


def _pct(num: float, den: float) -> float:
    return 100.0 * num / den if den > 0 else 0.0


@dataclass(frozen=True)
class AnalyticFigures:
    """Exact figures of the phantom sampled on the short-axis slabs (cine) and the LGE stack."""

    lv_volume_curve_ml: list[float]
    rv_volume_curve_ml: list[float]
    myo_volume_curve_ml: list[float]
    es_phase: int
    sax_lv_slices_ed: list[int]
    lge_lv_slices_base_to_apex: list[int]
    lge_aha_slices_base_to_apex: list[int]  # less the apical cap (segment 17): the slices split into thirds
    lge_myocardium_ml: float
    infarct_ml: float
    mvo_ml: float
    segment_transmurality_percent: dict[str, float]


def analytic_figures(heart: ph.HeartModel, sax_z: list[float], n_phases: int, spacing_mm: float,
                     lge_z: list[float], lge_spacing_mm: float, lge_f: float) -> AnalyticFigures:
    """Integrate the phantom's cross-sections: volumes = sum of slab areas x slice spacing."""
    lv, rv, myo = [], [], []
    for p in range(n_phases):
        f = float(ph.contraction(heart.p, p / n_phases))
        areas = [heart.section_areas(z, f, n_theta=720) for z in sax_z]
        lv.append(sum(a.lv_cavity_mm2 for a in areas) * spacing_mm / 1000.0)
        rv.append(sum(a.rv_cavity_mm2 for a in areas) * spacing_mm / 1000.0)
        myo.append(sum(a.lv_myo_mm2 for a in areas) * spacing_mm / 1000.0)
    es = int(np.argmin(lv))
    for p in (0, es):  # the RV crescent gets the fine quadrature at ED and ES
        f = float(ph.contraction(heart.p, p / n_phases))
        rv[p] = sum(heart.section_areas(z, f).rv_cavity_mm2 for z in sax_z) * spacing_mm / 1000.0
    ed_slices = [k for k, z in enumerate(sax_z) if float(heart.radii(np.array(z), 0.0)[1]) > 0]

    lge = [heart.section_areas(z, lge_f) for z in lge_z]
    lge_lv = [k for k, a in enumerate(lge) if a.r_epi_mm > 0]
    base_to_apex = sorted(lge_lv, key=lambda k: lge_z[k])
    thirds = without_apical_cap(base_to_apex, lambda k: lge[k].r_endo_mm > 0)
    levels = lv_levels(thirds)
    seg_inf = dict.fromkeys(range(1, 17), 0.0)
    seg_myo = dict.fromkeys(range(1, 17), 0.0)
    for k, level in levels.items():
        a = lge[k]
        segs = aha_segment(a.psi_deg, level)
        for s in np.unique(segs):
            m = segs == s
            seg_inf[int(s)] += float(np.sum(a.infarct_density[m]))
            seg_myo[int(s)] += float(np.sum(a.myo_density[m]))
    return AnalyticFigures(
        lv_volume_curve_ml=lv, rv_volume_curve_ml=rv, myo_volume_curve_ml=myo, es_phase=es,
        sax_lv_slices_ed=ed_slices, lge_lv_slices_base_to_apex=base_to_apex, lge_aha_slices_base_to_apex=thirds,
        lge_myocardium_ml=sum(a.lv_myo_mm2 for a in lge) * lge_spacing_mm / 1000.0,
        infarct_ml=sum(a.infarct_mm2 for a in lge) * lge_spacing_mm / 1000.0,
        mvo_ml=sum(a.mvo_mm2 for a in lge) * lge_spacing_mm / 1000.0,
        segment_transmurality_percent={str(s): round(_pct(seg_inf[s], seg_myo[s]), 3) for s in range(1, 17)},
    )


def label_psi_deg(plane: Plane, heart: ph.HeartModel, mask_lv: np.ndarray) -> np.ndarray:
    """AHA angle of every pixel of ``plane`` about the centroid of ``mask_lv`` (cavity + myocardium)."""
    pts = plane.points()
    centre = pts[mask_lv].mean(axis=0)
    ea, eb, _ = heart.rot
    v = pts - centre
    return (np.degrees(np.arctan2(v @ eb, v @ ea)) + ph.INSERTION_HALF_ANGLE_DEG) % 360.0


def label_figures(cine: np.ndarray, lge: np.ndarray, cine_voxel_ml: float, lge_voxel_ml: float,
                  lge_planes: tuple[Plane, ...], lge_z: list[float], heart: ph.HeartModel,
                  es_phase: int) -> dict[str, object]:
    """The same figures counted on the truth labels (ACDC cine, EMIDEC LGE)."""
    lv_curve = [(cine[p] == 3).sum() * cine_voxel_ml for p in range(cine.shape[0])]
    rv_curve = [(cine[p] == 1).sum() * cine_voxel_ml for p in range(cine.shape[0])]
    myo_ed = (cine[0] == 2).sum() * cine_voxel_ml
    myo = lge >= 2
    inf = lge >= 3
    lv_slices = [k for k in range(lge.shape[0]) if myo[k].any()]
    levels = lv_levels(without_apical_cap(sorted(lv_slices, key=lambda k: lge_z[k]), lambda k: bool((lge[k] == 1).any())))
    seg_inf = dict.fromkeys(range(1, 17), 0)
    seg_myo = dict.fromkeys(range(1, 17), 0)
    for k, level in levels.items():
        segs = aha_segment(label_psi_deg(lge_planes[k], heart, lge[k] > 0), level)
        for s in range(1, 17):
            m = segs == s
            seg_myo[s] += int((myo[k] & m).sum())
            seg_inf[s] += int((inf[k] & m).sum())
    return {
        "lv_edv_ml": float(lv_curve[0]), "lv_esv_ml": float(lv_curve[es_phase]),
        "rv_edv_ml": float(rv_curve[0]), "rv_esv_ml": float(rv_curve[es_phase]),
        "myo_volume_ed_ml": float(myo_ed),
        "lge_myocardium_ml": float(myo.sum() * lge_voxel_ml), "infarct_ml": float(inf.sum() * lge_voxel_ml),
        "mvo_ml": float((lge == 4).sum() * lge_voxel_ml),
        "es_phase_by_labels": int(np.argmin(lv_curve)),
        "segment_transmurality_percent": {str(s): round(_pct(seg_inf[s], seg_myo[s]), 3) for s in range(1, 17)},
    }


def t1_segment_truth(labels: np.ndarray, planes: tuple[Plane, ...], heart: ph.HeartModel, levels: dict[int, int],
                     native: np.ndarray, post: np.ndarray | None, hematocrit: float) -> dict[str, dict[str, float]]:
    """Per AHA segment of the map slices: mean native (and post-contrast) T1 over the myocardial core and ECV.

    ``labels`` are EMIDEC labels on the map grid; ``native``/``post`` T1 per tissue code of the phantom.
    """
    from scipy import ndimage

    t1_of_label = {2: ph.MYO, 3: ph.INFARCT, 4: ph.MVO}
    sums: dict[int, list[float]] = {}
    for k in range(labels.shape[0]):
        lab = labels[k]
        myo = lab >= 2
        if not myo.any() or k not in levels:
            continue
        core = ndimage.binary_erosion(myo, structure=ndimage.generate_binary_structure(2, 1))
        segs = aha_segment(label_psi_deg(planes[k], heart, lab > 0), levels[k])
        for s in np.unique(segs[core]):
            m = core & (segs == s)
            acc = sums.setdefault(int(s), [0.0, 0.0, 0.0])
            for lab_value, tissue in t1_of_label.items():
                n = float(np.count_nonzero(m & (lab == lab_value)))
                acc[0] += n
                acc[1] += n * float(native[tissue])
                acc[2] += n * float(post[tissue]) if post is not None else 0.0
    out: dict[str, dict[str, float]] = {}
    blood_native = float(native[ph.BLOOD])
    for s, (n, nat, pst) in sorted(sums.items()):
        entry = {"pixels": n, "native_t1_ms": round(nat / n, 3)}
        if post is not None:
            entry["post_t1_ms"] = round(pst / n, 3)
            d_myo = 1.0 / entry["post_t1_ms"] - 1.0 / entry["native_t1_ms"]
            d_blood = 1.0 / float(post[ph.BLOOD]) - 1.0 / blood_native
            entry["ecv"] = round((1.0 - hematocrit) * d_myo / d_blood, 5)
        out[str(s)] = entry
    return out
