"""write_dicom_outputs on a real CardiacResult: the pipeline run on a generated exam with its truth masks injected
in place of the network (the writers are what is tested here, not the segmentation)."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pipeline_outputs(tmp_path_factory):
    pytest.importorskip("zeroclick.imaging.synthetic.cmr")
    from tests.cardiac.phantom import TruthSegmenter
    from zeroclick.imaging.synthetic.cmr import generate_exam, load_truth
    from zeroclick.pipelines.cardiac import run
    from zeroclick.pipelines.cardiac.inputs import load_case
    from zeroclick.pipelines.cardiac.report import write_dicom_outputs

    exam = tmp_path_factory.mktemp("exam") / "exam"
    generate_exam(exam, n_images=300, seed=2)
    truth = load_truth(exam)
    case = load_case(exam / "dicom")
    result = run(case, cine_segmenter=TruthSegmenter(case.cine, truth["cine_sax"].array.astype(np.uint8)),
                 lge_segmenter=TruthSegmenter(case.lge, truth["lge"].array.astype(np.uint8)))
    paths = write_dicom_outputs(result, exam / "out", source=exam / "dicom")
    return result, truth, paths


def test_pipeline_result_gives_five_clean_objects(pipeline_outputs, dciodvfy_errors):
    result, _, paths = pipeline_outputs
    assert [p.name for p in paths] == ["seg_ed.dcm", "seg_es.dcm", "seg_lge.dcm", "sr.dcm", "report_pdf.dcm"]
    for p in paths:
        assert dciodvfy_errors(p) == [], p.name


def test_pipeline_seg_matches_the_truth_masks_on_their_source_images(pipeline_outputs):
    result, truth, paths = pipeline_outputs
    ed = result.phases.ed_phase
    seg = hd.seg.segread(paths[0])
    uids = [str(u) for u in result.masks.cine_ed.sop_instance_uids]
    lv = seg.get_pixels_by_source_instance(uids, segment_numbers=[1])[..., 0] > 0
    np.testing.assert_array_equal(lv, truth["cine_sax"].array[ed] == 3)
    lge = hd.seg.segread(paths[2])
    lge_uids = [str(u) for u in result.masks.lge.sop_instance_uids]
    infarct = lge.get_pixels_by_source_instance(lge_uids, segment_numbers=[2])[..., 0] > 0
    np.testing.assert_array_equal(infarct, np.isin(truth["lge"].array, (3, 4)))


def test_pipeline_sr_carries_the_result_numbers(pipeline_outputs):
    result, _, paths = pipeline_outputs
    sr = hd.sr.srread(paths[3])
    values = {(g.tracking_identifier, m.name.value): m.value
              for g in sr.content.get_volumetric_roi_measurement_groups() for m in g.get_measurements()}
    assert values[("LV cavity at ED", "10230-1")] == pytest.approx(result.function.lv_ef_percent, abs=1e-6)
    assert values[("LV cavity at ES", "18148-7")] == pytest.approx(result.function.lv_esv_ml, abs=1e-6)
    assert values[("RV cavity at ED", "8818-7")] == pytest.approx(result.function.rv_ef_percent, abs=1e-6)
    assert values[("Infarct incl. MVO", "ZC0001")] == pytest.approx(
        result.lge.infarct_percent_of_myocardium, abs=1e-6)
    assert values[("MVO", "ZC0002")] == pytest.approx(result.lge.mvo_percent_of_myocardium, abs=1e-6)
    source_study = result.series_for("cine_sax").study_instance_uid
    assert source_study
    for p in paths:
        assert pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == source_study, p.name
