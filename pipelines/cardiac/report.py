"""The cardiologist's one-page report (PDF + PNG) and the DICOM objects that carry the results to a PACS.

``render_report(result)`` draws one A4 page meant to be understood in ten seconds: the key numbers
first, then the images that prove them (ED/ES contours, LGE overlay), the volume-time curve, AHA
bullseyes, the measurement table with typical adult ranges, the risk features with their citations and
the quality-control findings in plain words. Its header identifies the patient (name, ID, birth date,
accession, read from the source DICOM header) so that a physician can verify identity; identifiers are never
logged and never written to report.json.

``write_dicom_outputs(result, out_dir)`` writes, in the source study: a SEG at ED and one at ES (LV
cavity, LV myocardium, RV cavity), a SEG for LGE (LV myocardium, infarct incl. MVO, MVO), a TID 1500
SR whose measurements point at those segments, and the report as encapsulated PDF. UIDs are derived
from the source UIDs and the zeroclick version (:mod:`zeroclick.imaging.dicom.write.uids`), so a re-run replaces
rather than duplicates.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from zeroclick.imaging._version import __version__
from zeroclick.imaging.dicom.write import (
    MeasurementItem,
    SegmentMeasurements,
    SegmentSpec,
    derived_uid,
    encapsulated_pdf,
    measurement_report,
    save_atomically,
    segmentation_from_labels,
)
from zeroclick.imaging.dicom.write import codes as K
from zeroclick.imaging.errors import InvalidInputError
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac import figures
from zeroclick.pipelines.cardiac import report_text as text
from zeroclick.pipelines.cardiac.report_text import NORMAL_RANGES
from zeroclick.pipelines.cardiac.result import CardiacResult, FunctionResult, LgeResult

__all__ = [
    "CINE_SEGMENTS",
    "LGE_SEGMENTS",
    "NORMAL_RANGES",
    "SERIES_NUMBERS",
    "render_report",
    "write_dicom_outputs",
    "write_report_files",
]

logger = logging.getLogger(__name__)
_valid = text.valid

ALGORITHM_NAME = "zeroclick cardiac"

#: Segments of the cine SEGs (ACDC labels: 1 RV cavity, 2 LV myocardium, 3 LV cavity).
CINE_SEGMENTS: tuple[SegmentSpec, ...] = (
    SegmentSpec("LV cavity", K.ANATOMICAL_STRUCTURE, K.LV, (3,), rgb=(230, 60, 60)),
    SegmentSpec("LV myocardium", K.ANATOMICAL_STRUCTURE, K.LV_MYOCARDIUM, (2,), rgb=(60, 200, 90)),
    SegmentSpec("RV cavity", K.ANATOMICAL_STRUCTURE, K.RV, (1,), rgb=(70, 130, 240)),
)
#: Segments of the LGE SEG (EMIDEC labels: 2 healthy myocardium, 3 infarct, 4 MVO; infarct includes MVO).
LGE_SEGMENTS: tuple[SegmentSpec, ...] = (
    SegmentSpec("LV myocardium", K.ANATOMICAL_STRUCTURE, K.LV_MYOCARDIUM, (2, 3, 4), rgb=(60, 200, 90)),
    SegmentSpec("Infarct (incl. MVO)", K.MORPHOLOGICALLY_ABNORMAL, K.INFARCT, (3, 4), rgb=(250, 200, 0),
                anatomic_regions=(K.LV_MYOCARDIUM,)),
    SegmentSpec("MVO", K.MORPHOLOGICALLY_ABNORMAL, K.MVO, (4,), rgb=(150, 0, 200),
                anatomic_regions=(K.LV_MYOCARDIUM,)),
)

#: Series numbers of the objects written into the study (high, to sort after the acquisitions).
SERIES_NUMBERS = {"seg_ed": 9901, "seg_es": 9902, "seg_lge": 9903, "sr": 9904, "pdf": 9905}
SERIES_DESCRIPTIONS = {
    "seg_ed": "zeroclick LV/RV ED",
    "seg_es": "zeroclick LV/RV ES",
    "seg_lge": "zeroclick LGE scar",
    "sr": "zeroclick measurements",
    "pdf": "zeroclick report",
}

NORMAL_RANGES_SOURCE = "Typical ranges: Kawel-Boehm et al., JCMR 2020 (adults, SSFP, pooled, approximate)"


# --------------------------------------------------------------------------------------------- rendering


@dataclass(frozen=True)
class _Row:
    label: str
    key: str  # measurement name (QC flags name it in ``affects``)
    value: float | None
    unit: str
    indexed: float | None = None
    range_key: str | None = None


def _fmt(v: float | None, digits: int = 0) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.{digits}f}"


def _short_citation(citation: str) -> str:
    """'Stone GW et al. ... J Am Coll Cardiol 2016;67:...' -> 'Stone et al., J Am Coll Cardiol 2016'."""
    author = citation.split(" et al")[0].rsplit(" ", 1)[0] if " et al" in citation else citation[:30]
    m = re.search(r"\.\s([^.;]+?)\s(\d{4});", citation)
    return f"{author} et al., {m.group(1)} {m.group(2)}" if m else author


def _table_rows(f: FunctionResult | None, lge: LgeResult | None) -> list[_Row]:
    rows: list[_Row] = []
    if f is not None:
        rows += [
            _Row("LV ejection fraction", "lv_ef_percent", f.lv_ef_percent, "%", None, "lv_ef_percent"),
            _Row("LV end-diastolic volume", "lv_edv_ml", f.lv_edv_ml, "mL", f.lv_edv_index_ml_per_m2,
                 "lv_edv_index_ml_per_m2"),
            _Row("LV end-systolic volume", "lv_esv_ml", f.lv_esv_ml, "mL", f.lv_esv_index_ml_per_m2,
                 "lv_esv_index_ml_per_m2"),
            _Row("LV stroke volume", "lv_sv_ml", f.lv_sv_ml, "mL", f.lv_sv_index_ml_per_m2),
            _Row("LV mass (ED)", "myo_mass_ed_g", f.myo_mass_ed_g, "g", f.myo_mass_index_g_per_m2,
                 "myo_mass_index_g_per_m2"),
            _Row("RV ejection fraction", "rv_ef_percent", f.rv_ef_percent, "%", None, "rv_ef_percent"),
            _Row("RV end-diastolic volume", "rv_edv_ml", f.rv_edv_ml, "mL", f.rv_edv_index_ml_per_m2,
                 "rv_edv_index_ml_per_m2"),
            _Row("RV end-systolic volume", "rv_esv_ml", f.rv_esv_ml, "mL", f.rv_esv_index_ml_per_m2,
                 "rv_esv_index_ml_per_m2"),
        ]
        if f.lv_co_l_per_min is not None:
            rows.append(_Row("Cardiac output", "lv_co_l_per_min", f.lv_co_l_per_min, "L/min",
                             f.lv_ci_l_per_min_per_m2))
    if lge is not None:
        rows += [
            _Row("Infarct size (incl. MVO)", "infarct_percent_of_myocardium", lge.infarct_percent_of_myocardium,
                 "% LV"),
            _Row("Infarct mass", "infarct_g", lge.infarct_g, "g"),
            _Row("Microvascular obstruction", "mvo_percent_of_myocardium", lge.mvo_percent_of_myocardium, "% LV"),
        ]
        if lge.gray_zone_percent_of_myocardium is not None:
            rows.append(_Row("Gray zone (peri-infarct)", "gray_zone_percent_of_myocardium",
                             lge.gray_zone_percent_of_myocardium, "% LV"))
    return rows


def _range_text(key: str | None) -> str:
    if key is None or key not in NORMAL_RANGES:
        return ""
    lo, hi = NORMAL_RANGES[key]
    return f"{lo:.0f}-{hi:.0f}" + ("" if key.endswith("percent") else " /m²")


def _key(value: float | None, unit: str, digits: int = 0) -> str:
    return "n/a" if value is None else f"{_fmt(value, digits)} {unit}"


def _key_numbers(result: CardiacResult) -> list[tuple[str, str, str]]:
    """(label, value text, colour) of the headline numbers; a value invalidated by QC shows as n/a."""
    f, lge = result.function, result.lge
    out = []
    if f is not None:
        ef = _valid(result, "lv_ef_percent", f.lv_ef_percent)
        out.append(("LV ejection fraction", _key(ef, "%"), text.ef_colour(ef)))
        out.append(("LV end-diastolic vol.", _key(_valid(result, "lv_edv_ml", f.lv_edv_ml), "mL"), "black"))
        out.append(("RV ejection fraction", _key(_valid(result, "rv_ef_percent", f.rv_ef_percent), "%"), "black"))
    if lge is not None:
        inf = _valid(result, "infarct_percent_of_myocardium", lge.infarct_percent_of_myocardium)
        out.append(("Infarct size", _key(inf, "% LV", 1), "#b00000" if inf is not None and inf >= 10 else "black"))
        mvo = _valid(result, "mvo_percent_of_myocardium", lge.mvo_percent_of_myocardium)
        out.append(("Microvascular obstr.", _key(mvo, "% LV", 1),
                    "#b00000" if mvo is not None and round(mvo, 1) > 0 else "black"))
    return out


def _study_header(result: CardiacResult) -> str:
    """Series used and the ED/ES phases, numbered as in report.json (0-based phase index)."""
    parts = []
    used = [f"{s.role.replace('_', ' ')}: {s.description or 'unnamed'} ({s.n_images} images)" for s in result.series]
    if used:
        parts.append("Series used: " + "; ".join(used))
    if result.phases is not None:
        ph = result.phases
        parts.append(f"ED phase {ph.ed_phase}, ES phase {ph.es_phase} (0-based, of {ph.n_phases} phases; "
                     f"{ph.method.replace('_', ' ')})")
    return "   ·   ".join(parts)


def render_report(result: CardiacResult, *, study_date: str | None = None,
                  patient: text.PatientIdentity | None = None):
    """Draw the one-page report as a matplotlib Figure (A4 portrait).

    Parameters
    ----------
    result
        The analysis result.
    study_date
        ``YYYYMMDD`` of the study, shown in the identification block when ``patient`` has none.
    patient
        Who the page is about (name, ID, birth date, accession), read from the source DICOM header by
        :func:`write_report_files` / :func:`write_dicom_outputs`; ``None`` prints "not identified" so that a
        reader knows to verify identity against the images.

    Returns
    -------
    matplotlib.figure.Figure
        Save it with :func:`write_report_files` (PDF + PNG) or ``savefig``.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.27, 11.69), dpi=100)
    fig.patch.set_facecolor("white")
    # header: title, status, patient identification, series and phases
    fig.text(0.04, 0.978, text.title(result), fontsize=13, fontweight="bold", va="top")
    status_text = {"ok": "analysis complete", "partial": "PARTIAL: see quality control",
                   "failed": "analysis FAILED"}[result.status]
    fig.text(0.96, 0.955, status_text, fontsize=9, ha="right", va="top",
             color="#006000" if result.status == "ok" else "#b00000", fontweight="bold")
    if patient is None:
        ident = ("Patient: not identified (no DICOM header with the input): verify identity against the images",
                 f"Study date: {text._date(study_date or '') or '—'}")
    else:
        if study_date and not patient.study_date:
            patient = dataclasses.replace(patient, study_date=study_date)
        ident = patient.lines()
    fig.text(0.04, 0.955, ident[0], fontsize=8.5, va="top", fontweight="bold")
    fig.text(0.04, 0.941, ident[1], fontsize=7.5, va="top", color="0.2")
    fig.text(0.04, 0.928, _wrap(_study_header(result), 150), fontsize=6.5, va="top", color="0.3")
    # key numbers strip
    keys = _key_numbers(result)
    for i, (label, value, color) in enumerate(keys):
        x = 0.04 + i * (0.92 / max(len(keys), 1))
        fig.text(x, 0.905, label, fontsize=8.5, color="0.35", va="top")
        fig.text(x, 0.889, value, fontsize=16, color=color, fontweight="bold", va="top")
    # what the exam shows, in words (no indication assumed)
    fig.text(0.04, 0.857, "\n".join(_wrap(line, 135) for line in text.findings(result)), fontsize=7.5, va="top")

    # images: ED and ES on the same mid-ventricular slice and crop, LGE on its own mid slice
    axes = [fig.add_axes((0.04 + i * 0.32, 0.585, 0.28, 0.22)) for i in range(3)]
    figures.overlays(result, axes=axes)
    figures.legend(fig, (0.04, 0.576), has_lge=result.masks.lge is not None)

    # curve + bullseyes
    t1 = result.t1
    curve_box = (0.07, 0.39, 0.17, 0.125) if t1 is not None else (0.09, 0.39, 0.34, 0.125)
    figures.volume_curve(result, ax=fig.add_axes(curve_box))
    if t1 is not None:  # issue 17: ECV bullseye when both maps and a haematocrit exist, else native T1
        ecv = {k: None if v is None else 100.0 * v for k, v in t1.bullseye("ecv_fraction").items()}
        if any(v is not None for v in ecv.values()):
            title = "ECV (%)" + ("" if t1.ecv_remote_fraction is None else
                                 f"\nremote {100 * t1.ecv_remote_fraction:.0f} %") + "; bold: > 30 %"
            figures.bullseye(ecv, ax=fig.add_axes((0.265, 0.365, 0.22, 0.165)), title=title, vmin=20, vmax=60,
                             cmap="magma_r", fmt=".0f", mark={k: bool(v is not None and v > 30) for k, v in ecv.items()})
        else:
            native = t1.bullseye("native_t1_ms")
            src = "fitted" if t1.native_source == "molli_fit" else "scanner map"
            figures.bullseye(native, ax=fig.add_axes((0.265, 0.365, 0.22, 0.165)),
                             title=f"Native T1 (ms, {src})", vmin=900, vmax=1400, cmap="magma_r", fmt=".0f")
    aha = result.aha
    thick = aha.bullseye("ed_thickness_mm") if aha is not None else {}
    thin = {k: bool(v) for k, v in aha.bullseye("thin_at_ed").items()} if aha is not None else {}
    figures.bullseye(thick, ax=fig.add_axes((0.50, 0.365, 0.22, 0.165)), title="ED wall thickness (mm)\n"
                     "bold: < 5.5 mm", vmin=0, vmax=14, cmap="viridis", fmt=".1f", mark=thin)
    trans: Mapping[int, float | None] = {}
    if result.lge is not None and result.lge.segment_transmurality_percent:
        trans = {int(k): v for k, v in result.lge.segment_transmurality_percent.items()}
    elif aha is not None:
        trans = aha.bullseye("transmurality_percent")
    figures.bullseye(trans, ax=fig.add_axes((0.75, 0.365, 0.22, 0.165)),
                     title="Scar transmurality (%)\nbold: > 50 %" if result.lge is not None else
                     "Scar transmurality (%)\nno LGE series", vmin=0, vmax=100, cmap="YlOrRd", fmt=".0f",
                     mark={k: bool(v is not None and v > 50) for k, v in trans.items()})

    table_bottom = _draw_table(fig, result)
    _draw_risk_and_qc(fig, result, qc_top=min(0.112, table_bottom - 0.012))
    weights = ", ".join(f"{w.task}: {w.weights_id}" for w in result.provenance.weights) if result.provenance else ""
    fig.text(0.5, 0.032, f"Automatic analysis by zeroclick {__version__} (research software"
             f"{'; weights ' + weights if weights else ''}).", ha="center", va="top", fontsize=6.5, color="0.4")
    fig.text(0.5, 0.020, "Contours and numbers must be reviewed by a physician before clinical use.",
             ha="center", va="top", fontsize=6.5, color="0.4")
    return fig


def _draw_table(fig, result: CardiacResult) -> float:
    """The measurement table; returns the lowest y (figure fraction) it used."""
    rows = _table_rows(result.function, result.lge)
    fig.text(0.04, 0.345, "Measurements", fontsize=9, fontweight="bold", va="top")
    height = 0.0135 * (len(rows) + 1)
    ax = fig.add_axes((0.04, 0.328 - height, 0.47, height))
    ax.axis("off")
    cells, colors = [], []
    for r in rows:
        digits = 1 if r.unit in ("% LV", "L/min") else 0
        value = _valid(result, r.key, r.value)
        indexed = _valid(result, r.key, r.indexed)
        flag = text.range_flag(indexed if r.indexed is not None else value, r.range_key)
        idx_unit = r.unit + "/m²"
        shown = f"{_fmt(value, digits)} {r.unit}" if value is not None or r.value is None else "n/a (QC)"
        cells.append((r.label, shown, f"{_fmt(indexed, digits)} {idx_unit}" if indexed is not None else "",
                      _range_text(r.range_key), flag))
        colors.append("#ffd8d8" if flag else "white")
    table = ax.table(cellText=cells or [("no measurement", "", "", "", "")],
                     colLabels=("Measurement", "Value", "Per m² BSA", "Typical", ""),
                     colWidths=(0.37, 0.16, 0.21, 0.17, 0.09), cellLoc="left", bbox=(0, 0, 1, 1))
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    for (r, _c), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        cell.PAD = 0.03
        if r == 0:
            cell.set_facecolor("#e8e8e8")
            cell.set_text_props(fontweight="bold")
        elif r - 1 < len(colors):
            cell.set_facecolor(colors[r - 1])
    fig.text(0.04, 0.325 - height, NORMAL_RANGES_SOURCE, fontsize=5.5, color="0.45", va="top")
    return 0.316 - height


def _wrap(text_: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text_, width))


RISK_NAMES = {
    "lvef_le_35": "LVEF ≤ 35 %",
    "lvef_le_30": "LVEF ≤ 30 %",
    "infarct_size_percent_lv": "Infarct size",
    "mvo_percent_lv": "Microvascular obstruction",
    "gray_zone_g": "Gray zone (peri-infarct)",
    "gray_zone_percent_lv": "Gray zone (peri-infarct)",
    "lv_esv_index": "LV end-systolic volume index",
    "lv_remodeling": "Adverse LV remodeling",
}


def _risk_line(feat) -> tuple[str, str, str]:
    """(marker, headline, colour) of one risk feature."""
    name = RISK_NAMES.get(feat.name, feat.name.replace("_", " ").capitalize())
    unit = feat.unit.replace("% LV myocardium", "% LV").replace("mL/m2", "mL/m²")
    value = f"{_fmt(feat.value, 1)} {unit}"
    if feat.above_threshold is True:
        return "▲", f"{name}: REACHED ({value})", "#b00000"
    if feat.above_threshold is False:
        return "●", f"{name}: not reached ({value})", "0.45"
    return "◆", f"{name}: {value}", "0.15"


def _draw_risk_and_qc(fig, result: CardiacResult, *, qc_top: float) -> None:
    x0, y = 0.55, 0.345
    heading = "Risk features (published evidence; no score)" if text.context(result) == "post_infarction" \
        else "Findings with published thresholds (no score)"
    fig.text(x0, y, heading, fontsize=9, fontweight="bold", va="top")
    fig.text(x0, y - 0.016, "▲ threshold reached   ● not reached   ◆ continuous (effect size)", fontsize=6,
             color="0.4", va="top")
    y -= 0.034
    shown = [f for f in result.risk.features if f.value is not None]
    if not shown:
        fig.text(x0, y, "No risk feature could be measured.", fontsize=7.5, va="top", color="0.4")
    for n_drawn, feat in enumerate(shown):
        mark, headline, color = _risk_line(feat)
        fig.text(x0, y, mark, fontsize=8, color=color, va="top")
        fig.text(x0 + 0.02, y, headline, fontsize=7.3, va="top", fontweight="bold", color=color)
        y -= 0.0122
        lines = [_wrap(feat.effect_size, 70)] if feat.effect_size else []
        if feat.interpretation:
            lines.append(_wrap(feat.interpretation, 70))
        lines.append(_short_citation(feat.citation))
        block = "\n".join(lines)
        fig.text(x0 + 0.02, y, block, fontsize=6, va="top", color="0.3")
        y -= 0.0093 * (block.count("\n") + 1) + 0.0045
        if y < qc_top + 0.06 and n_drawn + 1 < len(shown):
            fig.text(x0 + 0.02, y, f"{len(shown) - n_drawn - 1} more in report.json", fontsize=6, va="top",
                     color="0.4")
            break
    # QC in plain words
    y_qc = qc_top
    fig.text(0.04, y_qc, "Quality control", fontsize=9, fontweight="bold", va="top")
    # errors first: what makes a value invalid is what the page must show when space runs out
    issues = sorted((q for q in result.qc if q.severity in ("warning", "error")), key=lambda q: q.severity != "error")
    qc_lines = [(("✖ " if q.severity == "error" else "! ") + q.message,
              "#b00000" if q.severity == "error" else "#a06000") for q in issues]
    qc_lines += [("! " + w, "#a06000") for w in result.warnings if w not in {q.message for q in issues}]
    if not qc_lines:
        qc_lines = [("✔ No quality problem found: every slice segmented, every value plausible.", "#006000")]
    y_qc -= 0.018
    shown_qc = 0
    for line, color in qc_lines:
        block = _wrap(line, 140)
        if y_qc - 0.011 * (block.count("\n") + 1) < 0.05:
            break
        fig.text(0.04, y_qc, block, fontsize=7, color=color, va="top")
        y_qc -= 0.011 * (block.count("\n") + 1)
        shown_qc += 1
    if shown_qc < len(qc_lines):
        fig.text(0.04, y_qc, f"... and {len(qc_lines) - shown_qc} more in report.json", fontsize=7, color="0.4",
                 va="top")


def write_report_files(result: CardiacResult, out_dir: str | Path, *, study_date: str | None = None,
                       stem: str = "report", patient: text.PatientIdentity | None = None) -> tuple[Path, Path]:
    """Render the report and write ``<stem>.pdf`` and ``<stem>.png`` (atomically) into ``out_dir``.

    The patient identification on the page comes from ``patient`` or else from one source DICOM header of the
    result (:func:`~zeroclick.pipelines.cardiac.report_text.patient_identity`).

    Returns
    -------
    tuple of pathlib.Path
        ``(pdf_path, png_path)``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pdf_bytes, png_bytes = _render_bytes(result, study_date=study_date,
                                         patient=patient or text.patient_identity(result))
    paths = []
    for suffix, data in ((".pdf", pdf_bytes), (".png", png_bytes)):
        final = out / f"{stem}{suffix}"
        tmp = final.with_name(f".{final.name}.tmp")
        tmp.write_bytes(data)
        tmp.replace(final)
        paths.append(final)
    return paths[0], paths[1]


def _render_bytes(result: CardiacResult, *, study_date: str | None, png: bool = True,
                  patient: text.PatientIdentity | None = None) -> tuple[bytes, bytes]:
    fig = render_report(result, study_date=study_date, patient=patient)
    pdf_buf, png_buf = io.BytesIO(), io.BytesIO()
    # Fixed metadata so the same result gives the same PDF bytes.
    fig.savefig(pdf_buf, format="pdf", metadata={"CreationDate": None, "Creator": f"zeroclick {__version__}",
                                                 "Producer": None})
    if png:
        fig.savefig(png_buf, format="png", dpi=150, metadata={"Software": f"zeroclick {__version__}"})
    return pdf_buf.getvalue(), png_buf.getvalue()


# ------------------------------------------------------------------------------------------ DICOM outputs


def _index_source_headers(uids: set[str], search: Sequence[Path],
                          known_paths: Mapping[str, str] | None = None) -> dict[str, Dataset]:
    """Read the headers of the source instances named by ``uids``.

    ``known_paths`` (SOP Instance UID -> file, recorded by :meth:`zeroclick.imaging.dicom.Series.volume`) is tried first,
    so only the needed files are opened; whatever is still missing (e.g. files of an archive that was extracted
    to a folder that no longer exists) is searched in ``search`` (files, folders or zip files).
    """
    found: dict[str, Dataset] = {}
    for uid, path in (known_paths or {}).items():
        if uid in uids and os.path.isfile(path):
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except Exception:  # noqa: BLE001 - fall back to the folder search below
                continue
            if str(ds.get("SOPInstanceUID", "")) == uid:
                found[uid] = ds
    if len(found) == len(uids):
        return found

    def consider(fp) -> bool:
        try:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - non-DICOM files in the folder are expected
            return False
        uid = str(ds.get("SOPInstanceUID", ""))
        if uid in uids and uid not in found:
            found[uid] = ds
        return len(found) == len(uids)

    for root in search:
        if root.is_file() and zipfile.is_zipfile(root):
            with zipfile.ZipFile(root) as zf:
                for name in zf.namelist():
                    if not name.endswith("/") and consider(io.BytesIO(zf.read(name))):
                        return found
            continue
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for file in files:
            if consider(file):
                return found
    return found


def _frames(mask: Volume, headers: Mapping[str, Dataset]) -> tuple[list[Dataset], np.ndarray]:
    uids = mask.sop_instance_uids
    if uids is None:
        raise InvalidInputError("the mask has no source SOP Instance UIDs: DICOM outputs need DICOM input")
    flat = [str(u) for u in np.asarray(uids).reshape(-1)]
    if len(set(u for u in flat if u)) < len([u for u in flat if u]):
        raise InvalidInputError(
            "several slices of the mask come from one multi-frame image: SEG for enhanced multi-frame "
            "sources is not supported yet; convert the series to single-frame images"
        )
    keep = [i for i, u in enumerate(flat) if u and u in headers]
    if not keep:
        raise InvalidInputError("none of the mask's source images were found: pass source= the DICOM folder")
    return [headers[flat[i]] for i in keep], np.asarray(mask.array)[keep].astype(np.int32)


def write_dicom_outputs(
    result: CardiacResult,
    out_dir: str | Path,
    *,
    source: str | Path | Sequence[str | Path] | None = None,
) -> list[Path]:
    """Write SEG ED, SEG ES, SEG LGE, the TID 1500 SR and the encapsulated PDF report into ``out_dir``.

    Parameters
    ----------
    result
        A result whose masks came from DICOM series (``sop_instance_uids`` filled).
    out_dir
        Folder for the ``.dcm`` files (created). Files: ``seg_ed.dcm``, ``seg_es.dcm``, ``seg_lge.dcm``,
        ``sr.dcm``, ``report_pdf.dcm`` (those whose inputs exist).
    source
        Where the source DICOM files are (folder, file or list); default ``result.source``. Only their
        headers are read.

    Returns
    -------
    list of pathlib.Path
        The files written, in the order above.

    Raises
    ------
    InvalidInputError
        When the result has no DICOM-derived mask, or its source images cannot be found.
    """
    candidates = {"seg_ed": result.masks.cine_ed, "seg_es": result.masks.cine_es, "seg_lge": result.masks.lge}
    masks: dict[str, Volume] = {k: v for k, v in candidates.items() if v is not None and v.sop_instance_uids is not None}
    if not masks:
        raise InvalidInputError(
            "no mask with DICOM source images: DICOM outputs (SEG/SR/PDF) need a DICOM input, not NIfTI"
        )
    wanted = {str(u) for m in masks.values() for u in np.asarray(m.sop_instance_uids).reshape(-1) if u}
    if source is None or isinstance(source, (str, Path)):
        search = [Path(source or result.source)]
    else:
        search = [Path(r) for r in source]
    known: dict[str, str] = {}
    for mask in masks.values():
        known.update(mask.meta.get("source_paths_by_uid") or {})
    headers = _index_source_headers(wanted, search, known)
    missing = len(wanted) - len(headers)
    if missing:
        logger.warning("%d of %d source images were not found; their frames are left out of the SEGs",
                       missing, len(wanted))
    out = Path(out_dir)
    written: list[Path] = []
    segs: dict[str, Dataset] = {}
    sources_used: list[Dataset] = []
    for role, mask in masks.items():
        srcs, labels = _frames(mask, headers)
        specs = LGE_SEGMENTS if role == "seg_lge" else CINE_SEGMENTS
        series_uid = mask.series_instance_uid or str(srcs[0].SeriesInstanceUID)
        phase = "" if role == "seg_lge" else "|".join(str(ds.SOPInstanceUID) for ds in srcs[:1])
        seg = segmentation_from_labels(
            srcs, labels, specs,
            series_instance_uid=derived_uid(series_uid, role, "series"),
            sop_instance_uid=derived_uid(series_uid, role, phase, "instance"),
            series_number=SERIES_NUMBERS[role],
            series_description=SERIES_DESCRIPTIONS[role],
            algorithm_name=ALGORITHM_NAME,
            algorithm_version=__version__,
            content_description=SERIES_DESCRIPTIONS[role],
        )
        segs[role] = seg
        sources_used += srcs
        written.append(save_atomically(seg, out / f"{role}.dcm"))

    study_key = "|".join(sorted(str(s.SeriesInstanceUID) for s in segs.values()))
    groups = _measurement_groups(result, segs)
    if groups:
        try:
            sr = measurement_report(
                groups, source_images=sources_used, procedure_reported=K.CARDIAC_MRI,
                series_instance_uid=derived_uid(study_key, "sr", "series"),
                sop_instance_uid=derived_uid(study_key, "sr", "instance"),
                series_number=SERIES_NUMBERS["sr"], series_description=SERIES_DESCRIPTIONS["sr"],
                algorithm_name=ALGORITHM_NAME, algorithm_version=__version__,
            )
            written.append(save_atomically(sr, out / "sr.dcm"))
        except InvalidInputError as exc:
            logger.warning("no SR written: %s", exc)

    first = sources_used[0]
    pdf_bytes, _ = _render_bytes(result, study_date=str(first.get("StudyDate", "")) or None, png=False,
                                 patient=text.identity_from_dataset(first))
    pdf = encapsulated_pdf(
        pdf_bytes, first,
        series_instance_uid=derived_uid(study_key, "pdf", "series"),
        sop_instance_uid=derived_uid(study_key, "pdf", "instance"),
        series_number=SERIES_NUMBERS["pdf"], series_description=SERIES_DESCRIPTIONS["pdf"],
        document_title="zeroclick cardiac MRI report",
    )
    written.append(save_atomically(pdf, out / "report_pdf.dcm"))
    return written


def _measurement_groups(result: CardiacResult, segs: Mapping[str, Dataset]) -> list[SegmentMeasurements]:
    f, lge = result.function, result.lge
    groups: list[SegmentMeasurements] = []

    def item(code, name, value, unit):
        return MeasurementItem(code, _valid(result, name, value), unit)  # type: ignore[arg-type]

    if f is not None and "seg_ed" in segs:
        ed = segs["seg_ed"]
        groups += [
            SegmentMeasurements(ed, 1, "LV cavity at ED", K.LV, (
                item(K.LV_EDV, "lv_edv_ml", f.lv_edv_ml, K.UNIT_ML),
                item(K.LV_SV, "lv_sv_ml", f.lv_sv_ml, K.UNIT_ML),
                item(K.LV_EF, "lv_ef_percent", f.lv_ef_percent, K.UNIT_PERCENT))),
            SegmentMeasurements(ed, 2, "LV myocardium at ED", K.LV_MYOCARDIUM, (
                item(K.MASS, "myo_mass_ed_g", f.myo_mass_ed_g, K.UNIT_G),)),
            SegmentMeasurements(ed, 3, "RV cavity at ED", K.RV, (
                item(K.RV_EDV, "rv_edv_ml", f.rv_edv_ml, K.UNIT_ML),
                item(K.RV_EF, "rv_ef_percent", f.rv_ef_percent, K.UNIT_PERCENT))),
        ]
    if f is not None and "seg_es" in segs:
        es = segs["seg_es"]
        groups += [
            SegmentMeasurements(es, 1, "LV cavity at ES", K.LV, (item(K.LV_ESV, "lv_esv_ml", f.lv_esv_ml, K.UNIT_ML),)),
            SegmentMeasurements(es, 3, "RV cavity at ES", K.RV, (item(K.RV_ESV, "rv_esv_ml", f.rv_esv_ml, K.UNIT_ML),)),
        ]
    if lge is not None and "seg_lge" in segs:
        sl = segs["seg_lge"]
        groups += [
            SegmentMeasurements(sl, 1, "LV myocardium on LGE", K.LV_MYOCARDIUM, (
                item(K.MASS, "myocardium_mass_g", lge.myocardium_g, K.UNIT_G),)),
            SegmentMeasurements(sl, 2, "Infarct incl. MVO", K.INFARCT, (
                item(K.MASS, "infarct_g", lge.infarct_g, K.UNIT_G),
                item(K.VOLUME, "infarct_ml", lge.infarct_ml, K.UNIT_ML),
                item(K.INFARCT_PERCENT_OF_LV, "infarct_percent_of_myocardium", lge.infarct_percent_of_myocardium,
                     K.UNIT_PERCENT))),
            SegmentMeasurements(sl, 3, "MVO", K.MVO, (
                item(K.VOLUME, "mvo_ml", lge.mvo_ml, K.UNIT_ML),
                item(K.MVO_PERCENT_OF_LV, "mvo_percent_of_myocardium", lge.mvo_percent_of_myocardium,
                     K.UNIT_PERCENT))),
        ]
    t1 = result.t1
    if t1 is not None and lge is not None and "seg_lge" in segs:  # issue 17: measured on the T1 maps (no T1 SEG)
        def pct(v: float | None) -> float | None:
            return None if v is None else 100.0 * v

        groups.append(SegmentMeasurements(segs["seg_lge"], 1, "LV myocardium T1 and ECV (T1 maps)", K.LV_MYOCARDIUM, (
            item(K.NATIVE_T1, "native_t1_remote_ms", t1.native_t1_remote_ms, K.UNIT_MS),
            item(K.POST_T1, "post_t1_remote_ms", t1.post_t1_remote_ms, K.UNIT_MS),
            item(K.ECV, "ecv_remote_fraction", pct(t1.ecv_remote_fraction), K.UNIT_PERCENT))))
        groups.append(SegmentMeasurements(segs["seg_lge"], 2, "Infarct T1 and ECV (T1 maps)", K.INFARCT, (
            item(K.NATIVE_T1_INFARCT, "native_t1_infarct_ms", t1.native_t1_infarct_ms, K.UNIT_MS),
            item(K.ECV_INFARCT, "ecv_infarct_fraction", pct(t1.ecv_infarct_fraction), K.UNIT_PERCENT))))
    return groups
