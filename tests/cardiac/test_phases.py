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


def _cine_with_wall(radii, wall=3.0):
    """labels (cavity 3 inside radius, myocardium 2 in a ring of ``wall`` pixels) and bSSFP-like images
    (blood 100, myocardium 30, background 10) of those discs, [phase, slice, 40, 40]."""
    radii = np.asarray(radii, dtype=float)
    r, c = np.mgrid[:40, :40]
    rad = np.hypot(r - 20, c - 20)
    lab = np.zeros(radii.shape + (40, 40), np.uint8)
    img = np.full(lab.shape, 10.0)
    for p in range(radii.shape[0]):
        for s in range(radii.shape[1]):
            myo = (rad >= radii[p, s]) & (rad < radii[p, s] + wall)
            lab[p, s][myo], img[p, s][myo] = 2, 30.0
            lab[p, s][rad < radii[p, s]], img[p, s][rad < radii[p, s]] = 3, 100.0
    return lab, img


def _shifted_radii(n_phases, n_slices, ed, es):
    """A smooth LV curve with its maximum at ``ed`` and its minimum at ``es`` (phases, cyclic)."""
    t = (np.arange(n_phases) - ed) % n_phases
    a = (es - ed) % n_phases  # contraction, then relaxation back to the single maximum at ed
    down = (1 - np.cos(np.pi * t / a)) / 2
    up = (1 + np.cos(np.pi * (t - a) / (n_phases - a))) / 2
    scale = 1 - 0.35 * np.where(t <= a, down, up)
    return np.outer(scale, np.linspace(6, 14, n_slices))


def test_image_coarse_curve_finds_the_extremes_with_fewer_network_slices():
    lab, img = _cine_with_wall(_shifted_radii(30, 14, ed=4, es=15))
    truth = (lab == 3).sum(axis=(1, 2, 3))
    ed_true, es_true = int(np.argmax(truth)), int(np.argmin(truth))
    assert ed_true != 0  # phase 0 is not ED here: the image curve must still find it
    fast = choose_phases(30, 14, _segmenter(lab, []), voxel_volume_ml=0.01, images=lambda sl: img[:, list(sl)])
    net = choose_phases(30, 14, _segmenter(lab, []), voxel_volume_ml=0.01)
    assert fast.choice.coarse_source == "image" and net.choice.coarse_source == "network"
    assert (fast.choice.ed_phase, fast.choice.es_phase) == (ed_true, es_true) == (net.choice.ed_phase,
                                                                                  net.choice.es_phase)
    assert fast.choice.coarse_slice is None and np.isfinite(fast.choice.coarse_curve_ml).all()
    assert fast.slices_inferred < net.slices_inferred


def test_image_curve_off_by_two_phases_is_corrected_by_the_network_climb():
    lab, _ = _cine_with_wall(_shifted_radii(30, 14, ed=0, es=10))
    _, img = _cine_with_wall(_shifted_radii(30, 14, ed=0, es=12))  # the image says ES = 12, the LV says 10
    res = choose_phases(30, 14, _segmenter(lab, []), voxel_volume_ml=0.01, images=lambda sl: img[:, list(sl)])
    assert res.choice.coarse_source == "image"
    assert int(np.nanargmin(res.choice.coarse_curve_ml)) == 12
    assert res.choice.es_phase == int(np.argmin((lab == 3).sum(axis=(1, 2, 3)))) == 10


def test_image_curve_without_an_lv_at_phase_0_falls_back_to_the_network():
    lab, img = _cine_with_wall(_shifted_radii(30, 14, ed=0, es=10))
    blank = lab.copy()
    blank[0] = 0  # the network finds no LV at phase 0: no region for the image curve

    res = choose_phases(30, 14, _segmenter(blank, []), voxel_volume_ml=0.01, images=lambda sl: img[:, list(sl)])
    assert res.choice.coarse_source == "network" and res.choice.coarse_slice is not None


def test_dark_blood_images_give_no_image_curve():
    """Blood darker than myocardium (not a bright-blood cine): the image curve is refused, the network decides."""
    lab, img = _cine_with_wall(_shifted_radii(30, 14, ed=0, es=10))
    dark = np.where(img == 100.0, 5.0, img)  # blood now darker than the myocardium (30)
    res = choose_phases(30, 14, _segmenter(lab, []), voxel_volume_ml=0.01, images=lambda sl: dark[:, list(sl)])
    assert res.choice.coarse_source == "network"
    assert (res.choice.ed_phase, res.choice.es_phase) == (0, 10)
