"""Issue 11: the slice-choice bound of ``zeroclick validate cmr`` (the network's labels counted on exactly the
slices the expert labelled), on a generated case whose answer is known from its geometry."""

import csv

import numpy as np
import pytest

from tests.cardiac.test_validate import VOXEL_ML, _acdc_case, _labels, _save, _TruthSegmenter
from zeroclick.pipelines.cardiac import validate
from zeroclick.pipelines.cardiac.validate import summary_table

ES_RADII = (6, 6, 6, 5, 3, 2)


def test_slice_choice_bound_removes_the_slice_rule_and_keeps_the_segmentation_error(tmp_path):
    """The expert leaves ES slice 0 empty (atrium) where the 'network' labels LV, myocardium and RV; the network
    also misses the ES cavity of slice 2. Counting every labelled voxel (``reference``) keeps slice 0; the bound
    drops exactly that slice and keeps the missed cavity: its ESV is the manual ESV minus the slice-2 disc."""
    data = tmp_path / "cohort"
    case = _acdc_case(data, "caseA", 1, ES_RADII)
    seg = _TruthSegmenter(data, drop=("caseA", 2))  # network = generated labels, ES slice-2 cavity missing
    manual_es = _labels(radii=ES_RADII)
    manual_es[0] = 0  # the expert's ES labels: slice 0 left empty
    _save(manual_es, case / "caseA_frame09_gt.nii.gz")

    result = validate(data, out=tmp_path / "out", volume_rule="reference", cine_segmenter=seg)
    (c,) = result.cases
    yy, xx = np.mgrid[:40, :40]
    disc = np.hypot(yy - 20, xx - 20)
    missed_ml = np.count_nonzero(disc < ES_RADII[2]) * VOXEL_ML
    slice0_ml = np.count_nonzero(disc < ES_RADII[0]) * VOXEL_ML
    assert c.on_manual_slices["lv_edv_ml"] == pytest.approx(c.manual["lv_edv_ml"])
    assert c.on_manual_slices["lv_esv_ml"] - c.manual["lv_esv_ml"] == pytest.approx(-missed_ml)
    assert c.on_manual_slices["rv_esv_ml"] == pytest.approx(c.manual["rv_esv_ml"])
    assert c.pipeline["lv_esv_ml"] - c.manual["lv_esv_ml"] == pytest.approx(slice0_ml - missed_ml)
    edv, esv = c.manual["lv_edv_ml"], c.manual["lv_esv_ml"]
    bound = result.slice_choice_bound["lv_ef_percent"]
    assert (bound.n_cases, bound.worst_case) == (1, "caseA")
    assert bound.bias == pytest.approx(((edv - esv + missed_ml) - (edv - esv)) / edv * 100)
    rows = list(csv.DictReader((tmp_path / "out" / "cases.csv").open()))
    assert float(rows[0]["on_manual_slices_lv_esv_ml"]) == pytest.approx(esv - missed_ml, abs=1e-3)
    assert "slice-choice bound lv_ef_percent" in summary_table(result)
