"""Quantification on the generator's exact truth masks (issue 4 'must show'): DICOM in, truth labels injected
in place of the network, numbers vs ground_truth.json."""

import json

import numpy as np
import pytest

from tests.cardiac.phantom import TruthSegmenter
from zeroclick.pipelines.cardiac import run
from zeroclick.pipelines.cardiac.inputs import load_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exam(tmp_path_factory):
    from zeroclick.imaging.synthetic.cmr import generate_exam, load_truth

    out = tmp_path_factory.mktemp("cmr-exam") / "exam"
    generate_exam(out, n_images=400, seed=1)
    truth = load_truth(out)
    case = load_case(out / "dicom")
    gt = json.loads((out / "ground_truth.json").read_text())
    return case, truth, gt


def _segmenters(case, truth):
    return {"cine_segmenter": TruthSegmenter(case.cine, truth["cine_sax"].array.astype(np.uint8)),
            "lge_segmenter": TruthSegmenter(case.lge, truth["lge"].array.astype(np.uint8))}


def test_truth_masks_reproduce_the_analytic_figures(exam):
    case, truth, gt = exam
    np.testing.assert_allclose(truth["cine_sax"].affine, case.cine.affine, atol=1e-4)
    result = run(case, **_segmenters(case, truth))
    assert result.status == "ok", [q.message for q in result.qc]
    m = result.measurements
    for key in ("lv_edv_ml", "lv_esv_ml", "rv_edv_ml", "rv_esv_ml", "myo_mass_ed_g", "infarct_ml"):
        assert m[key] == pytest.approx(gt[key], rel=0.01), key
    for key in ("lv_ef_percent", "rv_ef_percent", "infarct_percent_of_myocardium", "mvo_percent_of_myocardium"):
        assert m[key] == pytest.approx(gt[key], abs=1.0), key
    assert m["myocardium_ml"] == pytest.approx(gt["lge_myocardium_ml"], rel=0.01)
    # MVO is a narrow core of ~0.5 mL (a few dozen voxels per slice): the voxelised truth differs from the
    # analytic value by up to ~6% (0.03 mL), so compare in mL there; the pipeline's voxel counts are exact
    assert m["mvo_ml"] == pytest.approx(gt["label_figures"]["mvo_ml"], rel=1e-6)
    assert m["mvo_ml"] == pytest.approx(gt["mvo_ml"], abs=0.1)
    assert (result.phases.ed_phase, result.phases.es_phase) == (gt["ed_phase"], gt["es_phase"])
    assert result.function.bsa_m2 == pytest.approx(np.sqrt(gt["patient_height_m"] * 100 * gt["patient_weight_kg"] / 3600))
    assert result.function.heart_rate_bpm == pytest.approx(gt["heart_rate_bpm"], rel=0.01)


def test_segment_transmurality_matches_truth(exam):
    case, truth, gt = exam
    result = run(case, **_segmenters(case, truth))
    got = result.lge.segment_transmurality_percent
    labels_truth = gt["label_figures"]["segment_transmurality_percent"]
    analytic = gt["segment_transmurality_percent"]
    for s in range(1, 17):
        # within 1.6 points of the truth voxels (their angles are the phantom's about the truth centroid, ours come
        # from the cine insertion points, <= 1 deg apart here: where an infarct edge lies on a sector boundary of
        # a large apical slice, 1 deg moves ~1.5 points); the voxelised truth itself is up to 1.5 points off the
        # analytic value
        assert got[s] == pytest.approx(labels_truth[str(s)], abs=1.6), s
        assert got[s] == pytest.approx(analytic[str(s)], abs=2.0), s


def test_phase_search_agrees_with_all_phase_run(exam):
    case, truth, gt = exam
    fast = run(case, **_segmenters(case, truth))
    full = run(case, all_phases=True, **_segmenters(case, truth))
    assert full.phases.method == "all_phases"
    assert (fast.phases.ed_phase, fast.phases.es_phase) == (full.phases.ed_phase, full.phases.es_phase)
    assert fast.provenance.slices_inferred * 3 < full.provenance.slices_inferred
    assert full.function.lv_volume_curve_ml == pytest.approx(gt["lv_volume_curve_ml"], rel=0.02)


def test_cli_dicom_outputs_on_generated_exam(exam, tmp_path, monkeypatch, run_cli):
    """``zeroclick cmr DICOM --dicom``: SEG/SR/PDF written next to report.json (network replaced by the truth)."""
    import zeroclick.pipelines.cardiac.segmentation as segmentation

    case, truth, gt = exam
    segs = _segmenters(case, truth)
    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: segs["cine_segmenter"])
    monkeypatch.setattr(segmentation, "LgeSegmenter", lambda *a, **k: segs["lge_segmenter"])
    out = tmp_path / "out"
    code, stdout, err = run_cli("cmr", case.source, "--out", str(out), "--dicom", "--device", "cpu")
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"]["errors"] == []
    names = {p.split("/")[-1] for p in report["outputs"]["dicom"]}
    assert {"seg_ed.dcm", "seg_es.dcm", "seg_lge.dcm", "sr.dcm"} <= names
    assert report["measurements"]["lv_edv_ml"] == pytest.approx(gt["lv_edv_ml"], rel=0.01)
    assert report["series"][0]["series_instance_uid"] == case.cine.series_instance_uid


@pytest.mark.pacs
def test_cli_send_stores_every_output_in_a_scp(exam, tmp_path, monkeypatch, run_cli):
    """``zeroclick cmr DICOM --send AET@HOST:PORT``: every SEG/SR/PDF reaches a Storage SCP on loopback."""
    import socket
    import threading

    from pydicom.uid import AllTransferSyntaxes
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    import zeroclick.pipelines.cardiac.segmentation as segmentation

    case, truth, gt = exam
    segs = _segmenters(case, truth)
    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: segs["cine_segmenter"])
    monkeypatch.setattr(segmentation, "LgeSegmenter", lambda *a, **k: segs["lge_segmenter"])
    received: list[str] = []
    lock = threading.Lock()

    def on_store(event):
        with lock:
            received.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = AE(ae_title="DEST")
    for cx in AllStoragePresentationContexts:
        ae.add_supported_context(cx.abstract_syntax, AllTransferSyntaxes)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        out = tmp_path / "out"
        code, _, err = run_cli("cmr", case.source, "--out", str(out), "--send", f"DEST@127.0.0.1:{port}")
    finally:
        server.shutdown()
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["outputs"]["send_result"]["failed"] == []
    assert report["outputs"]["send_result"]["stored"] == len(report["outputs"]["dicom"]) == len(received) >= 4
