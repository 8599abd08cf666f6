"""Test-time augmentation of the cine segmenter (issue 11): flips averaged in probability space.

The network is replaced by a stub whose answer is known analytically: it labels LV cavity (3) wherever the input
is bright (content: follows every flip) and LV myocardium (2) in the top-left quadrant of its *input* whatever the
image holds (a position artefact). Averaged over the identity and the three flips, the artefact keeps a quarter of
its weight and loses to background; the cavity keeps all of it.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _StubEngine:
    def __init__(self):
        self.calls = 0

    def predict(self, model, data, *, output="probabilities"):
        x = np.concatenate(list(data))[:, 0]  # [k, h, w]
        self.calls += 1
        k, h, w = x.shape
        prob = np.zeros((k, 4, h, w), np.float32)
        prob[:, 0] = 1.0
        artefact = np.zeros((h, w), bool)
        artefact[: h // 2, : w // 2] = True
        prob[:, 0][:, artefact] = 0.4
        prob[:, 2][:, artefact] = 0.6
        bright = x > 0.5
        prob[:, :, :, :][np.broadcast_to(bright[:, None], prob.shape)] = 0.0
        prob[:, 3][bright] = 1.0
        return prob.argmax(1).astype(np.uint8) if output == "labels" else prob


def _segmenter(tta):
    from zeroclick.pipelines.cardiac.segmentation import CineSegmenter

    seg = CineSegmenter.__new__(CineSegmenter)  # no weights needed: the stub engine is the network
    seg.loaded, seg.engine, seg.tta, seg.slices_inferred = SimpleNamespace(model=None), _StubEngine(), tta, 0
    return seg


def _inputs(k=3, size=64):
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - 40) ** 2 + (xx - 22) ** 2) <= 9 ** 2  # off-centre, so a flip moves it
    return np.repeat(disc[None, None].astype(np.float32), k, axis=0), disc


def test_tta_keeps_what_follows_the_image_and_drops_a_position_artefact():
    x, disc = _inputs()
    plain = _segmenter(False)._predict_labels(iter([x]))
    seg = _segmenter(True)
    averaged = seg._predict_labels(iter([x]))
    # without TTA the artefact quadrant is myocardium; with it only the disc (label 3) remains
    assert (plain == 2).any()
    expected = np.where(disc, 3, 0).astype(np.uint8)
    assert averaged.shape == plain.shape == (3, 64, 64)
    assert np.array_equal(averaged, np.broadcast_to(expected, averaged.shape))
    assert seg.engine.calls == 4  # identity + three flips


def test_tta_off_is_one_pass_and_empty_input_gives_no_labels():
    seg = _segmenter(True)
    assert seg._predict_labels(iter([])).size == 0
    x, disc = _inputs(k=1)
    one = _segmenter(False)
    assert np.array_equal(one._predict_labels(iter([x]))[0][disc], np.full(int(disc.sum()), 3, np.uint8))
    assert one.engine.calls == 1
