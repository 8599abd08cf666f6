"""SEG / SR / encapsulated PDF writers: dciodvfy-clean, read back with highdicom, codes checked."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEGLSLossless

from zeroclick.imaging.dicom.write import (
    MeasurementItem,
    SegmentMeasurements,
    SegmentSpec,
    derived_uid,
    encapsulated_pdf,
    measurement_report,
    save_atomically,
    segmentation_from_labels,
)
from zeroclick.imaging.dicom.write import codes as K
from zeroclick.imaging.errors import InvalidInputError

CINE_SEGMENTS = [
    SegmentSpec("LV cavity", K.ANATOMICAL_STRUCTURE, K.LV, (3,)),
    SegmentSpec("LV myocardium", K.ANATOMICAL_STRUCTURE, K.LV_MYOCARDIUM, (2,)),
    SegmentSpec("RV cavity", K.ANATOMICAL_STRUCTURE, K.RV, (1,)),
]
LGE_SEGMENTS = [
    SegmentSpec("LV myocardium", K.ANATOMICAL_STRUCTURE, K.LV_MYOCARDIUM, (2, 3, 4)),
    SegmentSpec("Infarct", K.MORPHOLOGICALLY_ABNORMAL, K.INFARCT, (3, 4)),
    SegmentSpec("MVO", K.MORPHOLOGICALLY_ABNORMAL, K.MVO, (4,)),
]


def _seg(sources, labels, segments, name):
    return segmentation_from_labels(
        sources,
        labels,
        segments,
        series_instance_uid=derived_uid("s", name, "series"),
        sop_instance_uid=derived_uid("s", name, "instance"),
        series_number=900,
        series_description=f"zeroclick {name}",
        algorithm_name="zeroclick test",
        algorithm_version="1",
    )


@pytest.fixture(scope="module")
def written(mini_exam, tmp_path_factory):
    out = tmp_path_factory.mktemp("written")
    ed_sources = mini_exam.cine.datasets[:6]
    seg_ed = _seg(ed_sources, mini_exam.cine.labels[0], CINE_SEGMENTS, "LV/RV ED")
    seg_lge = _seg(mini_exam.lge.datasets, mini_exam.lge.labels, LGE_SEGMENTS, "LGE")
    groups = [
        SegmentMeasurements(seg_ed, 1, "LV cavity at ED", K.LV, (
            MeasurementItem(K.LV_EDV, 151.5, K.UNIT_ML), MeasurementItem(K.LV_EF, 57.25, K.UNIT_PERCENT))),
        SegmentMeasurements(seg_lge, 2, "Infarct", K.INFARCT, (
            MeasurementItem(K.MASS, 12.5, K.UNIT_G),
            MeasurementItem(K.INFARCT_PERCENT_OF_LV, 14.0, K.UNIT_PERCENT),
            MeasurementItem(K.VOLUME, float("nan"), K.UNIT_ML))),
    ]
    sr = measurement_report(
        groups, source_images=[*ed_sources, *mini_exam.lge.datasets], procedure_reported=K.CARDIAC_MRI,
        series_instance_uid=derived_uid("sr"), sop_instance_uid=derived_uid("sr", "i"), series_number=904,
        series_description="zeroclick measurements", algorithm_name="zeroclick test", algorithm_version="1")
    pdf_bytes = b"%PDF-1.4\n% minimal test document\n%%EOF\n"
    pdf = encapsulated_pdf(pdf_bytes, ed_sources[0], series_instance_uid=derived_uid("pdf"),
                           sop_instance_uid=derived_uid("pdf", "i"), series_number=905,
                           series_description="zeroclick report", document_title="zeroclick report")
    paths = {name: save_atomically(ds, out / f"{name}.dcm")
             for name, ds in (("seg_ed", seg_ed), ("seg_lge", seg_lge), ("sr", sr), ("pdf", pdf))}
    return paths, pdf_bytes


@pytest.mark.parametrize("name", ["seg_ed", "seg_lge", "sr", "pdf"])
def test_every_object_is_dciodvfy_clean(written, name, dciodvfy_errors):
    paths, _ = written
    assert dciodvfy_errors(paths[name]) == []


def test_cine_seg_round_trips_labels_codes_and_references(written, mini_exam):
    paths, _ = written
    seg = hd.seg.segread(paths["seg_ed"])
    assert seg.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert seg.SeriesDescription == "zeroclick LV/RV ED"
    assert seg.Manufacturer == "zeroclick"
    assert seg.StudyInstanceUID == mini_exam.cine.datasets[0].StudyInstanceUID
    types = [item.SegmentedPropertyTypeCodeSequence[0].CodeValue for item in seg.SegmentSequence]
    assert types == ["87878005", "49848007", "53085002"]
    sources = [ds.SOPInstanceUID for ds in mini_exam.cine.datasets[:6]]
    referenced = {ref.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence
                  for ref in s.ReferencedInstanceSequence}
    assert referenced == set(sources)
    for number, value in ((1, 3), (2, 2), (3, 1)):
        mask = seg.get_pixels_by_source_instance(sources, segment_numbers=[number])[..., 0]
        np.testing.assert_array_equal(mask > 0, mini_exam.cine.labels[0] == value)


def test_lge_seg_segments_overlap_as_defined(written, mini_exam):
    paths, _ = written
    seg = hd.seg.segread(paths["seg_lge"])
    sources = [ds.SOPInstanceUID for ds in mini_exam.lge.datasets]
    px = seg.get_pixels_by_source_instance(sources, segment_numbers=[1, 2, 3]) > 0
    lab = mini_exam.lge.labels
    assert (lab == 4).any() and (lab == 3).any()
    np.testing.assert_array_equal(px[..., 0], np.isin(lab, (2, 3, 4)))
    np.testing.assert_array_equal(px[..., 1], np.isin(lab, (3, 4)))
    np.testing.assert_array_equal(px[..., 2], lab == 4)


def test_sr_read_back_has_coded_measurements_linked_to_segments(written):
    paths, _ = written
    sr = hd.sr.srread(paths["sr"])
    seg_ed, seg_lge = pydicom.dcmread(paths["seg_ed"]), pydicom.dcmread(paths["seg_lge"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 2
    found = {}
    for g in groups:
        ref = g.referenced_segment
        for m in g.get_measurements():
            found[(m.name.scheme_designator, m.name.value)] = (
                m.value, m.unit.value, ref.referenced_sop_instance_uid, ref.referenced_segment_numbers)
    assert found[("LN", "10230-1")] == (57.25, "%", seg_ed.SOPInstanceUID, [1])
    assert found[("LN", "18026-5")] == (151.5, "mL", seg_ed.SOPInstanceUID, [1])
    assert found[("SCT", "4147007")] == (12.5, "g", seg_lge.SOPInstanceUID, [2])
    assert found[("99ZCLK", "ZC0001")][0] == 14.0
    # the NaN volume is left out, never reported as a number
    assert ("SCT", "118565006") not in found


def test_pdf_round_trip_in_same_study(written, mini_exam):
    paths, pdf_bytes = written
    ds = pydicom.dcmread(paths["pdf"])
    assert ds.Modality == "DOC" and ds.MIMETypeOfEncapsulatedDocument == "application/pdf"
    assert bytes(ds.EncapsulatedDocument)[: int(ds.EncapsulatedDocumentLength)] == pdf_bytes
    assert ds.StudyInstanceUID == mini_exam.cine.datasets[0].StudyInstanceUID
    assert ds.PatientID == "ZC-TEST-1"


def test_derived_uid_is_deterministic_and_version_specific():
    a = derived_uid("1.2.3", "seg-ed", version="0.1.0")
    assert a == derived_uid("1.2.3", "seg-ed", version="0.1.0")
    assert a != derived_uid("1.2.3", "seg-ed", version="0.1.1")
    assert a != derived_uid("1.2.3", "seg-es", version="0.1.0")
    assert a.is_valid and a.startswith("2.25.")


def test_seg_refuses_labels_not_matching_sources(mini_exam):
    with pytest.raises(InvalidInputError, match="source images"):
        _seg(mini_exam.cine.datasets[:5], mini_exam.cine.labels[0], CINE_SEGMENTS, "bad")


def test_pdf_refuses_non_pdf(mini_exam):
    with pytest.raises(InvalidInputError, match="PDF"):
        encapsulated_pdf(b"not a pdf", mini_exam.cine.datasets[0], series_instance_uid="1.2",
                         sop_instance_uid="1.3", series_number=1, series_description="x", document_title="x")
