"""Zero-click cardiac MRI: one call turns an exam into the numbers reported after a myocardial infarction.

:func:`run` reads top to bottom like the protocol: inputs -> segmentation with the ED/ES search -> function ->
AHA segments -> LGE -> risk features -> QC. Each stage lives in its own module of this package:
``inputs``, ``segmentation``, ``phases``, ``function``, ``aha``, ``lge``, ``risk``, ``qc``, ``outputs``.

Examples
--------
>>> from zeroclick.pipelines.cardiac import run            # doctest: +SKIP
>>> result = run("exam/dicom")                    # doctest: +SKIP
>>> result.function.lv_ef_percent, result.lge.infarct_percent_of_myocardium   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zeroclick.imaging import __version__
from zeroclick.imaging import progress as _progress
from zeroclick.imaging.errors import AnalysisError, InvalidInputError
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.aha import compute_aha
from zeroclick.pipelines.cardiac.function import compute_function
from zeroclick.pipelines.cardiac.inputs import CaseInputs, load_case
from zeroclick.pipelines.cardiac.lge import compute_lge
from zeroclick.pipelines.cardiac.lge_magnitude import (
    as_second_opinion,
    cine_labels_provider,
    compare_paths,
    is_magnitude,
    magnitude_lge,
    segment_transmurality,
)
from zeroclick.pipelines.cardiac.phases import PhaseSearchResult, choose_phases
from zeroclick.pipelines.cardiac.qc import (
    check_function,
    check_geometry,
    check_lge,
    check_lge_against_cine,
    check_masks,
)
from zeroclick.pipelines.cardiac.result import (
    AHA_SEGMENT_NAMES,
    AhaResult,
    CardiacImages,
    CardiacMasks,
    CardiacResult,
    FunctionResult,
    LgeResult,
    PhaseChoice,
    Provenance,
    QcFlag,
    RiskFeature,
    RiskFeatures,
    SegmentValues,
    SeriesReference,
    ThresholdScar,
    WeightsRef,
)
from zeroclick.pipelines.cardiac.risk import compute_risk
from zeroclick.pipelines.cardiac.t1 import compute_t1, read_hematocrit
from zeroclick.pipelines.cardiac.validate import validate
from zeroclick.pipelines.cardiac.volume_rule import VOLUME_RULES, apply_volume_rule

logger = logging.getLogger(__name__)

__all__ = [
    "AHA_SEGMENT_NAMES",
    "AhaResult",
    "CardiacImages",
    "CardiacMasks",
    "CardiacResult",
    "CaseInputs",
    "FunctionResult",
    "LgeResult",
    "PhaseChoice",
    "Provenance",
    "QcFlag",
    "RiskFeature",
    "RiskFeatures",
    "SegmentValues",
    "SeriesReference",
    "ThresholdScar",
    "WeightsRef",
    "load_case",
    "run",
    "validate",
]


def run(
    source: str | Path | CaseInputs,
    *,
    device: str = "auto",
    all_phases: bool = False,
    prior: str | Path | dict[str, Any] | None = None,
    cine_segmenter: Any | None = None,
    lge_segmenter: Any | None = None,
    n_search_slices: int = 2,
    phase_step: int = 3,
    margin_fraction: float = 0.01,
    runtime: str = "auto",
    weights: str | Path | Sequence[str | Path] | None = None,
    progress: bool | Any = None,
    volume_rule: str = "scmr",
    hematocrit: float | None = None,
) -> CardiacResult:
    """Analyse one cardiac MRI case end to end.

    Parameters
    ----------
    source
        A DICOM folder/zip/tar, an ACDC patient folder (``Info.cfg`` + frame NIfTI files), an EMIDEC-style LGE
        NIfTI file, or :class:`~zeroclick.pipelines.cardiac.inputs.CaseInputs` already loaded.
    device
        ``auto`` (cuda > mps > cpu), ``cuda``, ``mps`` or ``cpu``.
    all_phases
        Segment the whole stack at every phase (volume-time curve; slower). Default: ED/ES search
        (:mod:`zeroclick.pipelines.cardiac.phases`).
    prior
        An earlier ``report.json`` (path or dict) of the same patient: adds LV remodeling features.
    cine_segmenter, lge_segmenter
        Objects with ``segment(volume3d, slices=None) -> labels`` (and optionally ``segment_many``,
        ``provenance``); default: :class:`~zeroclick.pipelines.cardiac.segmentation.CineSegmenter` /
        ``LgeSegmenter`` with verified weights on ``device``. Tests inject ground truth here.
    n_search_slices, phase_step, margin_fraction
        ED/ES search settings (see :func:`zeroclick.pipelines.cardiac.phases.choose_phases`).
    runtime
        ``auto`` (on the CPU OpenVINO, bf16 where the CPU has native bf16, else ONNX Runtime fp32; PyTorch
        bf16 on GPUs), ``torch``, ``onnxruntime`` or ``openvino``; see :class:`zeroclick.imaging.engine.Engine`.
    weights
        Weights to use instead of the built-in ones: a name or alias from ``zeroclick weights list`` (built-in or
        imported with ``zeroclick weights import``) or a path to a weights file (ONNX, safetensors, MONAI bundle),
        which is imported into the cache first (SHA-256 recorded). 4-class models replace the cine network,
        5-class models the LGE network; give a list for both. Recorded in ``provenance.weights``.
    progress
        ``True`` for rich progress bars on stderr (stages, slices done, ETA), a callable
        ``fn(stage, done, total)``, or a :class:`zeroclick.imaging.progress.Reporter`; default silent.
    volume_rule
        Which slices count toward the volumes: ``scmr`` (default; basal/apical rules of the SCMR 2020
        recommendations) or ``reference`` (every labelled voxel, as the published myopari code); see
        :mod:`zeroclick.pipelines.cardiac.volume_rule`. Recorded in ``function.counted_slices``.
    hematocrit
        Haematocrit (fraction 0.42 or percent 42) for ECV from native and post-contrast T1 maps; default: a
        ``hematocrit.json`` sidecar beside the input (:mod:`zeroclick.pipelines.cardiac.t1`), else no ECV.

    Raises
    ------
    InvalidInputError
        The input is not a case this pipeline reads (message says what is expected).
    WeightsError
        Weights are missing or unverified (run ``zeroclick weights fetch``).
    AnalysisError
        Nothing valid could be measured (reason in the message).
    """
    with _progress.reporting(progress):
        return _run(source, device=device, all_phases=all_phases, prior=prior, cine_segmenter=cine_segmenter,
                    lge_segmenter=lge_segmenter, n_search_slices=n_search_slices, phase_step=phase_step,
                    margin_fraction=margin_fraction, runtime=runtime, weights=weights, volume_rule=volume_rule,
                    hematocrit=hematocrit)


def _run(source: str | Path | CaseInputs, *, device: str, all_phases: bool, prior: str | Path | dict[str, Any] | None,
         cine_segmenter: Any | None, lge_segmenter: Any | None, n_search_slices: int, phase_step: int,
         margin_fraction: float, runtime: str, weights: str | Path | Sequence[str | Path] | None,
         volume_rule: str = "scmr", hematocrit: float | None = None) -> CardiacResult:
    if volume_rule not in VOLUME_RULES:
        raise InvalidInputError(f"volume rule {volume_rule!r} is not one of {', '.join(VOLUME_RULES)}")
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    _progress.stage("reading the exam")
    case = source if isinstance(source, CaseInputs) else load_case(source)
    seconds.update(case.stage_seconds or {"load": time.perf_counter() - t0})
    if case.cine is None and case.lge is None:
        raise AnalysisError(f"{case.source}: neither a cine short axis nor an LGE stack to analyse")
    qc: list[QcFlag] = list(case.qc)  # what reading the input found (inputs.py / qc.check_series)
    warnings: list[str] = list(case.warnings)
    cine_weights, lge_weights = _chosen_weights(weights)
    engine = None
    hct, hct_source = read_hematocrit(hematocrit, case.source or None)
    # a magnitude-only LGE is quantified on the cine myocardium (lge_magnitude), not by the PSIR-trained network
    magnitude_only = is_magnitude(case.lge) and case.cine is not None
    if magnitude_only:
        lge_segmenter = None
    if (case.cine is not None and cine_segmenter is None) or \
            (case.lge is not None and lge_segmenter is None and not magnitude_only):
        from zeroclick.imaging.engine import Engine
        from zeroclick.pipelines.cardiac.segmentation import exports_dir

        engine = Engine(device=device, runtime=runtime, export_dir=exports_dir())
    if case.cine is not None and cine_segmenter is None:
        from zeroclick.pipelines.cardiac.segmentation import CineSegmenter

        cine_segmenter = CineSegmenter(cine_weights, engine=engine)
    if case.lge is not None and lge_segmenter is None and not magnitude_only:
        from zeroclick.pipelines.cardiac.segmentation import LgeSegmenter

        lge_segmenter = LgeSegmenter(lge_weights, engine=engine)

    # --- cine: ED/ES search, then function -------------------------------------------------------
    slices_inferred = 0
    masks: dict[str, Volume | None] = {"cine_ed": None, "cine_es": None, "cine_all": None, "lge": None,
                                       "lge_magnitude": None}
    function: FunctionResult | None = None
    phases: PhaseChoice | None = None
    t_inf = 0.0
    search: PhaseSearchResult | None = None
    if case.cine is not None:
        t0 = time.perf_counter()
        _progress.stage("cine: ED/ES search and segmentation", unit="slices")
        try:
            search = _cine_phases(case, cine_segmenter, all_phases=all_phases, n_search=n_search_slices,
                                  phase_step=phase_step, margin_fraction=margin_fraction)
        except (InvalidInputError, AnalysisError) as exc:  # a bad cine must not cost the LGE result
            qc.append(QcFlag("cine_segmentation_failed", "error", f"cine segmentation failed: {exc}", "cine",
                             ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent")))
        t_inf += time.perf_counter() - t0
    if case.cine is not None and search is not None:
        slices_inferred += search.slices_inferred
        phases = search.choice
        ed_i, es_i = _array_phase(case, phases.ed_phase), _array_phase(case, phases.es_phase)
        ed_counted, es_counted, counted = apply_volume_rule(search.full_stacks[ed_i].astype(np.uint8),
                                                            search.full_stacks[es_i].astype(np.uint8), rule=volume_rule)
        ed_mask = case.cine.phase(ed_i).with_array(ed_counted)
        es_mask = case.cine.phase(es_i).with_array(es_counted)
        masks["cine_ed"], masks["cine_es"] = ed_mask, es_mask
        if phases.method == "all_phases":
            stack = np.stack([search.full_stacks[p] for p in range(case.cine.n_phases)]).astype(np.uint8)
            masks["cine_all"] = case.cine.with_array(stack)
        qc += check_masks(ed_mask, phase="ED", es=es_mask) + check_masks(es_mask, phase="ES")
        if not any(q.code == "cine_ED_no_lv" for q in qc):
            curve = [search.choice.full_stack_lv_ml[p] for p in range(case.cine.n_phases)] \
                if phases.method == "all_phases" else []
            rv_curve = [float(np.count_nonzero(search.full_stacks[p] == 1)) * case.cine.voxel_volume_ml
                        for p in range(case.cine.n_phases)] if curve else []
            function = compute_function(ed_mask, es_mask, heart_rate_bpm=case.heart_rate_bpm,
                                        height_m=case.height_m, weight_kg=case.weight_kg,
                                        lv_curve_ml=curve, rv_curve_ml=rv_curve)
            function = dataclasses.replace(function, counted_slices=counted)
            qc += check_function(function)
        if case.height_m is None or case.weight_kg is None:
            qc.append(QcFlag("no_bsa", "info", "height or weight unknown: values are not indexed to BSA", "function"))
        if case.heart_rate_bpm is None:
            qc.append(QcFlag("no_heart_rate", "info", "heart rate unknown: cardiac output not computed", "function"))

    # --- magnitude LGE and T1 maps: the cine myocardium at the phase nearest their trigger time ------------
    labels_at = None
    if case.cine is not None and search is not None and phases is not None:
        labels_at = cine_labels_provider(case.cine, search.full_stacks, _array_phase(case, phases.ed_phase),
                                         _slice_segmenter(case.cine, cine_segmenter))

    # --- LGE -----------------------------------------------------------------------------------
    lge: LgeResult | None = None
    lge_mag: LgeResult | None = None
    mag_mask: Volume | None = None
    mag_valid = True
    mag_volume = case.lge if magnitude_only else case.lge_magnitude
    if mag_volume is not None and labels_at is not None:
        t0 = time.perf_counter()
        _progress.stage("magnitude LGE on the cine myocardium")
        mag_mask, lge_mag, mag_qc = magnitude_lge(mag_volume, labels_at)
        if not magnitude_only:  # beside PSIR the magnitude path is a second opinion
            mag_qc, mag_valid = as_second_opinion(mag_qc)
        qc += mag_qc
        if magnitude_only:
            lge, lge_mag, masks["lge"] = lge_mag, None, mag_mask
            qc += check_masks(mag_mask, phase="LGE", myo=(2, 3, 4), stage="lge") + check_lge(lge)
        else:
            masks["lge_magnitude"] = mag_mask
            if masks["cine_ed"] is not None:
                lge_mag = dataclasses.replace(lge_mag, segment_transmurality_percent=segment_transmurality(
                    mag_mask, masks["cine_ed"]))
        seconds["lge_magnitude"] = time.perf_counter() - t0
    if case.lge is not None and lge_segmenter is not None:
        t0 = time.perf_counter()
        _progress.stage("LGE segmentation", total=case.lge.spatial_shape[0], unit="slices")
        try:
            labels = np.asarray(_labels_of(lge_segmenter.segment(case.lge)), dtype=np.uint8)
        except (InvalidInputError, AnalysisError) as exc:  # a bad LGE must not cost the cine result
            labels = None
            qc.append(QcFlag("lge_segmentation_failed", "error", f"LGE segmentation failed: {exc}", "lge",
                             ("myocardium_ml", "infarct_ml", "infarct_percent_of_myocardium")))
        t_inf += time.perf_counter() - t0
        if labels is not None:
            slices_inferred += case.lge.spatial_shape[0]
            lge_mask = case.lge.with_array(labels)
            masks["lge"] = lge_mask
            lge = compute_lge(lge_mask, case.lge)
            qc += check_masks(lge_mask, phase="LGE", myo=(2, 3, 4), stage="lge") + check_lge(lge)
    seconds["inference"] = t_inf

    # --- AHA segments, geometry QC, risk ---------------------------------------------------------
    t0 = time.perf_counter()
    _progress.stage("quantification")
    aha: AhaResult | None = None
    if function is not None and masks["cine_ed"] is not None:
        aha = compute_aha(masks["cine_ed"], masks["cine_es"], masks["lge"])
        if lge is not None:
            lge = dataclasses.replace(lge, segment_transmurality_percent={
                s.segment: s.transmurality_percent for s in aha.segments})
    elif lge is not None:
        qc.append(QcFlag("lge_no_segments", "info", "no cine short axis: LGE has no RV insertion points, so "
                         "per-segment transmurality is not reported", "aha"))
    if case.cine is not None and case.lge is not None:
        qc += check_geometry(case.cine, case.lge, cine_labels=masks["cine_ed"], lge_labels=masks["lge"])
    if function is not None and lge is not None:
        qc += check_lge_against_cine(lge, function)
    if lge_mag is not None and lge is not None and masks["lge"] is not None and mag_mask is not None and mag_valid:
        lge, lge_mag, paths_qc = compare_paths(masks["lge"], mag_mask, lge, lge_mag)
        qc += paths_qc
    t1_result = None
    if case.t1 and labels_at is not None and masks["cine_ed"] is not None:
        t1_result, t1_qc = compute_t1(case.t1, cine_labels_at=labels_at, cine_ed=masks["cine_ed"],
                                      lge_mask=masks["lge"], hematocrit=hct, hematocrit_source=hct_source,
                                      device=engine.device if engine is not None else "cpu")
        qc += t1_qc
    elif case.t1:
        qc.append(QcFlag("t1_no_cine", "info", "T1 series present but no cine myocardium to place on them: T1 "
                         "and ECV are not reported", "t1"))
    invalid = {f for q in qc if q.severity == "error" for f in q.affects}
    risk = compute_risk(function, lge, prior_measurements=_prior_measurements(prior, warnings), invalid=invalid)
    seconds["quantification"] = time.perf_counter() - t0 + seconds.get("quantification", 0.0)

    status: Literal["ok", "partial", "failed"] = "ok"
    if (case.cine is not None and function is None) or (case.lge is not None and lge is None) or \
            any(q.severity == "error" for q in qc):
        status = "partial"
    if function is None and (lge is None or lge.myocardium_ml <= 0):
        reasons = "; ".join(q.message for q in qc if q.severity == "error") or "no valid segmentation"
        raise AnalysisError(f"{case.source}: nothing valid could be measured: {reasons}")

    slices_inferred += getattr(labels_at, "slices_inferred", 0)  # cine phases segmented for magnitude LGE / T1
    provenance = Provenance(
        zeroclick_version=__version__,
        input_kind=case.kind,
        device=_device_of(engine, cine_segmenter, lge_segmenter),
        weights=tuple(w for w in (_weights_ref("cine", cine_segmenter if case.cine is not None else None),
                                  _weights_ref("lge", lge_segmenter if case.lge is not None else None)) if w),
        versions=_versions(),
        stage_seconds={k: round(v, 4) for k, v in seconds.items()},
        slices_inferred=slices_inferred,
        started_utc=started,
        options={"all_phases": all_phases, "n_search_slices": n_search_slices, "phase_step": phase_step,
                 "margin_fraction": margin_fraction, "prior": prior is not None, "runtime": runtime,
                 "volume_rule": volume_rule,
                 "weights": [str(w) for w in _as_list(weights)]},
    )
    cine_ed_image = cine_es_image = None
    if case.cine is not None and phases is not None:
        cine_ed_image = case.cine.phase(_array_phase(case, phases.ed_phase))
        cine_es_image = case.cine.phase(_array_phase(case, phases.es_phase))
    return CardiacResult(
        status=status, source=case.source, function=function, aha=aha, lge=lge, risk=risk, phases=phases,
        series=case.series, qc=tuple(qc), warnings=tuple(warnings), provenance=provenance,
        masks=CardiacMasks(**masks),
        images=CardiacImages(cine=case.cine, cine_es=cine_es_image, lge=case.lge, cine_ed=cine_ed_image),
        lge_magnitude=lge_mag, t1=t1_result,
    )


def _as_list(weights: str | Path | Sequence[str | Path] | None) -> list[str | Path]:
    if weights is None:
        return []
    return [weights] if isinstance(weights, (str, Path)) else list(weights)


def _chosen_weights(weights: str | Path | Sequence[str | Path] | None) -> tuple[str | None, str | None]:
    """(cine, LGE) weights ids from ``--weights NAME|PATH`` values: a path is imported into the cache first
    (SHA-256 recorded by the store); 4-class models are cine networks (ACDC labels), 5-class ones LGE (EMIDEC)."""
    from zeroclick.weights.store import import_weights, resolve

    chosen: dict[str, str] = {}
    for w in _as_list(weights):
        path = Path(w).expanduser()
        entry = import_weights(path) if (isinstance(w, Path) or os.sep in str(w) or path.exists()) else resolve(str(w))
        task = {4: "cine", 5: "lge"}.get(entry.n_classes)
        if task is None:
            raise InvalidInputError(f"weights {entry.id!r} have {entry.n_classes} classes; the cardiac pipeline takes "
                                    "4-class cine (ACDC labels) or 5-class LGE (EMIDEC labels) models")
        if task in chosen:
            raise InvalidInputError(f"two {task} weights given ({chosen[task]!r} and {entry.id!r}): give one per network")
        chosen[task] = entry.id
    return chosen.get("cine"), chosen.get("lge")


def _labels_of(out: Any) -> np.ndarray:
    return out.array if isinstance(out, Volume) else np.asarray(out)


def _slice_segmenter(cine: Volume, segmenter: Any):
    """Adapter from a ``CineSegmenter``-like object to :data:`zeroclick.pipelines.cardiac.phases.SliceSegmenter`.

    With a segmenter that has ``segment_cached`` (the real ones), each (phase, slice) goes through the network
    once for this exam and every request is post-processed as a whole (see ``CineSegmenter.segment_cached``).
    """
    from zeroclick.pipelines.cardiac.segmentation import RawLabelCache

    cache = RawLabelCache()

    def segment(requests: Sequence[tuple[int, tuple[int, ...]]]) -> list[np.ndarray]:
        if hasattr(segmenter, "segment_cached"):
            outs = segmenter.segment_cached([(p, cine.phase(p), list(sl)) for p, sl in requests], cache)
        elif hasattr(segmenter, "segment_many"):
            outs = segmenter.segment_many([(cine.phase(p), list(sl)) for p, sl in requests])
        else:
            outs = [segmenter.segment(cine.phase(p), slices=list(sl)) for p, sl in requests]
        result = []
        for (_, sl), out in zip(requests, outs):
            arr = _labels_of(out)
            result.append(arr[list(sl)] if arr.shape[0] == cine.spatial_shape[0] else arr)
        return result

    return segment


def _array_phase(case: CaseInputs, phase_number: int) -> int:
    """Index into the cine's phase axis of an original phase number."""
    if case.phase_numbers is None:
        return int(phase_number)
    return case.phase_numbers.index(int(phase_number))


def _cine_phases(case: CaseInputs, segmenter: Any, *, all_phases: bool, n_search: int, phase_step: int,
                 margin_fraction: float) -> PhaseSearchResult:
    cine = case.cine
    assert cine is not None
    seg = _slice_segmenter(cine, segmenter)
    tt = cine.trigger_times_ms
    # only the named frames exist (ACDC frame files): nothing to search, even with all_phases
    if case.given_phases is not None and (not all_phases or case.phase_numbers is not None):
        ed_i, es_i = case.given_phases
        n = cine.spatial_shape[0]
        stacks = dict(zip((ed_i, es_i), seg([(ed_i, tuple(range(n))), (es_i, tuple(range(n)))])))
        numbers = case.phase_numbers or tuple(range(cine.n_phases))
        vols = {numbers[p]: float(np.count_nonzero(s == 3)) * cine.voxel_volume_ml for p, s in stacks.items()}
        choice = PhaseChoice(numbers[ed_i], numbers[es_i], "given", n_phases=cine.n_phases,
                             full_stack_lv_ml=vols)
        return PhaseSearchResult(choice, stacks, n * len(stacks))
    return choose_phases(cine.n_phases, cine.spatial_shape[0], seg, voxel_volume_ml=cine.voxel_volume_ml,
                         all_phases=all_phases, n_search=n_search, phase_step=phase_step,
                         margin_fraction=margin_fraction, trigger_times_ms=tt,
                         images=lambda sl: np.asarray(cine.array[:, list(sl)]))


def _prior_measurements(prior: str | Path | dict[str, Any] | None, warnings: list[str]) -> dict[str, Any] | None:
    if prior is None:
        return None
    if isinstance(prior, dict):
        data = prior
    else:
        try:
            data = json.loads(Path(prior).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"--prior {prior}: not a readable report.json ({exc})") from exc
    measurements = data.get("measurements", data)
    if not isinstance(measurements, dict) or "lv_edv_ml" not in measurements:
        warnings.append("prior report has no lv_edv_ml: remodeling features not computed")
        return None
    return measurements


def _weights_ref(task: str, segmenter: Any) -> WeightsRef | None:
    if segmenter is None:
        return None
    prov = getattr(segmenter, "provenance", None) or {}
    runtime = str(prov.get("precision", ""))
    used = prov.get("runtime_used")  # the runtime that actually ran, e.g. "openvino-bf16" (engine.info)
    if isinstance(used, dict) and used:
        runtime = str(next(iter(used.values())))
        runtime = f"torch-{prov.get('precision', 'fp32')}" if runtime == "torch" else runtime
    return WeightsRef(task=task, weights_id=str(prov.get("weights_id", type(segmenter).__name__)),
                      sha256=str(prov.get("weights_sha256", "")), runtime=runtime)


def _device_of(engine: Any, *segmenters: Any) -> str:
    if engine is not None:
        return str(engine.device)
    for s in segmenters:
        prov = getattr(s, "provenance", None) or {}
        if "device" in prov:
            return str(prov["device"])
    return "none"


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for dist in ("zeroclick", "torch", "numpy", "scipy", "scikit-image", "pydicom", "nibabel"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out
