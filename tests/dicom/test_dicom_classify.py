"""Series classification: every class, with honest, empty and misleading descriptions."""

from __future__ import annotations

import re

import dicom_factory
import numpy as np
import pytest

from zeroclick.imaging.dicom import LABELS, scan
from zeroclick.imaging.dicom.classify import lax_angle_deg


def _labels(exam) -> dict[int, str]:
    return {s.number: s.label for s in exam.series}


def test_every_class_of_the_small_exam(small_exam):
    folder, expected = small_exam
    exam = scan(folder)
    assert _labels(exam) == expected
    assert set(expected.values()) == set(LABELS) - {"other"}
    for s in exam.series:
        assert s.classification.reasons, s.number
        assert all("->" in r for r in s.classification.reasons)
        assert exam.find(s.label)[0].label == s.label


def test_empty_descriptions_do_not_change_classes(tmp_path):
    expected = dicom_factory.make_exam(tmp_path, descriptions=False)
    exam = scan(tmp_path)
    assert {s.description for s in exam.series} == {""}
    assert _labels(exam) == expected


def test_misleading_descriptions_do_not_change_classes(exam_copy, small_exam):
    import pydicom

    _, expected = small_exam
    lie = {n: expected[(n % len(expected)) + 1] for n in expected}  # each series named after another class
    for path in exam_copy.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.SeriesDescription = lie[int(ds.SeriesNumber)]
        ds.ProtocolName = lie[int(ds.SeriesNumber)]
        ds.save_as(path)
    exam = scan(exam_copy)
    assert _labels(exam) == expected
    for s in exam.series:
        assert not any("description" in r for r in s.classification.reasons), s.classification.reasons


def test_reasons_name_the_deciding_tags(small_exam):
    exam = scan(small_exam[0])
    reasons = {s.label: " ".join(s.classification.reasons) for s in exam.series}
    assert "TriggerTime" in reasons["cine_sax"]
    assert "InversionTime" in reasons["t1_molli_source"]
    assert re.search(r"ImageType=.*T1 MAP", reasons["t1_map"])
    assert "SequenceName=*fl2d1_v150in" in reasons["flow"]
    assert "long axis" in reasons["cine_lax_4ch"]


@pytest.mark.parametrize("angle", [0.0, 37.0, 90.0, 151.0])
def test_lax_angle_is_measured_about_the_long_axis(angle):
    o = np.array(dicom_factory.lax_orientation(angle))
    normal = np.cross(o[:3], o[3:])
    for long_axis in (dicom_factory.LONG_AXIS, -dicom_factory.LONG_AXIS):  # sign of the stack normal is free
        got = lax_angle_deg(normal, long_axis)
        assert min(abs(got - angle), 180 - abs(got - angle)) < 1e-6


def test_lax_views_without_a_short_axis_stack(exam_copy):
    import shutil

    shutil.rmtree(exam_copy / "se002")
    exam = scan(exam_copy)
    labels = _labels(exam)
    # long axis = intersection of the long-axis planes: the three views are still told apart
    assert {labels[3], labels[4], labels[5]} == {"cine_lax_2ch", "cine_lax_3ch", "cine_lax_4ch"}
