"""Risk features, each with its published threshold or effect size and citation, worded for what the exam shows.

No composite score is computed: the features are reported side by side for the cardiologist, with the
evidence that makes each one matter. A feature whose inputs are missing has ``value=None``.

Post-infarction evidence (infarct size, MVO, gray zone, LVESVI after MI, the CAD-only LVEF <= 30% ICD
recommendation) is attached only when the LGE analysis found infarct-labelled myocardium (>= 1% of the LV,
:data:`POST_INFARCTION_MIN_PERCENT`). Otherwise the LVEF <= 35% feature is worded without an aetiology: the ESC 2022
recommendation differs between ischaemic (class I) and non-ischaemic (class IIa) disease, and a cine-only exam,
or LGE without infarct-type enhancement, does not establish an infarct.
"""

from __future__ import annotations

from zeroclick.pipelines.cardiac.result import FunctionResult, LgeResult, RiskFeature, RiskFeatures

ESC_2022_VA = (
    "Zeppenfeld K et al. 2022 ESC Guidelines for the management of patients with ventricular arrhythmias and "
    "the prevention of sudden cardiac death. Eur Heart J 2022;43:3997-4126"
)
STONE_2016 = (
    "Stone GW et al. Relationship between infarct size and outcomes following primary PCI: patient-level "
    "analysis from 10 randomized trials. J Am Coll Cardiol 2016;67:1674-1683"
)
DE_WAHA_2017 = (
    "de Waha S et al. Relationship between microvascular obstruction and adverse events following primary PCI "
    "for ST-segment elevation myocardial infarction: an individual patient data pooled analysis from seven "
    "randomized trials. Eur Heart J 2017;38:3502-3510"
)
YAN_2006 = (
    "Yan AT et al. Characterization of the peri-infarct zone by contrast-enhanced cardiac magnetic resonance "
    "imaging is a powerful predictor of post-myocardial infarction mortality. Circulation 2006;114:32-39"
)
WHITE_1987 = (
    "White HD et al. Left ventricular end-systolic volume as the major determinant of survival after recovery "
    "from myocardial infarction. Circulation 1987;76:44-51"
)
BULLUCK_2020 = (
    "Bulluck H et al. Redefining adverse and reverse left ventricular remodeling by cardiovascular magnetic "
    "resonance following ST-segment-elevation myocardial infarction and their implications on long-term "
    "prognosis. Circ Cardiovasc Imaging 2020;13:e009937"
)

REMODELING_RISE_PERCENT = 12.0
POST_INFARCTION_MIN_PERCENT = 1.0
ESV_INDEX_THRESHOLD_ML_PER_M2 = 40.0


def _le(value: float | None, limit: float) -> bool | None:
    return None if value is None else bool(value <= limit)


def _ge(value: float | None, limit: float) -> bool | None:
    return None if value is None else bool(value >= limit)


def _rise_percent(now: float | None, before: float | None) -> float | None:
    if now is None or before is None or before <= 0:
        return None
    return (now - before) / before * 100.0


def compute_risk(
    function: FunctionResult | None,
    lge: LgeResult | None,
    *,
    prior_measurements: dict[str, float | None] | None = None,
    invalid: set[str] | frozenset[str] = frozenset(),
) -> RiskFeatures:
    """Risk features from this exam (and ``prior_measurements`` from an earlier report.json, for remodeling).

    ``invalid`` names measurements that QC declared not valid: features built on them get ``value=None``.
    """

    def ok(name: str, value: float | None) -> float | None:
        return None if name in invalid else value

    ef = None if function is None else ok("lv_ef_percent", function.lv_ef_percent)
    esvi = None if function is None else ok("lv_esv_ml", function.lv_esv_index_ml_per_m2)
    infarct = None if lge is None else ok("infarct_percent_of_myocardium", lge.infarct_percent_of_myocardium)
    mvo = None if lge is None else ok("mvo_percent_of_myocardium", lge.mvo_percent_of_myocardium)
    gray = None if lge is None else ok("infarct_percent_of_myocardium", lge.gray_zone_g)
    post_mi = infarct is not None and infarct >= POST_INFARCTION_MIN_PERCENT
    if post_mi:
        features = [
            RiskFeature("lvef_le_35", ef, "%", _le(ef, 35.0), "LVEF <= 35%",
                        "ICD for primary prevention in ischaemic heart disease with LVEF <= 35% despite >= 3 months "
                        "of optimal medical therapy, NYHA II-III (class I)", ESC_2022_VA,
                        "re-assess LVEF >= 6-12 weeks after the infarct before deciding"),
            RiskFeature("lvef_le_30", ef, "%", _le(ef, 30.0), "LVEF <= 30%",
                        "ICD should be considered in coronary artery disease with LVEF <= 30% in NYHA I despite "
                        ">= 3 months of optimal medical therapy (class IIa)", ESC_2022_VA),
            RiskFeature("infarct_size_percent_lv", infarct, "% LV myocardium", None, "continuous",
                        "HR 1.19 for 1-year all-cause death per +5% of LV mass infarcted", STONE_2016),
            RiskFeature("mvo_percent_lv", mvo, "% LV myocardium", None, "continuous",
                        "HR 1.14 for 1-year all-cause death per +1% of LV mass with MVO", DE_WAHA_2017),
            RiskFeature("gray_zone_g", gray, "g", None, "continuous (definition in lge.gray_zone_definition)",
                        "peri-infarct zone size independently associated with post-MI all-cause mortality", YAN_2006),
            RiskFeature("lv_esv_index", esvi, "mL/m2", _ge(esvi, ESV_INDEX_THRESHOLD_ML_PER_M2),
                        f"LVESVI >= {ESV_INDEX_THRESHOLD_ML_PER_M2:g} mL/m2",
                        "end-systolic volume was the major determinant of survival after myocardial infarction",
                        WHITE_1987, "needs height and weight (BSA)"),
        ]
    else:
        why = "no LGE series" if lge is None else "no infarct-type enhancement on LGE"
        features = [
            RiskFeature("lvef_le_35", ef, "%", _le(ef, 35.0), "LVEF <= 35%",
                        "primary-prevention ICD with LVEF <= 35% despite >= 3 months of optimal medical therapy, "
                        "NYHA II-III: class I in ischaemic, class IIa in non-ischaemic cardiomyopathy", ESC_2022_VA,
                        f"aetiology not established by this exam ({why}); confirm LVEF after >= 3 months of "
                        "optimal medical therapy before deciding"),
        ]
        if lge is not None:
            features += [
                RiskFeature("infarct_size_percent_lv", infarct, "% LV myocardium", None, "continuous",
                            "no infarct-type enhancement detected (below 1% of LV myocardium)", STONE_2016),
            ]
    if prior_measurements is not None and function is not None:
        d_edv = _rise_percent(ok("lv_edv_ml", function.lv_edv_ml), prior_measurements.get("lv_edv_ml"))
        d_esv = _rise_percent(ok("lv_esv_ml", function.lv_esv_ml), prior_measurements.get("lv_esv_ml"))
        adverse = None if d_edv is None or d_esv is None else bool(
            d_edv >= REMODELING_RISE_PERCENT and d_esv >= REMODELING_RISE_PERCENT)
        for name, value in (("lv_edv_rise_percent", d_edv), ("lv_esv_rise_percent", d_esv)):
            features.append(RiskFeature(name, value, "% vs prior exam", _ge(value, REMODELING_RISE_PERCENT),
                                        f">= {REMODELING_RISE_PERCENT:g}% rise", "component of adverse remodeling",
                                        BULLUCK_2020))
        features.append(RiskFeature(
            "adverse_lv_remodeling", None if adverse is None else float(adverse), "yes=1/no=0", adverse,
            f">= {REMODELING_RISE_PERCENT:g}% rise in both LV EDV and ESV vs the prior exam",
            "adverse remodeling by this definition was associated with worse long-term outcome", BULLUCK_2020))
    return RiskFeatures(tuple(features))
