"""Issue 11: ``zeroclick validate cmr`` / ``pipelines.cardiac.validate`` on generated labelled cases (known answer)
and on the shared real labelled cases (ACDC test patients, Sunnybrook GE DICOM with manual contours)."""

import csv
import json

import nibabel as nib
import numpy as np
import pytest

from tests.cardiac.real_weights import weights_or_skip
from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.cardiac import validate
from zeroclick.pipelines.cardiac.inputs import nifti_to_volume
from zeroclick.pipelines.cardiac.validate import agreement
from zeroclick.pipelines.cardiac.validate_cases import find_cases

SPACING = (1.5, 1.5, 8.0)  # NIfTI x, y, z (mm)
VOXEL_ML = 1.5 * 1.5 * 8.0 / 1000.0


def _labels(n=6, radii=(7, 8, 8, 7, 5, 3), size=40):
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(yy - 20, xx - 20)
    lab = np.zeros((n, size, size), np.uint8)
    for s, r in enumerate(radii):
        lab[s][(np.abs(yy - 20) < 5) & (xx >= 20 + r + 3) & (xx < 20 + r + 11)] = 1
        lab[s][d < r + 3] = 2
        lab[s][d < r] = 3
    return lab


def _save(array_zyx, path):
    img = nib.Nifti1Image(array_zyx.transpose(2, 1, 0), np.diag([*SPACING, 1.0]))
    img.header.set_zooms(SPACING)
    nib.save(img, str(path))


def _acdc_case(root, name, seed, es_radii):
    case = root / name
    case.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for frame, radii in ((1, (7, 8, 8, 7, 5, 3)), (9, es_radii)):
        lab = _labels(radii=radii)
        image = (lab * 60 + rng.integers(5, 30, lab.shape)).astype(np.int16)
        _save(image, case / f"{name}_frame{frame:02d}.nii.gz")
        _save(lab, case / f"{name}_frame{frame:02d}_gt.nii.gz")
    (case / "Info.cfg").write_text("ED: 1\nES: 9\nGroup: NOR\nHeight: 180\nNbFrame: 20\nWeight: 80\n")
    return case


class _TruthSegmenter:
    """Returns the manual labels of the image it is given, except the LV cavity of ``drop`` = (case, slice) at ES."""

    provenance = {"weights_id": "truth"}

    def __init__(self, root, drop=None):
        self.by_image = {}
        for gt in sorted(root.rglob("*_gt.nii.gz")):
            image = nifti_to_volume(str(gt).replace("_gt", "")).array
            lab = nifti_to_volume(gt).array.astype(np.uint8)
            if drop and gt.name.startswith(drop[0]) and "frame09" in gt.name:
                lab = lab.copy()
                lab[drop[1]][lab[drop[1]] == 3] = 0
            self.by_image[image.tobytes()] = lab
        self.calls = 0

    def segment_cached(self, items, cache):
        self.calls += len(items)
        return [self.by_image[np.asarray(vol.array).tobytes()] for _, vol, _ in items]


def test_validate_known_answer_on_generated_acdc_cases(tmp_path):
    data = tmp_path / "cohort"
    _acdc_case(data, "caseA", 1, (6, 6, 6, 5, 3, 2))
    _acdc_case(data, "caseB", 2, (6, 6, 6, 5, 3, 2))
    seg = _TruthSegmenter(data, drop=("caseB", 2))
    result = validate(data, out=tmp_path / "out", volume_rule="reference", cine_segmenter=seg)
    a, b = result.cases
    assert (a.case_id, b.case_id) == ("caseA", "caseB")
    assert a.dice == pytest.approx({k: 1.0 for k in a.dice}) and set(a.dice) >= {"lv_ed", "lv_es", "myo_ed", "rv_es"}
    assert a.hd95_mm["lv_es"] == pytest.approx(0.0)
    # caseB: the LV cavity of ES slice 2 (radius 6 disc) is missing -> ESV low by exactly its voxels
    yy, xx = np.mgrid[:40, :40]
    missing_ml = np.count_nonzero(np.hypot(yy - 20, xx - 20) < 6) * VOXEL_ML
    assert b.pipeline["lv_esv_ml"] - b.manual["lv_esv_ml"] == pytest.approx(-missing_ml)
    edv, esv = b.manual["lv_edv_ml"], b.manual["lv_esv_ml"]
    ef_error = ((edv - esv + missing_ml) / edv - (edv - esv) / edv) * 100
    ef = result.agreement["lv_ef_percent"]
    assert (ef.n_cases, ef.worst_case) == (2, "caseB")
    assert ef.bias == pytest.approx(ef_error / 2) and ef.worst_abs_error == pytest.approx(ef_error)
    assert b.dice["lv_es"] < 1.0 and b.dice["lv_ed"] == pytest.approx(1.0)
    # outputs: one CSV row per case, a JSON summary, a PNG
    rows = list(csv.DictReader((tmp_path / "out" / "cases.csv").open()))
    assert [r["case_id"] for r in rows] == ["caseA", "caseB"]
    assert float(rows[1]["pipeline_lv_esv_ml"]) == pytest.approx(b.pipeline["lv_esv_ml"], abs=1e-3)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["agreement"]["lv_ef_percent"]["worst_case"] == "caseB"
    assert (tmp_path / "out" / "bland_altman.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert seg.calls <= 2 * 2 * 2  # run + expert phases per case, served from one cache per case


def test_validate_cli_and_bad_input(tmp_path, run_cli, monkeypatch):
    data = tmp_path / "cohort"
    _acdc_case(data, "caseA", 1, (6, 6, 6, 5, 3, 2))
    seg = _TruthSegmenter(data)
    from zeroclick.pipelines.cardiac import segmentation

    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: seg)
    code, out, _ = run_cli("validate", "cmr", str(data), "--out", str(tmp_path / "o"), "--json",
                           "--volume-rule", "reference")
    assert code == 0
    assert json.loads(out)["agreement"]["lv_ef_percent"]["bias"] == pytest.approx(0.0)
    with pytest.raises(InvalidInputError, match="no labelled case"):
        validate(tmp_path / "o")


def test_agreement_statistics_against_hand_computation():
    a = agreement("x", [("a", 10.0, 8.0), ("b", 5.0, 6.0), ("c", None, 1.0), ("d", 3.0, 3.0)])
    d = np.array([2.0, -1.0, 0.0])
    assert a.n_cases == 3 and a.bias == pytest.approx(d.mean())
    assert a.mean_absolute_error == pytest.approx(1.0)
    assert a.limits_of_agreement_95 == pytest.approx((d.mean() - 1.96 * d.std(ddof=1), d.mean() + 1.96 * d.std(ddof=1)))
    assert (a.worst_case, a.worst_abs_error) == ("a", 2.0)


# --- real labelled data ------------------------------------------------------------------------------------------


def test_sunnybrook_contours_land_on_the_expert_phases_and_slices(shared_data):
    refs = [r for r in find_cases(shared_data / "cmr" / "sunnybrook") if r.case_id == "SCD0000101"]
    if not refs:
        pytest.skip("Sunnybrook SCD0000101 with contours not in the shared data")
    case = refs[0].load()
    # the contour files name images 59.dcm (ED, 19th of 20 trigger times) and 48.dcm (ES, 8th)
    assert (case.ed_index, case.es_index) == (18, 7)
    assert case.has_label("lv_ef_percent") and case.has_label("myo_mass_ed_g") and not case.has_label("rv_ef_percent")
    lv_slices = [s for s in range(case.manual_ed.array.shape[0]) if (case.manual_ed.array[s] == 3).any()]
    assert len(lv_slices) == 9  # nine i-contour files per phase
    # one contour's filled area matches the polygon's own area (shoelace) within the pixel-edge error
    from zeroclick.pipelines.cardiac.validate_cases import read_contour

    pts = read_contour(shared_data / "cmr" / "sunnybrook" / "SCD0000101_contours" / "i-contours" /
                       "IM-0001-0059-icontour-manual.txt")
    shoelace = 0.5 * abs(np.dot(pts[:, 0], np.roll(pts[:, 1], 1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], 1)))
    areas = [int(np.count_nonzero(case.manual_ed.array[s] == 3)) for s in lv_slices]
    assert min(abs(a - shoelace) / shoelace for a in areas) < 0.03


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_issue_11_acdc_basal_es_slices_follow_the_experts(shared_data, tmp_path):
    """Patients 101, 107 and 108: the network labels LV on basal ES slices that the experts left empty (EF off by
    4-24 points when every labelled voxel counts); with the SCMR rule EF is within 3 points of the manual labels'."""
    weights_or_skip("acdc")
    data = shared_data / "cmr" / "acdc_test"
    if not (data / "patient107").is_dir():
        pytest.skip("ACDC test patients not in the shared data")
    result = validate(data, out=tmp_path, cases=["patient101", "patient107", "patient108"], device="cpu")
    for case in result.cases:
        assert not case.error
        assert abs(case.pipeline["lv_ef_percent"] - case.manual["lv_ef_percent"]) <= 3.0, case.case_id
        assert case.dice["lv_es"] >= 0.9 and case.dice["lv_ed"] >= 0.95, case.case_id
    p101 = result.cases[0]
    # the manual labels' own figures for patient 101 (README): LV EDV 222.6, ESV 156.0, EF 29.9
    assert (p101.manual["lv_edv_ml"], p101.manual["lv_esv_ml"], p101.manual["lv_ef_percent"]) == \
        pytest.approx((222.6, 156.0, 29.9), abs=0.1)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_issue_11_sunnybrook_end_to_end_against_the_expert(shared_data):
    """Real GE cine DICOM: automatic ED/ES within one phase of the expert's, EF within 2 points of the manual
    contours' EF at the expert's phases."""
    weights_or_skip("acdc")
    refs = [r for r in find_cases(shared_data / "cmr" / "sunnybrook") if r.case_id == "SCD0000101"]
    if not refs:
        pytest.skip("Sunnybrook SCD0000101 with contours not in the shared data")
    result = validate(shared_data / "cmr" / "sunnybrook", cases=["SCD0000101"], device="cpu")
    (case,) = result.cases
    assert not case.error and case.phase_method.startswith("few_slice_search")
    assert case.ed_phase_error <= 1 and case.es_phase_error <= 1
    assert abs(case.pipeline["lv_ef_percent"] - case.manual["lv_ef_percent"]) <= 2.0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_acdc_patient119_blob_beyond_the_apex_does_not_count(shared_data):
    """Rule 4 on real data: at ED the network labels LV on a slice beyond the apex, off the LV axis, where the
    expert drew nothing; it no longer counts, and every slice the expert labelled still does."""
    weights_or_skip("acdc")
    refs = [r for r in find_cases(shared_data / "cmr") if r.case_id == "patient119"]
    if not refs:
        pytest.skip("ACDC test patient 119 not in the shared data")
    from zeroclick.pipelines.cardiac import run

    case = refs[0].load()
    result = run(case.inputs, device="cpu")
    ed = case.inputs.phase_numbers.index(result.phases.ed_phase) if case.inputs.phase_numbers else result.phases.ed_phase
    assert ed == case.ed_index  # the expert's ED: the manual labels below are those of the same phase
    counted = result.function.counted_slices
    apical = [e for e in counted.excluded if e.phase == "ED" and "apical end slice" in e.reason]
    assert apical, counted.excluded
    manual = np.asarray(case.manual_ed.array)
    for e in apical:
        assert not np.isin(manual[e.slice], (2, 3)).any()
    expert_lv = {int(s) for s in np.flatnonzero(np.isin(manual, (2, 3)).reshape(manual.shape[0], -1).any(1))}
    assert expert_lv <= set(counted.lv_ed) | {e.slice for e in counted.excluded if e.phase == "ED" and "annulus" in e.reason}


def test_report_json_records_the_counted_slices(tmp_path):
    from zeroclick.pipelines.cardiac import run

    data = tmp_path / "cohort"
    case = _acdc_case(data, "caseA", 1, (6, 6, 6, 5, 3, 2))
    seg = _TruthSegmenter(data)
    report = run(case, cine_segmenter=seg).to_dict()
    counted = report["function"]["counted_slices"]
    assert counted["rule"] == "scmr" and report["provenance"]["options"]["volume_rule"] == "scmr"
    # the generated base (slice 0: closed ring, largest cavity) and every other slice count at both phases
    assert counted["lv_ed"] == list(range(6)) and counted["lv_es"] == list(range(6)) and counted["excluded"] == []
    with pytest.raises(InvalidInputError, match="volume rule"):
        run(case, cine_segmenter=seg, volume_rule="simpson")
