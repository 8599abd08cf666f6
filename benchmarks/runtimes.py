"""``zeroclick bench runtimes``: the CPU runtimes side by side on real labelled patients, with the accuracy gate.

On the shared ACDC test patients (``cmr/acdc_test``: manual labels at ED and ES; the published weights never saw
them) every runtime segments the same ED and ES stacks through :class:`~zeroclick.pipelines.cardiac.segmentation.
CineSegmenter` (same pre/post-processing), interleaved per patient so that a shared machine's load hits them alike.
Against the fp32 reference (ONNX Runtime) each alternative runtime must, on every patient:

* change LV and RV EF by at most :data:`MAX_EF_CHANGE_POINTS` (0.5 points),
* change LV/RV EDV and ESV by at most :data:`MAX_VOLUME_CHANGE_PERCENT` (1%),
* give label maps whose Dice with the reference's is at least :data:`MIN_DICE_VS_REFERENCE` (0.98) for RV,
  LV myocardium and LV cavity at ED and ES.

Only a runtime that passes may be the default (``runtime="auto"``). Dice against the manual labels is reported
for every runtime, so a runtime that agrees with fp32 is also seen not to be worse against people.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

DESCRIPTION = "CPU runtimes on the shared ACDC test patients: slices/s and the accuracy gate against fp32"

MAX_EF_CHANGE_POINTS = 0.5
MAX_VOLUME_CHANGE_PERCENT = 1.0
MIN_DICE_VS_REFERENCE = 0.98
#: runtime name -> Engine keyword arguments (all on the CPU).
RUNTIMES: dict[str, dict[str, str]] = {
    "onnxruntime": {"runtime": "onnxruntime", "precision": "fp32"},
    "openvino-fp32": {"runtime": "openvino", "precision": "fp32"},
    "openvino-bf16": {"runtime": "openvino", "precision": "bf16"},
    "torch": {"runtime": "torch", "precision": "fp32"},
}
_STRUCTURES = (("rv", 1), ("myo", 2), ("lv", 3))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None,
                        help="folder of ACDC patient folders (default: cmr/acdc_test in $ZEROCLICK_SHARED_DATA "
                             "or ../shared/data)")
    parser.add_argument("--patients", type=int, default=25, help="first N patients (default 25)")
    parser.add_argument("--runtimes", nargs="+", default=["onnxruntime", "openvino-fp32", "openvino-bf16"],
                        choices=sorted(RUNTIMES), help="runtimes to compare; the first is the fp32 reference")


def default_data() -> Path:
    """``cmr/acdc_test`` of the shared real data (``$ZEROCLICK_SHARED_DATA`` or ``../shared/data``)."""
    root = os.environ.get("ZEROCLICK_SHARED_DATA") or str(Path.cwd().parent / "shared" / "data")
    return Path(root) / "cmr" / "acdc_test"


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    total = int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    return None if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def _measure(ed: np.ndarray, es: np.ndarray, voxel_ml: float) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (("lv", 3), ("rv", 1)):
        edv = float(np.count_nonzero(ed == value)) * voxel_ml
        esv = float(np.count_nonzero(es == value)) * voxel_ml
        out.update({f"{name}_edv_ml": edv, f"{name}_esv_ml": esv,
                    f"{name}_ef_percent": 100.0 * (edv - esv) / edv if edv > 0 else float("nan")})
    return out


def _load(folder: Path) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """ED and ES image volumes and their manual label arrays."""
    from zeroclick.pipelines.cardiac.inputs import load_acdc, nifti_to_volume

    case = load_acdc(folder)
    assert case.cine is not None and case.given_phases is not None and case.phase_numbers is not None
    gts = []
    for frame in case.phase_numbers:
        gt_files = sorted(folder.glob(f"*_frame{frame + 1:02d}_gt.nii*"))
        gts.append(np.rint(nifti_to_volume(gt_files[0]).array).astype(np.uint8) if gt_files else None)
    ed_i, es_i = case.given_phases
    return case.cine.phase(ed_i), case.cine.phase(es_i), gts[ed_i], gts[es_i]


def compare(folders: list[Path], runtimes: list[str]) -> dict[str, Any]:
    """Segment every patient's ED and ES with every runtime; the first runtime is the reference."""
    from zeroclick.imaging.engine import Engine
    from zeroclick.pipelines.cardiac.segmentation import CineSegmenter, exports_dir

    segmenters = {name: CineSegmenter(engine=Engine(device="cpu", export_dir=exports_dir(), **RUNTIMES[name]))
                  for name in runtimes}
    seconds = dict.fromkeys(runtimes, 0.0)
    slices = dict.fromkeys(runtimes, 0)
    per_patient: list[dict[str, Any]] = []
    for folder in folders:
        ed, es, gt_ed, gt_es = _load(folder)
        labels: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, seg in segmenters.items():
            if not slices[name]:  # first patient: build and warm the session outside the timing
                seg.segment(ed, slices=[ed.array.shape[0] // 2])
                seg.slices_inferred = 0
            t0 = time.perf_counter()
            got = seg.segment_many([ed, es])
            seconds[name] += time.perf_counter() - t0
            slices[name] += seg.slices_inferred
            seg.slices_inferred = 0
            labels[name] = (got[0], got[1])
        per_patient.append(_patient_record(folder.name, labels, runtimes, ed.voxel_volume_ml, gt_ed, gt_es))
    return {"reference": runtimes[0], "patients": [p["patient"] for p in per_patient],
            "runtimes": {name: _summary(name, per_patient, seconds[name], slices[name], segmenters[name])
                         for name in runtimes},
            "per_patient": per_patient}


def _patient_record(patient: str, labels: dict[str, tuple[np.ndarray, np.ndarray]], runtimes: list[str],
                    voxel_ml: float, gt_ed: np.ndarray | None, gt_es: np.ndarray | None) -> dict[str, Any]:
    ref = labels[runtimes[0]]
    ref_m = _measure(*ref, voxel_ml)
    record: dict[str, Any] = {"patient": patient, "reference": {k: round(v, 3) for k, v in ref_m.items()}}
    for name in runtimes:
        ed, es = labels[name]
        m = _measure(ed, es, voxel_ml)
        dice_ref = [_dice(a == v, b == v) for a, b in ((ed, ref[0]), (es, ref[1])) for _s, v in _STRUCTURES]
        dice_manual = {f"{s}_{ph}": _dice(lab == v, gt == v)
                       for ph, lab, gt in (("ed", ed, gt_ed), ("es", es, gt_es)) if gt is not None
                       for s, v in _STRUCTURES}
        record[name] = {
            "ef_change_points": max(abs(m[k] - ref_m[k]) for k in ("lv_ef_percent", "rv_ef_percent")),
            "volume_change_percent": max(abs(m[k] - ref_m[k]) / ref_m[k] * 100.0 if ref_m[k] > 0 else
                                         (0.0 if m[k] == 0 else float("inf"))
                                         for k in ("lv_edv_ml", "lv_esv_ml", "rv_edv_ml", "rv_esv_ml")),
            "min_dice_vs_reference": min(d for d in dice_ref if d is not None),
            "dice_vs_manual": dice_manual,
        }
    return record


def _summary(name: str, per_patient: list[dict[str, Any]], seconds: float, slices: int, seg: Any) -> dict[str, Any]:
    rows = [p[name] for p in per_patient]
    manual = [d for r in rows for d in r["dice_vs_manual"].values() if d is not None]
    worst_ef = max(r["ef_change_points"] for r in rows)
    worst_vol = max(r["volume_change_percent"] for r in rows)
    worst_dice = min(r["min_dice_vs_reference"] for r in rows)
    return {
        "runtime_used": next(iter(seg.engine.info.get("runtime_used", {}).values()), name),
        "slices": slices,
        "seconds": round(seconds, 2),
        "slices_per_s": round(slices / seconds, 3) if seconds > 0 else None,
        "max_ef_change_points": round(worst_ef, 3),
        "max_volume_change_percent": round(worst_vol, 3),
        "min_dice_vs_reference": round(worst_dice, 4),
        "mean_dice_vs_manual": round(statistics.fmean(manual), 4) if manual else None,
        "gate_passed": bool(worst_ef <= MAX_EF_CHANGE_POINTS and worst_vol <= MAX_VOLUME_CHANGE_PERCENT
                            and worst_dice >= MIN_DICE_VS_REFERENCE),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from zeroclick.imaging.errors import InvalidInputError

    data = Path(args.data) if args.data else default_data()
    folders = sorted(p for p in data.glob("patient*") if p.is_dir())[: max(1, args.patients)]
    if not folders:
        raise InvalidInputError(f"{data}: no ACDC patient folders; pass --data or set ZEROCLICK_SHARED_DATA")
    record = compare(folders, list(args.runtimes))
    record["load_average_1min"] = round(os.getloadavg()[0], 2)
    record["gate"] = {"max_ef_change_points": MAX_EF_CHANGE_POINTS,
                      "max_volume_change_percent": MAX_VOLUME_CHANGE_PERCENT,
                      "min_dice_vs_reference": MIN_DICE_VS_REFERENCE}
    return record
