"""``CardiacResult``: everything one cardiac MRI analysis produced, in one frozen, documented object.

Stable contract for the report writers (DICOM SEG / SR / PDF, ``zeroclick.pipelines.cardiac.report``):

* measurements live in named, unit-suffixed fields of nested frozen dataclasses
  (:class:`FunctionResult`, :class:`LgeResult`, :class:`AhaResult`); a value that could not be measured
  is ``None`` and a :class:`QcFlag` says why;
* label masks are :class:`zeroclick.imaging.volume.Volume` objects on the grid of their source series (same affine,
  same ``sop_instance_uids`` and ``series_instance_uid``), so a SEG can reference its source images:
  ``masks.cine_ed`` / ``masks.cine_es`` (3-D, ACDC labels 0 bg, 1 RV, 2 myocardium, 3 LV cavity),
  ``masks.cine_all`` (4-D, only with ``all_phases=True``), ``masks.lge`` (3-D, EMIDEC labels 0 bg,
  1 cavity, 2 healthy myocardium, 3 infarct, 4 MVO);
* the source images are kept in ``images`` (same Volumes the network saw, before preprocessing);
* ``series`` lists the source series (:class:`SeriesReference`) with their UIDs;
* ``provenance`` says which weights (id + SHA-256), versions, device, per-stage seconds, and how ED/ES were chosen.

``to_dict()`` gives a JSON-ready dict without pixel arrays; ``measurements`` gives the flat dict of the key
numbers written at the top of ``report.json`` (keys compatible with ``shared/data/cmr/reference.json``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from zeroclick.imaging.volume import Volume

Severity = Literal["info", "warning", "error"]
Status = Literal["ok", "partial", "failed"]

#: AHA 16-segment names, index = segment number.
AHA_SEGMENT_NAMES: dict[int, str] = {
    1: "basal anterior",
    2: "basal anteroseptal",
    3: "basal inferoseptal",
    4: "basal inferior",
    5: "basal inferolateral",
    6: "basal anterolateral",
    7: "mid anterior",
    8: "mid anteroseptal",
    9: "mid inferoseptal",
    10: "mid inferior",
    11: "mid inferolateral",
    12: "mid anterolateral",
    13: "apical anterior",
    14: "apical septal",
    15: "apical inferior",
    16: "apical lateral",
}

MYOCARDIAL_DENSITY_G_PER_ML = 1.05


def _plain_value(v: Any) -> Any:
    """numpy scalars (also inside tuples/dicts) -> Python bool/int/float, so results hold plain numbers."""
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, tuple):
        return tuple(_plain_value(x) for x in v)
    if isinstance(v, dict):
        return {_plain_value(k): _plain_value(x) for k, x in v.items()}
    return v


class _PlainNumbers:
    """Base of the measurement dataclasses: numpy scalars given to a field are stored as Python numbers."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            plain = _plain_value(value)
            if plain is not value:
                object.__setattr__(self, f.name, plain)


@dataclass(frozen=True)
class QcFlag:
    """One quality-control finding. ``severity='error'`` means the named measurements are not valid.

    ``code`` is a stable machine-readable key (e.g. ``ef_implausible``), ``message`` plain words for a reader,
    ``affects`` the measurement field names that the finding invalidates or qualifies.
    """

    code: str
    severity: Severity
    message: str
    stage: str = ""
    affects: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesReference:
    """A source series used by the analysis (``role``: ``cine_sax`` or ``lge``)."""

    role: str
    series_instance_uid: str
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    description: str = ""
    n_images: int = 0
    source: str = ""


@dataclass(frozen=True)
class PhaseChoice(_PlainNumbers):
    """How end-diastole and end-systole were chosen (0-based phase indices of the cine).

    ``method`` is one of ``given`` (named by the input, e.g. ACDC Info.cfg), ``single_phase``,
    ``all_phases`` (full stack segmented at every phase), ``few_slice_search`` (``coarse_slice`` at every
    few phases -> ``coarse_curve_ml``, then ``search_slices`` near the coarse extremes -> ``search_curve_ml``,
    NaN where not segmented; then the full stack at ED and ES), ``few_slice_search+confirmed`` (a neighbouring
    phase was within ``margin_fraction`` of the extreme on the few-slice curve, so the full stack was also
    segmented at ``confirmed_phases`` and the larger/smaller whole-stack LV volume decided).
    """

    ed_phase: int
    es_phase: int
    method: str
    n_phases: int
    search_slices: tuple[int, ...] = ()
    search_curve_ml: tuple[float, ...] = ()
    coarse_slice: int | None = None
    coarse_curve_ml: tuple[float, ...] = ()
    #: ``network`` (``coarse_slice`` segmented at every few phases) or ``image`` (bright-blood volume on the
    #: search slices inside their phase-0 LV region, every phase: :func:`~zeroclick.pipelines.cardiac.phases.blood_pool_curve`)
    coarse_source: str = "network"
    confirmed_phases: tuple[int, ...] = ()
    full_stack_lv_ml: dict[int, float] = field(default_factory=dict)
    margin_fraction: float = 0.0
    ed_trigger_time_ms: float | None = None
    es_trigger_time_ms: float | None = None


@dataclass(frozen=True)
class ExcludedSlice:
    """A slice that did not count toward a volume: ``phase`` (``ED``/``ES``), ``slice`` index, ``structure``
    (``lv``: cavity + myocardium, ``rv``) and the rule's ``reason`` (:mod:`zeroclick.pipelines.cardiac.volume_rule`)."""

    phase: str
    slice: int
    structure: str
    reason: str


@dataclass(frozen=True)
class CountedSlices:
    """Which slices counted toward the LV cavity and RV cavity volumes at ED and ES, under ``rule``
    (``scmr`` or ``reference``), and why the others did not."""

    rule: str
    lv_ed: tuple[int, ...] = ()
    lv_es: tuple[int, ...] = ()
    rv_ed: tuple[int, ...] = ()
    rv_es: tuple[int, ...] = ()
    excluded: tuple[ExcludedSlice, ...] = ()


@dataclass(frozen=True)
class FunctionResult(_PlainNumbers):
    """Biventricular function from the cine short axis (ACDC convention: papillary muscles in the cavity).

    Volumes are voxel count x voxel volume over the LV slices (see :mod:`zeroclick.pipelines.cardiac.function` for the
    basal and apical slice rules). Indexed values use Mosteller BSA and are ``None`` without height and weight.
    """

    lv_edv_ml: float
    lv_esv_ml: float
    lv_sv_ml: float
    lv_ef_percent: float | None
    rv_edv_ml: float
    rv_esv_ml: float
    rv_sv_ml: float
    rv_ef_percent: float | None
    myo_volume_ed_ml: float
    myo_mass_ed_g: float
    myo_volume_es_ml: float
    myo_mass_es_g: float
    heart_rate_bpm: float | None = None
    lv_co_l_per_min: float | None = None
    rv_co_l_per_min: float | None = None
    bsa_m2: float | None = None
    lv_edv_index_ml_per_m2: float | None = None
    lv_esv_index_ml_per_m2: float | None = None
    lv_sv_index_ml_per_m2: float | None = None
    rv_edv_index_ml_per_m2: float | None = None
    rv_esv_index_ml_per_m2: float | None = None
    myo_mass_index_g_per_m2: float | None = None
    lv_ci_l_per_min_per_m2: float | None = None
    lv_slices: tuple[int, ...] = ()
    base_slice: int | None = None
    apex_slice: int | None = None
    lv_volume_curve_ml: tuple[float, ...] = ()
    rv_volume_curve_ml: tuple[float, ...] = ()
    counted_slices: CountedSlices | None = None


@dataclass(frozen=True)
class SegmentValues(_PlainNumbers):
    """Values of one AHA segment (1-16). ``None`` where the segment had no myocardium or no data."""

    segment: int
    name: str
    ed_thickness_mm: float | None = None
    es_thickness_mm: float | None = None
    thickening_percent: float | None = None
    thin_at_ed: bool | None = None
    transmurality_percent: float | None = None
    infarct_ml: float | None = None


@dataclass(frozen=True)
class AhaResult(_PlainNumbers):
    """AHA 16-segment model (convention in docs/conventions.md, documented in :mod:`zeroclick.pipelines.cardiac.aha`)."""

    segments: tuple[SegmentValues, ...]
    thin_wall_threshold_mm: float = 5.5
    basal_slices: tuple[int, ...] = ()
    mid_slices: tuple[int, ...] = ()
    apical_slices: tuple[int, ...] = ()
    insertion_source: str = ""

    def bullseye(self, name: str) -> dict[int, float | None]:
        """Segment number -> value of ``name`` (e.g. ``'ed_thickness_mm'``) for a bullseye plot."""
        return {s.segment: getattr(s, name) for s in self.segments}

    def segment(self, number: int) -> SegmentValues:
        for s in self.segments:
            if s.segment == number:
                return s
        raise KeyError(f"AHA segment {number} not in result (segments 1-16 are reported)")


@dataclass(frozen=True)
class ThresholdScar(_PlainNumbers):
    """Infarct by a classical signal-intensity rule inside the model's myocardium."""

    method: str
    threshold_signal: float | None
    infarct_ml: float
    infarct_g: float
    infarct_percent_of_myocardium: float
    definition: str


@dataclass(frozen=True)
class LgeResult(_PlainNumbers):
    """Late gadolinium enhancement: model labels (primary) and classical thresholds (``classical``).

    Infarct includes MVO (EMIDEC convention): ``infarct_ml`` counts labels 3+4, ``mvo_ml`` label 4,
    myocardium labels 2+3+4. Gray zone: see ``gray_zone_definition``.
    """

    myocardium_ml: float
    myocardium_g: float
    cavity_ml: float
    infarct_ml: float
    infarct_g: float
    infarct_percent_of_myocardium: float | None
    mvo_ml: float
    mvo_g: float
    mvo_percent_of_myocardium: float | None
    remote_mean_signal: float | None = None
    remote_sd_signal: float | None = None
    remote_definition: str = ""
    classical: tuple[ThresholdScar, ...] = ()
    gray_zone_ml: float | None = None
    gray_zone_g: float | None = None
    gray_zone_percent_of_myocardium: float | None = None
    gray_zone_definition: str = ""
    segment_transmurality_percent: dict[int, float | None] = field(default_factory=dict)
    lv_slices: tuple[int, ...] = ()
    #: ``network_psir`` (EMIDEC network labels) or ``magnitude_fwhm`` / ``magnitude_<n>sd``
    #: (:mod:`zeroclick.pipelines.cardiac.lge_magnitude`); ``propagation`` says how the cine myocardium was placed.
    method: str = "network_psir"
    propagation: PropagationInfo | None = None
    #: on an exam with both reconstructions: this result's infarct % minus the other one's (points)
    infarct_percent_difference_points: float | None = None
    #: on an exam with both reconstructions, for the PSIR (network) result: LGE slices where the network labels
    #: less than half of the myocardium that the magnitude path (the cine myocardium) finds there
    network_missed_slices: tuple[int, ...] = ()


@dataclass(frozen=True)
class PropagationInfo:
    """How a cine myocardium was placed on another series (magnitude LGE, T1 maps): the cine phase used and its
    trigger time, per-slice in-plane registration, how well the placed mask fits the target image."""

    cine_phase: int
    cine_trigger_time_ms: float | None = None
    target_trigger_time_ms: float | None = None
    shifts_mm: tuple[tuple[float, float], ...] = ()
    rotations_deg: tuple[float, ...] = ()
    fit_contrast: float | None = None
    band_changed_pixels: int = 0
    threshold_signal: float | None = None
    method: str = ""
    #: target slices where the placed myocardium did not fit and was left out (magnitude LGE: end slices
    #: neither nulled nor enhanced, :func:`~zeroclick.pipelines.cardiac.lge_magnitude.unfit_end_slices`)
    left_out_slices: tuple[int, ...] = ()


@dataclass(frozen=True)
class T1Segment:
    """Native / post-contrast T1 (ms) and ECV (fraction) of one AHA segment (``None`` where not measured).

    ``*_sd_ms`` is the standard deviation of the segment's core pixels (before the trim of the mean), as a
    reader's ROI gives mean +- SD; with ``*_pixels`` it tells how far noise alone can move the mean
    (SD / sqrt(pixels))."""

    segment: int
    name: str
    native_t1_ms: float | None = None
    post_t1_ms: float | None = None
    ecv_fraction: float | None = None
    native_pixels: int = 0
    post_pixels: int = 0
    native_sd_ms: float | None = None
    post_sd_ms: float | None = None


@dataclass(frozen=True)
class T1Result:
    """T1 mapping and ECV (:mod:`zeroclick.pipelines.cardiac.t1`).

    ``*_source`` is ``scanner_map`` or ``molli_fit`` (empty: not acquired). Regions: myocardium (all core
    pixels), remote (core pixels of segments without infarct), infarct (core pixels labelled infarct by the
    LGE), blood (LV cavity, median). ECV values are fractions (0.25 = 25 %).
    """

    native_source: str = ""
    post_source: str = ""
    native_t1_myocardium_ms: float | None = None
    native_t1_remote_ms: float | None = None
    native_t1_infarct_ms: float | None = None
    native_t1_blood_ms: float | None = None
    post_t1_myocardium_ms: float | None = None
    post_t1_remote_ms: float | None = None
    post_t1_infarct_ms: float | None = None
    post_t1_blood_ms: float | None = None
    hematocrit_fraction: float | None = None
    hematocrit_source: str = ""
    ecv_myocardium_fraction: float | None = None
    ecv_remote_fraction: float | None = None
    ecv_infarct_fraction: float | None = None
    segments: tuple[T1Segment, ...] = ()
    native_fit_r2_median: float | None = None
    post_fit_r2_median: float | None = None
    fit_seconds_per_slice: float | None = None
    fit_device: str = ""
    native_propagation: PropagationInfo | None = None
    post_propagation: PropagationInfo | None = None
    segment_rule: str = ""

    def bullseye(self, name: str) -> dict[int, float | None]:
        """Segment number -> ``native_t1_ms`` / ``post_t1_ms`` / ``ecv_fraction`` for a bullseye plot."""
        return {s.segment: getattr(s, name) for s in self.segments}


@dataclass(frozen=True)
class RiskFeature(_PlainNumbers):
    """One post-infarction risk feature: its value, the published threshold or effect size, and the source.

    ``above_threshold`` is ``True``/``False`` for thresholded features and ``None`` for continuous ones
    (read ``effect_size``) or when the value is missing.
    """

    name: str
    value: float | None
    unit: str
    above_threshold: bool | None
    threshold: str
    effect_size: str
    citation: str
    interpretation: str = ""


@dataclass(frozen=True)
class RiskFeatures:
    """Risk features with their evidence. Deliberately no composite score."""

    features: tuple[RiskFeature, ...] = ()

    def get(self, name: str) -> RiskFeature | None:
        for f in self.features:
            if f.name == name:
                return f
        return None


@dataclass(frozen=True)
class WeightsRef:
    """Which network produced a mask."""

    task: str  # "cine" or "lge"
    weights_id: str
    sha256: str
    runtime: str = ""


@dataclass(frozen=True)
class Provenance:
    """Where the numbers came from: versions, weights, device, timings, input kind."""

    zeroclick_version: str
    input_kind: str  # "dicom", "acdc", "nifti_lge", "volumes"
    device: str
    weights: tuple[WeightsRef, ...] = ()
    versions: dict[str, str] = field(default_factory=dict)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    slices_inferred: int = 0
    started_utc: str = ""
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class CardiacMasks:
    """Label masks on the grids of their source series (``None`` when that part was not analysed)."""

    cine_ed: Volume | None = None
    cine_es: Volume | None = None
    cine_all: Volume | None = None
    lge: Volume | None = None
    #: the magnitude path's labels (EMIDEC values) when the exam also has a PSIR reconstruction (``lge`` is then
    #: the network's); on a magnitude-only exam they are ``lge`` itself
    lge_magnitude: Volume | None = None


@dataclass(frozen=True, eq=False)
class CardiacImages:
    """The source images the masks belong to.

    ``cine`` is the cine as read (4-D; for an ACDC folder only the ED and ES frames, so index it with
    ``cine_ed``/``cine_es`` rather than ``phases.ed_phase``); ``cine_ed``/``cine_es`` are the 3-D images on the
    grids of ``masks.cine_ed``/``masks.cine_es``; ``lge`` is 3-D.
    """

    cine: Volume | None = None
    cine_es: Volume | None = None
    lge: Volume | None = None
    cine_ed: Volume | None = None


#: measurement key in report.json -> (attribute of CardiacResult, field name).
MEASUREMENT_KEYS: dict[str, tuple[str, str]] = {
    **{k: ("function", k) for k in (
        "lv_edv_ml", "lv_esv_ml", "lv_sv_ml", "lv_ef_percent", "rv_edv_ml", "rv_esv_ml", "rv_sv_ml",
        "rv_ef_percent", "myo_volume_ed_ml", "myo_mass_ed_g", "myo_volume_es_ml", "myo_mass_es_g",
        "heart_rate_bpm", "lv_co_l_per_min", "bsa_m2", "lv_edv_index_ml_per_m2", "lv_esv_index_ml_per_m2",
        "lv_sv_index_ml_per_m2", "rv_edv_index_ml_per_m2", "rv_esv_index_ml_per_m2", "myo_mass_index_g_per_m2",
        "lv_ci_l_per_min_per_m2")},
    "myocardium_ml": ("lge", "myocardium_ml"),
    "myocardium_mass_g": ("lge", "myocardium_g"),
    "cavity_ml": ("lge", "cavity_ml"),
    "infarct_ml": ("lge", "infarct_ml"),
    "infarct_g": ("lge", "infarct_g"),
    "mvo_ml": ("lge", "mvo_ml"),
    "mvo_g": ("lge", "mvo_g"),
    "infarct_percent_of_myocardium": ("lge", "infarct_percent_of_myocardium"),
    "mvo_percent_of_myocardium": ("lge", "mvo_percent_of_myocardium"),
    "gray_zone_g": ("lge", "gray_zone_g"),
    "gray_zone_percent_of_myocardium": ("lge", "gray_zone_percent_of_myocardium"),
    **{k: ("t1", k) for k in (
        "native_t1_myocardium_ms", "native_t1_remote_ms", "native_t1_infarct_ms", "native_t1_blood_ms",
        "post_t1_myocardium_ms", "post_t1_remote_ms", "post_t1_infarct_ms", "post_t1_blood_ms",
        "ecv_myocardium_fraction", "ecv_remote_fraction", "ecv_infarct_fraction")},
}


@dataclass(frozen=True, eq=False)
class CardiacResult:
    """The result of :func:`zeroclick.pipelines.cardiac.run`.

    ``status`` is ``ok`` (every requested part measured, no error flag), ``partial`` (some part missing or
    flagged with severity ``error``) or ``failed`` (nothing valid; ``failure_reason`` says why).
    """

    status: Status
    source: str
    function: FunctionResult | None = None
    aha: AhaResult | None = None
    lge: LgeResult | None = None
    risk: RiskFeatures = field(default_factory=RiskFeatures)
    phases: PhaseChoice | None = None
    series: tuple[SeriesReference, ...] = ()
    qc: tuple[QcFlag, ...] = ()
    warnings: tuple[str, ...] = ()
    provenance: Provenance | None = None
    masks: CardiacMasks = field(default_factory=CardiacMasks)
    images: CardiacImages = field(default_factory=CardiacImages)
    failure_reason: str = ""
    #: magnitude-LGE result beside a PSIR one (both reconstructions in the exam); ``lge`` is then the PSIR path
    lge_magnitude: LgeResult | None = None
    t1: T1Result | None = None

    @property
    def measurements(self) -> dict[str, float | None]:
        """Flat dict of the key numbers (``report.json`` ``measurements``); absent parts are left out."""
        out: dict[str, float | None] = {}
        for key, (part, name) in MEASUREMENT_KEYS.items():
            obj = getattr(self, part)
            if obj is not None:
                out[key] = getattr(obj, name)
        return out

    @property
    def qc_errors(self) -> tuple[QcFlag, ...]:
        return tuple(q for q in self.qc if q.severity == "error")

    def series_for(self, role: str) -> SeriesReference | None:
        for s in self.series:
            if s.role == role:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every field except pixel data (masks/images are summarised by grid and UIDs)."""
        return {
            "status": self.status,
            "failure_reason": self.failure_reason,
            "source": self.source,
            "measurements": self.measurements,
            "measurements_not_valid": sorted({f for q in self.qc_errors for f in q.affects}),
            "function": _plain(self.function),
            "aha": _plain(self.aha),
            "lge": _plain(self.lge),
            "lge_magnitude": _plain(self.lge_magnitude),
            "t1": _plain(self.t1),
            "risk": _plain(self.risk),
            "phases": _plain(self.phases),
            "series": _plain(self.series),
            "qc": _plain(self.qc),
            "warnings": list(self.warnings),
            "provenance": _plain(self.provenance),
            "masks": {f.name: _volume_summary(getattr(self.masks, f.name)) for f in dataclasses.fields(self.masks)
                      if getattr(self.masks, f.name) is not None},
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, allow_nan=False)

    @classmethod
    def from_json(cls, source: str | os.PathLike[str] | dict[str, Any]) -> CardiacResult:
        """Load a ``report.json`` (path, JSON text or dict) back into a result (masks and images stay empty).

        >>> CardiacResult.from_json("out/report.json").function.lv_ef_percent   # doctest: +SKIP
        """
        from zeroclick.pipelines.cardiac.notebook import from_dict

        if isinstance(source, dict):
            data = source
        elif isinstance(source, str) and source.lstrip().startswith("{"):
            data = json.loads(source)
        else:
            data = json.loads(Path(source).read_text(encoding="utf-8"))
        keep = {f.name for f in dataclasses.fields(cls)} - {"masks", "images"}
        return from_dict(cls, {k: v for k, v in data.items() if k in keep})

    def to_frame(self) -> Any:
        """The key numbers as a one-row pandas DataFrame (``pd.concat`` rows of a cohort)."""
        from zeroclick.pipelines.cardiac.notebook import to_frame

        return to_frame(self)

    def __repr__(self) -> str:  # short: status, key numbers, QC counts (never pixel arrays)
        from zeroclick.pipelines.cardiac.notebook import short_repr

        return short_repr(self)

    def _repr_html_(self) -> str:
        from zeroclick.pipelines.cardiac.notebook import html_repr

        return html_repr(self)


def _volume_summary(v: Volume) -> dict[str, Any]:
    return {
        "shape": list(v.array.shape),
        "spacing_mm": list(v.spacing_mm),
        "series_instance_uid": v.series_instance_uid,
        "labels": sorted(int(x) for x in np.unique(v.array)),
    }


def _plain(obj: Any) -> Any:
    """Dataclasses/tuples/dicts/numpy scalars -> JSON-safe Python (NaN/inf -> None, dict keys -> str)."""
    if obj is None or isinstance(obj, (str, bool)):
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, Volume):
        return _volume_summary(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_plain(v) for v in obj.tolist()]
    return str(obj)
