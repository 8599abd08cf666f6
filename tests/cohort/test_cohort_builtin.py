"""The built-in ``cmr`` kind: a missing pipeline is a clear error; a real exam goes through the cohort runner."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from cohort_fakes import make_cohort

from zeroclick.pipelines.cohort import run_cohort
from zeroclick.pipelines.cohort.builtin import cmr_load, slide_load
from zeroclick.pipelines.cohort.kinds import PipelineUnavailableError


def test_missing_cardiac_pipeline_is_a_named_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeroclick.pipelines.cardiac", None)  # import now raises ImportError
    with pytest.raises(PipelineUnavailableError, match="zeroclick cmr --help"):
        cmr_load("cpu")


def test_missing_histology_pipeline_is_a_named_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "zeroclick.pipelines.histology", None)
    with pytest.raises(PipelineUnavailableError, match="zeroclick slide --help"):
        slide_load("cpu")


def test_cli_exit_code_5_when_the_pipeline_cannot_load(tmp_path, run_cli, fake_kind, monkeypatch):
    inputs = make_cohort(tmp_path / "in", 2)
    monkeypatch.setenv("COHORT_FAKE_LOAD_FAILS", "1")
    code, _, err = run_cli("cohort", "fake", str(inputs), "--out", str(tmp_path / "out"))
    assert code == 5 and "pip install fake-pipeline" in err


@pytest.fixture(scope="module")
def weights_ready() -> None:
    from zeroclick.weights import store

    if any(s.state != "ok" for s in store.status()):
        pytest.skip("weights not fetched: run `zeroclick weights fetch` once (tests never download)")


@pytest.mark.slow
def test_real_lge_case_and_an_empty_exam_through_the_cmr_cohort(tmp_path, shared_data: Path, weights_ready):
    cohort = tmp_path / "cohort.csv"
    (tmp_path / "empty").mkdir()
    cohort.write_text(f"id,path\nemidec-p087,{shared_data / 'cmr' / 'emidec' / 'Case_P087.nii.gz'}\nempty,empty\n")
    run = run_cohort("cmr", [cohort], tmp_path / "out", device="cpu")
    rows = {r.id: r for r in run.rows}
    assert rows["empty"].status == "failed" and rows["empty"].error.startswith("InvalidInputError")
    ok = rows["emidec-p087"]
    assert ok.status == "ok", ok.error
    assert "emidec-p087/report.json" in ok.outputs and "emidec-p087/masks/lge_labels.nii.gz" in ok.outputs
    assert "myopari-tiramisu-emidec" in ok.weights_id
    report = json.loads((tmp_path / "out" / "emidec-p087" / "report.json").read_text())
    reference = json.loads((shared_data / "cmr" / "reference.json").read_text())["emidec_P087"]["model_reference"]
    assert ok.summary["infarct_percent_of_myocardium"] == report["measurements"]["infarct_percent_of_myocardium"]
    # the cohort path gives what the published weights give on this case
    assert report["measurements"]["myocardium_ml"] == pytest.approx(reference["myocardium_ml"], rel=0.01)


def test_real_dicom_slide_and_a_broken_svs_through_the_slide_cohort(tmp_path, shared_data: Path):
    slides = tmp_path / "slides"
    slides.mkdir()
    (slides / "tiny.dcm").symlink_to(shared_data / "slides" / "highdicom_sm_image.dcm")
    (slides / "broken.svs").write_bytes((shared_data / "slides" / "CMU-1-Small-Region.svs").read_bytes()[:5000])
    run = run_cohort("slide", [slides], tmp_path / "out", device="cpu")
    rows = {r.id: r for r in run.rows}
    assert rows["broken.svs"].status == "failed" and "OpenSlide" in rows["broken.svs"].error
    ok = rows["tiny.dcm"]
    assert ok.status == "ok", ok.error
    assert ok.weights_id == "classical:no-weights"
    features = json.loads((tmp_path / "out" / "tiny.dcm" / "result.json").read_text())
    assert ok.summary["nuclei_count"] == features["nuclei_count"]
    assert all((tmp_path / "out" / o).is_file() for o in ok.outputs)


def test_cmr_workers_use_their_share_of_the_cores(monkeypatch, weights_ready):
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what the runner gives each of K workers on K cores
    try:
        context = cmr_load("cpu")
        assert context.cine_segmenter.engine.num_threads == 1
        assert context.lge_segmenter.engine is context.cine_segmenter.engine  # one engine, weights loaded once
    finally:
        torch.set_num_threads(before)
