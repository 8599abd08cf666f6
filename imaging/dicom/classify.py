"""Rule-based, explainable series classification for cardiac MR exams.

Every decision returns the label (one of :data:`LABELS`) and the reasons that made it, each written as
``"Tag=value -> conclusion"``. Rules look at acquisition facts first (ImageType, sequence names,
ScanningSequence/SequenceVariant, inversion and trigger times, number of phases, plane orientation relative
to the short-axis stack); SeriesDescription/ProtocolName are only a last resort, so an empty or misleading
description does not change the result. ``docs/series_classification.md`` lists the rules as a table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from zeroclick.imaging.dicom.geometry import Survey

LABELS: tuple[str, ...] = (
    "localizer", "cine_sax", "cine_lax_2ch", "cine_lax_3ch", "cine_lax_4ch", "lge_mag", "lge_psir",
    "t1_molli_source", "t1_map", "t2_map", "t2w", "perfusion", "flow", "other",
)
CINE_LABELS = frozenset({"cine_sax", "cine_lax_2ch", "cine_lax_3ch", "cine_lax_4ch"})

# Long-axis views: the direction that a view contains inside the short-axis plane, in degrees (modulo 180)
# from the LV->RV (septal) direction, turning towards (long axis x septal direction); see lax_angle_deg.
# The 4-chamber view runs through both ventricles, the 2-chamber view is perpendicular to it and the
# 3-chamber (LV outflow) view lies a further ~35 degrees round, through the aortic valve.
LAX_CANONICAL_DEG: dict[str, float] = {"cine_lax_4ch": 0.0, "cine_lax_2ch": 90.0, "cine_lax_3ch": 125.0}
# Patient directions (LPS) used to fix the signs: the LV apex points left-anterior-inferior and the RV lies
# to the right and in front of the LV.
APEX_DIRECTION_LPS = np.array([1.0, -1.0, -1.0]) / np.sqrt(3.0)
RV_DIRECTION_LPS = np.array([-1.0, -1.0, 0.0]) / np.sqrt(2.0)

_LOCALIZER_TOKENS = {"LOCALIZER", "SCOUT", "SURVEY"}
_T1MAP_TOKENS = {"T1MAP", "T1 MAP", "T1_MAP", "T1"}
_T2MAP_TOKENS = {"T2MAP", "T2 MAP", "T2_MAP", "T2"}
_PHASE_TOKENS = {"P", "PHASE", "VELOCITY", "PCA", "VENC", "FLOW", "PHASE CONTRAST"}
_PSIR_TOKENS = {"PSIR", "PHASE SENSITIVE", "PHASE_SENSITIVE", "REAL", "R_IR", "R"}
_PERFUSION_TOKENS = {"PERFUSION", "PERF"}


@dataclass(frozen=True)
class Classification:
    """A series class and the reasons (``"tag=value -> conclusion"``) that decided it."""

    label: str
    reasons: tuple[str, ...]

    def summary(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class SeriesFeatures:
    """What classification looks at, taken from the headers and the geometry survey of one series."""

    series_instance_uid: str
    modality: str
    image_type: tuple[str, ...]
    sequence_name: str
    scanning_sequence: tuple[str, ...]
    sequence_variant: tuple[str, ...]
    description: str
    protocol_name: str
    phase_contrast: bool
    echo_train_length: int | None
    echo_time_ms: float | None
    signed_pixels: bool
    survey: Survey
    frame_types: tuple[str, ...] = field(default=())
    complex_component: str = ""


def _tokens(values: tuple[str, ...]) -> set[str]:
    out = set()
    for v in values:
        out.add(v.upper())
        out.update(t for t in re.split(r"[\\ _/]", v.upper()) if t)
    return out


def _fmt(values: tuple[str, ...]) -> str:
    return "\\".join(values)


def _classify_alone(f: SeriesFeatures) -> Classification:
    """Classify without exam context; cine series come back as ``cine`` (plane decided later)."""
    s = f.survey
    it = _tokens(f.image_type) | _tokens(f.frame_types)
    seq = (f.sequence_name or "").lower()
    ss = {v.upper() for v in f.scanning_sequence}
    sv = {v.upper() for v in f.sequence_variant}
    itv = f"ImageType={_fmt(f.image_type)}"
    if f.modality and f.modality != "MR":
        return Classification("other", (f"Modality={f.modality} -> not an MR image",))
    hit = it & _LOCALIZER_TOKENS
    if hit:
        return Classification("localizer", (f"{itv} -> {sorted(hit)[0]} image",))
    if s.n_orientations >= 2 and s.max_images_per_position <= 2 and s.trigger_times_per_position <= 1:
        return Classification(
            "localizer", (f"{s.n_orientations} image planes in one series, one image per position -> localizer",)
        )
    if s.n_orientations == 1 and s.in_plane_scatter_mm > 5.0 and s.trigger_times_per_position <= 1 \
            and s.inversion_times_per_position <= 1:
        return Classification("localizer", (
            f"ImagePositionPatient scattered {s.in_plane_scatter_mm:.0f} mm across the image plane, no cardiac "
            "phases -> scout images, not a stack",))
    derived = "DERIVED" in it or "MAP" in it
    is_ir = (s.inversion_times_per_position >= 1 and bool(s.inversion_times_ms) and max(s.inversion_times_ms) > 0) \
        or "IR" in ss
    if derived and ("MAP" in it or it & {"T1MAP", "T2MAP"}):
        if it & _T1MAP_TOKENS or "molli" in seq or "t1" in seq:
            return Classification("t1_map", (f"{itv} -> derived T1 parameter map",))
        if it & _T2MAP_TOKENS or "t2" in seq:
            return Classification("t2_map", (f"{itv} -> derived T2 parameter map",))
    if it & {"T1MAP", "T1 MAP", "T1_MAP"}:
        return Classification("t1_map", (f"{itv} -> T1 map",))
    if it & {"T2MAP", "T2 MAP", "T2_MAP"}:
        return Classification("t2_map", (f"{itv} -> T2 map",))
    pc_hit = it & _PHASE_TOKENS
    venc = re.search(r"_v\d+", seq)
    if f.phase_contrast or venc or pc_hit:
        why = ("PhaseContrast=YES" if f.phase_contrast else
               f"SequenceName={f.sequence_name}" if venc else itv)
        return Classification("flow", (f"{why} -> phase-contrast velocity encoding",))
    if s.inversion_times_per_position >= 3:
        return Classification(
            "t1_molli_source",
            (f"InversionTime: {s.inversion_times_per_position} values per slice "
             f"({', '.join(f'{t:g}' for t in s.inversion_times_ms[:8])} ms) -> T1 (MOLLI/ShMOLLI) source images",),
        )
    if it & _PERFUSION_TOKENS:
        return Classification("perfusion", (f"{itv} -> perfusion",))
    if s.max_images_per_position >= 8 and s.inversion_times_per_position <= 1 and (
            (s.has_trigger_times and s.trigger_times_per_position == 1)
            or (not s.has_trigger_times and s.acquisition_span_per_position_s >= 15)):
        timing = ("one TriggerTime per slice" if s.has_trigger_times else "no TriggerTime")
        return Classification("perfusion", (
            f"{s.max_images_per_position} images per slice, {timing}, AcquisitionTime spanning "
            f"{s.acquisition_span_per_position_s:.0f} s -> dynamic series, one image per heartbeat (first-pass "
            "perfusion)",))
    if s.trigger_times_per_position >= 5 and s.trigger_span_ms >= 150:
        reasons = [f"TriggerTime: {s.trigger_times_per_position} phases spanning {s.trigger_span_ms:.0f} ms "
                   "-> cine"]
        if is_ir:
            reasons.append("InversionTime set on a cine -> still cine (prepared readout)")
        return Classification("cine", tuple(reasons))
    if not s.has_trigger_times and s.max_images_per_position >= 5 and s.inversion_times_per_position <= 1:
        return Classification("cine", (
            f"TriggerTime missing; {s.max_images_per_position} images per slice within "
            f"{s.acquisition_span_per_position_s:.0f} s (one breath-hold) -> cine phases in InstanceNumber order",))
    if is_ir:
        ti = max(s.inversion_times_ms) if s.inversion_times_ms else 0.0
        why_ir = f"InversionTime={ti:g} ms" if ti else f"ScanningSequence={_fmt(f.scanning_sequence)}"
        if "SE" in ss and (f.echo_time_ms or 0) >= 40:
            return Classification("t2w", (f"{why_ir} + ScanningSequence=SE, EchoTime={f.echo_time_ms:g} ms "
                                          "-> dark-blood/STIR T2-weighted",))
        psir = it & _PSIR_TOKENS
        if psir or f.signed_pixels or f.complex_component == "REAL":
            why = (f"{itv} -> phase-sensitive reconstruction" if psir else
                   "ComplexImageComponent=REAL -> phase-sensitive reconstruction" if f.complex_component == "REAL" else
                   "signed pixel values on an inversion-recovery image -> phase-sensitive reconstruction")
            return Classification("lge_psir", (f"{why_ir} -> inversion recovery, one image per slice", why))
        return Classification("lge_mag", (f"{why_ir} -> inversion recovery, one image per slice",
                                           f"{itv} -> magnitude image"))
    if ("SE" in ss or "TSE" in sv) and (f.echo_time_ms or 0) >= 40:
        return Classification("t2w", (f"ScanningSequence={_fmt(f.scanning_sequence)}, EchoTime={f.echo_time_ms:g} ms "
                                      "-> T2-weighted spin echo",))
    return _by_description(f)


_DESCRIPTION_RULES: tuple[tuple[str, str], ...] = (
    (r"loc|scout|survey|pilot|3pl", "localizer"),
    (r"psir", "lge_psir"),
    (r"lge|de_|delayed|late|psir|mag_ir", "lge_mag"),
    (r"molli", "t1_molli_source"),
    (r"t1.?map", "t1_map"),
    (r"t2.?map", "t2_map"),
    (r"t2|stir|tse", "t2w"),
    (r"perf", "perfusion"),
    (r"flow|pc_|venc|phase.?contrast", "flow"),
)


def _by_description(f: SeriesFeatures) -> Classification:
    text = f"{f.description} {f.protocol_name}".lower()
    for pattern, label in _DESCRIPTION_RULES:
        if re.search(pattern, text):
            return Classification(
                label,
                ("acquisition tags decided nothing",
                 f"SeriesDescription/ProtocolName matches {pattern!r} -> {label} (description only)"),
            )
    return Classification("other", ("no rule matched the acquisition tags or the description -> other",))


def lax_angle_deg(normal: np.ndarray, long_axis: np.ndarray) -> float:
    """Rotation (0-180 degrees) of a long-axis plane about the LV long axis.

    The line where the plane cuts the short-axis plane is compared with the patient's LV->RV direction
    (right-anterior, :data:`RV_DIRECTION_LPS`) projected on the short-axis plane; the angle turns towards
    ``long_axis x reference`` with the long axis oriented base -> apex (towards :data:`APEX_DIRECTION_LPS`).
    """
    la = np.asarray(long_axis, dtype=np.float64)
    la = la / np.linalg.norm(la)
    if np.dot(la, APEX_DIRECTION_LPS) < 0:
        la = -la
    ref = RV_DIRECTION_LPS - np.dot(RV_DIRECTION_LPS, la) * la
    e1 = ref / np.linalg.norm(ref)
    e2 = np.cross(la, e1)
    line = np.cross(np.asarray(normal, dtype=np.float64), la)
    return float(np.degrees(np.arctan2(np.dot(line, e2), np.dot(line, e1))) % 180.0)


def _angle_diff(a: float, b: float) -> float:
    d = abs(a - b) % 180.0
    return min(d, 180.0 - d)


def classify_exam(features: list[SeriesFeatures]) -> dict[str, Classification]:
    """Classify every series of one study; cine planes are decided against the short-axis stack."""
    alone = {f.series_instance_uid: _classify_alone(f) for f in features}
    cines = [f for f in features if alone[f.series_instance_uid].label == "cine" and f.survey.normal is not None]
    out = dict(alone)
    if not cines:
        return out
    # Group parallel cine series (a short-axis stack may come as one series per slice).
    groups: list[tuple[np.ndarray, list[SeriesFeatures]]] = []
    for f in cines:
        n = np.asarray(f.survey.normal)
        for ref, members in groups:
            if abs(float(np.dot(ref, n))) > 0.99:
                members.append(f)
                break
        else:
            groups.append((n, [f]))
    sax_normal, sax_members = max(groups, key=lambda g: sum(m.survey.n_positions for m in g[1]))
    stack_positions = sum(m.survey.n_positions for m in sax_members)
    long_axis: np.ndarray | None = sax_normal if stack_positions >= 3 else None
    if long_axis is None and len(groups) >= 2:
        # No stack: the long axis is the line shared by two long-axis planes.
        c = np.cross(groups[0][0], groups[1][0])
        long_axis = c / np.linalg.norm(c)
    lax: list[tuple[SeriesFeatures, float]] = []
    for f in cines:
        n = np.asarray(f.survey.normal)
        base = alone[f.series_instance_uid].reasons
        if long_axis is None:
            out[f.series_instance_uid] = _cine_by_description(f, base)
            continue
        cos = abs(float(np.dot(n, long_axis)))
        if stack_positions >= 3 and cos > 0.8:
            out[f.series_instance_uid] = Classification(
                "cine_sax",
                base + (f"plane normal parallel to the stack of {stack_positions} cine slices "
                        f"(|cos|={cos:.2f}) -> short axis",),
            )
        elif cos < 0.5:
            lax.append((f, lax_angle_deg(n, long_axis)))
        else:
            out[f.series_instance_uid] = Classification(
                "other", base + (f"plane at |cos|={cos:.2f} to the LV long axis -> neither short nor long axis",))
    out.update(_assign_lax(lax, alone))
    return out


def _cine_by_description(f: SeriesFeatures, base: tuple[str, ...]) -> Classification:
    text = f"{f.description} {f.protocol_name}".lower()
    for pattern, label in ((r"2\s*ch|vla", "cine_lax_2ch"), (r"3\s*ch|lvot", "cine_lax_3ch"),
                           (r"4\s*ch|hla", "cine_lax_4ch"), (r"sax|short", "cine_sax")):
        if re.search(pattern, text):
            return Classification(label, base + (f"no short-axis stack or second plane in the exam; description "
                                                 f"matches {pattern!r} -> {label}",))
    if f.survey.n_positions >= 3:
        return Classification("cine_sax", base + (f"{f.survey.n_positions} parallel slices -> short-axis stack",))
    return Classification("other", base + ("single cine plane with no stack to relate it to -> other",))


def _assign_lax(lax: list[tuple[SeriesFeatures, float]],
                alone: dict[str, Classification]) -> dict[str, Classification]:
    """Give each long-axis cine the chamber view whose canonical angle is nearest.

    Planes at distinct angles get distinct views (best one-to-one assignment when three or fewer).
    """
    out: dict[str, Classification] = {}
    if not lax:
        return out
    import itertools

    labels = list(LAX_CANONICAL_DEG)
    distinct: list[float] = []
    for _, a in lax:
        if all(_angle_diff(a, b) > 5 for b in distinct):
            distinct.append(a)
    mapping: dict[float, str] = {}
    if len(distinct) <= len(labels):
        best = min(itertools.permutations(labels, len(distinct)),
                   key=lambda perm: sum(_angle_diff(a, LAX_CANONICAL_DEG[lab]) for a, lab in zip(distinct, perm)))
        mapping = dict(zip(distinct, best))
    for f, a in lax:
        ref = min(distinct, key=lambda b: _angle_diff(a, b))
        label = mapping.get(ref) or min(labels, key=lambda lab: _angle_diff(a, LAX_CANONICAL_DEG[lab]))
        out[f.series_instance_uid] = Classification(
            label,
            alone[f.series_instance_uid].reasons + (
                f"plane contains the LV long axis, rotated {a:.0f} deg about it "
                f"(canonical {LAX_CANONICAL_DEG[label]:.0f}) -> {label.rsplit('_', 1)[1]} view",),
        )
    return out
