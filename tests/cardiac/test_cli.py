"""``zeroclick cmr`` exit codes and outputs, with the network replaced by an exact intensity look-up."""

import json

import pytest

import zeroclick.pipelines.cardiac.segmentation as segmentation
from tests.cardiac.phantom import LutSegmenter, cine_phantom, write_acdc_folder


@pytest.fixture
def lut_network(monkeypatch):
    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: LutSegmenter(4))
    monkeypatch.setattr(segmentation, "LgeSegmenter", lambda *a, **k: LutSegmenter(5))


def test_cmr_on_acdc_folder_writes_reference_keys(tmp_path, run_cli, lut_network):
    labels = cine_phantom()
    case = write_acdc_folder(tmp_path / "patient900", labels, ed=0, es=6)
    code, out, err = run_cli("cmr", str(case), "--out", str(tmp_path / "out"), "--json", "--device", "cpu")
    assert code == 0, err
    report = json.loads(out)
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text())
    assert on_disk["measurements"] == report["measurements"]
    m = report["measurements"]
    assert m["lv_edv_ml"] == pytest.approx((labels[0] == 3).sum() * 0.008)
    assert m["lv_esv_ml"] == pytest.approx((labels[6] == 3).sum() * 0.008)
    assert m["rv_edv_ml"] == pytest.approx((labels[0] == 1).sum() * 0.008)
    assert m["myo_mass_ed_g"] == pytest.approx((labels[0] == 2).sum() * 0.008 * 1.05)
    assert m["bsa_m2"] == pytest.approx(2.0)
    assert report["phases"]["method"] == "given" and report["phases"]["es_phase"] == 6
    assert (tmp_path / "out" / "masks" / "cine_es_labels.nii.gz").is_file()
    run_meta = json.loads((tmp_path / "out" / "run.json").read_text())
    assert run_meta["provenance"]["input_kind"] == "acdc"

    code, out, err = run_cli("cmr", str(case), "--out", str(tmp_path / "again"), "--json",
                             "--prior", str(tmp_path / "out" / "report.json"))
    assert code == 0, err
    features = {f["name"]: f for f in json.loads(out)["risk"]["features"]}
    assert features["lv_edv_rise_percent"]["value"] == pytest.approx(0.0)
    assert features["adverse_lv_remodeling"]["above_threshold"] is False


def test_cmr_all_phases_on_acdc_frames_keeps_the_given_phases(tmp_path, run_cli, lut_network):
    case = write_acdc_folder(tmp_path / "p", cine_phantom(), ed=0, es=6)
    code, out, err = run_cli("cmr", str(case), "--out", str(tmp_path / "out"), "--json", "--all-phases")
    assert code == 0, err
    phases = json.loads(out)["phases"]
    assert (phases["method"], phases["ed_phase"], phases["es_phase"]) == ("given", 0, 6)


def test_cmr_failure_exit_3_with_reason_in_report(tmp_path, run_cli):
    code, out, err = run_cli("cmr", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "out"))
    assert code == 3
    assert "no such file" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["status"] == "failed" and "no such file" in report["failure_reason"]


def test_cmr_dicom_outputs_on_nifti_input_is_partial(tmp_path, run_cli, lut_network):
    case = write_acdc_folder(tmp_path / "p", cine_phantom(), ed=0, es=6)
    code, out, err = run_cli("cmr", str(case), "--out", str(tmp_path / "out"), "--dicom")
    assert code == 4
    assert "DICOM" in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["outputs"]["errors"] and report["measurements"]["lv_edv_ml"] > 0


def test_cmr_send_needs_a_proper_destination(tmp_path, run_cli):
    code, _, err = run_cli("cmr", str(tmp_path), "--out", str(tmp_path / "o"), "--send", "nonsense")
    assert code == 2 and "AET@HOST:PORT" in err
    assert not (tmp_path / "o" / "report.json").exists()


def test_issue_13_cmr_report_flag_writes_pdf_and_png(tmp_path, run_cli, lut_network):
    case = write_acdc_folder(tmp_path / "p", cine_phantom(), ed=0, es=6)
    code, out, err = run_cli("cmr", str(case), "--out", str(tmp_path / "out"), "--report")
    assert code == 0, err
    pdf, png = tmp_path / "out" / "report.pdf", tmp_path / "out" / "report.png"
    assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes().startswith(b"\x89PNG")
    code, out, err = run_cli("cmr", str(case), "--out", str(tmp_path / "plain"))
    assert code == 0 and not (tmp_path / "plain" / "report.pdf").exists()  # only when asked (render ~1-2 s)
