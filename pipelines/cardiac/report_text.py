"""Words of the one-page report: patient identification, what the exam shows, and the headline classes.

Everything here is derived from the result's numbers and the typical ranges of
:data:`zeroclick.pipelines.cardiac.report.NORMAL_RANGES`; nothing assumes an indication. Post-infarction wording
is used only when the LGE analysis found infarct-labelled myocardium (:func:`context`).
Patient identifiers are read from a source DICOM header for the page only: never logged, never in report.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: infarct share of LV myocardium (%, valid measurement) from which the report speaks of a post-infarction exam.
POST_INFARCTION_MIN_PERCENT = 1.0

#: Typical adult ranges (SSFP cine), lower-upper, both sexes pooled and rounded from the mean +/- 2 SD
#: tables of Kawel-Boehm N et al., J Cardiovasc Magn Reson 2020;22:87. Approximate: check local
#: sex- and age-specific references before acting on a borderline value.
NORMAL_RANGES: dict[str, tuple[float, float]] = {
    "lv_ef_percent": (57.0, 77.0),
    "lv_edv_index_ml_per_m2": (56.0, 105.0),
    "lv_esv_index_ml_per_m2": (13.0, 38.0),
    "myo_mass_index_g_per_m2": (37.0, 81.0),
    "rv_ef_percent": (47.0, 73.0),
    "rv_edv_index_ml_per_m2": (48.0, 121.0),
    "rv_esv_index_ml_per_m2": (12.0, 54.0),
}
#: LVEF at or below which systolic function is called severely reduced (device-therapy thresholds, ESC 2022).
SEVERE_LVEF_PERCENT = 35.0


def range_flag(value: float | None, key: str | None) -> str:
    """``low``/``high`` against :data:`NORMAL_RANGES`, else ``""`` (also when unknown)."""
    if value is None or key is None or key not in NORMAL_RANGES:
        return ""
    lo, hi = NORMAL_RANGES[key]
    return "low" if value < lo else "high" if value > hi else ""


def ef_colour(ef: float | None) -> str:
    """The one colour rule for LVEF, used by the headline strip and the table alike."""
    if ef is None:
        return "black"
    if ef <= SEVERE_LVEF_PERCENT:
        return "#b00000"
    return "#c07000" if range_flag(ef, "lv_ef_percent") == "low" else "#006000"


def valid(result: Any, name: str, value: float | None) -> float | None:
    """``value`` unless a QC error invalidates the measurement ``name`` (then it is not reported)."""
    if value is None:
        return None
    if any(name in q.affects for q in result.qc_errors):
        return None
    return float(value)


def context(result: Any) -> str:
    """``post_infarction`` (infarct-labelled LGE >= 1% of LV), ``lge_no_infarct``, or ``no_lge``."""
    lge = result.lge
    if lge is None:
        return "no_lge"
    infarct = valid(result, "infarct_percent_of_myocardium", lge.infarct_percent_of_myocardium)
    return "post_infarction" if infarct is not None and infarct >= POST_INFARCTION_MIN_PERCENT else "lge_no_infarct"


def title(result: Any) -> str:
    return {"post_infarction": "Cardiac MRI — function, scar and post-infarction risk features",
            "lge_no_infarct": "Cardiac MRI — function and late gadolinium enhancement",
            "no_lge": "Cardiac MRI — ventricular function"}[context(result)]


def findings(result: Any) -> list[str]:
    """Plain statements of what the numbers show (ranges: Kawel-Boehm 2020), no aetiology claimed."""
    out: list[str] = []
    f = result.function
    if f is not None:
        ef = valid(result, "lv_ef_percent", f.lv_ef_percent)
        edvi = valid(result, "lv_edv_ml", f.lv_edv_index_ml_per_m2)
        mass_i = valid(result, "myo_mass_ed_g", f.myo_mass_index_g_per_m2)
        lv = []
        if range_flag(edvi, "lv_edv_index_ml_per_m2") == "high":
            lv.append(f"dilated (EDVi {edvi:.0f} mL/m²)")
        if ef is not None:
            lo, hi = NORMAL_RANGES["lv_ef_percent"]
            if ef <= SEVERE_LVEF_PERCENT:
                lv.append(f"severely reduced systolic function (LVEF {ef:.0f} %)")
            elif ef < 50:
                lv.append(f"reduced systolic function (LVEF {ef:.0f} %)")
            elif ef < lo:
                lv.append(f"systolic function below the typical range (LVEF {ef:.0f} %; typical {lo:.0f}-{hi:.0f} %)")
            elif ef > hi:
                lv.append(f"systolic function above the typical range (LVEF {ef:.0f} %)")
            else:
                lv.append(f"normal systolic function (LVEF {ef:.0f} %)")
        if range_flag(mass_i, "myo_mass_index_g_per_m2") == "high":
            lv.append(f"increased mass (index {mass_i:.0f} g/m²)")
        if lv:
            out.append("LV: " + ", ".join(lv) + ".")
        rv_ef = valid(result, "rv_ef_percent", f.rv_ef_percent)
        if rv_ef is not None:
            grade = {"low": "reduced", "high": "above the typical range of"}.get(
                range_flag(rv_ef, "rv_ef_percent"), "normal")
            out.append(f"RV: {grade} systolic function (RVEF {rv_ef:.0f} %)." if grade != "above the typical range of"
                       else f"RV: systolic function above the typical range (RVEF {rv_ef:.0f} %).")
        if f.bsa_m2 is None:
            out.append("Height or weight unknown: volumes are not indexed, so dilatation is not graded.")
    lge = result.lge
    if lge is None:
        out.append("No LGE series: myocardial scar was not assessed.")
    else:
        infarct = valid(result, "infarct_percent_of_myocardium", lge.infarct_percent_of_myocardium)
        mvo = valid(result, "mvo_percent_of_myocardium", lge.mvo_percent_of_myocardium)
        if infarct is None:
            out.append("LGE: scar could not be measured (see quality control).")
        elif infarct < POST_INFARCTION_MIN_PERCENT:
            out.append("LGE: no infarct-type enhancement detected by the model.")
        else:
            extra = f", microvascular obstruction {mvo:.1f} % of LV" if mvo else ""
            out.append(f"LGE: infarct-type enhancement in {infarct:.1f} % of LV myocardium{extra}{_magnitude(result)}.")
    return out


def _magnitude(result: Any) -> str:
    """With both LGE reconstructions: the magnitude path's infarct and the slices the LGE network missed (only when
    the two were compared, i.e. the magnitude path passed its QC)."""
    mag = result.lge_magnitude
    if mag is None or mag.infarct_percent_difference_points is None or result.lge is None:
        return ""
    missed = result.lge.network_missed_slices
    note = f"; the LGE network missed slice{'s' if len(missed) > 1 else ''} {', '.join(map(str, missed))}" if missed else ""
    return f" (magnitude path: {mag.infarct_percent_of_myocardium:.1f} %{note})"


@dataclass(frozen=True)
class PatientIdentity:
    """Who the page is about, read from a source DICOM header (shown on the page only)."""

    name: str = ""
    patient_id: str = ""
    birth_date: str = ""
    sex: str = ""
    accession_number: str = ""
    study_date: str = ""

    def lines(self) -> tuple[str, str]:
        name = self.name.replace("^", " ").strip() or "—"
        first = f"Patient: {name}   ID: {self.patient_id or '—'}   Born: {_date(self.birth_date) or '—'}" + \
                (f"   Sex: {self.sex}" if self.sex else "")
        second = f"Accession: {self.accession_number or '—'}   Study date: {_date(self.study_date) or '—'}"
        return first, second


def _date(d: str) -> str:
    d = d.strip()
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else d


def identity_from_dataset(ds: Any) -> PatientIdentity:
    def get(keyword: str) -> str:
        value = ds.get(keyword, "")
        return str(value if value is not None else "").strip()

    return PatientIdentity(name=get("PatientName"), patient_id=get("PatientID"), birth_date=get("PatientBirthDate"),
                           sex=get("PatientSex"), accession_number=get("AccessionNumber"), study_date=get("StudyDate"))


def patient_identity(result: Any) -> PatientIdentity | None:
    """Identity from the header of one source image of the result (``None`` for NIfTI inputs or unreadable files)."""
    import pydicom

    for mask in (result.masks.cine_ed, result.masks.lge, result.masks.cine_es):
        paths = (getattr(mask, "meta", None) or {}).get("source_paths_by_uid") or {}
        for path in list(paths.values())[:3]:
            try:
                return identity_from_dataset(pydicom.dcmread(path, stop_before_pixels=True))
            except Exception:  # noqa: BLE001 - a moved or unreadable file: try the next, else "not identified"
                continue
    return None
