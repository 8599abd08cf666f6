import pytest

from zeroclick.pipelines.cardiac.result import FunctionResult, LgeResult
from zeroclick.pipelines.cardiac.risk import compute_risk


def _function(edv, esv, esvi=None):
    return FunctionResult(lv_edv_ml=edv, lv_esv_ml=esv, lv_sv_ml=edv - esv, lv_ef_percent=(edv - esv) / edv * 100,
                          rv_edv_ml=100, rv_esv_ml=50, rv_sv_ml=50, rv_ef_percent=50, myo_volume_ed_ml=100,
                          myo_mass_ed_g=105, myo_volume_es_ml=100, myo_mass_es_g=105, lv_esv_index_ml_per_m2=esvi)


def _lge(infarct_pct, mvo_pct):
    return LgeResult(myocardium_ml=100, myocardium_g=105, cavity_ml=50, infarct_ml=infarct_pct, infarct_g=0,
                     infarct_percent_of_myocardium=infarct_pct, mvo_ml=mvo_pct, mvo_g=0,
                     mvo_percent_of_myocardium=mvo_pct, gray_zone_g=3.0)


def test_thresholds_effect_sizes_and_citations():
    r = compute_risk(_function(200, 140, esvi=70), _lge(18.0, 2.5))
    assert r.get("lvef_le_35").above_threshold and r.get("lvef_le_30").above_threshold  # EF 30%
    assert r.get("lvef_le_35").value == pytest.approx(30.0)
    assert "Eur Heart J 2022" in r.get("lvef_le_35").citation
    assert r.get("infarct_size_percent_lv").value == 18.0 and "1.19" in r.get("infarct_size_percent_lv").effect_size
    assert "Stone" in r.get("infarct_size_percent_lv").citation
    assert r.get("mvo_percent_lv").value == 2.5 and "1.14" in r.get("mvo_percent_lv").effect_size
    assert r.get("lv_esv_index").above_threshold is True
    assert r.get("adverse_lv_remodeling") is None  # no prior exam
    assert all(f.citation for f in r.features)


def test_missing_inputs_give_none_not_false():
    r = compute_risk(_function(150, 60, esvi=None), _lge(18.0, 2.5))
    assert r.get("lvef_le_35").above_threshold is False
    assert r.get("lv_esv_index").above_threshold is None  # no BSA


def test_issue_13_no_post_infarction_wording_without_infarct():
    """A cine-only exam (ACDC 101-like: dilated, EF 30 %) and an LGE without infarct get no infarct claims."""
    for lge in (None, _lge(0.4, 0.0)):
        r = compute_risk(_function(220, 154, esvi=80), lge)
        names = {f.name for f in r.features}
        assert "lvef_le_35" in names and r.get("lvef_le_35").above_threshold is True
        assert not names & {"lvef_le_30", "lv_esv_index", "mvo_percent_lv", "gray_zone_g"}
        words = " ".join(f"{f.effect_size} {f.interpretation}" for f in r.features).lower()
        assert "after the infarct" not in words and "ischaemic heart disease with" not in words
        assert "non-ischaemic" in r.get("lvef_le_35").effect_size


@pytest.mark.parametrize("edv,esv,adverse", [(115, 57.5, True), (115, 55, False), (110, 60, False)])
def test_remodeling_needs_12_percent_rise_in_both(edv, esv, adverse):
    r = compute_risk(_function(edv, esv), None, prior_measurements={"lv_edv_ml": 100.0, "lv_esv_ml": 50.0})
    assert r.get("adverse_lv_remodeling").above_threshold is adverse
    assert "Bulluck" in r.get("adverse_lv_remodeling").citation
