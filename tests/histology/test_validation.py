"""Issue 12: nuclei validation (metrics, annotation layouts) and the agreement on the shared annotated tiles."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skimage.draw import disk

from zeroclick.pipelines.histology.annotations import load_cases, read_aperio_xml, read_label_image
from zeroclick.pipelines.histology.evaluation import label_centroids, score_instances

# ---------------------------------------------------------------------------------------------- metrics


def test_identical_masks_score_one():
    truth = np.zeros((40, 40), np.int32)
    truth[5:15, 5:15] = 1
    truth[20:30, 22:34] = 7
    s = score_instances(truth, truth * 3)  # label values need not match
    assert (s.aji, s.pq, s.dice) == (1.0, 1.0, 1.0)


def test_aji_pq_dice_of_hand_computed_cases():
    # Truth: two 10 x 10 squares. Prediction: the left one's left half (IoU 0.5, not > 0.5: no PQ match)
    # and one box covering all of the right square plus 25 background pixels.
    truth = np.zeros((30, 40), np.int32)
    truth[0:10, 0:10] = 1
    truth[0:10, 20:30] = 2
    pred = np.zeros_like(truth)
    pred[0:10, 0:5] = 1
    pred[0:10, 20:30] = 2
    pred[10:15, 20:25] = 2
    s = score_instances(truth, pred)
    # AJI: (50 + 100) / (100 + 125) ; PQ: one match of IoU 100/125, one FP, one FN ; Dice 2*150/(200+175)
    assert s.aji == pytest.approx(150 / 225)
    assert s.pq == pytest.approx((100 / 125) / (1 + 0.5 + 0.5))
    assert s.dice == pytest.approx(300 / 375)


def test_aji_counts_a_merge_against_both_nuclei_and_unmatched_predictions():
    truth = np.zeros((20, 40), np.int32)
    truth[0:10, 0:10] = 1
    truth[0:10, 10:20] = 2
    pred = np.zeros_like(truth)
    pred[0:10, 0:20] = 5  # one prediction over both
    pred[15:20, 30:40] = 6  # a false positive, 50 pixels
    s = score_instances(truth, pred)
    # Each truth pairs with the merged object: C = 100 + 100, U = 200 + 200, + 50 for the stray one.
    assert s.aji == pytest.approx(200 / 450)
    assert (s.pq_tp, s.pq_fp, s.pq_fn) == (0, 2, 2)


def test_pooling_adds_sums_not_ratios():
    a = np.zeros((10, 10), np.int32)
    a[0:4, 0:4] = 1
    s1 = score_instances(a, a)
    s2 = score_instances(a, np.zeros_like(a))
    assert (s1 + s2).aji == pytest.approx(16 / 32)


def test_label_centroids_use_pixel_centres():
    lab = np.zeros((10, 10), np.int32)
    rr, cc = disk((4, 6), 3)
    lab[rr, cc] = 3
    ids, xy = label_centroids(lab)
    assert ids.tolist() == [3] and xy[0] == pytest.approx([6.5, 4.5])


# ---------------------------------------------------------------------------------------------- layouts


def test_cpm_ascii_mask_reads_the_readme_example(tmp_path):
    # The example of CPM-15's README_training.txt: 5 x 4 pixels, x fastest.
    rows = ["00000", "01100", "11200", "02220"]
    (tmp_path / "m_mask.txt").write_text("5 4\n" + "\n".join(ch for row in rows for ch in row) + "\n")
    lab = read_label_image(tmp_path / "m_mask.txt")
    assert lab.tolist() == [[int(c) for c in row] for row in rows]


def test_aperio_xml_polygon_is_rasterised_with_its_mpp(tmp_path):
    xml = ('<Annotations MicronsPerPixel="0.252700"><Annotation><Regions><Region Id="1"><Vertices>'
           '<Vertex X="2" Y="3"/><Vertex X="12" Y="3"/><Vertex X="12" Y="9"/><Vertex X="2" Y="9"/>'
           '</Vertices></Region></Regions></Annotation></Annotations>')
    (tmp_path / "a.xml").write_text(xml)
    lab, mpp = read_aperio_xml(tmp_path / "a.xml", (20, 20))
    assert mpp == pytest.approx(0.2527)
    assert lab.max() == 1 and (lab == 1).sum() == 11 * 7  # columns 2..12, rows 3..9: outline pixels included


def test_instance_mask_layout_swaps_masks_that_fit_the_other_image(tmp_path):
    from PIL import Image

    for name, shape in (("a", (8, 12)), ("b", (10, 6))):
        Image.fromarray(np.full(shape + (3,), 200, np.uint8)).save(tmp_path / f"{name}.png")
    np.save(tmp_path / "a_mask.npy", np.ones((10, 6), np.int32))  # b's shape
    np.save(tmp_path / "b_mask.npy", np.full((8, 12), 2, np.int32))  # a's shape
    (tmp_path / "mpp.json").write_text(json.dumps({"*": 0.5}))
    layout, cases = load_cases(tmp_path)
    assert layout == "instance-mask" and [c.name for c in cases] == ["a", "b"]
    assert cases[0].truth.shape == (8, 12) and cases[0].truth.max() == 2 and cases[0].notes
    assert cases[1].truth.shape == (10, 6) and cases[1].mpp == 0.5


# ---------------------------------------------------------------------------------------------- shared tiles


@pytest.mark.slow
def test_issue_12_monuseg_agreement(shared_data, tmp_path):
    from zeroclick.pipelines.histology.validation import validate_nuclei

    v = validate_nuclei(shared_data / "slides" / "nuclei" / "monuseg", out_dir=tmp_path)
    assert v.layout == "monuseg" and len(v.tiles) == 7
    assert v.pooled["f1"] >= 0.85  # before issue 12: 0.82
    assert v.pooled["aji"] >= 0.55  # before: 0.40 (same scoring); 0.547 before the boundary band
    assert v.train["tiles"] == 4 and v.held_out["tiles"] == 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["pooled"]["f1"] == v.pooled["f1"] and len(summary["per_tile"]) == 7
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 7


@pytest.mark.slow
def test_issue_12_cpm15_agreement_and_full_fields_are_tissue(shared_data):
    from zeroclick.pipelines.histology.validation import validate_nuclei

    v = validate_nuclei(shared_data / "slides" / "nuclei" / "cpm15")
    rows = {t.name: t.row() for t in v.tiles}
    assert len(rows) == 15 and not v.pooled["no_tissue_tiles"]  # image14/15 were "no tissue"
    assert all(r["status"] == "ok" for r in rows.values())
    assert v.pooled["f1"] >= 0.82  # before: 0.759
    assert rows["image11"]["f1"] >= 0.5  # pale vesicular nuclei; before: 0.10
    assert any("swapped" in n for t in v.tiles for n in t.notes)  # image04 / image05 masks
