"""End-diastole / end-systole search that sends as few slices as possible through the network.

ED is the phase of maximum and ES the phase of minimum whole-stack LV cavity volume. On the CPU each slice
costs about a second, so instead of segmenting every phase of every slice (the naive approach) we:

1. a coarse curve locates the two extremes roughly. By default it costs no network work: the network labels
   the ``n_search`` mid-ventricular slices at phase 0 only, and the *image* gives the curve at every phase —
   the number of bright-blood pixels inside the phase-0 LV region (cavity + myocardium, dilated 2 pixels) above
   the midpoint of the phase-0 blood and myocardium medians (:func:`blood_pool_curve`; on balanced-SSFP cine
   the blood pool is the brightest tissue there). Without images (or when phase 0 shows no LV) the middle
   search slice is segmented at every ``phase_step``-th phase instead (10 slices for 30 phases). Then all
   ``n_search`` slices are segmented at the phases within 1 (image curve, sampled at every phase) or
   ``phase_step - 1`` (network curve) of the coarse maximum and minimum (the LV volume curve is smooth, so the
   extremes lie there);
2. take ED/ES as the maximum/minimum of that few-slice curve in each window; when a phase just outside a
   window is more extreme, follow the curve there (so a window that missed the extreme still finds it);
3. segment the whole stack at ED and at ES;
4. when the better neighbouring phase is within ``margin_fraction`` of the curve's range of the extreme, the
   choice is uncertain: segment the whole stack at that neighbour too and let the whole-stack LV volume decide
   (a one-phase error in ES moved EF by several points on real data).

For 30 phases and 14 slices: 2 + 2 x 5 = 12 slices for the search with the image curve (28 with the network
coarse stage, 38 with the earlier two-slice coarse stage at every second phase; 420 for every phase), then 2 x 12
more for the ED and ES stacks. The image curve picked the truth's ED and ES on 6 of 6 generated exams (seeds
1-6, three vendors) and the expert's ED on the real Sunnybrook GE exam, whose ES lies on a flat stretch of the
curve: the image minimum is at phase 9, and the climb along the network's curve reaches the expert's phase 7.

``all_phases=True`` segments everything and picks the extremes of the whole-stack curve (method ``all_phases``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from zeroclick.pipelines.cardiac.result import PhaseChoice

#: A batch of requests ``[(phase, slice indices), ...]`` -> one label array per request, shaped
#: ``[len(slices), rows, cols]`` (ACDC labels). One call lets the engine batch slices across phases. A slice
#: may be requested again as part of a larger request (the whole stack at ED after the search saw two of its
#: slices): the segmenter should not send it through the network twice.
SliceSegmenter = Callable[[Sequence[tuple[int, tuple[int, ...]]]], Sequence[np.ndarray]]

#: ``images(slices) -> [n_phases, len(slices), rows, cols]`` pixel data of those cine slices at every phase.
SearchImages = Callable[[tuple[int, ...]], np.ndarray]

LV = 3
MYO = 2


def blood_pool_curve(images: np.ndarray, labels0: np.ndarray, *, dilate_px: int = 2) -> np.ndarray | None:
    """Bright-blood pixels per phase inside the phase-0 LV region of each slice, summed over the slices.

    ``images`` is ``[n_phases, k, rows, cols]``, ``labels0`` the network's ACDC labels of the same ``k``
    slices at phase 0. Per slice the region is the LV cavity + myocardium at phase 0 dilated by ``dilate_px``
    and the threshold the midpoint of the median cavity and median myocardium intensity at phase 0. A slice
    counts only where the blood is brighter than the myocardium (median cavity > 1.2 x median myocardium, as on
    bSSFP and gradient-echo cine). Returns ``None`` when no slice qualifies (the caller then uses the network).

    Examples
    --------
    >>> lab = np.zeros((1, 9, 9), np.uint8); lab[0, 2:7, 2:7] = MYO; lab[0, 3:6, 3:6] = LV
    >>> img = np.full((3, 1, 9, 9), 10.0); img[:, 0, 3:6, 3:6] = 100.0; img[1, 0, 3, 3:6] = 10.0
    >>> blood_pool_curve(img, lab).tolist()
    [9, 6, 9]
    """
    curve = np.zeros(images.shape[0], dtype=np.int64)
    used = False
    for k in range(labels0.shape[0]):
        cavity, myo = labels0[k] == LV, labels0[k] == MYO
        if not cavity.any() or not myo.any():
            continue
        region = ndimage.binary_dilation(cavity | myo, iterations=dilate_px)
        first = images[0, k]
        blood, muscle = float(np.median(first[cavity])), float(np.median(first[myo]))
        if not blood > 1.2 * muscle:  # not a bright-blood cine (or the labels do not fit it): no image curve
            continue
        threshold = 0.5 * (blood + muscle)
        curve += np.count_nonzero((images[:, k] > threshold) & region, axis=(1, 2))
        used = True
    return curve if used else None


@dataclass
class _Cache:
    """Results per request and the network work counted per distinct (phase, slice).

    Whole requests go to the segmenter (a stack completed from slices segmented earlier must be
    post-processed as one stack); the real segmenters keep the network's raw labels, so a slice asked for
    again costs no network time (``CineSegmenter.segment_cached``).
    """

    segment: SliceSegmenter
    n_slices: int
    done: dict[tuple[int, tuple[int, ...]], np.ndarray] = field(default_factory=dict)
    seen: set[tuple[int, int]] = field(default_factory=set)

    @property
    def slices_inferred(self) -> int:
        return len(self.seen)

    def get_many(self, requests: Sequence[tuple[int, Sequence[int]]]) -> list[np.ndarray]:
        keys = [(int(p), tuple(int(s) for s in slices)) for p, slices in requests]
        todo = list(dict.fromkeys(k for k in keys if k not in self.done))
        if todo:
            outs = self.segment(todo)
            for (phase, slices), out in zip(todo, outs):
                out = np.asarray(out)
                if out.shape[0] != len(slices):
                    raise ValueError(f"segmenter returned {out.shape[0]} slices for {len(slices)} requested")
                self.done[(phase, slices)] = out
                self.seen.update((phase, s) for s in slices)
        return [self.done[k] for k in keys]

    def full_many(self, phases: Sequence[int]) -> dict[int, np.ndarray]:
        phases = list(dict.fromkeys(int(p) for p in phases))
        return dict(zip(phases, self.get_many([(p, range(self.n_slices)) for p in phases])))


def search_slices(n_slices: int, n_search: int) -> tuple[int, ...]:
    """``n_search`` adjacent slices around the middle of the stack (mid-ventricular on a SAX stack).

    Examples
    --------
    >>> search_slices(12, 2), search_slices(12, 3), search_slices(1, 3)
    ((5, 6), (5, 6, 7), (0,))
    """
    n = max(1, min(n_search, n_slices))
    start = max(0, min(n_slices - n, (n_slices - n + 1) // 2))
    return tuple(range(start, start + n))


@dataclass(frozen=True)
class PhaseSearchResult:
    """Chosen phases, the whole-stack labels segmented on the way, and the network work done."""

    choice: PhaseChoice
    full_stacks: dict[int, np.ndarray]
    slices_inferred: int


def choose_phases(
    n_phases: int,
    n_slices: int,
    segment: SliceSegmenter,
    *,
    voxel_volume_ml: float,
    all_phases: bool = False,
    n_search: int = 2,
    phase_step: int = 3,
    margin_fraction: float = 0.01,
    trigger_times_ms: Sequence[float] | None = None,
    images: SearchImages | None = None,
) -> PhaseSearchResult:
    """Find ED and ES; see the module docstring. Phase indices are 0-based.

    ``images`` gives the search slices' pixels at every phase for the image-based coarse curve (reported in mL:
    bright-blood pixels x ``voxel_volume_ml``).
    """
    cache = _Cache(segment, n_slices)

    def lv_ml(labels: np.ndarray) -> float:
        return float(np.count_nonzero(labels == LV)) * voxel_volume_ml

    def tt(p: int) -> float | None:
        return None if not trigger_times_ms or p >= len(trigger_times_ms) else float(trigger_times_ms[p])

    if n_phases <= 1:
        full = cache.full_many([0])[0]
        choice = PhaseChoice(0, 0, "single_phase", n_phases=1, full_stack_lv_ml={0: lv_ml(full)})
        return PhaseSearchResult(choice, {0: full}, cache.slices_inferred)

    if all_phases:
        stacks = cache.full_many(range(n_phases))
        vols = {p: lv_ml(s) for p, s in stacks.items()}
        ed, es = max(vols, key=vols.__getitem__), min(vols, key=vols.__getitem__)
        choice = PhaseChoice(ed, es, "all_phases", n_phases=n_phases, full_stack_lv_ml=vols,
                             ed_trigger_time_ms=tt(ed), es_trigger_time_ms=tt(es))
        return PhaseSearchResult(choice, stacks, cache.slices_inferred)

    sl = search_slices(n_slices, n_search)
    step = max(1, int(phase_step))
    coarse_slice = sl[len(sl) // 2]
    coarse: dict[int, float] = {}
    coarse_source = "network"
    if step > 1 and images is not None:
        # stage 1 (image): the network at phase 0 only, the image's blood pool at every phase
        blood = blood_pool_curve(np.asarray(images(sl)), cache.get_many([(0, sl)])[0])
        if blood is not None and blood.max() > blood.min():
            coarse = {p: float(v) * voxel_volume_ml for p, v in enumerate(blood)}
            coarse_source = "image"
    if step > 1 and not coarse:
        # stage 1 (network): one mid-ventricular slice at every step-th phase locates the two extremes roughly
        phases_c = list(range(0, n_phases, step))
        for p, labels in zip(phases_c, cache.get_many([(p, (coarse_slice,)) for p in phases_c])):
            coarse[p] = lv_ml(labels)
    curve: dict[int, float] = {}

    def evaluate(phases: Sequence[int]) -> None:
        new = list(dict.fromkeys(int(p) % n_phases for p in phases if int(p) % n_phases not in curve))
        for p, labels in zip(new, cache.get_many([(p, sl) for p in new])):
            curve[p] = lv_ml(labels)

    if step > 1:
        # stage 2: all search slices in a window around each coarse extreme: +-(step - 1) phases for the
        # network's coarse curve (sampled every step-th phase), +-1 for the image curve (sampled at every phase:
        # what is left is the image-vs-network disagreement, which the climb below follows out of the window)
        half = 1 if coarse_source == "image" else step - 1
        ed_c, es_c = max(coarse, key=coarse.__getitem__), min(coarse, key=coarse.__getitem__)
        evaluate([c + d for c in (ed_c, es_c) for d in range(-half, half + 1)])
        ed_window = {(ed_c + d) % n_phases for d in range(-half, half + 1)}
        es_window = {(es_c + d) % n_phases for d in range(-half, half + 1)}
    else:
        evaluate(range(n_phases))
        ed_window = es_window = set(curve)

    def climb(window: set[int], sign: int) -> int:
        """Extreme of the window (lowest phase on ties, as the all-phase run); if a neighbour outside the
        window is strictly more extreme, follow the curve there."""
        best = min(window, key=lambda q: (-sign * curve[q], q))
        for _ in range(n_phases):
            nbs = [(best - 1) % n_phases, (best + 1) % n_phases]
            evaluate(nbs)  # the neighbours are needed for the uncertainty test anyway
            better = [q for q in nbs if sign * curve[q] > sign * curve[best]]
            if not better:
                return best
            best = max(better, key=lambda q: sign * curve[q])
        return best

    ed0, es0 = climb(ed_window, 1), climb(es_window, -1)
    margin = margin_fraction * (max(curve.values()) - min(curve.values()))

    def close_neighbour(p: int, sign: int) -> int | None:
        nbs = [(p - 1) % n_phases, (p + 1) % n_phases]
        best = max(nbs, key=lambda q: sign * curve[q])
        return best if abs(curve[best] - curve[p]) <= margin and best != p else None

    stacks = cache.full_many([ed0, es0])
    neighbours = {nb: sign for p0, sign in ((ed0, 1), (es0, -1))
                  if (nb := close_neighbour(p0, sign)) is not None and nb not in stacks}
    stacks.update(cache.full_many(list(neighbours)))
    vols = {p: lv_ml(s) for p, s in stacks.items()}
    ed = max([ed0] + [p for p, sign in neighbours.items() if sign > 0], key=vols.__getitem__)
    es = min([es0] + [p for p, sign in neighbours.items() if sign < 0], key=vols.__getitem__)
    confirmed = list(neighbours)
    choice = PhaseChoice(
        ed_phase=ed, es_phase=es, method="few_slice_search+confirmed" if confirmed else "few_slice_search",
        n_phases=n_phases, search_slices=sl,
        search_curve_ml=tuple(curve.get(p, float("nan")) for p in range(n_phases)),
        coarse_slice=coarse_slice if coarse and coarse_source == "network" else None, coarse_source=coarse_source,
        coarse_curve_ml=tuple(coarse.get(p, float("nan")) for p in range(n_phases)) if coarse else (),
        confirmed_phases=tuple(confirmed), full_stack_lv_ml=vols, margin_fraction=margin_fraction,
        ed_trigger_time_ms=tt(ed), es_trigger_time_ms=tt(es),
    )
    return PhaseSearchResult(choice, stacks, cache.slices_inferred)
