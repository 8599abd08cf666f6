"""Public figures: everything the PDF report draws, for notebooks and papers.

Each function returns a matplotlib Figure (or draws into ``ax=`` when given) and never touches pyplot's global
state, so it works in scripts, services and notebooks alike (Jupyter shows a returned Figure inline).

>>> import zeroclick
>>> r = zeroclick.cardiac.run("exam/dicom")                                        # doctest: +SKIP
>>> zeroclick.plot.bullseye(r.aha.bullseye("ed_thickness_mm"), title="ED wall thickness (mm)")  # doctest: +SKIP
>>> zeroclick.plot.volume_curve(r)        # the default run's ED/ES search curve, labelled as such  # doctest: +SKIP
>>> zeroclick.plot.overlays(r)            # ED/ES contours and the LGE scar overlay               # doctest: +SKIP
>>> zeroclick.plot.report_page(r)         # the whole one-page report                            # doctest: +SKIP
>>> zeroclick.plot.slide_overlay(h, "slide.svs")   # a HistologyResult on its slide               # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

from zeroclick.pipelines.cardiac.figures import bullseye, overlays, volume_curve


def report_page(result: Any, **kwargs: Any) -> Any:
    """The cardiologist's one-page report as a Figure (see :func:`zeroclick.pipelines.cardiac.report.render_report`)."""
    from zeroclick.pipelines.cardiac.report import render_report

    return render_report(result, **kwargs)


def slide_overlay(result: Any, slide: str | os.PathLike[str] | Any, *, ax: Any = None, mpp: float | None = None,
                  max_nuclei: int = 200_000) -> Any:
    """A slide's thumbnail with the nuclei of a :class:`~zeroclick.slide.HistologyResult` coloured by class,
    a legend with the counts and a scale bar.

    ``slide`` is the slide file (or an open :class:`zeroclick.imaging.slide.Slide`); ``mpp`` as for the run when
    the file has no trustworthy µm/px. At most ``max_nuclei`` dots are drawn (an even subsample).
    """
    import numpy as np

    from zeroclick.imaging.slide import open_slide
    from zeroclick.pipelines.histology.nuclei import NUCLEUS_CLASSES
    from zeroclick.pipelines.histology.outputs import CLASS_COLOURS

    own = not hasattr(slide, "thumbnail")
    handle = open_slide(slide, mpp=mpp) if own else slide
    try:
        thumb, ds = handle.thumbnail()
        mpp0 = 0.5 * (handle.meta.mpp_x + handle.meta.mpp_y)
    finally:
        if own:
            handle.close()
    if ax is None:
        from matplotlib.figure import Figure

        h, w = thumb.shape[:2]
        fig = Figure(figsize=(8.0, 8.0 * h / w + 0.4), dpi=100, layout="tight")
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    ax.imshow(thumb, interpolation="lanczos")
    ax.set_xticks([])
    ax.set_yticks([])
    nuclei = result.nuclei
    handles = []
    if nuclei is not None and len(nuclei):
        step = max(1, len(nuclei) // max_nuclei)
        x, y = nuclei.column("x_px")[::step] / ds, nuclei.column("y_px")[::step] / ds
        classes = nuclei.column("class_index")[::step].astype(int)
        for k, name in enumerate(NUCLEUS_CLASSES):
            sel = classes == k
            colour = np.asarray(CLASS_COLOURS[name]) / 255.0
            n_all = int(np.count_nonzero(nuclei.column("class_index").astype(int) == k))
            handles.append(ax.scatter(x[sel], y[sel], s=3, color=colour, linewidths=0,
                                      label=f"{name} ({n_all:,})"))
    # scale bar: a round length of about a fifth of the width
    width_um = thumb.shape[1] * ds * mpp0
    length_um = float(10 ** np.floor(np.log10(width_um / 5)))
    length_um *= 5 if width_um / 5 >= 5 * length_um else 2 if width_um / 5 >= 2 * length_um else 1
    bar_px = length_um / (ds * mpp0)
    x0, y0 = 0.04 * thumb.shape[1], 0.95 * thumb.shape[0]
    ax.plot([x0, x0 + bar_px], [y0, y0], color="black", lw=3, solid_capstyle="butt")
    label = f"{length_um / 1000:g} mm" if length_um >= 1000 else f"{length_um:g} µm"
    ax.text(x0 + bar_px / 2, y0 - 0.015 * thumb.shape[0], label, ha="center", va="bottom", fontsize=8)
    if handles:
        ax.legend(handles=handles, loc="upper right", fontsize=7, markerscale=6, frameon=True, title="nuclei",
                  title_fontsize=7)
    ax.set_title(f"{result.slide_name}: {result.nuclei_count:,} nuclei", fontsize=9, loc="left")
    return fig


__all__ = ["bullseye", "overlays", "report_page", "slide_overlay", "volume_curve"]
