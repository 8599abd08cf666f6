"""Public figures of a cardiac result: AHA bullseye, volume-time curve, ED/ES/LGE overlays.

Each function draws into ``ax`` when given (the one-page report composes them) or makes its own figure and
returns it (notebooks: ``zeroclick.plot.bullseye(result.aha.bullseye("ed_thickness_mm"))``). Colours match the
DICOM SEG segment colours of :mod:`zeroclick.pipelines.cardiac.report`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from zeroclick.imaging.volume import Volume

#: contour/overlay colours: (label values, colour, legend text); cine labels are ACDC, LGE labels EMIDEC.
CINE_STYLE: tuple[tuple[tuple[int, ...], str, str], ...] = (
    ((1,), "#4a90ff", "RV cavity"),
    ((2,), "#40e070", "LV myocardium"),
    ((3,), "#ff4040", "LV cavity"),  # drawn last: the endocardial border is the cavity's (red), not the wall's
)
LGE_STYLE: tuple[tuple[tuple[int, ...], str, str], ...] = (
    ((2, 3, 4), "#40e070", "LV myocardium"),
    ((3,), "#ffcc00", "scar (LGE)"),
    ((4,), "#9900cc", "MVO (LGE)"),
)


def _axes(ax: Any, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """(figure, axes): the given axes' figure, or a new figure (not attached to pyplot's state) laid out
    automatically so that labels are not cut."""
    if ax is not None:
        return ax.figure, ax
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100, layout="tight")
    return fig, fig.add_subplot(1, 1, 1)


def mid_slice(mask: Volume, value: int) -> int:
    """The middle of the slices holding label ``value`` (the mid-ventricular slice for value 3)."""
    areas = (mask.array == value).reshape(mask.array.shape[0], -1).sum(axis=1)
    present = np.flatnonzero(areas)
    return int(present[len(present) // 2]) if present.size else mask.array.shape[0] // 2


def crop_box(mask2d: np.ndarray, margin: int = 18) -> tuple[slice, slice]:
    """A square crop around the labelled pixels, ``margin`` pixels wide."""
    ys, xs = np.nonzero(mask2d)
    if ys.size == 0:
        return slice(None), slice(None)
    cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 + margin
    y0, x0 = max(int(cy - half), 0), max(int(cx - half), 0)
    return slice(y0, int(cy + half) + 1), slice(x0, int(cx + half) + 1)


def _show_image(ax: Any, image: np.ndarray) -> None:
    lo, hi = np.percentile(image, (1, 99.5)) if image.size else (0, 1)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _contours(ax: Any, labels: np.ndarray, specs: Sequence[tuple[tuple[int, ...], str, str]]) -> None:
    for values, color, _ in specs:
        m = np.isin(labels, values)
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors=[color], linewidths=1.4)


def overlay_panel(ax: Any, image: Volume | None, mask: Volume | None, title: str, s: int,
                  box: tuple[slice, slice] | None, *, lge: bool = False) -> None:
    """Slice ``s`` of ``image`` with the contours of ``mask`` (cine) or the scar/MVO overlay (``lge``)."""
    ax.set_title(title, fontsize=9, loc="left", fontweight="bold")
    if image is None or mask is None or not 0 <= s < mask.array.shape[0]:
        ax.text(0.5, 0.5, "no LGE series" if lge else "not available", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return
    lab = mask.array[s]
    box = box or crop_box(lab > 0)
    _show_image(ax, image.array[s][box])
    if lge:
        rgba = np.zeros((*lab[box].shape, 4))
        rgba[lab[box] == 3] = (1.0, 0.8, 0.0, 0.55)
        rgba[lab[box] == 4] = (0.6, 0.0, 0.8, 0.75)
        ax.imshow(rgba, interpolation="nearest")
        _contours(ax, lab[box], LGE_STYLE[:1])
    else:
        _contours(ax, lab[box], CINE_STYLE)


def overlays(result: Any, *, axes: Sequence[Any] | None = None) -> Any:
    """ED and ES on the same mid-ventricular slice and crop, and LGE on its own mid slice, with a legend.

    Returns the figure (a new one unless ``axes`` — three axes — are given).
    """
    if axes is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(9.0, 3.4), dpi=100)
        axes = [fig.add_axes((0.01 + i * 0.33, 0.12, 0.31, 0.78)) for i in range(3)]
        legend_at: tuple[float, float] | None = (0.01, 0.06)
    else:
        fig, legend_at = axes[0].figure, None
    images, masks = result.images, result.masks
    s_ed = mid_slice(masks.cine_ed, 3) if masks.cine_ed is not None else -1
    box = crop_box(masks.cine_ed.array[s_ed] > 0) if masks.cine_ed is not None else None
    ed_img = images.cine_ed
    es_img = images.cine_es
    if images.cine is not None and result.phases is not None and images.cine.is_cine:
        ed_img = ed_img or images.cine.phase(result.phases.ed_phase)
        es_img = es_img or images.cine.phase(result.phases.es_phase)
    s_lge = -1
    if masks.lge is not None:
        s_lge = mid_slice(masks.lge, 3) if (masks.lge.array == 3).any() else mid_slice(masks.lge, 2)
    overlay_panel(axes[0], ed_img, masks.cine_ed, "End-diastole", s_ed, box)
    overlay_panel(axes[1], es_img, masks.cine_es, "End-systole (same slice)", s_ed, box)
    overlay_panel(axes[2], images.lge, masks.lge, "Late enhancement (LGE)", s_lge, None, lge=True)
    if legend_at is not None:
        legend(fig, legend_at, has_lge=masks.lge is not None)
    return fig


def legend(fig: Any, at: tuple[float, float], *, has_lge: bool, fontsize: float = 8) -> None:
    """One line of coloured squares naming exactly the contours and overlays that are drawn."""
    entries = [(text, color) for _, color, text in CINE_STYLE]
    if has_lge:
        entries += [(text, color) for _, color, text in LGE_STYLE[1:]]
    x, y = at
    for text, color in entries:
        fig.text(x, y, "■ " + text, fontsize=fontsize, color=color, va="top")
        x += 0.03 + 0.0085 * len(text)


def volume_curve(result: Any, *, ax: Any = None) -> Any:
    """LV (and RV) volume over the cycle with ED and ES marked.

    With ``all_phases=True`` the whole-stack curve is drawn. Otherwise the curve of the default run's ED/ES
    search is drawn — the LV cavity in the few search slices (and the coarse mid-ventricular slice), labelled as
    such: it shows the cycle and where ED/ES fell, not whole-heart volumes.
    """
    fig, ax = _axes(ax, (5.0, 3.0))
    f, ph = result.function, result.phases
    lv = list(f.lv_volume_curve_ml) if f is not None else []
    img = result.images.cine
    tt = list(img.trigger_times_ms) if img is not None and img.trigger_times_ms else []
    n = ph.n_phases if ph is not None else len(lv)
    x = np.asarray(tt[:n], float) if len(tt) >= n and n else np.arange(n, dtype=float)
    whole = len(lv) >= 3
    ax.set_title("Volume over the cardiac cycle" if whole else "ED/ES search curve", fontsize=9, loc="left")
    if whole:
        ax.plot(x[: len(lv)], lv, "-o", color="#d03030", ms=2.5, lw=1.5, label="LV (whole stack)")
        if f is not None and len(f.rv_volume_curve_ml) == len(lv):
            ax.plot(x[: len(lv)], f.rv_volume_curve_ml, "-o", color="#3070d0", ms=2.5, lw=1.5,
                    label="RV (whole stack)")
        ax.set_ylabel("mL", fontsize=7)
    elif ph is not None and (ph.search_curve_ml or ph.coarse_curve_ml):
        # the search curve breaks where phases were not segmented (a line across a gap would claim values);
        # the network coarse curve samples every few phases by design and is drawn through its samples
        for values, style, label, through_gaps in (
                (ph.search_curve_ml, "-o", f"LV, {len(ph.search_slices)} search slices", False),
                (ph.coarse_curve_ml, ":s", "LV blood pool (image)"
                 if ph.coarse_source == "image" else "LV, coarse mid slice", True)):
            v = np.asarray(values, float)
            ok = np.isfinite(v) if through_gaps else np.ones(len(v), bool)
            if np.isfinite(v).any():
                ax.plot(x[: len(v)][ok], v[ok], style, color="#d03030", ms=2.5, lw=1.2, label=label)
        ax.set_ylabel("mL in the slices shown", fontsize=7)
    else:
        ax.text(0.5, 0.5, "only ED and ES were segmented", ha="center", va="center", fontsize=8,
                transform=ax.transAxes, color="0.4")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    if ph is not None:
        for idx, name in ((ph.ed_phase, "ED"), (ph.es_phase, "ES")):
            if 0 <= idx < len(x):
                ax.axvline(x[idx], color="0.5", lw=0.8, ls="--")
                ax.text(x[idx], 0.98, f" {name}", fontsize=7, ha="left", va="top", zorder=6,  # over the legend
                        transform=ax.get_xaxis_transform(),
                        bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    ax.set_xlabel("trigger time (ms)" if len(tt) >= n else "phase", fontsize=7)
    ax.tick_params(labelsize=7)
    # "best" on a white box: readable in narrow panels too (the report beside a T1 bullseye)
    ax.legend(fontsize=6, loc="best", frameon=True, framealpha=0.9, edgecolor="none", handlelength=1.5)
    return fig


def bullseye(values: Mapping[int, float | None], *, ax: Any = None, title: str = "", vmin: float = 0.0,
             vmax: float | None = None, cmap: str = "viridis", fmt: str = ".1f",
             mark: Mapping[int, bool] | None = None) -> Any:
    """AHA 16-segment bullseye (basal outer ring, anterior segments 1, 7, 13 at the top, septum left).

    ``values`` maps segment number -> value (``None``: grey, no data); ``mark`` segments are printed bold.

    >>> fig = bullseye(result.aha.bullseye("ed_thickness_mm"), title="ED wall thickness (mm)")  # doctest: +SKIP
    """
    import matplotlib
    from matplotlib.patches import Wedge

    fig, ax = _axes(ax, (3.2, 3.4))
    finite = [v for v in values.values() if v is not None and np.isfinite(v)]
    top = vmax if vmax is not None else (max(finite) if finite else 1.0)
    top = top if top > vmin else vmin + 1.0
    colormap = matplotlib.colormaps[cmap]
    rings = [(range(1, 7), 1.0, 60.0, 90.0), (range(7, 13), 0.72, 60.0, 90.0), (range(13, 17), 0.44, 90.0, 90.0)]
    for segs, r_out, step, start in rings:
        for k, seg in enumerate(segs):
            centre = start + k * step
            v = values.get(seg)
            color = "0.85" if v is None else colormap((np.clip(v, vmin, top) - vmin) / (top - vmin))
            ax.add_patch(Wedge((0, 0), r_out, centre - step / 2, centre + step / 2, width=0.28,
                               facecolor=color, edgecolor="black", lw=0.8))
            a = np.deg2rad(centre)
            r_txt = r_out - 0.14
            bold = bool(mark and mark.get(seg))
            ax.text(r_txt * np.cos(a), r_txt * np.sin(a), "–" if v is None else format(v, fmt), ha="center",
                    va="center", fontsize=6.5, fontweight="bold" if bold else "normal",
                    color="white" if bold else "black")
    ax.add_patch(Wedge((0, 0), 0.16, 0, 360, facecolor="0.95", edgecolor="black", lw=0.8))
    ax.text(-1.08, 0, "septum", rotation=90, ha="center", va="center", fontsize=6, color="0.35")
    ax.text(0, 1.06, "anterior", ha="center", va="bottom", fontsize=6, color="0.35")
    ax.set_xlim(-1.15, 1.15)
    ax.set_ylim(-1.1, 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9, loc="left")
    return fig
