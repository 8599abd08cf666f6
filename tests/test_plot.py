"""Issue 13: the public figures (zeroclick.plot) draw what they say, without pyplot state."""

from __future__ import annotations

import numpy as np
import pytest

import zeroclick
from tests.cardiac.test_run import _case


@pytest.fixture(scope="module")
def result():
    case, _, _, segs = _case(with_lge=True)
    return zeroclick.cardiac.run(case, **segs)


def test_bullseye_has_16_segments_with_their_values(result):
    from matplotlib.patches import Wedge

    values = result.aha.bullseye("ed_thickness_mm")
    fig = zeroclick.plot.bullseye(values, title="ED wall thickness (mm)")
    ax = fig.axes[0]
    assert sum(isinstance(p, Wedge) for p in ax.patches) == 16 + 1  # 16 segments + the centre
    shown = {t.get_text() for t in ax.texts}
    assert {format(v, ".1f") for v in values.values() if v is not None} <= shown


def test_volume_curve_of_the_default_run_is_the_labelled_search_curve(result):
    assert result.phases.method.startswith("few_slice_search")
    fig = zeroclick.plot.volume_curve(result)
    labels = [line.get_label() for line in fig.axes[0].lines if not line.get_label().startswith("_")]
    assert any("search slices" in label for label in labels)  # labelled: not whole-stack volumes
    assert fig.axes[0].get_title(loc="left") == "ED/ES search curve"
    searched = np.asarray(result.phases.search_curve_ml, float)
    drawn = [line for line in fig.axes[0].lines if "search slices" in line.get_label()][0]
    ydata = np.asarray(drawn.get_ydata(), float)
    assert np.allclose(ydata[np.isfinite(ydata)], searched[np.isfinite(searched)])
    assert np.isnan(ydata).sum() == np.isnan(searched).sum()  # gaps stay gaps: no line across unsegmented phases


def test_overlays_and_report_page(result):
    fig = zeroclick.plot.overlays(result)
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["End-diastole", "End-systole (same slice)",
                                                            "Late enhancement (LGE)"]
    assert len(fig.axes[0].collections) >= 3  # LV cavity, myocardium and RV contours
    page = zeroclick.plot.report_page(result)
    assert page.get_size_inches() == pytest.approx((8.27, 11.69))


@pytest.mark.slow
def test_slide_overlay_counts_every_class(shared_data):
    svs = shared_data / "slides" / "CMU-1-Small-Region.svs"
    if not svs.exists():
        pytest.skip(f"{svs} not found")
    h = zeroclick.slide.run(svs)
    fig = zeroclick.plot.slide_overlay(h, svs)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    counts = [int(text.split("(")[1].rstrip(")").replace(",", "")) for text in legend]
    assert sum(counts) == h.nuclei_count > 0
    assert any("µm" in t.get_text() or "mm" in t.get_text() for t in fig.axes[0].texts)  # scale bar
