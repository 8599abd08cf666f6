"""Issue 6 (deep-learning paths): shapes, stitching and determinism with random / tiny weights only.

No accuracy is claimed or tested: no real H&E weights are reachable offline.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from zeroclick.imaging.errors import InvalidInputError, WeightsError
from zeroclick.imaging.slide import open_slide
from zeroclick.imaging.synthetic.slide import generate_slide, load_truth_nuclei
from zeroclick.pipelines.histology import run
from zeroclick.pipelines.histology.deep import (
    AttentionMIL,
    HoVerNetEngine,
    PatchClassifierConfig,
    aggregate_slide,
    classify_patches,
    hovernet_from_state_dict,
    load_state_dict,
    sliding_window_stitch,
)
from zeroclick.pipelines.histology.evaluation import match_detections


class ValidConvNet(nn.Module):
    """A tiny 'valid' network (no padding): 32 px in -> 24 px out, two heads."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Conv2d(3, 4, 5)
        self.b = nn.Conv2d(4, 2, 5)

    def forward(self, x):
        y = self.b(torch.relu(self.a(x)))
        return {"first": y, "second": y[:, :1] * 2}


def test_sliding_window_stitch_equals_whole_image_pass():
    net = ValidConvNet().eval()
    img = torch.rand(3, 100, 90, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        stitched = sliding_window_stitch(net, img, patch_px=32, out_px=24, sw_batch_size=3)
        whole = net(torch.nn.functional.pad(img[None], (4, 4, 4, 4), mode="reflect"))
    assert stitched["first"].shape == (2, 100, 90) and stitched["second"].shape == (1, 100, 90)
    assert torch.allclose(stitched["first"], whole["first"][0], atol=1e-5)
    assert torch.allclose(stitched["second"], whole["second"][0], atol=1e-5)


class DarknessHoVerNet(nn.Module):
    """Stands in for trained HoVerNet weights (256 -> 164 px): nucleus logit from darkness, HV maps as
    HoVerNet is trained to give them (offset to the blob centre, scaled to [-1, 1]), one type."""

    def forward(self, x):
        from scipy import ndimage

        c = x[:, :, 46:-46, 46:-46]
        fg = (0.55 - c.mean(dim=1, keepdim=True)) * 40.0
        hv = np.zeros((len(c), 2) + tuple(c.shape[2:]), np.float32)
        for i, m in enumerate((fg[:, 0] > 0).numpy()):
            lab, n = ndimage.label(m)
            yy, xx = np.indices(m.shape)
            for k, sl in enumerate(ndimage.find_objects(lab), start=1):
                obj = lab[sl] == k
                cy, cx = ndimage.center_of_mass(obj)
                dy, dx = yy[sl] - sl[0].start - cy, xx[sl] - sl[1].start - cx
                hv[i, 0][sl][obj] = (dx / max(1.0, np.abs(dx[obj]).max()))[obj]
                hv[i, 1][sl][obj] = (dy / max(1.0, np.abs(dy[obj]).max()))[obj]
        return {
            "nucleus_prediction": torch.cat([-fg, fg], dim=1),
            "horizontal_vertical": torch.from_numpy(hv),
            "type_prediction": torch.cat([-fg, fg, -fg, -fg, -fg], dim=1),
        }


@pytest.fixture(scope="module")
def tiny_slide(tmp_path_factory):
    return generate_slide(tmp_path_factory.mktemp("deep") / "tiny.tiff", width=1536, height=1536, seed=21)


@pytest.mark.slow
def test_hovernet_engine_stitching_and_dedup_in_pipeline(tiny_slide):
    engine = HoVerNetEngine(DarknessHoVerNet(), mpp=0.5, out_px=164)
    # 4 tiles of 512 px, each stitched from 16 network patches.
    result = run(tiny_slide.path, engine=engine, workers=0, target_mpp=0.5, tile_px=512, overlap_px=64)
    assert result.tiles_analysed == 4
    assert result.engine == "hovernet" and result.qc["status"] == "ok"
    truth = load_truth_nuclei(tiny_slide.path)
    pred = np.column_stack([result.nuclei.column("x_px"), result.nuclei.column("y_px")])
    score, _ = match_detections(pred, np.column_stack([truth["x_px"], truth["y_px"]]), radius=16.0)
    # The stand-in network segments dark blobs; stitched and deduplicated, each nucleus comes out once
    # (precision), and MONAI's post-processing keeps most of them (its fixed pixel sizes drop some).
    assert score.precision > 0.95 and score.recall > 0.7
    again = run(tiny_slide.path, engine=engine, workers=0, target_mpp=0.5, tile_px=512, overlap_px=64)
    assert np.array_equal(again.nuclei.data, result.nuclei.data)


def test_hovernet_needs_weights(tiny_slide, tmp_path):
    with pytest.raises(WeightsError, match="weights"):
        run(tiny_slide.path, engine="hovernet")
    with pytest.raises(WeightsError, match="not found"):
        load_state_dict(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"not": "tensors"}, bad)
    with pytest.raises(WeightsError):
        load_state_dict(bad)


@pytest.mark.slow
def test_monai_hovernet_random_weights_round_trip_shapes_determinism(tmp_path):
    from monai.networks.nets import HoVerNet

    torch.manual_seed(0)
    ref = HoVerNet(mode="fast", out_classes=5).eval()
    path = tmp_path / "hovernet_random.pt"
    torch.save({"state_dict": ref.state_dict()}, path)
    engine = HoVerNetEngine.from_weights(path, mpp=0.25, device=torch.device("cpu"))
    assert engine.weights_info["sha256"] and engine.out_px == 164
    rgb = np.random.default_rng(0).integers(0, 255, (164, 200, 3), dtype=np.uint8)  # 2 network patches
    a = engine.predict_tile(rgb)
    b = engine.predict_tile(rgb)
    assert a["nucleus_prediction"].shape == (2, 164, 200)
    assert a["horizontal_vertical"].shape == (2, 164, 200) and a["type_prediction"].shape == (5, 164, 200)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(WeightsError):
        hovernet_from_state_dict({"conv0.conv.weight": torch.zeros(1)})


def test_patch_classifier_config_validation():
    cfg = PatchClassifierConfig.from_dict({
        "spacing_um_px": 0.5, "patch_size_pixels": 224, "class_names": ["notumor", "tumor"],
        "transform": [{"name": "Resize", "arguments": {"size": 224}},
                      {"name": "Normalize", "arguments": {"mean": [0.5, 0.5, 0.5], "std": [0.2, 0.2, 0.2]}}],
    })
    assert cfg.class_names == ("notumor", "tumor") and cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (0.2, 0.2, 0.2)
    for bad in ({"patch_size_pixels": 224, "class_names": ["a"]},
                {"spacing_um_px": -1, "patch_size_pixels": 224, "class_names": ["a"]},
                {"spacing_um_px": 0.5, "patch_size_pixels": 2.5, "class_names": ["a"]},
                {"spacing_um_px": 0.5, "patch_size_pixels": 224, "class_names": []}):
        with pytest.raises(InvalidInputError):
            PatchClassifierConfig.from_dict(bad)


class TinyClassifier(nn.Module):
    def __init__(self, n_classes: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(8, n_classes)

    def forward(self, x):
        return self.head(self.features(x))


def test_patch_classifier_and_attention_mil_on_a_slide(tiny_slide):
    cfg = PatchClassifierConfig(spacing_um_px=1.0, patch_size_pixels=64, class_names=("a", "b", "c"))
    model = TinyClassifier(3)
    with open_slide(tiny_slide.path) as slide:
        preds = classify_patches(slide, model, cfg, device="cpu", embed=lambda m, x: m.features(x))
        again = classify_patches(slide, model, cfg, device="cpu")
    n = len(preds.tiles)
    assert n > 5 and preds.probabilities.shape == (n, 3) and preds.embeddings.shape == (n, 8)
    assert np.allclose(preds.probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert np.array_equal(preds.probabilities, again.probabilities)
    torch.manual_seed(0)
    mil = AttentionMIL(8, hidden=16, n_classes=1)
    score = aggregate_slide(mil, preds.embeddings, ["positive"])
    assert 0.0 <= score.scores["positive"] <= 1.0
    assert score.attention.shape == (n,) and score.attention.sum() == pytest.approx(1.0, abs=1e-5)
    perm = np.random.default_rng(0).permutation(n)
    shuffled = aggregate_slide(mil, preds.embeddings[perm], ["positive"])
    assert shuffled.scores["positive"] == pytest.approx(score.scores["positive"], abs=1e-6)
    assert np.allclose(shuffled.attention, score.attention[perm], atol=1e-6)
    with pytest.raises(InvalidInputError):
        mil(torch.zeros(0, 8))
