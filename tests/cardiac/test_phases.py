import numpy as np
import pytest

from zeroclick.pipelines.cardiac.phases import choose_phases


def _cine(radii):
    """labels[phase, slice]: LV cavity discs of radius radii[phase][slice] (pixels)."""
    radii = np.asarray(radii, dtype=float)
    r, c = np.mgrid[:40, :40]
    rad = np.hypot(r - 20, c - 20)
    lab = np.zeros(radii.shape + (40, 40), np.uint8)
    for p in range(radii.shape[0]):
        for s in range(radii.shape[1]):
            lab[p, s][rad < radii[p, s]] = 3
    return lab


def _segmenter(lab, log):
    def seg(requests):
        log.extend(requests)
        return [lab[phase, list(slices)] for phase, slices in requests]
    return seg


def _smooth_radii(n_phases=25, n_slices=10, es=9):
    t = np.arange(n_phases)
    scale = 1 - 0.35 * np.sin(np.pi * np.clip(t / (2 * es), 0, 1)) ** 2
    base = np.linspace(6, 14, n_slices)
    return np.outer(scale, base)


def test_search_matches_all_phase_run_with_fewer_slices():
    lab = _cine(_smooth_radii())
    log = []
    fast = choose_phases(25, 10, _segmenter(lab, log), voxel_volume_ml=0.01)
    full = choose_phases(25, 10, _segmenter(lab, []), voxel_volume_ml=0.01, all_phases=True)
    assert full.choice.method == "all_phases" and full.slices_inferred == 250
    assert (fast.choice.ed_phase, fast.choice.es_phase) == (full.choice.ed_phase, full.choice.es_phase)
    truth = (lab == 3).sum(axis=(1, 2, 3))
    assert fast.choice.es_phase == int(np.argmin(truth)) and fast.choice.ed_phase == int(np.argmax(truth))
    assert fast.slices_inferred < 80
    # work = distinct (phase, slice) pairs; whole stacks are requested whole (post-processed as one stack),
    # the real segmenters keep raw network labels so a slice asked for again is not inferred again
    assert len({(p, s) for p, sl in log for s in sl}) == fast.slices_inferred
    assert any(len(sl) == 10 for _, sl in log)
    np.testing.assert_array_equal(fast.full_stacks[fast.choice.es_phase], lab[fast.choice.es_phase])


def test_uncertain_neighbour_is_confirmed_on_the_full_stack():
    radii = _smooth_radii(20, 8, es=8)
    # phases 8 and 9: mid slices (3, 4) say 8 is smallest by a hair, the whole stack says 9
    radii[9] = radii[8]
    radii[9, 0] -= 1.0
    lab = _cine(radii)
    truth = (lab == 3).sum(axis=(1, 2, 3))
    assert int(np.argmin(truth)) == 9
    res = choose_phases(20, 8, _segmenter(lab, []), voxel_volume_ml=0.01, margin_fraction=0.05)
    assert res.choice.method == "few_slice_search+confirmed"
    assert 9 in res.choice.confirmed_phases
    assert res.choice.es_phase == 9


def test_single_phase_input():
    lab = _cine(np.full((1, 4), 8.0))
    res = choose_phases(1, 4, _segmenter(lab, []), voxel_volume_ml=0.01)
    assert res.choice.method == "single_phase" and res.slices_inferred == 4
    assert res.choice.full_stack_lv_ml[0] == pytest.approx((lab == 3).sum() * 0.01)


def test_issue_4_coarse_single_slice_stage_saves_slices_on_a_30_phase_exam():
    lab = _cine(_smooth_radii(30, 14, es=10))
    fast = choose_phases(30, 14, _segmenter(lab, []), voxel_volume_ml=0.01)
    full = choose_phases(30, 14, _segmenter(lab, []), voxel_volume_ml=0.01, all_phases=True)
    assert (fast.choice.ed_phase, fast.choice.es_phase) == (full.choice.ed_phase, full.choice.es_phase) == (0, 10)
    # 10 coarse + 2 windows of 5 phases x 2 slices (minus the cached coarse slice) + 2 x 12 = 52 (62 with the
    # earlier two-slice coarse stage), + 12 per confirmed neighbour (here the flat diastolic plateau)
    assert fast.slices_inferred == 52 + 12 * len(fast.choice.confirmed_phases)
    assert fast.choice.coarse_slice in fast.choice.search_slices
    assert np.isfinite(fast.choice.coarse_curve_ml[::3]).all() and np.isnan(fast.choice.coarse_curve_ml[1])


def test_issue_4_search_follows_the_curve_when_the_coarse_slice_misleads():
    n_phases, n_slices = 24, 6  # search slices (2, 3); the coarse stage sees slice 3 only
    t = np.arange(n_phases)
    radii = np.full((n_phases, n_slices), 10.0)
    radii[:, 2] = np.minimum(6 + 0.5 * np.abs(t - 13), 12)  # the stack is smallest at phase 13 ...
    radii[:, 3] = 8.0
    radii[9, 3] = 7.8  # ... but slice 3 alone has its coarse minimum at phase 9
    lab = _cine(radii)
    truth = (lab == 3).sum(axis=(1, 2, 3))
    assert int(np.argmin(truth)) == 13
    coarse = (lab[::3, 3] == 3).sum(axis=(1, 2))
    assert int(np.argmin(coarse)) * 3 == 9
    res = choose_phases(n_phases, n_slices, _segmenter(lab, []), voxel_volume_ml=0.01)
    assert res.choice.es_phase == 13
