import numpy as np
import pytest

from tests.cardiac.phantom import polar, sax_slice, volume
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.aha import (
    cine_frames,
    cine_slice_frame,
    compute_aha,
    fill_missing_frames,
    levels,
    segment_of,
)


def test_insertion_frame_follows_the_rv_interface():
    f = cine_slice_frame(sax_slice(20, 8), (1.0, 1.0), np.eye(4), 0)
    assert f is not None
    assert f.theta0_deg == pytest.approx(300, abs=3)  # anterior end (smaller row)
    assert f.direction == -1  # 300 -> 240 (septum) -> 180
    assert f.span_deg == pytest.approx(120, abs=5)


def test_segment_order_basal_and_apical():
    phi = np.array([30, 90, 150, 210, 270, 330])
    assert segment_of(phi, "basal", 120).tolist() == [2, 3, 4, 5, 6, 1]
    assert segment_of(phi, "mid", 120).tolist() == [8, 9, 10, 11, 12, 7]
    # apical: septal sector centred on the insertion bisector (60 deg): [15, 105) is septal
    assert segment_of(np.array([60, 150, 240, 330, 10]), "apical", 120).tolist() == [14, 15, 16, 13, 13]


def test_levels_use_array_split():
    assert levels((9, 8, 7, 6, 5, 4, 3)) == {9: "basal", 8: "basal", 7: "basal", 6: "mid", 5: "mid",
                                             4: "apical", 3: "apical"}


def _stack(wall_mm, n=6, thin_theta=None, thin_mm=None):
    out = []
    for s in range(n):
        sl = sax_slice(24 - 2 * s, wall_mm)
        if thin_theta is not None:
            rad, theta = polar()
            sector = (theta > thin_theta[0]) & (theta < thin_theta[1])
            outer = 24 - 2 * s + thin_mm
            sl[sector & (rad >= outer) & (sl == 2)] = 0
        out.append(sl)
    return np.stack(out)


def test_thickness_thickening_and_thin_flag():
    # inferolateral (segment 5/11: phi 180-240 -> theta 60-120) thinned to 4 mm at ED
    ed = volume(_stack(8, thin_theta=(55, 125), thin_mm=4))
    es = volume(_stack(12))
    a = compute_aha(ed, es)
    assert a.basal_slices == (0, 1) and a.apical_slices == (4, 5)
    seg1, seg5 = a.segment(1), a.segment(5)
    assert seg1.ed_thickness_mm == pytest.approx(8.0, abs=0.5)
    assert seg1.thickening_percent == pytest.approx(50.0, abs=8)
    assert seg5.ed_thickness_mm == pytest.approx(4.0, abs=0.5)
    assert seg5.thin_at_ed and not seg1.thin_at_ed
    assert a.segment(11).thin_at_ed


def _lge_from(cine: np.ndarray, infarct_theta):
    rad, theta = polar()
    lge = np.zeros_like(cine)
    lge[cine == 3] = 1
    lge[cine == 2] = 2
    sel = (theta > infarct_theta[0]) & (theta < infarct_theta[1])
    lge[(lge == 2) & sel[None]] = 3
    return lge


@pytest.mark.parametrize("flip", [False, True])
def test_transmurality_lands_in_the_right_segment(flip):
    cine = _stack(8)
    ed = volume(cine)
    lge = _lge_from(cine, (60, 120))  # phi 180-240: inferolateral
    lge_vol = volume(lge)
    if flip:  # LGE stored with columns reversed: the same anatomy, another image grid
        aff = np.diag([8.0, 1.0, -1.0, 1.0])
        aff[2, 3] = lge.shape[2] - 1
        lge_vol = Volume(lge[:, :, ::-1].copy(), aff, (8.0, 1.0, 1.0))
    a = compute_aha(ed, None, lge_vol)
    assert a.segment(5).transmurality_percent == pytest.approx(100.0, abs=4)
    assert a.segment(11).transmurality_percent == pytest.approx(100.0, abs=4)
    assert a.segment(1).transmurality_percent == 0.0
    assert a.segment(2).transmurality_percent == 0.0
    # apical: lateral sector 16 spans phi 150-240 -> contains the infarct's 180-240 part
    assert 40.0 < a.segment(16).transmurality_percent < 90.0


def test_a_sliver_of_rv_contact_borrows_the_neighbours_insertion_points():
    """At the apex a network may draw only a sliver of RV against the LV (generated exam, seed 1: a 25 deg
    contact 84 deg off the true anterior insertion; the apical T1 segments read -7 % / +10 %). A contact much
    shorter than the stack's does not locate the insertion points: the slice takes its neighbour's frame."""
    stack = _stack(8)
    rad, theta = polar()
    apex = stack[5]
    apex[apex == 1] = 0
    apex[(rad >= 18) & (rad < 24) & (theta > 150) & (theta < 175)] = 1  # 25 deg of RV, outside the true 180-300
    ed = volume(stack)
    order = (0, 1, 2, 3, 4, 5)
    own = cine_frames(ed, order)
    assert sorted(own) == [0, 1, 2, 3, 4]
    frames = fill_missing_frames(own, order, ed, (2, 3))
    assert frames[5].theta0_deg == pytest.approx(own[4].theta0_deg)
    assert frames[5].span_deg == pytest.approx(120, abs=5)
    # infarct in the septal 90 deg of the apex (theta 195-285 about the bisector 240): septal segment 14 only
    lge = _lge_from(stack, (195, 285))
    lge[:4][lge[:4] == 3] = 2  # apical slices 4 and 5 only
    a = compute_aha(ed, None, volume(lge))
    assert a.segment(14).transmurality_percent == pytest.approx(100.0, abs=6)
    assert a.segment(13).transmurality_percent < 10 and a.segment(15).transmurality_percent < 10


def test_short_contact_everywhere_is_kept():
    """When every slice has only a short contact there is nothing better to borrow: the frames stay."""
    rad, theta = polar()
    stack = _stack(8)
    for sl in stack:
        sl[sl == 1] = 0
        sl[(rad >= 18) & (rad < 30) & (theta > 225) & (theta < 255)] = 1
    frames = cine_frames(volume(stack), tuple(range(6)))
    assert len(frames) == 6 and all(f.span_deg < 60 for f in frames.values())


def test_the_apical_cap_beyond_the_cavity_is_segment_17_not_an_apical_third():
    """AHA 2002: myocardium beyond the end of the LV cavity is the apical cap (segment 17, not reported); it is
    not one of the slices split into thirds. Counted as a slice, a cap cut by the stack moves a heavily infarcted
    apical slice into the mid third (generated exams: segments 7/8 off by up to 32 points)."""
    stack = _stack(8, n=7)
    cap = sax_slice(0.0, 6.0, rv=False)  # myocardium disc, no cavity
    stack[6] = cap
    ed = volume(stack)
    a = compute_aha(ed)
    assert (a.basal_slices, a.mid_slices, a.apical_slices) == ((0, 1), (2, 3), (4, 5))
    lge = _lge_from(stack, (0, 0))
    lge[:4][lge[:4] == 2] = 3  # basal and mid thirds infarcted, the apical third not
    lge[6][stack[6] == 2] = 3  # an infarcted cap: not in segments 13-16
    a = compute_aha(ed, None, volume(lge))
    assert all(a.segment(k).transmurality_percent == 0.0 for k in (13, 14, 15, 16))
    assert a.segment(7).transmurality_percent == pytest.approx(100.0)
    # without a cavity on every slice nothing is taken away from the three slices a stack needs
    assert compute_aha(volume(np.stack([cap] * 3))).apical_slices == (2,)
