"""Cine/LGE segmentation: reference pre/post-processing, orientation, slice subsets, and the real cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from zeroclick.imaging.engine import Engine
from zeroclick.imaging.errors import InvalidInputError, WeightsError
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.segmentation import (
    CineSegmenter,
    LgeSegmenter,
    PreparedVolume,
    RawLabelCache,
    naive_onnx_segment,
    postprocess,
    prepare_volume,
)
from zeroclick.weights import store
from zeroclick.weights.store import LoadedModel


def _volume(array: np.ndarray, spacing=(10.0, 1.5, 1.5)) -> Volume:
    return Volume(np.asarray(array), affine=np.eye(4), spacing_mm=spacing)


def _phantom(n_slices: int = 5, rows: int = 200, cols: int = 180) -> np.ndarray:
    """Noise-free bright blob off centre (rows 60-99, cols 110-139) on a grey field with a zero border."""
    rng = np.random.default_rng(0)
    a = np.zeros((n_slices, rows, cols))
    a[:, 10:-10, 5:-5] = 100 + rng.random((n_slices, rows - 20, cols - 10))
    a[:, 60:100, 110:140] = 400
    a[0] = 0  # a blank slice: outside the z bounding box, never sent to the network
    return a


class ThresholdNet(torch.nn.Module):
    """Stand-in network: class 3 where the input is bright, else class 0 (probabilities, like the real one)."""

    def __init__(self, n_classes: int = 4) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += int(x.shape[0])
        bright = (x[:, 0] > 0.5).float()
        out = torch.zeros(x.shape[0], self.n_classes, *x.shape[2:])
        out[:, 3] = bright
        out[:, 0] = 1 - bright
        return out


def _fake_loaded(name: str = "acdc") -> LoadedModel:
    entry = store.resolve(name)
    return LoadedModel(ThresholdNet(entry.n_classes), entry, Path("unused"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- preprocessing
def test_prepare_scales_crops_and_skips_blank_slices() -> None:
    p = prepare_volume(_volume(_phantom()))
    assert p.slice_indices == (1, 2, 3, 4)
    assert p.inputs.shape == (4, 1, 256, 256) and p.inputs.dtype == np.float32
    assert 0.0 <= p.inputs.min() and p.inputs.max() <= 1.0
    x0, x1, y0, y1 = p.crop_xy  # x = column, y = row; bbox cols 5..174 (170), rows 10..189 (180) -> square 170
    assert (x0, x1) == (5, 175)
    assert (y0, y1) == (15, 185)  # centred: (180 - 170) // 2 = 5 rows off each side


def test_network_input_is_the_transposed_slice() -> None:
    a = np.zeros((2, 256, 256))
    a[:, :, :] = np.linspace(1, 2, 256)[None, :] * np.ones((256, 1))  # brightness grows along columns only
    a[:, 100:120, 20:40] = 5.0  # a bright blob at rows 100-119, columns 20-39
    p = prepare_volume(_volume(a))
    img = p.inputs[0, 0]
    # transposed: axis 0 of the network input runs along the DICOM columns
    assert img[150, 60] > img[60, 60]
    assert img[30, 110] == pytest.approx(1.0) and img[110, 30] < 0.9


def test_slice_subset_uses_whole_volume_statistics() -> None:
    vol = _volume(_phantom())
    full = prepare_volume(vol)
    part = prepare_volume(vol, slices=[3])
    assert part.slice_indices == (3,)
    np.testing.assert_array_equal(part.inputs[0], full.inputs[2])
    alone = prepare_volume(_volume(vol.array[3:4]))  # normalised on one slice only: different inputs
    assert not np.array_equal(alone.inputs[0], full.inputs[2])


def test_bad_input_is_a_named_error() -> None:
    with pytest.raises(InvalidInputError, match="no positive voxels"):
        prepare_volume(_volume(np.zeros((3, 32, 32))))
    with pytest.raises(InvalidInputError, match="volume.phase"):
        prepare_volume(np.zeros((2, 3, 32, 32)))
    with pytest.raises(InvalidInputError, match="outside"):
        prepare_volume(_volume(_phantom()), slices=[7])


# -------------------------------------------------------------------------------------- postprocessing
def _prepared(k: int = 3, side: int = 256) -> PreparedVolume:
    return PreparedVolume(np.zeros((k, 1, 256, 256), np.float32), tuple(range(k)), (0, side, 0, side), (k, side, side))


def test_components_under_the_threshold_are_dropped_in_3d() -> None:
    lab = np.zeros((3, 256, 256), np.uint8)
    lab[0, 10:40, 10:40] = 2  # 900 voxels: kept at 800
    lab[1, 100:120, 100:120] = 3  # 400 voxels in slice 1 ...
    lab[2, 100:120, 100:120] = 1  # ... + 400 touching it in slice 2 = 800: kept (not < 800)
    lab[2, 200:220, 200:219] = 3  # 380 voxels alone: dropped
    out = postprocess(lab, _prepared(), min_component_voxels=800)
    assert np.count_nonzero(out) == 900 + 800
    assert out[2, 210, 210] == 0


@pytest.mark.parametrize(("infarct", "expect_kept"), [(2, False), (3, True)])
def test_emidec_small_infarct_relabel(infarct: int, expect_kept: bool) -> None:
    lab = np.zeros((1, 256, 256), np.uint8)
    lab[0, :100, :100] = 2  # 10,000 myocardium voxels in total
    lab[0, :infarct, :100] = 3  # 2 % or 3 % of them infarct
    out = postprocess(lab, _prepared(1), min_component_voxels=500, infarct_relabel_below_percent=2.5)
    assert bool(np.count_nonzero(out == 3) == infarct * 100) is expect_kept
    assert np.count_nonzero(out >= 2) == 10_000


def test_labels_come_back_where_the_blob_is() -> None:
    a = _phantom()
    seg = CineSegmenter(weights=_fake_loaded(), engine=Engine(device="cpu", batch_size=3))
    labels = seg.segment(_volume(a))
    assert labels.shape == a.shape and labels.dtype == np.uint8
    truth = np.zeros(a.shape, bool)
    truth[1:, 60:100, 110:140] = True
    dice = 2 * np.sum((labels == 3) & truth) / (np.sum(labels == 3) + truth.sum())
    assert dice > 0.97
    assert seg.slices_inferred == 4


def test_subsets_and_many_phases_match_single_runs() -> None:
    loaded = _fake_loaded()
    seg = CineSegmenter(weights=loaded, engine=Engine(device="cpu", batch_size=4))
    phases = [_volume(_phantom()), _volume(_phantom()[:, ::-1].copy())]
    full = [seg.segment(v) for v in phases]
    loaded.model.calls = 0
    many = seg.segment_many([(phases[0], [2, 3]), phases[1]])
    assert loaded.model.calls == 2 + 4  # only the listed slices of phase 0 went through the network
    np.testing.assert_array_equal(many[1], full[1])
    np.testing.assert_array_equal(many[0][[2, 3]], full[0][[2, 3]])
    assert not many[0][[0, 1, 4]].any()


def test_issue_4_stack_completed_from_cached_slices_is_postprocessed_as_a_whole() -> None:
    # slices 1-4: blob A (30x30 px) at the same place; slices 1-2 also blob C (40x40). Whole stack: A is the
    # larger 3-D LV component (4 x 900 px vs 2 x 1600) and C goes; slices 1-2 alone: C is larger and A goes.
    a = np.zeros((5, 200, 180))
    a[1:, 10:-10, 5:-5] = 100 + np.random.default_rng(0).random((4, 180, 170))
    a[1:5, 40:70, 20:50] = 400
    a[1:3, 120:160, 100:140] = 400
    vol = _volume(a)
    loaded = _fake_loaded()
    seg = CineSegmenter(weights=loaded, engine=Engine(device="cpu", batch_size=4))
    full = seg.segment(vol)
    assert full[1, 55, 35] == 3 and full[1, 140, 120] == 0  # the construction does what the comment says
    loaded.model.calls = 0
    cache = RawLabelCache()
    (part,) = seg.segment_cached([("ed", vol, [1, 2])], cache)  # what the ED/ES search sees
    assert part[1, 140, 120] == 3 and part[1, 55, 35] == 0
    (whole,) = seg.segment_cached([("ed", vol, None)], cache)  # the ED stack afterwards
    np.testing.assert_array_equal(whole, full)
    assert loaded.model.calls == 4  # slices 1-4 once each (slice 0 is blank and never runs)


def test_segmenter_without_weights_says_fetch(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="zeroclick weights fetch"):
        CineSegmenter(cache=tmp_path)
    with pytest.raises(WeightsError, match="zeroclick weights fetch"):
        LgeSegmenter(cache=tmp_path)


# ------------------------------------------------------------------------------------------ real data
def _nifti_volume(path: Path) -> Volume:
    nib = pytest.importorskip("nibabel")
    img = nib.load(str(path))
    zooms = img.header.get_zooms()
    return Volume(np.asarray(img.get_fdata()).transpose(2, 1, 0), affine=np.eye(4),
                  spacing_mm=(float(zooms[2]), float(zooms[1]), float(zooms[0])))


@pytest.fixture(scope="module")
def weights_ready() -> None:
    if any(s.state != "ok" for s in store.status()):
        pytest.skip("weights not fetched: run `zeroclick weights fetch` once (tests never download)")


def _within(value: float, reference: float, percent: float) -> bool:
    return abs(value - reference) <= abs(reference) * percent / 100.0


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "torch"])
def test_acdc_patient101_matches_reference(shared_data: Path, weights_ready: None, runtime: str) -> None:
    ref = json.loads((shared_data / "cmr" / "reference.json").read_text())["acdc_patient101"]["model_reference"]
    ed = _nifti_volume(shared_data / "cmr" / "acdc" / "patient101_frame01.nii.gz")
    es = _nifti_volume(shared_data / "cmr" / "acdc" / "patient101_frame14.nii.gz")
    seg = CineSegmenter(engine=Engine(device="cpu", runtime=runtime))
    lab_ed, lab_es = seg.segment_many([ed, es])
    assert seg.engine.info["runtime_used"] == {"FCDenseNet": runtime}
    ml = ed.voxel_volume_ml
    lv_edv, lv_esv = np.sum(lab_ed == 3) * ml, np.sum(lab_es == 3) * ml
    got = {
        "lv_edv_ml": lv_edv,
        "lv_esv_ml": lv_esv,
        "lv_ef_percent": 100 * (lv_edv - lv_esv) / lv_edv,
        "rv_edv_ml": np.sum(lab_ed == 1) * ml,
        "rv_esv_ml": np.sum(lab_es == 1) * ml,
        "myo_mass_ed_g": np.sum(lab_ed == 2) * ml * 1.05,
    }
    for key, value in got.items():
        assert _within(value, ref[key], 2.0), (key, value, ref[key])
    assert seg.slices_inferred == 20


@pytest.mark.slow
def test_emidec_p087_matches_reference_and_naive_onnx(shared_data: Path, weights_ready: None) -> None:
    ref = json.loads((shared_data / "cmr" / "reference.json").read_text())["emidec_P087"]["model_reference"]
    lge = _nifti_volume(shared_data / "cmr" / "emidec" / "Case_P087.nii.gz")
    labels = LgeSegmenter(engine=Engine(device="cpu")).segment(lge)
    ml = lge.voxel_volume_ml
    assert _within(np.sum(labels >= 2) * ml, ref["myocardium_ml"], 2.0)
    assert _within(np.sum(labels >= 3) * ml, ref["infarct_ml"], 10.0)
    assert np.sum(labels == 4) * ml == pytest.approx(ref["mvo_ml"], abs=0.5)
    naive = naive_onnx_segment(lge, store.onnx_cache_path(store.resolve("emidec")))
    assert np.mean(naive == labels) > 0.9999


def test_keep_largest_heart_component_drops_a_second_ventricle() -> None:
    from zeroclick.pipelines.cardiac.segmentation import keep_largest_heart_component

    labels = np.zeros((4, 40, 40), np.uint8)
    labels[:, 5:20, 5:20] = 2          # LV myocardium ring around the cavity, through all slices
    labels[:, 8:17, 8:17] = 3
    labels[1, 30:36, 30:36] = 3        # an isolated bright blob called "LV cavity" on one slice
    labels[:, 5:20, 21:25] = 1         # RV beside the LV: not an LV label, must stay
    kept = keep_largest_heart_component(labels)
    assert (kept[1, 30:36, 30:36] == 0).all()
    assert np.count_nonzero(kept == 3) == 4 * 9 * 9
    assert np.count_nonzero(kept == 2) == np.count_nonzero(labels == 2)
    assert np.count_nonzero(kept == 1) == np.count_nonzero(labels == 1)


def test_keep_largest_heart_component_matches_monai() -> None:
    """The scipy implementation gives MONAI's KeepLargestConnectedComponent result (independent=False) on
    label maps with several LV blobs, diagonal-only contacts and RV voxels that must stay."""
    from monai.transforms import KeepLargestConnectedComponent

    from zeroclick.pipelines.cardiac.segmentation import keep_largest_heart_component

    rng = np.random.default_rng(3)
    monai_keep = KeepLargestConnectedComponent(applied_labels=[2, 3], is_onehot=False, independent=False)
    for _ in range(20):
        labels = np.zeros((5, 32, 32), np.uint8)
        for _blob in range(int(rng.integers(1, 5))):
            z, y, x = rng.integers(0, 5), rng.integers(0, 28), rng.integers(0, 28)
            d, h, w = rng.integers(1, 4), rng.integers(2, 9), rng.integers(2, 9)
            labels[z : z + d, y : y + h, x : x + w] = rng.integers(1, 4)
        labels[2, 0, 0] = 3
        labels[3, 1, 1] = 2  # touches the voxel above only diagonally
        expected = np.asarray(monai_keep(labels[None]))[0].astype(np.uint8)
        np.testing.assert_array_equal(keep_largest_heart_component(labels), expected)
