"""zeroclick.pipelines.cardiac.report: the one-page report and the DICOM objects written into the source study."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.cardiac.report import SERIES_DESCRIPTIONS, write_dicom_outputs, write_report_files


@pytest.fixture(scope="module")
def outputs(mini_result, tmp_path_factory):
    out = tmp_path_factory.mktemp("cardiac_dicom")
    return write_dicom_outputs(mini_result, out)


def test_writes_five_objects_in_the_source_study(outputs, mini_exam):
    names = [p.name for p in outputs]
    assert names == ["seg_ed.dcm", "seg_es.dcm", "seg_lge.dcm", "sr.dcm", "report_pdf.dcm"]
    study = mini_exam.cine.datasets[0].StudyInstanceUID
    descriptions = set()
    for p in outputs:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        assert ds.StudyInstanceUID == study
        assert ds.Manufacturer == "zeroclick" and ds.SoftwareVersions
        descriptions.add(ds.SeriesDescription)
    assert descriptions == set(SERIES_DESCRIPTIONS.values())


@pytest.mark.parametrize("index", range(5))
def test_every_output_is_dciodvfy_clean(outputs, index, dciodvfy_errors):
    assert dciodvfy_errors(outputs[index]) == []


def test_es_seg_carries_es_labels_on_es_images(outputs, mini_exam):
    seg = hd.seg.segread(outputs[1])
    es_uids = [ds.SOPInstanceUID for ds in mini_exam.cine.datasets[6:]]
    lv = seg.get_pixels_by_source_instance(es_uids, segment_numbers=[1])[..., 0] > 0
    np.testing.assert_array_equal(lv, mini_exam.cine.labels[1] == 3)


def test_sr_codes_values_and_qc_invalidated_value_left_out(outputs):
    sr = hd.sr.srread(outputs[3])
    seg_uids = {pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID: p.name for p in outputs[:3]}
    found = {}
    for g in sr.content.get_volumetric_roi_measurement_groups():
        for m in g.get_measurements():
            found[(m.name.value, g.tracking_identifier)] = (
                m.value, m.unit.value, seg_uids[g.referenced_segment.referenced_sop_instance_uid],
                g.referenced_segment.referenced_segment_numbers[0])
    assert found[("10230-1", "LV cavity at ED")] == (40.0, "%", "seg_ed.dcm", 1)
    assert found[("18148-7", "LV cavity at ES")] == (96.0, "mL", "seg_es.dcm", 1)
    assert found[("4147007", "LV myocardium at ED")] == (126.0, "g", "seg_ed.dcm", 2)
    assert found[("8824-5", "RV cavity at ES")] == (70.0, "mL", "seg_es.dcm", 3)
    assert found[("ZC0001", "Infarct incl. MVO")] == (18.2, "%", "seg_lge.dcm", 2)
    assert found[("ZC0002", "MVO")] == (1.8, "%", "seg_lge.dcm", 3)
    # RVEF is flagged invalid by a QC error: it must not appear as a number
    assert not any(code == "8818-7" for code, _ in found)


def test_rerun_gives_same_uids(outputs, mini_result, tmp_path):
    again = write_dicom_outputs(mini_result, tmp_path)
    for a, b in zip(outputs, again):
        da, db = pydicom.dcmread(a, stop_before_pixels=True), pydicom.dcmread(b, stop_before_pixels=True)
        assert (da.SOPInstanceUID, da.SeriesInstanceUID) == (db.SOPInstanceUID, db.SeriesInstanceUID)


def test_report_pdf_and_png_have_no_patient_identifier(mini_result, tmp_path):
    pdf, png = write_report_files(mini_result, tmp_path, study_date="20260101")
    assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes().startswith(b"\x89PNG")
    import zlib

    raw = pdf.read_bytes()
    text = raw
    for chunk in raw.split(b"stream")[1:]:
        try:
            text += zlib.decompress(chunk.split(b"endstream")[0].strip(b"\r\n"))
        except zlib.error:
            pass
    assert b"Test^Patient" not in text and b"ZC-TEST-1" not in text


def test_nifti_result_is_refused_with_a_reason(mini_result):
    from dataclasses import replace

    from zeroclick.pipelines.cardiac.result import CardiacMasks

    bare = replace(mini_result, masks=CardiacMasks(cine_ed=mini_result.masks.cine_ed.with_array(
        mini_result.masks.cine_ed.array, sop_instance_uids=None)))
    with pytest.raises(InvalidInputError, match="DICOM input"):
        write_dicom_outputs(bare, "/nonexistent")


def test_zip_source_and_missing_lge(mini_result, mini_exam, tmp_path):
    import zipfile
    from dataclasses import replace

    from zeroclick.pipelines.cardiac.result import CardiacMasks

    archive = tmp_path / "exam.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in mini_exam.cine.paths:
            zf.write(p, f"cine/{p.name}")
    no_lge = replace(mini_result, lge=None, masks=CardiacMasks(cine_ed=mini_result.masks.cine_ed,
                                                                 cine_es=mini_result.masks.cine_es))
    paths = write_dicom_outputs(no_lge, tmp_path / "out", source=archive)
    assert [p.name for p in paths] == ["seg_ed.dcm", "seg_es.dcm", "sr.dcm", "report_pdf.dcm"]
    sr = hd.sr.srread(paths[2])
    names = {m.name.value for g in sr.content.get_volumetric_roi_measurement_groups() for m in g.get_measurements()}
    assert "10230-1" in names and "ZC0001" not in names


def test_source_paths_recorded_by_the_reader_are_used_without_a_folder_search(mini_result, mini_exam, tmp_path):
    """Series.volume() records where each image came from; the writer reads exactly those headers."""
    from dataclasses import replace

    from zeroclick.pipelines.cardiac.result import CardiacMasks

    def with_paths(mask, series):
        by_uid = {str(ds.SOPInstanceUID): str(p) for ds, p in zip(series.datasets, series.paths)}
        return mask.with_array(mask.array, meta={"source_paths_by_uid": by_uid})

    masks = mini_result.masks
    located = replace(mini_result, masks=CardiacMasks(cine_ed=with_paths(masks.cine_ed, mini_exam.cine),
                                                      cine_es=with_paths(masks.cine_es, mini_exam.cine),
                                                      lge=with_paths(masks.lge, mini_exam.lge)))
    empty = tmp_path / "nothing_here"
    empty.mkdir()
    paths = write_dicom_outputs(located, tmp_path / "out", source=empty)
    assert [p.name for p in paths] == ["seg_ed.dcm", "seg_es.dcm", "seg_lge.dcm", "sr.dcm", "report_pdf.dcm"]
    with pytest.raises(InvalidInputError):
        write_dicom_outputs(mini_result, tmp_path / "out2", source=empty)  # no recorded paths, nothing to search


def test_issue_3_volume_records_source_path_of_every_image(mini_exam):
    from zeroclick.imaging.dicom import scan

    exam = scan(mini_exam.root)
    cine_uid = str(mini_exam.cine.datasets[0].SeriesInstanceUID)
    vol = next(s for s in exam.series if s.uid == cine_uid).volume()
    recorded = vol.meta["source_paths_by_uid"]
    assert set(recorded) == {str(u) for u in vol.sop_instance_uids.reshape(-1)}
    for uid, path in recorded.items():
        assert str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID) == uid
