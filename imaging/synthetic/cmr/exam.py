"""``generate_exam``: a whole seeded cardiac MR exam (DICOM) with exact ground truth."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zeroclick.imaging.errors import InvalidInputError

from . import headers, plan, render, truth
from . import phantom as ph
from . import sequences as sq
from .geometry import lax_plane, localizer_planes, sax_stack
from .writer import transfer_syntax_uid

logger = logging.getLogger(__name__)

LGE_CYCLE_FRACTION = 0.72
LGE_INVERSION_MS = 300.0
MOLLI_CYCLE_FRACTION = 0.75


@dataclass(frozen=True)
class SeriesInfo:
    series_number: int
    series_instance_uid: str
    key: str
    expected_class: str
    description: str
    n_images: int
    n_files: int


@dataclass(frozen=True)
class ExamInfo:
    """What :func:`generate_exam` wrote."""

    out_dir: Path
    dicom_dir: Path
    ground_truth_path: Path
    n_images: int
    n_files: int
    vendor: str
    transfer_syntax: str
    enhanced: bool
    seed: int
    study_instance_uid: str
    series: tuple[SeriesInfo, ...]
    elapsed_s: float
    cpu_s: float  # CPU seconds of this process and its workers (wall time on an idle machine ~ cpu_s / workers)
    workers: int
    truth: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        keys = ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "rv_ef_percent", "myo_mass_ed_g",
                "infarct_percent_of_myocardium", "mvo_percent_of_myocardium", "ed_phase", "es_phase")
        return {
            "out_dir": str(self.out_dir), "dicom_dir": str(self.dicom_dir),
            "ground_truth": str(self.ground_truth_path), "n_images": self.n_images, "n_files": self.n_files,
            "vendor": self.vendor, "transfer_syntax": self.transfer_syntax, "enhanced": self.enhanced,
            "seed": self.seed, "elapsed_s": round(self.elapsed_s, 2), "cpu_s": round(self.cpu_s, 2),
            "workers": self.workers,
            "series": [{"number": s.series_number, "description": s.description, "class": s.expected_class,
                        "images": s.n_images} for s in self.series],
            "truth": {k: self.truth[k] for k in keys},
        }


def _first_slice_mm(hp: ph.HeartParams, n_slices: int, spacing_mm: float) -> float:
    """Heart-frame z of the most basal short-axis slice.

    The stack should reach at least 1 mm beyond the epicardial apex and start at most 2 mm below the
    end-diastolic base (a stack too short for both covers the base and gives up the apex tip); within that
    range the slices are placed as far as possible from the base plane at ED (z = 0) and at ES (z = base
    descent). A slice whose centre lies just outside the base shows the
    basal LV through its 8 mm thickness while its (thin, central) truth has none: the real network then
    labels a ventricle the truth lacks (ES volume +18% on the first phantom; measured with
    tests/synthetic/test_cmr_realism.py).
    """
    old = hp.apex_epi_mm + 3.0 - (n_slices - 1) * spacing_mm
    apex_side = hp.apex_epi_mm + 1.0 - (n_slices - 1) * spacing_mm
    lo, hi = min(apex_side, 2.0), max(apex_side, 2.0)
    bases = np.array([0.0, hp.base_descent_mm])
    ks = spacing_mm * np.arange(n_slices)

    def clearance(z0: float) -> float:
        return float(np.abs((z0 + ks)[:, None] - bases[None, :]).min())

    candidates = np.arange(lo, hi + 1e-9, 0.25)
    return float(max(candidates, key=lambda z0: (round(clearance(z0), 2), -abs(z0 - old))))


def _design(out_dir: Path, layout: plan.ExamLayout, vendor: str, transfer_syntax: str, enhanced: bool,
            seed: int, trigger_jitter: bool) -> tuple[render.ExamDesign, dict[str, Any]]:
    rng = np.random.default_rng([seed, 20260115])
    n_phases = layout.n_phases
    es_idx = int(round(0.35 * n_phases))
    hp = ph.draw_heart_params(rng, es_idx / n_phases)
    heart = ph.HeartModel(hp)
    heart_rate = float(round(rng.uniform(58.0, 74.0)))
    rr = 60000.0 / heart_rate
    sex = "M" if rng.random() < 0.6 else "F"
    height = rng.uniform(1.68, 1.90) if sex == "M" else rng.uniform(1.55, 1.75)
    weight = rng.uniform(68.0, 98.0) if sex == "M" else rng.uniform(52.0, 82.0)
    patient = headers.synthetic_patient(seed, height, weight, sex, int(rng.integers(42, 78)))
    root = headers.make_uid_root("zeroclick-cmr", seed, vendor, transfer_syntax, enhanced, layout.n_images)

    n_sax = layout.n_sax_slices
    spacing = 8.0 if n_sax >= 13 else 10.0
    first = _first_slice_mm(hp, n_sax, spacing)
    z_all = [first + k * spacing for k in range(n_sax)]
    cine_stack = sax_stack(heart, z_mm=z_all, spacing_mm=spacing, thickness_mm=8.0, rows=224, cols=256,
                           pixel_mm=1.5625)
    lge_stack = sax_stack(heart, z_mm=z_all, spacing_mm=spacing, thickness_mm=8.0, rows=208, cols=256,
                          pixel_mm=1.40625)
    lv_z = [z for z in sorted(z_all) if float(heart.radii(np.array(z), 0.0)[1]) > 0]
    map_z = [lv_z[int(round(q * (len(lv_z) - 1)))] for q in (0.25, 0.5, 0.75)]
    molli_stack = sax_stack(heart, z_mm=map_z, spacing_mm=abs(map_z[1] - map_z[0]), thickness_mm=8.0,
                            rows=176, cols=208, pixel_mm=1.875)
    perf_stack = sax_stack(heart, z_mm=map_z, spacing_mm=abs(map_z[1] - map_z[0]), thickness_mm=10.0,
                           rows=144, cols=176, pixel_mm=2.1875)

    jitter_rng = np.random.default_rng([seed, 77])

    def cine_times(n_slices: int) -> tuple[tuple[float, ...], ...]:
        out = []
        for _ in range(n_slices):
            rr_s = rr * (1.0 + (float(np.clip(0.02 * jitter_rng.standard_normal(), -0.04, 0.04)) if trigger_jitter else 0.0))
            off = float(jitter_rng.uniform(0.0, 3.0)) if trigger_jitter else 0.0
            out.append(tuple(round(off + p * rr_s / n_phases, 2) for p in range(n_phases)))
        return tuple(out)

    specs: list[render.SeriesSpec] = []
    for number, lay in enumerate(layout.series, start=1):
        uid = f"{root}.3.{number}"
        common: dict[str, Any] = {"key": lay.key, "expected_class": lay.expected_class, "number": number, "uid": uid}
        phases = tuple(p / n_phases for p in range(n_phases))
        if lay.key == "localizer":
            per = 3
            planes = localizer_planes(heart, per_plane=per, rows=256, cols=256, pixel_mm=1.875)
            extra = lay.n_slices - len(planes)
            if extra:  # more transverse scouts below the first three
                more = localizer_planes(heart, per_plane=per + 2 * extra, rows=256, cols=256, pixel_mm=1.875)
                planes += more[:extra]
            spec = render.SeriesSpec(**common, planes=tuple(planes), n_frames=1, cycle_fractions=(0.4,),
                                     trigger_times_ms=None, inversion_times_ms=None, thickness_mm=8.0,
                                     spacing_between_slices_mm=None, sigma=14.0, truth="")
        elif lay.key == "cine_sax":
            spec = render.SeriesSpec(**common, planes=cine_stack.planes, n_frames=n_phases, cycle_fractions=phases,
                                     trigger_times_ms=cine_times(n_sax), inversion_times_ms=None, thickness_mm=8.0,
                                     spacing_between_slices_mm=spacing, sigma=18.0, truth="cine_sax")
        elif lay.key.startswith("cine_lax"):
            plane = lax_plane(heart, lay.key.rsplit("_", 1)[1], rows=224, cols=256, pixel_mm=1.5625)
            spec = render.SeriesSpec(**common, planes=(plane,), n_frames=n_phases, cycle_fractions=phases,
                                     trigger_times_ms=cine_times(1), inversion_times_ms=None, thickness_mm=8.0,
                                     spacing_between_slices_mm=None, sigma=18.0, truth="")
        elif lay.key in ("lge_mag", "lge_psir"):
            tt: tuple[tuple[float, ...], ...] = tuple((round(LGE_CYCLE_FRACTION * rr, 2),) for _ in range(n_sax))
            spec = render.SeriesSpec(**common, planes=lge_stack.planes, n_frames=1,
                                     cycle_fractions=(LGE_CYCLE_FRACTION,), trigger_times_ms=tt,
                                     inversion_times_ms=(LGE_INVERSION_MS,), thickness_mm=8.0,
                                     spacing_between_slices_mm=spacing,
                                     sigma=22.0 if lay.key == "lge_mag" else 45.0,
                                     truth="lge" if lay.key == "lge_mag" else "")
        elif lay.key.startswith("t1_molli_source"):
            tt = tuple(tuple(round(MOLLI_CYCLE_FRACTION * rr, 2) for _ in plan.MOLLI_TIS_MS) for _ in range(3))
            spec = render.SeriesSpec(**common, planes=molli_stack.planes, n_frames=len(plan.MOLLI_TIS_MS),
                                     cycle_fractions=(MOLLI_CYCLE_FRACTION,), trigger_times_ms=tt,
                                     inversion_times_ms=plan.MOLLI_TIS_MS, thickness_mm=8.0,
                                     spacing_between_slices_mm=molli_stack.spacing_mm, sigma=10.0, truth="")
        elif lay.key.startswith("t1_map"):
            spec = render.SeriesSpec(**common, planes=molli_stack.planes, n_frames=1,
                                     cycle_fractions=(MOLLI_CYCLE_FRACTION,), trigger_times_ms=None,
                                     inversion_times_ms=None, thickness_mm=8.0,
                                     spacing_between_slices_mm=molli_stack.spacing_mm, sigma=25.0,
                                     truth="t1" if lay.key == "t1_map" else "")
        else:  # perfusion: one slice per RR window, saturation-recovery images every beat
            fr = (0.12, 0.38, 0.64)
            tt = tuple(tuple(round(fr[s] * rr, 2) for _ in range(lay.n_frames)) for s in range(3))
            spec = render.SeriesSpec(**common, planes=perf_stack.planes, n_frames=lay.n_frames, cycle_fractions=fr,
                                     trigger_times_ms=tt, inversion_times_ms=None, thickness_mm=10.0,
                                     spacing_between_slices_mm=perf_stack.spacing_mm, sigma=10.0, truth="")
        assert spec.n_images == lay.n_images, (lay.key, spec.n_images, lay.n_images)
        specs.append(spec)

    design = render.ExamDesign(
        seed=seed, vendor=vendor, transfer_syntax=transfer_syntax, enhanced=enhanced, heart=hp,
        torso=ph.TorsoParams(), patient=patient, study_uid=f"{root}.1", frame_of_reference_uid=f"{root}.2",
        heart_rate_bpm=heart_rate, n_phases=n_phases, series=tuple(specs), dicom_dir=str(out_dir / "dicom"),
    )
    extras = {"sax_z": [cine_stack.z_mm[k] for k in range(n_sax)], "spacing": spacing, "es_idx": es_idx,
              "lge_z": list(lge_stack.z_mm), "map_z": list(molli_stack.z_mm)}
    return design, extras


def _tasks(design: render.ExamDesign) -> list[tuple[int, tuple[int, ...]]]:
    tasks = []
    for i, spec in enumerate(design.series):
        n = len(spec.planes)
        if design.enhanced or spec.n_images <= 60:
            tasks.append((i, tuple(range(n))))
        else:
            tasks.extend((i, (s,)) for s in range(n))

    def cost(t: tuple[int, tuple[int, ...]]) -> float:
        spec = design.series[t[0]]
        per = 4.0 if spec.key.startswith("cine") else 1.0
        return per * len(t[1]) * spec.n_frames * spec.planes[0].rows * spec.planes[0].cols

    return sorted(tasks, key=cost, reverse=True)


def _cpu_s() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _run_task(args: tuple[render.ExamDesign, int, tuple[int, ...]]) -> render.TaskResult:
    return render.run_task(*args)


def generate_exam(out_dir: str | Path, *, n_images: int = 3000, vendor: str = "siemens",
                  transfer_syntax: str = "explicit", enhanced: bool = False, seed: int = 0,
                  trigger_jitter: bool | None = None, workers: int | None = None,
                  post_contrast_t1: bool = False) -> ExamInfo:
    """Generate a whole synthetic cardiac MR exam with exact ground truth.

    Parameters
    ----------
    out_dir
        Folder to create; receives ``dicom/``, ``truth/*.nii.gz`` and ``ground_truth.json``.
    n_images
        Total number of 2-D images (frames) in the exam; series sizes add up to it exactly.
        At least :func:`zeroclick.imaging.synthetic.cmr.plan.minimum_images` (raises ``InvalidInputError`` below).
    vendor
        ``"siemens"``, ``"ge"`` or ``"philips"``: header style (descriptions, image types, rescale).
    transfer_syntax
        ``"explicit"`` (VR little endian), ``"jpegls"``, ``"rle"`` or ``"j2k"`` (all lossless).
    enhanced
        One Enhanced MR Image object (multi-frame, per-frame functional groups) per series.
    seed
        Everything (anatomy, noise, UIDs) is a function of the arguments.
    trigger_jitter
        Trigger times that differ slightly between slices (the Philips behaviour of issue 3);
        ``None`` = on for Philips only.
    workers
        Processes (default: 2 where the machine has them, 1 for small exams).
    post_contrast_t1
        Add a post-contrast MOLLI source + T1 map pair (same slices as the native pair; the images come out
        of the perfusion share, so ``n_images`` stays exact). The ground truth then holds post-contrast T1
        and ECV per region and per AHA segment (``truth["t1"]``).

    Examples
    --------
    >>> info = generate_exam("exam", n_images=400, seed=1)  # doctest: +SKIP
    >>> info.truth["lv_ef_percent"]  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    cpu0 = _cpu_s()
    if vendor not in headers.VENDORS:
        raise InvalidInputError(f"vendor={vendor!r} is not one of {', '.join(headers.VENDORS)}")
    ts_uid = transfer_syntax_uid(transfer_syntax)
    layout = plan.plan_exam(int(n_images), post_contrast_t1=post_contrast_t1)
    out = Path(out_dir).resolve()
    if (out / "dicom").exists() and any((out / "dicom").iterdir()):
        raise InvalidInputError(f"{out / 'dicom'} is not empty: choose a new folder or delete it first")
    (out / "truth").mkdir(parents=True, exist_ok=True)
    jitter = (vendor == "philips") if trigger_jitter is None else trigger_jitter
    design, extras = _design(out, layout, vendor, transfer_syntax, enhanced, seed, jitter)
    tasks = _tasks(design)
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if n_images >= 800 else 1
    results: list[render.TaskResult] = []
    if workers > 1:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            results = list(pool.map(_run_task, [(design, i, s) for i, s in tasks]))
    else:
        results = [render.run_task(design, i, s) for i, s in tasks]

    gt = _ground_truth(out, design, extras, results, str(ts_uid))
    files_per_series = {i: 0 for i in range(len(design.series))}
    for r in results:
        files_per_series[r.series_index] += len(r.files)
    series = tuple(
        SeriesInfo(s.number, s.uid, s.key, s.expected_class, headers.STYLES[vendor][s.key].description,
                   s.n_images, files_per_series[i]) for i, s in enumerate(design.series))
    elapsed = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    logger.info("synthetic exam: %d images in %d series written in %.1f s (%.1f CPU s)", n_images, len(series),
                elapsed, cpu)
    return ExamInfo(out_dir=out, dicom_dir=out / "dicom", ground_truth_path=out / "ground_truth.json",
                    n_images=layout.n_images, n_files=sum(s.n_files for s in series), vendor=vendor,
                    transfer_syntax=transfer_syntax, enhanced=enhanced, seed=seed,
                    study_instance_uid=design.study_uid, series=series, elapsed_s=elapsed, cpu_s=cpu,
                    workers=workers, truth=gt)


def _ground_truth(out: Path, design: render.ExamDesign, extras: dict[str, Any],
                  results: list[render.TaskResult], ts_uid: str) -> dict[str, Any]:
    heart = ph.HeartModel(design.heart)
    idx = {s.key: i for i, s in enumerate(design.series)}
    cine_spec = design.series[idx["cine_sax"]]
    lge_spec = design.series[idx["lge_mag"]]
    cine_regions: dict[int, np.ndarray] = {}
    lge_regions: dict[int, np.ndarray] = {}
    for r in results:
        if r.series_index == idx["cine_sax"]:
            cine_regions.update(r.labels)
        elif r.series_index == idx["lge_mag"]:
            lge_regions.update(r.labels)
    n_sax = len(cine_spec.planes)
    cine = ph.ACDC_FROM_REGION[np.stack([cine_regions[s] for s in range(n_sax)], axis=1)]
    lge = ph.EMIDEC_FROM_REGION[np.stack([lge_regions[s][0] for s in range(len(lge_spec.planes))])]
    cine_aff = truth.volume_affine(cine_spec.planes)
    lge_aff = truth.volume_affine(lge_spec.planes)
    truth.save_labels(out / "truth" / truth.TRUTH_FILES["cine_sax"], cine, cine_aff)
    truth.save_labels(out / "truth" / truth.TRUTH_FILES["lge"], lge, lge_aff)

    spacing = extras["spacing"]
    lge_f = float(ph.contraction(design.heart, LGE_CYCLE_FRACTION))
    a = truth.analytic_figures(heart, extras["sax_z"], design.n_phases, spacing, extras["lge_z"], spacing, lge_f)
    if a.es_phase != extras["es_idx"]:
        raise AssertionError(f"phantom ES phase {a.es_phase} != designed {extras['es_idx']}")
    es = a.es_phase
    lv, rv, myo = a.lv_volume_curve_ml, a.rv_volume_curve_ml, a.myo_volume_curve_ml
    cine_px = cine_spec.planes[0].spacing_mm
    lge_px = lge_spec.planes[0].spacing_mm
    labels = truth.label_figures(cine, lge, cine_px[0] * cine_px[1] * spacing / 1000.0,
                                 lge_px[0] * lge_px[1] * spacing / 1000.0, lge_spec.planes, extras["lge_z"],
                                 heart, es)
    edv, esv = lv[0], lv[es]
    rv_edv, rv_esv = rv[0], rv[es]
    lge_myo, infarct, mvo = a.lge_myocardium_ml, a.infarct_ml, a.mvo_ml
    base_index = min(range(n_sax), key=lambda k: extras["sax_z"][k])
    t1_truth = _t1_truth(out, design, extras, results, idx, heart, a.lge_lv_slices_base_to_apex,
                         a.lge_aha_slices_base_to_apex)
    gt: dict[str, Any] = {
        "lv_edv_ml": round(edv, 3), "lv_esv_ml": round(esv, 3), "lv_sv_ml": round(edv - esv, 3),
        "lv_ef_percent": round(100.0 * (edv - esv) / edv, 3),
        "rv_edv_ml": round(rv_edv, 3), "rv_esv_ml": round(rv_esv, 3),
        "rv_ef_percent": round(100.0 * (rv_edv - rv_esv) / rv_edv, 3),
        "myo_volume_ed_ml": round(myo[0], 3),
        "myo_mass_ed_g": round(myo[0] * truth.MYOCARDIAL_DENSITY_G_PER_ML, 3),
        "myocardial_density_g_per_ml": truth.MYOCARDIAL_DENSITY_G_PER_ML,
        "ed_phase": 0, "es_phase": es, "n_phases": design.n_phases,
        "heart_rate_bpm": design.heart_rate_bpm, "rr_interval_ms": round(design.rr_ms, 3),
        "infarct_ml": round(infarct, 4), "mvo_ml": round(mvo, 4),
        "lge_myocardium_ml": round(lge_myo, 3),
        "infarct_percent_of_myocardium": round(100.0 * infarct / lge_myo, 3),
        "mvo_percent_of_myocardium": round(100.0 * mvo / lge_myo, 3),
        "infarct_territory": "LAD",
        "segment_transmurality_percent": a.segment_transmurality_percent,
        "lv_volume_curve_ml": [round(v, 3) for v in lv],
        "rv_volume_curve_ml": [round(v, 3) for v in rv],
        "label_figures": labels,
        "sax": {"slice_order": "apex_to_base", "base_slice_index": base_index,
                "slice_z_mm_from_base": extras["sax_z"], "spacing_mm": spacing, "thickness_mm": 8.0,
                "lv_slices_ed": a.sax_lv_slices_ed},
        "lge": {"cycle_fraction": LGE_CYCLE_FRACTION, "inversion_time_ms": LGE_INVERSION_MS,
                "lv_slices_base_to_apex": a.lge_lv_slices_base_to_apex},
        "aha": {"insertion_half_angle_deg": ph.INSERTION_HALF_ANGLE_DEG,
                "insertion_directions_lps": _insertion_directions(heart),
                "note": f"RV insertion points (the ends of the RV cavity on the LV epicardium) are fixed at "
                        f"+-{ph.INSERTION_HALF_ANGLE_DEG:g} deg about the septum at every slice and phase"},
        "truth_grids": {
            "cine_sax": {"series_instance_uid": cine_spec.uid, "file": f"truth/{truth.TRUTH_FILES['cine_sax']}",
                         "labels": {"0": "background", "1": "RV cavity", "2": "LV myocardium", "3": "LV cavity"},
                         "trigger_times_ms": list(cine_spec.trigger_times_ms[0]) if cine_spec.trigger_times_ms else None},
            "lge": {"series_instance_uid": lge_spec.uid, "file": f"truth/{truth.TRUTH_FILES['lge']}",
                    "labels": {"0": "background", "1": "LV cavity", "2": "healthy myocardium", "3": "infarct",
                               "4": "MVO"}, "trigger_times_ms": None},
            **t1_truth.pop("truth_grids"),
        },
        "t1": t1_truth,
        "series": [{"series_instance_uid": s.uid, "series_number": s.number, "key": s.key,
                    "expected_class": s.expected_class, "n_images": s.n_images,
                    "description": headers.STYLES[design.vendor][s.key].description} for s in design.series],
        "study_instance_uid": design.study_uid, "frame_of_reference_uid": design.frame_of_reference_uid,
        "patient_height_m": design.patient.height_m, "patient_weight_kg": design.patient.weight_kg,
        "patient_sex": design.patient.sex, "vendor": design.vendor, "transfer_syntax": design.transfer_syntax,
        "transfer_syntax_uid": ts_uid, "enhanced": design.enhanced, "seed": design.seed,
        "n_images": sum(s.n_images for s in design.series),
    }
    tmp = out / "ground_truth.json.part"
    tmp.write_text(json.dumps(gt, indent=1))
    tmp.replace(out / "ground_truth.json")
    return gt


def _insertion_directions(heart: ph.HeartModel) -> dict[str, list[float]]:
    """Unit LPS vectors from the LV axis to the anterior (AHA angle 0) and inferior RV insertion points, in the
    short-axis plane; the same at every slice and phase (a reader's segment borders, docs/conventions.md)."""
    ea, eb, _ = heart.rot
    alpha = np.radians(ph.INSERTION_HALF_ANGLE_DEG)
    return {name: [round(float(v), 6) for v in np.cos(phi) * ea + np.sin(phi) * eb]
            for name, phi in (("anterior", -alpha), ("inferior", alpha))}


def _t1_truth(out: Path, design: render.ExamDesign, extras: dict[str, Any], results: list[render.TaskResult],
              idx: dict[str, int], heart: ph.HeartModel, lge_base_to_apex: list[int],
              lge_aha_slices: list[int]) -> dict[str, Any]:
    """Exact T1 / ECV truth: per region (the tissue tables) and per AHA segment on the map slices."""
    spec = design.series[idx["t1_map"]]
    regions: dict[int, np.ndarray] = {}
    for r in results:
        if r.series_index == idx["t1_map"]:
            regions.update(r.labels)
    labels = ph.EMIDEC_FROM_REGION[np.stack([regions[s][0] for s in range(len(spec.planes))])]
    aff = truth.volume_affine(spec.planes)
    truth.save_labels(out / "truth" / truth.TRUTH_FILES["t1"], labels, aff)
    post = "t1_map_post" in idx
    tissues = {"blood": ph.BLOOD, "myocardium": ph.MYO, "infarct": ph.INFARCT, "mvo": ph.MVO}
    native = sq.t1_table()
    post_t1 = sq.t1_table(post_contrast=True)
    out_t1: dict[str, Any] = {
        "hematocrit": sq.HEMATOCRIT,
        "native_t1_ms": {k: round(float(native[t]), 3) for k, t in tissues.items()},
        "post_t1_ms": {k: round(float(post_t1[t]), 3) for k, t in tissues.items()} if post else None,
        "ecv": {k: round(float(sq.ECV[t]), 4) for k, t in tissues.items()},
        "look_locker_t1star_over_t1": sq.LOOK_LOCKER_T1STAR_OVER_T1,
        "map_slice_z_mm_from_base": extras["map_z"],
        "segment_rule": truth.T1_SEGMENT_RULE,
    }
    lge_z = extras["lge_z"]
    levels_lge = truth.lv_levels(lge_aha_slices)
    nearest = {s: min(lge_base_to_apex, key=lambda k: abs(lge_z[k] - z)) for s, z in enumerate(extras["map_z"])}
    levels = {s: levels_lge[k] for s, k in nearest.items() if k in levels_lge}  # none at the apical cap
    out_t1["segments"] = truth.t1_segment_truth(labels, spec.planes, heart, levels, native, post_t1 if post else None,
                                                sq.HEMATOCRIT)
    out_t1["truth_grids"] = {"t1": {
        "series_instance_uid": spec.uid, "file": f"truth/{truth.TRUTH_FILES['t1']}",
        "labels": {"0": "background", "1": "LV cavity", "2": "healthy myocardium", "3": "infarct", "4": "MVO"},
        "trigger_times_ms": None}}
    return out_t1
