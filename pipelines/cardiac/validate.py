"""The cardiac pipeline measured against manual labels: ``zeroclick validate cmr DATA --out DIR``.

Every case of a labelled set goes through :func:`zeroclick.pipelines.cardiac.run` as a user would run it
(same reader, weights and slice rule); the pipeline's masks and numbers are then compared with the manual labels:

* Dice and 95th-percentile Hausdorff distance (MONAI metrics, mm on the image grid) per structure at the
  **expert's** ED and ES phases;
* LV EDV/ESV/EF/mass and RV EDV/ESV/EF end to end (the pipeline's own ED/ES) against the same figures computed
  from the manual labels by the same function code (every manually labelled slice counts: the expert already
  chose them), per case and pooled (bias, mean absolute error, 95 % limits of agreement, worst case and its id);
* ED/ES phase distance from the expert's (cyclic, in phases) where the pipeline chose the phases itself;
* the **slice-choice bound**: the same figures from the network's labels at the expert's phases counted on exactly
  the slices where the expert labelled each structure (:func:`on_manual_slices`). No basal/apical slice rule can
  do better than the expert's own slice choice, so what error remains there is the segmentation within slices,
  not the volume rule; the gap between the bound and ``at_manual_phases`` is what the rule costs.

Labelled sets it reads (:mod:`zeroclick.pipelines.cardiac.validate_cases`): ACDC-style patient folders
(``Info.cfg`` + ``*_frameXX.nii.gz`` + ``*_frameXX_gt.nii.gz``) and Sunnybrook-style exams (a DICOM folder
``NAME`` beside ``NAME_contours/{i,o}-contours/IM-0001-NNNN-{i,o}contour-manual.txt``).

Outputs in ``--out``: ``cases.csv`` (one row per case), ``summary.json`` (pooled agreement, every case) and
``bland_altman.png``.

Examples
--------
>>> from zeroclick.pipelines.cardiac import validate          # doctest: +SKIP
>>> v = validate("../shared/data/cmr/acdc_test", out="val")   # doctest: +SKIP
>>> v.agreement["lv_ef_percent"].mean_absolute_error          # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import warnings
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.cardiac.function import compute_function
from zeroclick.pipelines.cardiac.result import FunctionResult
from zeroclick.pipelines.cardiac.validate_cases import LabelledCase, find_cases
from zeroclick.pipelines.cardiac.volume_rule import VOLUME_RULES, apply_volume_rule

logger = logging.getLogger(__name__)

__all__ = ["Agreement", "CaseAgreement", "ValidationResult", "cli_main", "validate"]

#: Structures compared (ACDC label values).
STRUCTURES = {"rv": 1, "myo": 2, "lv": 3}
#: Measurements compared end to end (FunctionResult field names).
MEASUREMENTS = ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "myo_mass_ed_g", "rv_edv_ml", "rv_esv_ml", "rv_ef_percent")


@dataclass(frozen=True)
class Agreement:
    """Pipeline minus manual for one measurement over the cases where both exist (Bland-Altman statistics)."""

    measurement: str
    n_cases: int
    bias: float | None
    mean_absolute_error: float | None
    sd_of_differences: float | None
    limits_of_agreement_95: tuple[float, float] | None
    worst_abs_error: float | None
    worst_case: str | None


@dataclass(frozen=True)
class CaseAgreement:
    """One case: overlap at the expert's phases and the measurements end to end (pipeline vs manual)."""

    case_id: str
    kind: str
    status: str
    manual_ed_phase: int
    manual_es_phase: int
    ed_phase: int | None = None
    es_phase: int | None = None
    phase_method: str = ""
    ed_phase_error: int | None = None
    es_phase_error: int | None = None
    dice: dict[str, float | None] = field(default_factory=dict)
    hd95_mm: dict[str, float | None] = field(default_factory=dict)
    pipeline: dict[str, float | None] = field(default_factory=dict)
    manual: dict[str, float | None] = field(default_factory=dict)
    at_manual_phases: dict[str, float | None] = field(default_factory=dict)
    on_manual_slices: dict[str, float | None] = field(default_factory=dict)
    slices_inferred: int = 0
    error: str = ""


@dataclass(frozen=True)
class ValidationResult:
    """Per-case and pooled agreement with manual labels; ``files`` names what was written."""

    data: str
    volume_rule: str
    cases: tuple[CaseAgreement, ...]
    agreement: dict[str, Agreement]
    mean_dice: dict[str, float | None]
    mean_hd95_mm: dict[str, float | None]
    phase_errors: dict[str, Any]
    files: dict[str, str] = field(default_factory=dict)
    tta: bool = False
    slice_choice_bound: dict[str, Agreement] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        from zeroclick.pipelines.cardiac.result import _plain

        return _plain(self)


def agreement(measurement: str, pairs: Sequence[tuple[str, float | None, float | None]]) -> Agreement:
    """Bland-Altman statistics of ``(case_id, pipeline, manual)`` triples (``None`` values are skipped).

    Examples
    --------
    >>> a = agreement("ef", [("a", 50.0, 48.0), ("b", 30.0, 34.0)])
    >>> a.bias, a.mean_absolute_error, a.worst_case
    (-1.0, 3.0, 'b')
    """
    got = [(c, float(p) - float(m)) for c, p, m in pairs
           if p is not None and m is not None and math.isfinite(p) and math.isfinite(m)]
    if not got:
        return Agreement(measurement, 0, None, None, None, None, None, None)
    d = np.array([x for _, x in got])
    bias = float(d.mean())
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    worst = int(np.argmax(np.abs(d)))
    return Agreement(measurement, len(d), bias, float(np.abs(d).mean()), sd,
                     (bias - 1.96 * sd, bias + 1.96 * sd), float(abs(d[worst])), got[worst][0])


def overlap(pred: np.ndarray, truth: np.ndarray, spacing_mm: Sequence[float]) -> tuple[float | None, float | None]:
    """Dice and 95th-percentile symmetric Hausdorff distance (mm) of two 3-D binary masks (MONAI metrics).

    ``None`` where a mask is empty (Dice is 1.0 when both are empty).
    """
    import torch
    from monai.metrics import compute_dice, compute_hausdorff_distance

    p = torch.as_tensor(np.asarray(pred, bool)[None, None], dtype=torch.float32)
    t = torch.as_tensor(np.asarray(truth, bool)[None, None], dtype=torch.float32)
    if not t.any() and not p.any():
        return 1.0, None
    dice = float(compute_dice(p, t, include_background=True, ignore_empty=False)[0, 0])
    if not t.any() or not p.any():
        return dice, None
    with warnings.catch_warnings():  # MONAI 1.5+ deprecation notice from inside its own metric
        warnings.simplefilter("ignore", FutureWarning)
        hd = float(compute_hausdorff_distance(p, t, include_background=True, percentile=95,
                                              spacing=[float(s) for s in spacing_mm])[0, 0])
    return dice, hd


def _cyclic_distance(a: int, b: int, n: int) -> int:
    d = abs(int(a) - int(b)) % max(1, n)
    return min(d, n - d)


class _ExamSegmenter:
    """One exam's segmenter whose network labels outlive :func:`run`: the masks at the expert's phases reuse
    every slice the pipeline already inferred (no slice goes through the network twice)."""

    def __init__(self, inner: Any) -> None:
        from zeroclick.pipelines.cardiac.segmentation import RawLabelCache

        self.inner = inner
        self.cache = RawLabelCache()

    @property
    def provenance(self) -> dict[str, Any]:
        return dict(getattr(self.inner, "provenance", {}) or {})

    def segment_cached(self, items: Sequence[tuple[Hashable, Any, Sequence[int] | None]], _cache: Any
                       ) -> list[np.ndarray]:
        return self.inner.segment_cached(items, self.cache)


def on_manual_slices(labels: np.ndarray, manual: np.ndarray, labelled: frozenset[str] | set[str]) -> np.ndarray:
    """The network's ``labels`` of one phase counted on exactly the slices where the expert labelled each structure.

    A structure the expert did not label at this phase (``labelled`` holds ``rv``, ``myo``, ``lv``; e.g. the
    myocardium of a Sunnybrook ES phase) is gated by the expert's LV cavity slices instead.

    Examples
    --------
    >>> net = np.array([[[3, 2, 1]], [[3, 2, 1]], [[0, 2, 0]]])        # 3 slices of 1 x 3 pixels
    >>> man = np.array([[[3, 2, 0]], [[3, 2, 1]], [[0, 0, 0]]])
    >>> on_manual_slices(net, man, {"lv", "myo", "rv"})[:, 0].tolist()
    [[3, 2, 0], [3, 2, 1], [0, 0, 0]]
    """
    out = np.array(labels, copy=True)
    manual = np.asarray(manual)
    for name, value in STRUCTURES.items():
        gate = value if name in labelled else STRUCTURES["lv"]
        present = (manual == gate).reshape(manual.shape[0], -1).any(axis=1)
        out[~present] = np.where(out[~present] == value, 0, out[~present])
    return out


def _measure(f: FunctionResult | None) -> dict[str, float | None]:
    return {k: (None if f is None else getattr(f, k)) for k in MEASUREMENTS}


def validate_case(case: LabelledCase, segmenter: Any, *, volume_rule: str = "scmr", device: str = "auto",
                  runtime: str = "auto") -> CaseAgreement:
    """Run the pipeline on one labelled case and compare it with its manual labels."""
    from zeroclick.pipelines.cardiac import run

    inputs = case.inputs
    assert inputs.cine is not None
    n_phases = inputs.cine.n_phases
    exam = _ExamSegmenter(segmenter)
    manual_f = compute_function(case.manual_ed, case.manual_es, height_m=inputs.height_m, weight_kg=inputs.weight_kg)
    manual = {k: (v if case.has_label(k) else None) for k, v in _measure(manual_f).items()}
    base = CaseAgreement(case.case_id, inputs.kind, "failed", case.ed_index, case.es_index, manual=manual)
    try:
        result = run(inputs, cine_segmenter=exam, volume_rule=volume_rule, device=device, runtime=runtime)
    except Exception as exc:  # noqa: BLE001 - one failed case must not stop a cohort validation
        logger.warning("case %s failed: %s", case.case_id, type(exc).__name__)
        return replace(base, error=f"{type(exc).__name__}: {exc}")
    phases = result.phases
    ed_i = es_i = None
    if phases is not None:
        numbers = inputs.phase_numbers or tuple(range(n_phases))
        ed_i, es_i = numbers.index(phases.ed_phase), numbers.index(phases.es_phase)
    # the pipeline's masks at the expert's phases, with the same slice rule
    cine = inputs.cine
    ed_raw, es_raw = exam.segment_cached([(case.ed_index, cine.phase(case.ed_index), None),
                                          (case.es_index, cine.phase(case.es_index), None)], None)
    ed_lab, es_lab, _ = apply_volume_rule(ed_raw, es_raw, rule=volume_rule)
    dice: dict[str, float | None] = {}
    hd: dict[str, float | None] = {}
    spacing = cine.spacing_mm
    for phase_name, pred, truth in (("ed", ed_lab, case.manual_ed.array), ("es", es_lab, case.manual_es.array)):
        for name, value in STRUCTURES.items():
            if not case.has_structure(name, phase_name):
                continue
            d, h = overlap(pred == value, truth == value, spacing)
            dice[f"{name}_{phase_name}"], hd[f"{name}_{phase_name}"] = d, h
    at_manual = compute_function(case.manual_ed.with_array(ed_lab), case.manual_es.with_array(es_lab))
    bound = compute_function(
        case.manual_ed.with_array(on_manual_slices(ed_raw, case.manual_ed.array, case.structures.get("ed", set()))),
        case.manual_es.with_array(on_manual_slices(es_raw, case.manual_es.array, case.structures.get("es", set()))))
    pipeline = {k: (v if case.has_label(k) else None) for k, v in _measure(result.function).items()}
    return replace(
        base, status=result.status, ed_phase=ed_i, es_phase=es_i, phase_method=phases.method if phases else "",
        ed_phase_error=None if ed_i is None else _cyclic_distance(ed_i, case.ed_index, n_phases),
        es_phase_error=None if es_i is None else _cyclic_distance(es_i, case.es_index, n_phases),
        dice=dice, hd95_mm=hd, pipeline=pipeline,
        at_manual_phases={k: (v if case.has_label(k) else None) for k, v in _measure(at_manual).items()},
        on_manual_slices={k: (v if case.has_label(k) else None) for k, v in _measure(bound).items()},
        slices_inferred=result.provenance.slices_inferred,
    )


def summarise(cases: Sequence[CaseAgreement], *, data: str = "", volume_rule: str = "scmr") -> ValidationResult:
    """Pooled agreement, mean Dice / HD95 and phase errors over ``cases``."""
    ok = [c for c in cases if not c.error]
    stats = {m: agreement(m, [(c.case_id, c.pipeline.get(m), c.manual.get(m)) for c in ok]) for m in MEASUREMENTS}
    bound = {m: agreement(m, [(c.case_id, c.on_manual_slices.get(m), c.manual.get(m)) for c in ok])
             for m in MEASUREMENTS}
    keys = sorted({k for c in ok for k in c.dice})

    def mean(values: list[float | None]) -> float | None:
        got = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.mean(got)) if got else None

    searched = [c for c in ok if c.phase_method not in ("given", "")]
    phase_errors: dict[str, Any] = {"n_cases": len(searched)}
    for name in ("ed", "es"):
        errs = [(c.case_id, getattr(c, f"{name}_phase_error")) for c in searched]
        errs = [(i, e) for i, e in errs if e is not None]
        phase_errors[f"{name}_mean_abs_phases"] = float(np.mean([e for _, e in errs])) if errs else None
        phase_errors[f"{name}_within_1_phase"] = sum(e <= 1 for _, e in errs)
        phase_errors[f"{name}_worst"] = max(errs, key=lambda t: t[1]) if errs else None
    return ValidationResult(
        data=data, volume_rule=volume_rule, cases=tuple(cases), agreement=stats,
        mean_dice={k: mean([c.dice.get(k) for c in ok]) for k in keys},
        mean_hd95_mm={k: mean([c.hd95_mm.get(k) for c in ok]) for k in keys},
        phase_errors=phase_errors, slice_choice_bound=bound,
    )


def validate(
    data: str | Path,
    *,
    out: str | Path | None = None,
    volume_rule: str = "scmr",
    device: str = "auto",
    runtime: str = "auto",
    cine_segmenter: Any | None = None,
    cases: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
    tta: bool = False,
) -> ValidationResult:
    """Validate the cardiac pipeline on every labelled case under ``data`` (see the module docstring).

    Parameters
    ----------
    data
        A labelled case or a folder of them (ACDC-style or Sunnybrook-style).
    out
        Folder for ``cases.csv``, ``summary.json`` and ``bland_altman.png`` (nothing is written when ``None``).
    volume_rule
        ``scmr`` (default) or ``reference``: which slices count toward the volumes
        (:mod:`zeroclick.pipelines.cardiac.volume_rule`).
    cine_segmenter
        Object with ``segment_cached`` (default: :class:`~zeroclick.pipelines.cardiac.segmentation.CineSegmenter`).
    cases
        Only these case ids (default: every case found).
    tta
        Test-time augmentation of the default segmenter (``CineSegmenter(tta=True)``: the network's softmax
        averaged over the image and its flips; four network passes per slice).

    Raises
    ------
    InvalidInputError
        When ``data`` holds no labelled case or ``volume_rule`` is unknown.
    """
    if volume_rule not in VOLUME_RULES:
        raise InvalidInputError(f"volume rule {volume_rule!r} is not one of {', '.join(VOLUME_RULES)}")
    found = find_cases(data)
    if cases is not None:
        found = [c for c in found if c.case_id in set(cases)]
    if not found:
        raise InvalidInputError(f"{data}: no labelled case found; expected ACDC-style patient folders (Info.cfg, "
                                "*_frameXX.nii.gz and *_frameXX_gt.nii.gz) or a DICOM folder NAME beside "
                                "NAME_contours/i-contours")
    if cine_segmenter is None:
        from zeroclick.imaging.engine import Engine
        from zeroclick.pipelines.cardiac.segmentation import CineSegmenter, exports_dir

        cine_segmenter = CineSegmenter(engine=Engine(device=device, runtime=runtime, export_dir=exports_dir()),
                                       tta=tta)
    results = []
    for i, ref in enumerate(found):
        if progress is not None:
            progress(f"[{i + 1}/{len(found)}] {ref.case_id}")
        results.append(validate_case(ref.load(), cine_segmenter, volume_rule=volume_rule, device=device,
                                     runtime=runtime))
    summary = replace(summarise(results, data=str(data), volume_rule=volume_rule), tta=bool(tta))
    if out is not None:
        summary = replace(summary, files=write_outputs(summary, Path(out)))
    return summary


# --- outputs ----------------------------------------------------------------------------------------------


_WHO = ("pipeline", "manual", "at_manual_phases", "on_manual_slices")


def _csv_bytes(result: ValidationResult) -> bytes:
    keys_dice = sorted({k for c in result.cases for k in c.dice})
    header = ["case_id", "kind", "status", "manual_ed_phase", "manual_es_phase", "ed_phase", "es_phase",
              "phase_method", "ed_phase_error", "es_phase_error"]
    header += [f"dice_{k}" for k in keys_dice] + [f"hd95_mm_{k}" for k in keys_dice]
    header += [f"{who}_{m}" for m in MEASUREMENTS for who in _WHO]
    header += ["slices_inferred", "error"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and not math.isfinite(v)):
            return ""
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    for c in result.cases:
        row = [c.case_id, c.kind, c.status, c.manual_ed_phase, c.manual_es_phase, c.ed_phase, c.es_phase,
               c.phase_method, c.ed_phase_error, c.es_phase_error]
        row += [c.dice.get(k) for k in keys_dice] + [c.hd95_mm.get(k) for k in keys_dice]
        row += [getattr(c, who).get(m) for m in MEASUREMENTS for who in _WHO]
        row += [c.slices_inferred, c.error]
        w.writerow([fmt(v) for v in row])
    return buf.getvalue().encode()


def _bland_altman_png(result: ValidationResult) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [m for m in ("lv_ef_percent", "lv_edv_ml", "lv_esv_ml", "myo_mass_ed_g", "rv_ef_percent", "rv_edv_ml")
              if result.agreement[m].n_cases]
    cols = 3
    rows = max(1, math.ceil(len(panels) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    ok = [c for c in result.cases if not c.error]
    for ax, m in zip(axes.ravel(), panels):
        pairs = [(float(p), float(q)) for c in ok
                 if (p := c.pipeline.get(m)) is not None and (q := c.manual.get(m)) is not None]
        means = np.array([(p + q) / 2 for p, q in pairs])
        diffs = np.array([p - q for p, q in pairs])
        a = result.agreement[m]
        ax.scatter(means, diffs, s=14, color="tab:blue")
        if a.bias is not None and a.limits_of_agreement_95 is not None:
            ax.axhline(a.bias, color="k", lw=1, label=f"bias {a.bias:+.2f}")
            for lim in a.limits_of_agreement_95:
                ax.axhline(lim, color="k", lw=0.8, ls="--")
            ax.axhline(0, color="grey", lw=0.5)
            lo, hi = a.limits_of_agreement_95
            ax.set_title(f"{m}: bias {a.bias:+.2f}, LoA [{lo:+.1f}, {hi:+.1f}]\nMAE {a.mean_absolute_error:.2f}, "
                         f"worst {a.worst_abs_error:.1f} ({a.worst_case})", fontsize=8)
        ax.set_xlabel("mean of pipeline and manual", fontsize=8)
        ax.set_ylabel("pipeline - manual", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(f"zeroclick cardiac vs manual labels ({len(ok)} cases, volume rule {result.volume_rule})",
                 fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def write_outputs(result: ValidationResult, out: Path) -> dict[str, str]:
    """Write ``cases.csv``, ``summary.json`` and ``bland_altman.png`` atomically into ``out``."""
    from zeroclick.pipelines.cardiac.outputs import atomic_write_bytes

    out.mkdir(parents=True, exist_ok=True)
    files = {"cases_csv": out / "cases.csv", "summary_json": out / "summary.json",
             "bland_altman_png": out / "bland_altman.png"}
    atomic_write_bytes(files["cases_csv"], _csv_bytes(result))
    if any(a.n_cases for a in result.agreement.values()):
        atomic_write_bytes(files["bland_altman_png"], _bland_altman_png(result))
    else:
        del files["bland_altman_png"]
    names = {k: str(v) for k, v in files.items()}
    payload = replace(result, files=names).to_dict()
    atomic_write_bytes(files["summary_json"], json.dumps(payload, indent=2, allow_nan=False).encode())
    return names


def summary_table(result: ValidationResult) -> str:
    """Plain-text table of the pooled figures (what the CLI prints without ``--json``)."""
    lines = [f"{len(result.cases)} cases from {result.data} (volume rule {result.volume_rule})",
             "overlap at the expert's phases (mean): " + ", ".join(
                 f"{k} Dice {v:.3f}" for k, v in result.mean_dice.items() if v is not None),
             f"{'measurement':<16}{'n':>4}{'bias':>9}{'MAE':>8}{'LoA 95%':>20}{'worst':>8}  case"]
    for a in result.agreement.values():
        if not a.n_cases or a.limits_of_agreement_95 is None:
            continue
        lo, hi = a.limits_of_agreement_95
        lines.append(f"{a.measurement:<16}{a.n_cases:>4}{a.bias:>+9.2f}{a.mean_absolute_error:>8.2f}"
                     f"{f'[{lo:+.1f}, {hi:+.1f}]':>20}{a.worst_abs_error:>8.2f}  {a.worst_case}")
    for m in ("lv_ef_percent", "rv_ef_percent"):
        b = result.slice_choice_bound.get(m)
        if b is not None and b.n_cases and b.bias is not None:
            lines.append(f"slice-choice bound {m} (network labels on the expert's slices): bias {b.bias:+.2f}, "
                         f"MAE {b.mean_absolute_error:.2f}, worst {b.worst_abs_error:.2f} ({b.worst_case})")
    pe = result.phase_errors
    if pe.get("n_cases"):
        lines.append(f"ED/ES chosen by the pipeline on {pe['n_cases']} case(s): within 1 phase of the expert "
                     f"ED {pe['ed_within_1_phase']}, ES {pe['es_within_1_phase']}")
    failed = [c for c in result.cases if c.error]
    if failed:
        lines.append(f"{len(failed)} case(s) failed: " + ", ".join(f"{c.case_id} ({c.error})" for c in failed))
    return "\n".join(lines)


def cli_main(args: argparse.Namespace) -> int:
    """``zeroclick validate cmr`` (the arguments are declared in :mod:`zeroclick.pipelines.commands.validate`)."""
    import sys

    quiet = bool(getattr(args, "json", False))
    result = validate(args.data, out=args.out, volume_rule=getattr(args, "volume_rule", "scmr"),
                      device=getattr(args, "device", "auto"), runtime=getattr(args, "runtime", "auto"),
                      cases=getattr(args, "case", None), tta=bool(getattr(args, "tta", False)),
                      progress=None if quiet else (lambda s: print(s, file=sys.stderr, flush=True)))
    if quiet:
        print(json.dumps({k: v for k, v in result.to_dict().items() if k != "cases"}, indent=2, allow_nan=False))
    else:
        print(summary_table(result))
        print(f"wrote {', '.join(result.files.values())}")
    return 0 if all(not c.error for c in result.cases) else 4
