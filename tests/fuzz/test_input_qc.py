"""Issues 15 and 18: what the scan knows becomes named QC flags in report.json; output folders never mix runs.

The exam is :mod:`tests.fuzz.cmr_exam` (analytic cine + LGE labels drawn as grey levels), the network a look-up
that returns those labels exactly, so each expected number comes from the labels, not from the code under test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from tests.cardiac.phantom import LutSegmenter
from tests.fuzz import cmr_exam

FUNCTION_KEYS = ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent")


@pytest.fixture
def lut_network(monkeypatch):
    import zeroclick.pipelines.cardiac.segmentation as segmentation

    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: LutSegmenter(4))
    monkeypatch.setattr(segmentation, "LgeSegmenter", lambda *a, **k: LutSegmenter(5))


def _cmr(run_cli, exam: Path, out: Path, *extra: str) -> tuple[int, dict, str]:
    code, _, err = run_cli("cmr", str(exam), "--out", str(out), "--device", "cpu", *extra)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return code, report, err


def _flags(report: dict) -> dict[str, dict]:
    return {q["code"]: q for q in report.get("qc", [])}


def test_clean_exam_is_ok_and_exact(tmp_path, run_cli, lut_network):
    cmr_exam.write_exam(tmp_path / "exam")
    code, report, err = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 0, err
    truth = cmr_exam.truth()
    for key in (*FUNCTION_KEYS, "bsa_m2"):
        assert report["measurements"][key] == pytest.approx(truth[key], rel=1e-6)
    assert report["measurements_not_valid"] == []
    assert not {"cine_lge_orientation", "cine_missing_slice", "cine_duplicate_sop_instance_uid"} & set(_flags(report))


def test_issue_15_missing_cine_slice_exits_4_with_a_named_flag(tmp_path, run_cli, lut_network):
    files = cmr_exam.write_exam(tmp_path / "exam")
    per_slice = cmr_exam.N_PHASES
    for f in files["cine"][2 * per_slice: 3 * per_slice]:  # slice 2 of 6: inside the LV stack
        f.unlink()
    code, report, _ = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 4
    flag = _flags(report)["cine_missing_slice"]
    assert flag["severity"] == "error" and "missing" in flag["message"]
    assert set(FUNCTION_KEYS) <= set(report["measurements_not_valid"])
    assert report["status"] == "partial"


def test_issue_15_truncated_files_at_the_end_of_the_stack_are_not_silent(tmp_path, run_cli, lut_network):
    """The last slice's files all truncated: no gap in the positions, but the series lost images."""
    files = cmr_exam.write_exam(tmp_path / "exam")
    for f in files["cine"][-cmr_exam.N_PHASES:]:
        f.write_bytes(f.read_bytes()[:-5000])
    code, report, _ = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 4
    flag = _flags(report)["cine_rejected_images"]
    assert flag["severity"] == "error" and f"{cmr_exam.N_PHASES} of its files" in flag["message"]
    assert "truncated_pixel_data" in flag["message"]
    assert any("file(s) not used" in w for w in report["warnings"])


def test_issue_15_duplicate_sop_with_different_pixels_exits_4_with_a_named_flag(tmp_path, run_cli, lut_network):
    files = cmr_exam.write_exam(tmp_path / "exam")
    ds = pydicom.dcmread(files["cine"][20])
    ds.PixelData = (np.frombuffer(ds.PixelData, np.uint16) // 2).astype(np.uint16).tobytes()  # other pixels
    ds.save_as(files["cine"][20].with_name("zz_conflict.dcm"))
    code, report, _ = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 4
    flag = _flags(report)["cine_duplicate_sop_instance_uid"]
    assert flag["severity"] == "error" and "different pixels" in flag["message"]
    assert set(FUNCTION_KEYS) <= set(report["measurements_not_valid"])


def test_issue_15_decimal_comma_patient_size_gives_the_right_bsa_and_a_warning(tmp_path, run_cli, lut_network):
    cmr_exam.write_exam(tmp_path / "exam", patient_size="1,58")
    code, report, err = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 0, err
    bsa = np.sqrt(158.0 * cmr_exam.WEIGHT_KG / 3600.0)  # Mosteller, height 1.58 m
    assert report["measurements"]["bsa_m2"] == pytest.approx(bsa, rel=1e-9)
    assert any("PatientSize" in w and "1,58" in w and "1.58" in w for w in report["warnings"])


@pytest.mark.parametrize("size, height_m", [(158, 1.58), (1580, 1.58), (15.8, None), (0.0001, None)])
def test_issue_18_patient_size_in_centimetres_converted_only_when_unambiguous(tmp_path, run_cli, lut_network,
                                                                              size, height_m):
    cmr_exam.write_exam(tmp_path / "exam", patient_size=size)
    code, report, err = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 0, err
    m = report["measurements"]
    if height_m is None:
        assert m["bsa_m2"] is None and m["lv_edv_index_ml_per_m2"] is None
        assert "patient_size_implausible" in _flags(report)
    else:
        assert m["bsa_m2"] == pytest.approx(np.sqrt(height_m * 100 * cmr_exam.WEIGHT_KG / 3600.0), rel=1e-9)
        assert any("read as" in w and "PatientSize" in w for w in report["warnings"])


def test_issue_18_cine_and_lge_of_different_patients_are_refused(tmp_path, run_cli, lut_network):
    cmr_exam.write_exam(tmp_path / "exam", lge_patient="PAT-B")
    code, report, err = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 3 and "different patients" in err
    assert report["status"] == "failed" and report["failure_code"] == "mixed_patients"
    assert "PAT-A" not in json.dumps(report) and "PAT-B" not in json.dumps(report)  # no identifiers in outputs


def test_issue_15_mixed_orientation_in_the_cine_is_a_named_flag_and_the_lge_still_counts(tmp_path, run_cli,
                                                                                       lut_network):
    files = cmr_exam.write_exam(tmp_path / "exam")
    ds = pydicom.dcmread(files["cine"][9])
    o = [float(v) for v in ds.ImageOrientationPatient]
    ds.ImageOrientationPatient = o[3:] + o[:3]  # rows and columns swapped: another plane
    ds.save_as(files["cine"][9])
    code, report, _ = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 4
    flag = _flags(report)["cine_unusable"]
    assert flag["severity"] == "error" and "mixed orientations" in flag["message"]
    assert report["measurements"]["infarct_ml"] > 0 and "lv_edv_ml" not in report["measurements"]


def test_issue_15_cine_files_naming_two_studies_are_a_named_flag(tmp_path, run_cli, lut_network):
    files = cmr_exam.write_exam(tmp_path / "exam")
    ds = pydicom.dcmread(files["cine"][9])
    ds.StudyInstanceUID = ds.StudyInstanceUID + ".77"
    ds.save_as(files["cine"][9])
    code, report, _ = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 4
    assert _flags(report)["cine_mixed_studies"]["severity"] == "error"
    assert set(FUNCTION_KEYS) <= set(report["measurements_not_valid"])


def test_issue_18_cine_and_lge_of_different_studies_invalidate_segment_transmurality(tmp_path, run_cli,
                                                                                    lut_network):
    cmr_exam.write_exam(tmp_path / "exam", lge_study=9)
    code, report, _ = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    assert code == 4
    assert _flags(report)["cine_lge_different_studies"]["severity"] == "error"
    assert "segment_transmurality_percent" in report["measurements_not_valid"]


@pytest.mark.parametrize("degrees, flagged", [(0.0, False), (5.0, False), (30.0, True)])
def test_issue_18_rotated_lge_invalidates_segment_transmurality(tmp_path, run_cli, lut_network, degrees, flagged):
    cmr_exam.write_exam(tmp_path / "exam", lge_rotation_deg=degrees)
    code, report, _ = _cmr(run_cli, tmp_path / "exam", tmp_path / "out")
    flags = _flags(report)
    assert ("cine_lge_orientation" in flags) is flagged
    assert code == (4 if flagged else 0)
    if flagged:
        assert f"{degrees:.1f} deg (in-plane rotation)" in flags["cine_lge_orientation"]["message"]
        assert "segment_transmurality_percent" in report["measurements_not_valid"]
        assert report["measurements"]["lv_edv_ml"] == pytest.approx(cmr_exam.truth()["lv_edv_ml"], rel=1e-6)


def test_issue_18_shifted_lge_is_flagged_by_lv_position(tmp_path):
    from zeroclick.pipelines.cardiac import run

    files = cmr_exam.write_exam(tmp_path / "exam")
    for f in files["lge"]:  # the whole LGE stack 20 mm along the image rows: the heart is elsewhere
        ds = pydicom.dcmread(f)
        ds.ImagePositionPatient = [float(v) + 20.0 * float(r) for v, r in
                                   zip(ds.ImagePositionPatient, ds.ImageOrientationPatient[:3])]
        ds.save_as(f)
    result = run(tmp_path / "exam", cine_segmenter=LutSegmenter(4), lge_segmenter=LutSegmenter(5))
    flag = {q.code: q for q in result.qc}["cine_lge_position"]
    assert flag.severity == "error" and "20.0 mm" in flag.message


# ------------------------------------------------------------------------------------------- output folders


def test_issue_18_rerun_into_a_non_empty_folder_is_refused_without_overwrite(tmp_path, run_cli, lut_network):
    cmr_exam.write_exam(tmp_path / "exam")
    out = tmp_path / "out"
    assert _cmr(run_cli, tmp_path / "exam", out)[0] == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    code, _, err = run_cli("cmr", str(tmp_path / "missing"), "--out", str(out))
    assert code == 2 and "--overwrite" in err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_issue_18_failing_rerun_with_overwrite_leaves_no_stale_files(tmp_path, run_cli, lut_network):
    cmr_exam.write_exam(tmp_path / "exam")
    out = tmp_path / "out"
    assert _cmr(run_cli, tmp_path / "exam", out)[0] == 0
    assert (out / "measurements.csv").is_file() and (out / "masks").is_dir()
    code, _, _ = run_cli("cmr", str(tmp_path / "missing"), "--out", str(out), "--overwrite")
    assert code == 3
    assert sorted(p.name for p in out.iterdir()) == ["report.json"]
    assert json.loads((out / "report.json").read_text())["status"] == "failed"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".zeroclick-")]  # nothing left aside


def test_issue_18_successful_rerun_with_overwrite_replaces_the_folder_whole(tmp_path, run_cli, lut_network):
    cmr_exam.write_exam(tmp_path / "exam")
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale_from_another_exam.csv").write_text("lv_edv_ml,999\n")
    (out / "masks").mkdir()
    (out / "masks" / "old_labels.nii.gz").write_bytes(b"old")
    code, report, _ = _cmr(run_cli, tmp_path / "exam", out, "--overwrite")
    assert code == 0
    assert not (out / "stale_from_another_exam.csv").exists() and not (out / "masks" / "old_labels.nii.gz").exists()
    assert report["measurements"]["lv_edv_ml"] == pytest.approx(cmr_exam.truth()["lv_edv_ml"], rel=1e-6)


def test_issue_18_slide_rerun_refuses_or_replaces_whole(tmp_path, run_cli):
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text('{"status": "ok", "from": "an earlier slide"}')
    code, _, err = run_cli("slide", str(tmp_path / "missing.svs"), "--out", str(out))
    assert code == 2 and "--overwrite" in err and (out / "result.json").is_file()
    code, _, err = run_cli("slide", str(tmp_path / "missing.svs"), "--out", str(out), "--overwrite")
    assert code == 3
    assert list(out.iterdir()) == []  # the failed run wrote nothing; the earlier slide's result is gone


def test_scan_cli_of_a_hostile_folder_exits_cleanly(tmp_path, run_cli):
    """``zeroclick scan`` on a folder of damaged files: a table with named rejections, never a traceback."""
    from tests.fuzz import rawdicom

    files = cmr_exam.write_exam(tmp_path / "exam", lge=False)
    for f, value in zip(files["cine"][:4], (b"--5", b"nan\\nan\\nan", "1".encode("utf-16"), b"1\\2")):
        f.write_bytes(rawdicom.set_value(f.read_bytes(), 0x00200032, value, b"DS"))
    shutil.copy(files["cine"][5], tmp_path / "exam" / "cine" / "truncated.dcm")
    (tmp_path / "exam" / "cine" / "truncated.dcm").write_bytes(files["cine"][5].read_bytes()[:700])
    code, out, err = run_cli("scan", str(tmp_path / "exam"))
    assert code == 0, err
    assert "invalid_value x" in out and "invalid_geometry x" in out and "truncated_file x1" in out
    code, out, err = run_cli("scan", str(tmp_path / "exam"), "--json")
    assert code == 0, err
    assert {r["code"] for r in json.loads(out)["rejected"]} == {"invalid_value", "invalid_geometry", "truncated_file"}


def test_scan_reports_a_decimal_comma_in_the_table_and_json(tmp_path, run_cli):
    cmr_exam.write_exam(tmp_path / "exam", patient_size="1,58", lge=False)
    code, out, _ = run_cli("scan", str(tmp_path / "exam"))
    assert code == 0 and "~ PatientSize value '1,58'" in out
    code, out, _ = run_cli("scan", str(tmp_path / "exam"), "--json")
    notes = json.loads(out)["studies"][0]["series"][0]["value_notes"]
    assert notes and "read as 1.58" in notes[0]


def test_cmr_on_a_zip_bomb_exits_3_with_the_named_code(tmp_path, run_cli):
    import zipfile

    bomb = tmp_path / "exam.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf, zf.open("im0001.dcm", "w") as member:
        for _ in range(80):  # 80 MiB of zeros in ~80 KiB
            member.write(bytes(1 << 20))
    code, report, err = _cmr(run_cli, bomb, tmp_path / "out")
    assert code == 3 and "zip bomb" in err
    assert report["status"] == "failed" and report["failure_code"] == "archive_bomb"


def test_overwrite_never_replaces_an_input_or_the_current_folder(tmp_path, run_cli, monkeypatch):
    exam = tmp_path / "exam"
    cmr_exam.write_exam(exam, lge=False)
    n_files = len(list(exam.rglob("*.dcm")))
    for out in (exam, tmp_path, exam / "cine" / ".."):
        code, _, err = run_cli("cmr", str(exam), "--out", str(out), "--overwrite")
        assert code == 2 and "would delete" in err
    monkeypatch.chdir(exam)
    code, _, err = run_cli("slide", "missing.svs", "--out", ".", "--overwrite")
    assert code == 2 and "would delete" in err
    assert len(list(exam.rglob("*.dcm"))) == n_files
