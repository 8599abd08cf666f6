import math

import numpy as np
import pytest

from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.function import bsa_mosteller_m2, compute_function, order_base_to_apex


def _box_labels(n_slices, cav, myo_pad, rv):
    lab = np.zeros((n_slices, 40, 40), np.uint8)
    lab[:, 10 - myo_pad:10 + cav + myo_pad, 10 - myo_pad:10 + cav + myo_pad] = 2
    lab[:, 10:10 + cav, 10:10 + cav] = 3
    lab[:, 30:30 + rv, 0:rv] = 1
    return lab


def test_volumes_ef_mass_from_exact_voxel_counts():
    aff = np.eye(4)
    ed = Volume(_box_labels(5, 10, 2, 6), aff, (8.0, 1.5, 1.5))  # voxel 18 mm^3
    es = Volume(_box_labels(5, 6, 3, 4), aff, (8.0, 1.5, 1.5))
    f = compute_function(ed, es, heart_rate_bpm=60, height_m=1.80, weight_kg=80)
    v = 0.018
    assert f.lv_edv_ml == pytest.approx(5 * 100 * v)
    assert f.lv_esv_ml == pytest.approx(5 * 36 * v)
    assert f.lv_ef_percent == pytest.approx(64.0)
    assert f.rv_edv_ml == pytest.approx(5 * 36 * v)
    assert f.rv_ef_percent == pytest.approx((36 - 16) / 36 * 100)
    assert f.myo_mass_ed_g == pytest.approx(5 * (14 * 14 - 100) * v * 1.05)
    assert f.bsa_m2 == pytest.approx(2.0)
    assert f.lv_co_l_per_min == pytest.approx((9.0 - 3.24) * 60 / 1000)
    assert f.lv_edv_index_ml_per_m2 == pytest.approx(4.5)


def test_bsa_missing_inputs_give_none_not_a_number():
    assert bsa_mosteller_m2(None, 80) is None
    assert bsa_mosteller_m2(1.7, 0) is None
    assert bsa_mosteller_m2(1.69, 79) == pytest.approx(math.sqrt(169 * 79 / 3600))
    ed = Volume(_box_labels(2, 10, 2, 6), np.eye(4), (8.0, 1.0, 1.0))
    f = compute_function(ed, ed)
    assert f.bsa_m2 is None and f.lv_edv_index_ml_per_m2 is None and f.lv_co_l_per_min is None


def test_base_is_the_end_with_the_largest_cavity():
    lab = np.zeros((6, 20, 20), np.uint8)
    lab[1:6, 2:18, 2:18] = 2
    for s, half in zip(range(1, 6), (2, 3, 4, 5, 6)):  # cavity grows towards slice 5
        lab[s, 10 - half:10 + half, 10 - half:10 + half] = 3
    assert order_base_to_apex(lab) == (5, 4, 3, 2, 1)
    assert order_base_to_apex(lab[::-1]) == (0, 1, 2, 3, 4)
