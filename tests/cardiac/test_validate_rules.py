"""Issue 11: basal/apical slice rules (SCMR 2020) and coverage QC, on label stacks whose answer is known by
construction (slice 0 is the base, the apex is at the last slice)."""

import numpy as np
import pytest

from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.function import LV, MYO, RV
from zeroclick.pipelines.cardiac.qc import check_masks
from zeroclick.pipelines.cardiac.volume_rule import apply_volume_rule, coverage_problems, lv_surround_fraction


def _ring(lab, s, centre=(20, 20), r_cav=6, wall=3, rv=True):
    yy, xx = np.mgrid[: lab.shape[1], : lab.shape[2]]
    d = np.hypot(yy - centre[0], xx - centre[1])
    lab[s][d < r_cav + wall] = MYO
    lab[s][d < r_cav] = LV
    if rv:
        lab[s][(np.abs(yy - centre[0]) < 5) & (xx >= centre[1] + r_cav + wall) & (xx < centre[1] + r_cav + wall + 8)] = RV


def _stack(n=6, radii=(7, 8, 8, 7, 5, 3)):
    lab = np.zeros((n, 40, 40), np.uint8)
    for s, r in enumerate(radii[:n]):
        _ring(lab, s, r_cav=r)
    return lab


def test_reference_rule_counts_every_labelled_voxel():
    ed, es = _stack(), _stack()
    ed2, es2, rec = apply_volume_rule(ed, es, rule="reference")
    assert np.array_equal(ed2, ed) and np.array_equal(es2, es)
    assert rec.rule == "reference" and rec.excluded == ()
    assert rec.lv_ed == tuple(range(6))


def test_basal_slice_with_cavity_open_over_half_its_border_is_dropped():
    ed = _stack()
    ed[0][:, 20:] = np.where(ed[0][:, 20:] == MYO, 0, ed[0][:, 20:])  # ring open on one half: atrium/outflow
    assert lv_surround_fraction(ed[0]) < 0.5 <= lv_surround_fraction(ed[1])
    out, _, rec = apply_volume_rule(ed, _stack())
    assert not np.isin(out[0], (LV, MYO)).any()
    assert np.array_equal(out[1:], ed[1:])  # the walk stops at the first closed ring
    assert [(e.phase, e.slice, e.structure) for e in rec.excluded][0] == ("ED", 0, "lv")
    assert rec.lv_ed == (1, 2, 3, 4, 5)


def test_basal_slice_whose_cavity_halves_is_dropped_partial_volume():
    ed = _stack(radii=(3, 8, 8, 7, 5, 3))  # cavity 28 px under 50% of the next slice's 200 px
    out, _, rec = apply_volume_rule(ed, _stack(radii=(3, 8, 8, 7, 5, 3)))
    assert rec.lv_ed == (1, 2, 3, 4, 5)
    assert "next slice" in rec.excluded[0].reason


def test_es_base_descended_slices_do_not_count():
    ed = _stack()
    es = _stack(radii=(7, 6, 6, 5, 3, 2))
    # slice 0 at ES: a thin ring (atrial wall) keeps 40% of the ED myocardium -> dropped whatever its RV
    es[0] = 0
    _ring(es, 0, r_cav=8, wall=1)
    # slice 1 at ES: 70% of the ED myocardium but RV still there -> still ventricle, kept
    _, out, rec = apply_volume_rule(ed, es)
    kept = np.count_nonzero(es[0] == MYO) / np.count_nonzero(ed[0] == MYO)
    assert kept < 0.5
    assert rec.lv_es[0] == 1 and 0 not in rec.lv_es
    assert any(e.phase == "ES" and e.slice == 0 and "systole" in e.reason for e in rec.excluded)
    # a slice keeping 50-80% of its ED myocardium: ventricle while it still holds RV, atria once the RV has
    # left it too (the tricuspid annulus descends further than the mitral one)
    for rv, first_counted in ((True, 1), (False, 2)):
        es2 = es.copy()
        es2[1] = 0
        _ring(es2, 1, r_cav=7, wall=2, rv=rv)
        ratio = np.count_nonzero(es2[1] == MYO) / np.count_nonzero(ed[1] == MYO)
        assert 0.5 < ratio < 0.8
        _, _, rec2 = apply_volume_rule(ed, es2)
        assert rec2.lv_es[0] == first_counted, rv


def test_rv_basal_of_the_lv_base_is_atrium():
    ed = _stack()
    ed[0] = 0
    ed[0][10:20, 25:35] = RV  # RV blood with no LV on the slice: right atrium
    out, _, rec = apply_volume_rule(ed, _stack())
    assert not (out[0] == RV).any()
    assert any(e.structure == "rv" and e.slice == 0 for e in rec.excluded)
    assert (out[1] == RV).any()


def test_coverage_warns_only_when_geometry_shows_it():
    lab = _stack(radii=(7, 8, 8, 7, 5, 1))
    lab[0][:, 21:] = np.where(lab[0][:, 21:] == MYO, 0, lab[0][:, 21:])  # base reached: ring opens
    assert coverage_problems(lab, (10.0, 1.5, 1.5)) == []
    closed = _stack(radii=(7, 8, 8, 7, 5, 1))  # closed ring on the basal edge slice
    assert "basal edge slice 0" in coverage_problems(closed, (10.0, 1.5, 1.5))[0]
    open_apex = _stack(radii=(7, 8, 8, 8, 8, 8))  # the cavity does not close at the apical edge
    open_apex[0][:, 21:] = np.where(open_apex[0][:, 21:] == MYO, 0, open_apex[0][:, 21:])
    assert "apical edge slice 5" in coverage_problems(open_apex, (10.0, 1.5, 1.5))[0]
    # through the QC: a stack that reaches both edges but closes at both ends raises no coverage flag
    vol = Volume(lab, np.eye(4), (10.0, 1.5, 1.5))
    assert not [q for q in check_masks(vol, phase="ED") if q.code.endswith("coverage")]
    flags = check_masks(Volume(closed, np.eye(4), (10.0, 1.5, 1.5)), phase="ED")
    assert [q.severity for q in flags if q.code == "cine_ED_coverage"] == ["warning"]
    assert not [q for q in check_masks(Volume(closed, np.eye(4), (10.0, 1.5, 1.5)), phase="ES")
                if q.code.endswith("coverage")]
    # with the ES stack: the base is inside when it leaves the edge slice in systole, outside when it does not
    es_descended, es_stuck = _stack(radii=(0, 6, 6, 5, 3, 1)), _stack(radii=(5, 6, 6, 5, 3, 1))
    es_descended[0] = 0
    assert coverage_problems(closed, (10.0, 1.5, 1.5), es=es_descended) == []
    assert "end-systole" in coverage_problems(closed, (10.0, 1.5, 1.5), es=es_stuck)[0]
    vol = Volume(closed, np.eye(4), (10.0, 1.5, 1.5))
    assert not [q for q in check_masks(vol, phase="ED", es=vol.with_array(es_descended)) if q.code.endswith("coverage")]
    assert [q.code for q in check_masks(vol, phase="ED", es=vol.with_array(es_stuck))
            if q.code.endswith("coverage")] == ["cine_ED_coverage"]


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="scmr"):
        apply_volume_rule(_stack(), _stack(), rule="mine")


def test_apical_end_slice_off_the_lv_axis_is_not_ventricle():
    """Rule 4: the LV tapers to the apex. A blob the network labels beyond the apex, lying outside the LV of
    the slices basal of it, does not count; an apical cap on the axis (however small) does."""
    ed = _stack(n=7, radii=(7, 8, 8, 7, 5, 3, 0))
    _ring(ed, 6, centre=(20, 33), r_cav=2, wall=3, rv=False)  # beyond the apex, off the axis (cf. ACDC patient 119)
    inside = np.count_nonzero(np.isin(ed[6], (LV, MYO)) & np.isin(ed[4] | ed[5], (LV, MYO)))
    assert 0 < inside < 0.5 * np.count_nonzero(np.isin(ed[6], (LV, MYO)))
    out, es_out, rec = apply_volume_rule(ed, ed.copy())
    assert not np.isin(out[6], (LV, MYO)).any() and not np.isin(es_out[6], (LV, MYO)).any()
    assert np.array_equal(out[:6], ed[:6])
    assert {(e.phase, e.slice) for e in rec.excluded if "apical end slice" in e.reason} == {("ED", 6), ("ES", 6)}
    assert rec.lv_ed == (0, 1, 2, 3, 4, 5)
    # a small cap on the axis, and a last slice under-segmented by the network (the union of two slices counts)
    cap = _stack(n=7, radii=(7, 8, 8, 7, 5, 0, 0))
    cap[5] = 0
    cap[5][19:21, 19:21] = MYO  # the network kept 4 pixels of the slice before the end
    _ring(cap, 6, r_cav=2, wall=2, rv=False)
    out, _, rec = apply_volume_rule(cap, cap.copy())
    assert np.array_equal(out, cap) and not [e for e in rec.excluded if "apical" in e.reason]
    # the reference rule counts everything
    assert np.array_equal(apply_volume_rule(ed, ed.copy(), rule="reference")[0], ed)
