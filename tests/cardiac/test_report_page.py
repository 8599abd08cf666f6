"""Issue 13: the one-page report is complete, consistent with report.json and never clipped.

The page is checked twice: every text artist's box must lie inside the page and inside its table cell
(matplotlib's own layout), and the PDF rendered by pdftoppm must have blank margins (nothing cut at an edge).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import numpy as np
import pytest

from tests.cardiac.test_run import _case
from zeroclick.pipelines.cardiac import run
from zeroclick.pipelines.cardiac.report import render_report, write_report_files
from zeroclick.pipelines.cardiac.report_text import PatientIdentity, identity_from_dataset, patient_identity


@pytest.fixture(scope="module")
def results():
    with_lge, _, _, segs = _case(with_lge=True)
    cine_only, _, _, segs_cine = _case(with_lge=False)
    return {"lge": run(with_lge, **segs), "cine": run(cine_only, **segs_cine)}


def _texts(fig):
    from matplotlib.table import Table

    out = list(fig.texts)
    for ax in fig.axes:
        out += list(ax.texts) + [ax.title, ax._left_title, ax._right_title]
        out += [cell.get_text() for t in ax.get_children() if isinstance(t, Table) for cell in t.get_celld().values()]
    return [t for t in out if t.get_visible() and t.get_text().strip()]


def _layout_problems(fig) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.table import Table

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    w, h = fig.bbox.width, fig.bbox.height
    problems = []
    for t in _texts(fig):
        box = t.get_window_extent(renderer)
        if box.x0 < 0.015 * w or box.x1 > 0.985 * w or box.y0 < 0.004 * h or box.y1 > 0.996 * h:
            problems.append(f"outside the page margins: {t.get_text()[:60]!r} {box}")
        if "…" in t.get_text():
            problems.append(f"cut with an ellipsis: {t.get_text()[:60]!r}")
    page_texts = [(t, t.get_window_extent(renderer)) for t in fig.texts + [ax.title for ax in fig.axes]
                  + [ax._left_title for ax in fig.axes] if t.get_visible() and t.get_text().strip()]
    for i, (a, box_a) in enumerate(page_texts):
        for b, box_b in page_texts[i + 1:]:
            if box_a.overlaps(box_b):
                problems.append(f"texts overlap: {a.get_text()[:40]!r} and {b.get_text()[:40]!r}")
    for ax in fig.axes:
        for table in (c for c in ax.get_children() if isinstance(c, Table)):
            for cell in table.get_celld().values():
                text_box, cell_box = cell.get_text().get_window_extent(renderer), cell.get_window_extent(renderer)
                if cell.get_text().get_text() and (text_box.x1 > cell_box.x1 + 0.5 or text_box.x0 < cell_box.x0 - 0.5):
                    problems.append(f"overflows its table cell: {cell.get_text().get_text()!r}")
    return problems


@pytest.mark.parametrize("kind", ["lge", "cine"])
def test_page_text_is_inside_the_page_and_cells(results, kind):
    patient = PatientIdentity(name="Doe^Jane", patient_id="PID-0042", birth_date="19610203", sex="F",
                              accession_number="ACC-7", study_date="20240506")
    fig = render_report(results[kind], patient=patient)
    assert _layout_problems(fig) == []
    words = " ".join(t.get_text() for t in _texts(fig))
    assert "Doe Jane" in words and "PID-0042" in words and "1961-02-03" in words and "ACC-7" in words
    ph = results[kind].phases
    assert f"ED phase {ph.ed_phase}, ES phase {ph.es_phase} (0-based" in words  # numbered as in report.json
    legend = [t.get_text() for t in fig.texts if t.get_text().startswith("■ ")]
    assert legend[:3] == ["■ RV cavity", "■ LV myocardium", "■ LV cavity"]
    assert ("■ scar (LGE)" in legend) == (kind == "lge")


def test_cine_only_page_claims_no_infarct(results):
    fig = render_report(results["cine"])
    words = " ".join(t.get_text() for t in _texts(fig))
    assert "post-infarction" not in words.lower() and "after the infarct" not in words
    assert "No LGE series" in words and "not identified" in words


def test_ef_strip_and_table_agree(results):
    """EF 55 %: below the typical range (57-77), so orange in the strip and 'low' in the table."""
    res = results["cine"]
    f = dataclasses.replace(res.function, lv_ef_percent=55.0)
    fig = render_report(dataclasses.replace(res, function=f))
    strip = [t for t in fig.texts if t.get_text() == "55 %"]
    assert strip and strip[0].get_color() == "#c07000"
    from matplotlib.table import Table

    rows = [[c.get_text().get_text() for (r, col), c in sorted(t.get_celld().items()) if r == i]
            for ax in fig.axes for t in ax.get_children() if isinstance(t, Table) for i in range(1, 3)]
    assert ["LV ejection fraction", "55 %", "", "57-77", "low"] in rows


@pytest.mark.skipif(shutil.which("pdftoppm") is None, reason="pdftoppm (Debian poppler-utils) is not installed")
def test_rendered_pdf_has_blank_margins(results, tmp_path):
    pdf, _ = write_report_files(results["lge"], tmp_path, patient=PatientIdentity(name="Doe^Jane"))
    subprocess.run(["pdftoppm", "-r", "60", "-png", "-singlefile", str(pdf), str(tmp_path / "page")], check=True)
    from PIL import Image

    page = np.asarray(Image.open(tmp_path / "page.png").convert("L"))
    h, w = page.shape
    ink = page < 200
    assert ink[h // 10: -h // 10, w // 10: -w // 10].any()  # the page is drawn
    for name, margin in (("left", ink[:, : int(0.012 * w)]), ("right", ink[:, -int(0.012 * w):]),
                         ("top", ink[: int(0.004 * h)]), ("bottom", ink[-int(0.004 * h):])):
        assert not margin.any(), f"ink in the {name} margin: text or drawing cut at the page edge"


def test_patient_identity_from_the_source_header(results, tmp_path):
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.AccessionNumber = "Roe^Richard", "X1", "19500101", "A9"
    who = identity_from_dataset(ds)
    assert who.lines()[0].startswith("Patient: Roe Richard   ID: X1   Born: 1950-01-01")
    assert patient_identity(results["cine"]) is None  # volumes without source files: "not identified"
