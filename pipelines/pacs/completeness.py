"""Is a received study complete enough to analyse? Decided from the images' own geometry, not from a clock alone.

``cardiac`` (the default of ``zeroclick listen``)
    The study needs a short-axis cine whose slices x phases grid is complete (every slice has every phase, no
    missing slice inside the stack, as many phases as its CardiacNumberOfImages announces); every LGE series must be a regular stack without gaps and, when parallel to
    the cine, cover at least :data:`LGE_MIN_COVERAGE` of the cine's extent along the slice normal. A study with no
    short-axis cine and no LGE (a lone localizer, a non-cardiac study) has nothing to analyse.
``geometry``
    Every image series (localizers aside) must form a complete regular grid; no series is required.
``none``
    The quiet period alone decides.

The headers are read with :func:`zeroclick.imaging.dicom.scan` (no pixels; ~1 ms per file).

What geometry cannot see: slices at the end of a stack that have not started arriving (a scanner sending slice
by slice) leave a smaller but regular stack. The quiet period (``--stable-seconds``) is the guard for that case,
and a later arrival makes a re-analysis that supersedes the first results.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zeroclick.imaging.errors import InvalidInputError

__all__ = ["COMPLETENESS_MODES", "LGE_MIN_COVERAGE", "Readiness", "assess"]

logger = logging.getLogger(__name__)

COMPLETENESS_MODES = ("cardiac", "geometry", "none")
LGE_MIN_COVERAGE = 0.4
_LGE_LABELS = ("lge_psir", "lge_mag")


@dataclass(frozen=True)
class Readiness:
    """``state`` is ``ready``, ``waiting`` (something is missing: ``reason`` says what) or ``nothing_to_analyse``."""

    state: str
    reason: str = ""


def _grid_problem(series) -> str | None:
    """Why a series is not a complete grid of slices (x phases), or ``None``."""
    g = series.geometry
    name = f"series {series.number} ({series.label})"
    if g.layout is None or not g.regular:
        return f"{name} is not a regular stack yet: {'; '.join(g.problems) or 'irregular geometry'}"
    missing = int((g.layout < 0).sum())
    if missing:
        return f"{name}: {missing} of {g.layout.size} images (slices x phases) missing"
    if g.gaps:
        return f"{name}: slice position gap(s) in the stack ({len(g.gaps)})"
    return None


def _announced_phase_problem(series) -> str | None:
    """Fewer phases than the series' own CardiacNumberOfImages (0018,1090) announces, or ``None``.

    A scanner that sends a cine phase by phase leaves a complete-looking grid of fewer phases while the rest is
    on its way; the tag (written by the major vendors) says how many there will be.
    """
    import pydicom

    try:
        header = pydicom.dcmread(series.images[0].path, stop_before_pixels=True,
                                 specific_tags=["CardiacNumberOfImages"])
        announced = int(header.get("CardiacNumberOfImages") or 0)
    except Exception:  # noqa: BLE001 - the tag is optional; an unreadable value is treated as absent
        return None
    have = series.geometry.n_phases
    if announced > have and announced > 1:
        return f"series {series.number} ({series.label}): {have} of {announced} phases (CardiacNumberOfImages) present"
    return None


def _extent_along(series, normal: np.ndarray) -> tuple[float, float] | None:
    positions = [im.position for im in series.images if im.position is not None]
    if not positions:
        return None
    d = np.asarray(positions, dtype=np.float64) @ normal
    return float(d.min()), float(d.max())


def _lge_coverage_problem(lge, cine) -> str | None:
    if cine.geometry.slice_normal is None or lge.geometry.slice_normal is None:
        return None
    n_cine = np.asarray(cine.geometry.slice_normal, dtype=np.float64)
    if abs(float(np.dot(n_cine, np.asarray(lge.geometry.slice_normal, dtype=np.float64)))) < 0.95:
        return None  # not parallel: coverage along the cine normal says nothing
    cine_span, lge_span = _extent_along(cine, n_cine), _extent_along(lge, n_cine)
    if cine_span is None or lge_span is None:
        return None
    spacing = cine.geometry.slice_spacing_mm or cine.geometry.slice_thickness_mm or 0.0
    cine_extent = cine_span[1] - cine_span[0] + spacing
    lge_extent = lge_span[1] - lge_span[0] + (lge.geometry.slice_spacing_mm or spacing)
    if cine_extent > 0 and lge_extent < LGE_MIN_COVERAGE * cine_extent:
        return (f"series {lge.number} ({lge.label}) covers {lge_extent:.0f} mm of the cine's {cine_extent:.0f} mm "
                f"({lge.n_images} slices): the rest of the stack has not arrived")
    return None


def assess(files: Sequence[Path], *, mode: str = "cardiac") -> Readiness:
    """Decide whether the study in ``files`` can be analysed now (see the module text for the rules)."""
    if mode not in COMPLETENESS_MODES:
        raise InvalidInputError(f"completeness={mode!r} is not one of {', '.join(COMPLETENESS_MODES)}")
    if mode == "none":
        return Readiness("ready")
    from zeroclick.imaging.dicom import scan

    exam = scan([str(p) for p in files], strictness="ignore", workers=1)
    series = [s for s in exam.series if s.label != "localizer"]
    if mode == "geometry":
        problems = [p for s in series if (p := _grid_problem(s))]
        return Readiness("waiting", "; ".join(problems)) if problems else Readiness("ready")
    cines = [s for s in series if s.label == "cine_sax"]
    lges = [s for s in series if s.label in _LGE_LABELS]
    if not cines and not lges:
        found = ", ".join(sorted({s.label for s in exam.series})) or "no image series"
        return Readiness("nothing_to_analyse", f"no short-axis cine or LGE series (found: {found})")
    if not cines:
        return Readiness("waiting", "no short-axis cine series yet (LGE alone is not analysed)")
    problems = []
    complete_cines = [s for s in cines if _grid_problem(s) is None and _announced_phase_problem(s) is None]
    if not complete_cines:
        problems.extend(p for s in cines if (p := _grid_problem(s) or _announced_phase_problem(s)))
    for lge in lges:
        problem = _grid_problem(lge)
        if problem is None and complete_cines:
            problem = _lge_coverage_problem(lge, max(complete_cines, key=lambda s: s.n_images))
        if problem:
            problems.append(problem)
    return Readiness("waiting", "; ".join(problems)) if problems else Readiness("ready")
