"""run() end to end with injected ground-truth segmenters: the pipeline logic, not the network."""

import json

import numpy as np
import pytest

from tests.cardiac.phantom import TruthSegmenter, cine_phantom, image_from_labels
from zeroclick.imaging.errors import AnalysisError, InvalidInputError
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac import CaseInputs, run
from zeroclick.pipelines.cardiac.outputs import write_outputs


def _case(with_lge=True, height=1.8, weight=80.0, hr=60.0):
    labels = cine_phantom()
    cine = Volume(image_from_labels(labels), np.diag([8.0, 1.0, 1.0, 1.0]), (8.0, 1.0, 1.0),
                  series_instance_uid="1.2.3.4", sop_instance_uids=np.full(labels.shape[:2], "1.2"))
    lge_labels = None
    lge = None
    if with_lge:
        ed = labels[0]
        lge_labels = np.zeros_like(ed)
        lge_labels[ed == 3] = 1
        lge_labels[ed == 2] = 2
        r, c = np.mgrid[:ed.shape[1], :ed.shape[2]]
        theta = np.degrees(np.arctan2(r - 48, c - 48)) % 360
        lge_labels[(lge_labels == 2) & ((theta > 60) & (theta < 120))[None]] = 3
        lge_labels[:3][(lge_labels[:3] == 3) & ((theta > 80) & (theta < 100))[None]] = 4
        lge = Volume(image_from_labels(lge_labels), np.diag([8.0, 1.0, 1.0, 1.0]), (8.0, 1.0, 1.0),
                     series_instance_uid="1.2.3.5")
    case = CaseInputs(kind="volumes", source="phantom", cine=cine, lge=lge, height_m=height, weight_kg=weight,
                      heart_rate_bpm=hr)
    segs = {"cine_segmenter": TruthSegmenter(cine, labels)}
    if with_lge:
        segs["lge_segmenter"] = TruthSegmenter(lge, lge_labels)
    return case, labels, lge_labels, segs


def test_run_matches_truth_and_all_phase_run(tmp_path):
    case, labels, lge_labels, segs = _case()
    res = run(case, **segs)
    truth_lv = (labels == 3).sum(axis=(1, 2, 3)) * 0.008
    assert res.status == "ok", res.qc
    assert res.phases.method.startswith("few_slice_search")
    assert res.phases.ed_phase == int(np.argmax(truth_lv)) and res.phases.es_phase == int(np.argmin(truth_lv))
    assert res.function.lv_edv_ml == pytest.approx(truth_lv.max())
    assert res.function.lv_esv_ml == pytest.approx(truth_lv.min())
    full = run(case, all_phases=True, cine_segmenter=TruthSegmenter(case.cine, labels),
               lge_segmenter=segs["lge_segmenter"])
    assert (full.phases.ed_phase, full.phases.es_phase) == (res.phases.ed_phase, res.phases.es_phase)
    assert full.provenance.slices_inferred > 2 * res.provenance.slices_inferred
    assert len(full.function.lv_volume_curve_ml) == 16 and full.masks.cine_all.array.shape == labels.shape
    myo = np.isin(lge_labels, (2, 3, 4)).sum()
    assert res.lge.infarct_percent_of_myocardium == pytest.approx(np.isin(lge_labels, (3, 4)).sum() / myo * 100)
    assert res.lge.mvo_percent_of_myocardium == pytest.approx((lge_labels == 4).sum() / myo * 100)
    assert res.lge.segment_transmurality_percent[5] == pytest.approx(100, abs=4)
    assert res.lge.segment_transmurality_percent[1] == 0.0
    assert res.function.lv_co_l_per_min == pytest.approx(res.function.lv_sv_ml * 60 / 1000)
    assert res.risk.get("lvef_le_35").above_threshold is (res.function.lv_ef_percent <= 35)
    assert res.masks.cine_ed.series_instance_uid == "1.2.3.4"
    assert res.provenance.weights[0].weights_id == "ground-truth"

    paths = write_outputs(res, tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    for key in ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "rv_edv_ml", "rv_esv_ml", "myo_mass_ed_g",
                "myocardium_ml", "infarct_ml", "mvo_ml", "infarct_percent_of_myocardium"):
        assert key in report["measurements"], key
    assert report["measurements"]["lv_edv_ml"] == pytest.approx(truth_lv.max())
    assert (tmp_path / "masks" / "cine_ed_labels.nii.gz") in paths
    csv_text = (tmp_path / "measurements.csv").read_text()
    assert csv_text.startswith("name,value,unit\n") and "lv_ef_percent," in csv_text


def test_nifti_masks_round_trip(tmp_path):
    from zeroclick.pipelines.cardiac.inputs import nifti_to_volume

    case, labels, _, segs = _case(with_lge=False)
    res = run(case, **segs)
    write_outputs(res, tmp_path)
    back = nifti_to_volume(tmp_path / "masks" / "cine_ed_labels.nii.gz")
    np.testing.assert_array_equal(back.array.astype(np.uint8), labels[res.phases.ed_phase])
    assert back.spacing_mm == pytest.approx((8.0, 1.0, 1.0))


def test_no_bsa_and_failed_lv_become_qc_flags_not_numbers():
    case, labels, _, segs = _case(with_lge=False, height=None, weight=None, hr=None)
    res = run(case, **segs)
    codes = {q.code for q in res.qc}
    assert {"no_bsa", "no_heart_rate"} <= codes
    assert res.function.lv_edv_index_ml_per_m2 is None and res.function.lv_co_l_per_min is None
    empty = np.zeros_like(labels)
    with pytest.raises(AnalysisError, match="nothing valid"):
        run(case, cine_segmenter=TruthSegmenter(case.cine, empty))


def test_bad_inputs_are_named_errors(tmp_path):
    with pytest.raises(InvalidInputError, match="no such file"):
        run(tmp_path / "missing")
    bad = tmp_path / "x.nii.gz"
    bad.write_bytes(b"not a nifti")
    with pytest.raises(InvalidInputError, match="NIfTI"):
        run(bad)
    acdc = tmp_path / "acdc"
    acdc.mkdir()
    (acdc / "Info.cfg").write_text("ED: 1\nES: 14\n")
    with pytest.raises(InvalidInputError, match="missing"):
        run(acdc)


def test_lge_failure_is_flagged_against_the_cine():
    case, labels, lge_labels, segs = _case()
    broken = np.zeros_like(lge_labels)
    broken[4, 40:46, 40:46] = 3  # a small blob called infarct, a few voxels of myocardium
    broken[4, 46:48, 40:46] = 2
    res = run(case, cine_segmenter=segs["cine_segmenter"], lge_segmenter=TruthSegmenter(case.lge, broken))
    codes = {q.code: q for q in res.qc}
    assert "lge_cine_myocardium_mismatch" in codes and "lge_infarct_implausible" in codes
    assert "infarct_percent_of_myocardium" in codes["lge_cine_myocardium_mismatch"].affects
    assert res.status == "partial"


def test_blank_lge_costs_only_the_lge_part():
    case, labels, _, segs = _case()
    blank = CaseInputs(kind=case.kind, source=case.source, cine=case.cine,
                       lge=case.lge.with_array(np.zeros_like(case.lge.array)), height_m=1.8, weight_kg=80.0)

    class Refuses:
        def segment(self, volume, slices=None):
            raise InvalidInputError("the volume has no positive voxels")

    res = run(blank, cine_segmenter=segs["cine_segmenter"], lge_segmenter=Refuses())
    assert res.status == "partial" and res.lge is None and res.function is not None
    assert any(q.code == "lge_segmentation_failed" for q in res.qc)
    assert "infarct_percent_of_myocardium" in res.to_dict()["measurements_not_valid"]


def test_invalid_measurements_do_not_feed_risk_features():
    case, labels, lge_labels, segs = _case()
    broken = np.zeros_like(lge_labels)
    broken[4, 40:46, 40:46] = 3
    broken[4, 46:48, 40:46] = 2
    res = run(case, cine_segmenter=segs["cine_segmenter"], lge_segmenter=TruthSegmenter(case.lge, broken))
    assert res.lge.infarct_percent_of_myocardium > 75
    assert res.risk.get("infarct_size_percent_lv").value is None
    assert res.risk.get("lvef_le_35").value == pytest.approx(res.function.lv_ef_percent)
