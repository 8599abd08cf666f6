"""T1 mapping and ECV (issue 17): the MOLLI fit against analytic curves and the generator's exact T1 per tissue,
and segmental T1 / ECV of run() against the generator's truth (cine network replaced by the truth labels)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from tests.cardiac.real_weights import weights_or_skip
from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.cardiac.t1 import read_hematocrit
from zeroclick.pipelines.cardiac.t1_fit import fit_molli

TI_MS = np.array([102.0, 182.0, 262.0, 1089.0, 1171.0, 1251.0, 2078.0, 3066.0])


def _look_locker(t1_ms: np.ndarray, a: float = 600.0, ratio: float = 0.85) -> np.ndarray:
    """|A - B exp(-TI/T1*)| with T1* = ratio x T1 and B = A (1 + 1/ratio): the fit must return T1."""
    t1s = ratio * t1_ms
    return np.abs(a - a * (1.0 + 1.0 / ratio) * np.exp(-TI_MS[:, None] / t1s[None, :]))


def test_fit_recovers_analytic_t1_with_look_locker_correction():
    t1 = np.array([250.0, 300.0, 460.0, 990.0, 1280.0, 1580.0, 2000.0])
    fit = fit_molli(_look_locker(t1), TI_MS)
    np.testing.assert_allclose(fit.t1_ms, t1, rtol=1e-3)
    np.testing.assert_allclose(fit.t1_star_ms, 0.85 * t1, rtol=1e-3)
    assert np.all(fit.r2 > 0.9999)


def test_fit_with_noise_is_unbiased_and_shuffled_inversion_times_are_sorted():
    rng = np.random.default_rng(0)
    t1 = np.full(4000, 1000.0)
    signal = _look_locker(t1)
    noisy = np.sqrt((signal + rng.normal(0, 6.0, signal.shape)) ** 2 + rng.normal(0, 6.0, signal.shape) ** 2)
    order = rng.permutation(len(TI_MS))
    fit = fit_molli(noisy[order], TI_MS[order])
    assert np.nanmedian(fit.t1_ms) == pytest.approx(1000.0, rel=0.01)
    assert np.nanmedian(fit.r2) > 0.99


def test_background_pixels_are_not_fitted():
    signal = np.concatenate([_look_locker(np.array([1000.0])), np.zeros((8, 1))], axis=1)
    fit = fit_molli(signal, TI_MS)
    assert np.isfinite(fit.t1_ms[0]) and np.isnan(fit.t1_ms[1]) and fit.n_pixels == 1


def test_hematocrit_argument_percent_and_sidecar(tmp_path):
    assert read_hematocrit(0.42, None) == (0.42, "argument")
    assert read_hematocrit(42, None) == (0.42, "argument")
    assert read_hematocrit(None, tmp_path) == (None, "")
    (tmp_path / "hematocrit.json").write_text(json.dumps({"hematocrit": 0.38}))
    assert read_hematocrit(None, tmp_path) == (0.38, "hematocrit.json")
    with pytest.raises(InvalidInputError, match="fraction"):
        read_hematocrit(0.9, None)


# ------------------------------------------------------------------------------------ generated exam

def _generated(tmp_path_factory, seed):
    """A minimum-size generated exam with native and post-contrast MOLLI + maps: (folder, truth, ground truth)."""
    from zeroclick.imaging.synthetic.cmr import generate_exam, load_truth, minimum_images

    out = tmp_path_factory.mktemp(f"t1-exam{seed}") / "exam"
    generate_exam(out, n_images=minimum_images(post_contrast_t1=True), seed=seed, post_contrast_t1=True)
    return out, load_truth(out), json.loads((out / "ground_truth.json").read_text())


@pytest.fixture(scope="module")
def exam(tmp_path_factory):
    return _generated(tmp_path_factory, 1)


def test_insertion_points_match_the_phantoms_own(exam):
    """AHA borders: the RV insertion points our cine rule finds on the truth ED labels against the phantom's own
    insertion directions (ground_truth.json). Measured on seeds 1, 3-6: RMS 1.6 deg, worst 5.3 deg (an apical
    slice, where the RV tip is thinner than a pixel); seed 1: RMS 1.3, worst 3.4."""
    from zeroclick.imaging.volume import Volume
    from zeroclick.pipelines.cardiac import aha
    from zeroclick.pipelines.cardiac.function import order_base_to_apex

    _, truth, gt = exam
    cine = truth["cine_sax"]
    ed = Volume(cine.array[0], cine.affine, cine.spacing_mm)
    frames = aha.cine_frames(ed, order_base_to_apex(ed.array))
    dirs = gt["aha"]["insertion_directions_lps"]
    errors = []
    for f in frames.values():
        for name, found in (("anterior", f.theta0_deg), ("inferior", float(f.absolute_deg(f.span_deg)))):
            want = aha._theta_of_lps(np.asarray(dirs[name]), ed.spacing_mm[1:], ed.affine)
            errors.append(abs((found - want + 180.0) % 360.0 - 180.0))
    assert len(frames) >= 6
    assert max(errors) <= 6.0 and float(np.sqrt(np.mean(np.square(errors)))) <= 2.0, np.round(errors, 1)


def test_cine_labels_reach_the_map_grid_by_gaussian_interpolation(exam):
    """Cine truth (1.5625 mm) carried onto the T1 map grid (1.875 mm) against the generator's own map labels:
    Gaussian per-label interpolation gets fewer myocardium pixels wrong than nearest neighbour (5 exams:
    3.8% vs 8.3%)."""
    from zeroclick.imaging.dicom import scan
    from zeroclick.imaging.volume import Volume
    from zeroclick.pipelines.cardiac.lge_magnitude import propagate_labels

    out, truth, gt = exam
    t1_map = next(s for s in scan(out / "dicom").find("t1_map") if "POST" not in s.description.upper()).volume()
    cine = truth["cine_sax"]
    diastasis = Volume(cine.array[8], cine.affine, cine.spacing_mm)  # the map's cardiac state (75% of RR)
    want = truth["t1"].array >= 2
    wrong = {name: np.count_nonzero((lab == 2) != want) / want.sum()
             for name, lab in (("gauss", propagate_labels(diastasis, t1_map)),
                               ("nearest", propagate_labels(diastasis, t1_map, sigma_px=None)))}
    assert wrong["gauss"] < 0.05 and wrong["gauss"] < 0.7 * wrong["nearest"], wrong


def test_blood_pool_t1_leaves_out_papillary_muscles():
    """The cavity label holds papillary muscles (myocardial T1): the blood T1 must stay the blood's."""
    from zeroclick.pipelines.cardiac.t1 import blood_pool_t1

    rng = np.random.default_rng(3)
    blood = rng.normal(300.0, 25.0, 900)
    papillary = rng.normal(460.0, 25.0, 150)  # 14% of the cavity
    values = np.concatenate([blood, papillary])
    assert blood_pool_t1(values) == pytest.approx(300.0, rel=0.005)
    assert np.median(values) > 303.0  # what a plain median of the cavity reads
    assert blood_pool_t1(blood) == pytest.approx(float(blood.mean()), rel=0.002)


def _without(exam_dir, tmp_path, *keys):
    """A copy of the exam's DICOM folder without the series whose folder names end in ``keys``."""
    out = tmp_path / "dicom"
    out.mkdir()
    for d in sorted((exam_dir / "dicom").iterdir()):
        if not any(d.name.endswith(k) for k in keys):
            shutil.copytree(d, out / d.name)
    return out


def _run(dicom_dir, truth, **kwargs):
    from tests.cardiac.phantom import TruthSegmenter
    from zeroclick.pipelines.cardiac import run
    from zeroclick.pipelines.cardiac.inputs import load_case

    case = load_case(dicom_dir)
    segs = {"cine_segmenter": TruthSegmenter(case.cine, truth["cine_sax"].array.astype(np.uint8))}
    if case.lge is not None and case.lge.meta.get("label") == "lge_psir":
        segs["lge_segmenter"] = TruthSegmenter(case.lge, truth["lge"].array.astype(np.uint8))
    return run(case, **segs, **kwargs)


#: Per-segment bounds. The issue asks 2% / 0.02; an ideal reader (the generator's own labels and segment
#: geometry, plain mean over the truth core of the same maps) meets that in 160/156/159 of 160 native/post/ECV
#: values on five generated exams (seeds 1, 3-6, scanner maps and MOLLI fit): the scanner maps carry white noise
#: (SD 25 ms, 5% of a post-contrast T1) and a 0.6-pixel blur over ~45 core pixels per segment. The pipeline,
#: which carries the cine myocardium over at 1.5625 mm onto the 1.875 mm map grid, meets it in 158/150/159
#: (worst 2.7%, 3.4%, 0.023): all 16 segments are held to the worst of those five exams (3% / 4% / 0.03)
#: and all but a few to the 2% / 0.02 of the issue. Nine exams (seeds 1, 3-10, 288 values): ideal reader
#: 288/279/287, pipeline 285/269/284 (truth cine labels) and 283/265/280 (real networks, worst 2.2%, 4.5%, 0.034).
SEGMENT_BOUNDS = {"native": (0.02, 0.03, 15), "post": (0.02, 0.04, 14), "ecv": (0.02, 0.03, 15)}


def _check_segments(result, gt):
    truth = gt["t1"]["segments"]
    errors: dict[str, list[float]] = {"native": [], "post": [], "ecv": []}
    for seg in result.t1.segments:
        want = truth[str(seg.segment)]
        errors["native"].append(abs(seg.native_t1_ms / want["native_t1_ms"] - 1.0))
        errors["post"].append(abs(seg.post_t1_ms / want["post_t1_ms"] - 1.0))
        errors["ecv"].append(abs(seg.ecv_fraction - want["ecv"]))
    assert len(errors["native"]) == 16 and len(truth) == 16
    for key, (target, bound, n_within) in SEGMENT_BOUNDS.items():
        e = np.asarray(errors[key])
        assert e.max() <= bound, (key, e.round(4))
        assert (e <= target).sum() >= n_within, (key, e.round(4))


@pytest.mark.slow
def test_fitted_maps_match_generator_t1_per_tissue(exam):
    """Median fitted T1 per tissue (1-pixel-eroded truth regions) within 2% of the generator's T1."""
    from zeroclick.imaging.dicom import scan

    out, truth, gt = exam
    labels = truth["t1"].array
    found = 0
    for series in scan(out / "dicom").find("t1_molli_source"):
        vol = series.volume()
        rows, cols = np.nonzero((labels > 0).any(axis=0))  # fit the heart's box (+8 pixels), not the whole field
        box = (slice(None), slice(None), slice(rows.min() - 8, rows.max() + 9), slice(cols.min() - 8, cols.max() + 9))
        signal = np.zeros_like(vol.array)
        signal[box] = vol.array[box]
        fit = fit_molli(signal, vol.meta["inversion_times_ms"])
        want = gt["t1"]["post_t1_ms" if "POST" in series.description.upper() else "native_t1_ms"]
        for name, label in (("blood", 1), ("myocardium", 2), ("infarct", 3)):
            region = np.stack([ndimage.binary_erosion(labels[k] == label) for k in range(labels.shape[0])])
            assert region.sum() >= 20, name
            assert np.nanmedian(fit.t1_ms[region]) == pytest.approx(want[name], rel=0.02), (series.description, name)
            assert np.nanmedian(fit.r2[region]) > 0.99
        found += 1
    assert found == 2


@pytest.mark.slow
def test_scanner_maps_give_segmental_t1_and_ecv_of_the_truth(exam, tmp_path):
    out, truth, gt = exam
    result = _run(out / "dicom", truth, hematocrit=gt["t1"]["hematocrit"])
    assert result.status == "ok", [q.message for q in result.qc]
    t1 = result.t1
    assert (t1.native_source, t1.post_source) == ("scanner_map", "scanner_map")
    _check_segments(result, gt)
    # mean +- SD per segment: the generator writes white noise of SD 25 ms on both maps; a segment of remote
    # myocardium only shows that noise and some rim partial volume (5 exams: 22-38 ms native, 18-39 post), one
    # with infarct the two tissues' T1 difference on top
    truth_segments = gt["t1"]["segments"]
    pure = {int(k) for k, v in truth_segments.items() if v["ecv"] == gt["t1"]["ecv"]["myocardium"]}
    mixed = {s.segment for s in t1.segments} - pure
    assert pure and mixed
    # (seed 1, segment 7: the placed myocardium reaches one pixel into the blood pool at the infarct border, so
    # its core takes in ~4 pixels of the truth's infarct rim, +2.7% native: its SD shows the mixture)
    sd = {s.segment: (s.native_sd_ms, s.post_sd_ms) for s in t1.segments if s.segment in pure}
    noise_only = [k for k, (n, p) in sd.items() if 15.0 <= n <= 45.0 and 15.0 <= p <= 45.0]
    assert len(noise_only) >= len(sd) - 1, sd
    error = {s.segment: abs(s.native_t1_ms / truth_segments[str(s.segment)]["native_t1_ms"] - 1.0)
             for s in t1.segments if s.segment in pure}
    assert max(sd, key=lambda k: sd[k][0]) == max(error, key=error.get)
    assert max(s.native_sd_ms for s in t1.segments if s.segment in mixed) > 40.0
    want = gt["t1"]
    assert t1.native_t1_remote_ms == pytest.approx(want["native_t1_ms"]["myocardium"], rel=0.02)
    assert t1.native_t1_blood_ms == pytest.approx(want["native_t1_ms"]["blood"], rel=0.02)
    assert t1.post_t1_blood_ms == pytest.approx(want["post_t1_ms"]["blood"], rel=0.02)
    assert t1.ecv_remote_fraction == pytest.approx(want["ecv"]["myocardium"], abs=0.02)
    report = json.loads(result.to_json())
    assert report["measurements"]["ecv_remote_fraction"] == pytest.approx(t1.ecv_remote_fraction)
    assert report["t1"]["segments"][0]["segment"] == 1
    assert report["t1"]["segments"][0]["native_sd_ms"] == pytest.approx(t1.segments[0].native_sd_ms)


@pytest.fixture(scope="module")
def exam3(tmp_path_factory):
    return _generated(tmp_path_factory, 3)


def test_t1_registration_undoes_known_breath_hold_shifts(exam3):
    """Each map of seed 3 moved by a known in-plane shift: the placement must find it on every slice. Measured on
    seeds 1, 3 and 7 (3 shifts x native/post maps, truth cine labels): with the contrast of the 1-pixel cores 16 of
    18 exact (seed 1's native map one column off twice); with the whole masks 9 of 18 (every native map one column
    off), on seed 3 3 of 6."""
    from zeroclick.pipelines.cardiac.inputs import load_case
    from zeroclick.pipelines.cardiac.lge_magnitude import nearest_phase, place_cine_labels, trigger_time_ms
    from zeroclick.pipelines.cardiac.t1 import CORE_RIM_PX

    out, truth, _ = exam3
    case = load_case(out / "dicom")  # one scan: the MOLLI sources and the maps are in case.t1
    molli = next(v for v in case.t1 if v.meta["label"] == "t1_molli_source")
    phase = nearest_phase(case.cine, trigger_time_ms(molli), 0)
    cine = case.cine.phase(phase).with_array(truth["cine_sax"].array[phase].astype(np.uint8))
    exact = 0
    maps = [v for v in case.t1 if v.meta["label"] == "t1_map"]
    assert len(maps) == 2
    for vol in maps:
        row_mm, col_mm = vol.spacing_mm[1:]
        for shift in ((2, -3), (4, 1), (-3, -3)):
            moved = vol.with_array(np.roll(np.asarray(vol.array, dtype=np.float64), shift, axis=(1, 2)))
            found = [(round(r / row_mm), round(c / col_mm))
                     for r, c in place_cine_labels(cine, moved, core_px=CORE_RIM_PX).shifts_mm]
            assert all(max(abs(f[0] - shift[0]), abs(f[1] - shift[1])) <= 1 for f in found), (shift, found)
            exact += all(f == shift for f in found)
    assert exact == 6, exact


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_cine_network_keeps_the_apical_segments_in_place(exam):
    """The production path (the real ACDC network segments the cine, EMIDEC the PSIR LGE) on seed 1. The network
    draws only a 25 deg sliver of RV against the apex; when that slice kept its own insertion points, the apical
    septal and lateral segments read -7.0 % / +10.2 % native and +10.4 % / -11.4 % post-contrast (ECV 0.08 off)."""
    from zeroclick.pipelines.cardiac import run
    from zeroclick.pipelines.cardiac.inputs import load_case

    weights_or_skip()
    out, _, gt = exam
    result = run(load_case(out / "dicom"), hematocrit=gt["t1"]["hematocrit"])
    assert result.status == "ok", [q.message for q in result.qc]
    assert not any(w.weights_id == "ground-truth" for w in result.provenance.weights)
    _check_segments(result, gt)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_cine_network_on_fitted_maps_moves_nothing(exam3, tmp_path):
    """Seed 3, MOLLI fit, real cine network: the maps lie where their geometry says, so no slice may move. With the
    whole masks as the registration's contrast, the apical slice of the fitted native map moved one pixel
    diagonally towards epicardial fat (its lower T1 lowers the myocardium's median: +12 % contrast) and the apical
    septal / lateral segments read +5.7 % / -7.7 %; the contrast of the 1-pixel cores does not reward that."""
    from zeroclick.pipelines.cardiac import run
    from zeroclick.pipelines.cardiac.inputs import load_case

    weights_or_skip()
    out, _, gt = exam3
    result = run(load_case(_without(out, tmp_path, "t1_map", "t1_map_post")), hematocrit=gt["t1"]["hematocrit"])
    assert (result.t1.native_source, result.t1.post_source) == ("molli_fit", "molli_fit")
    for info in (result.t1.native_propagation, result.t1.post_propagation):
        assert info is not None and all(shift == (0.0, 0.0) for shift in info.shifts_mm), info.shifts_mm
    _check_segments(result, gt)


@pytest.mark.slow
def test_molli_fit_when_no_scanner_map_and_hematocrit_sidecar(exam, tmp_path):
    out, truth, gt = exam
    dicom = _without(out, tmp_path, "t1_map", "t1_map_post")
    (dicom / "hematocrit.json").write_text(json.dumps({"hematocrit": gt["t1"]["hematocrit"]}))
    result = _run(dicom, truth)
    t1 = result.t1
    assert (t1.native_source, t1.post_source) == ("molli_fit", "molli_fit")
    assert t1.hematocrit_source == "hematocrit.json"
    assert t1.native_fit_r2_median > 0.99 and t1.fit_seconds_per_slice > 0
    _check_segments(result, gt)


@pytest.mark.slow
def test_native_only_reports_t1_without_ecv(exam, tmp_path):
    out, truth, gt = exam
    result = _run(_without(out, tmp_path, "_post"), truth, hematocrit=0.42)
    assert result.t1.native_source == "scanner_map" and result.t1.post_source == ""
    assert result.t1.ecv_remote_fraction is None
    assert all(s.ecv_fraction is None for s in result.t1.segments)


def _vol(value, label, description="", number=1):
    from zeroclick.imaging.volume import Volume

    return Volume(np.full((1, 8, 8), value, np.float32), np.eye(4), (8.0, 1.0, 1.0),
                  meta={"label": label, "series_description": description, "series_number": number})


def test_series_selection_native_post_and_one_series_per_slice():
    from zeroclick.pipelines.cardiac.t1 import select_t1_series

    # post-contrast by description; several series of one state are all kept, in series order
    sel = select_t1_series([_vol(1000, "t1_map", "T1 map", 3), _vol(1000, "t1_map", "T1 map", 2),
                            _vol(450, "t1_map", "T1 map POST", 9), _vol(0, "t1_molli_source", "MOLLI", 1)])
    assert [v.meta["series_number"] for v in sel["native_map"]] == [2, 3]
    assert [v.meta["series_number"] for v in sel["post_map"]] == [9]
    assert len(sel["native_molli"]) == 1 and "post_molli" not in sel
    # unlabelled maps: gadolinium halves T1, so the low-median ones are post-contrast
    sel = select_t1_series([_vol(990, "t1_map", "MOLLI map", 5), _vol(440, "t1_map", "MOLLI map", 11),
                            _vol(1010, "t1_map", "MOLLI map", 6)])
    assert [v.meta["series_number"] for v in sel["native_map"]] == [5, 6]
    assert [v.meta["series_number"] for v in sel["post_map"]] == [11]


def test_post_contrast_by_the_contrast_agent_the_scan_read(exam):
    """Without "post" in the description, the ContrastBolusAgent of the header (read once by the scan, kept in
    the Volume's meta: no second read of the file) marks a map as post-contrast."""
    from zeroclick.imaging.dicom import scan
    from zeroclick.pipelines.cardiac.t1 import is_post_contrast

    out, _, _ = exam
    maps = {s.description: s.volume() for s in scan(out / "dicom").find("t1_map")}
    post = next(v for d, v in maps.items() if "POST" in d.upper())
    native = next(v for d, v in maps.items() if "POST" not in d.upper())
    assert post.meta["contrast_bolus_agent"] == "Gadobutrol" and native.meta["contrast_bolus_agent"] == ""
    renamed = post.with_array(post.array, meta={**post.meta, "series_description": "T1 map"})
    assert is_post_contrast(renamed) and not is_post_contrast(native)


@pytest.mark.slow
def test_maps_written_one_series_per_slice_are_pooled(exam):
    """The same maps split into one series per slice (as scanners often write them) give the same segments."""
    import dataclasses

    from tests.cardiac.phantom import TruthSegmenter
    from zeroclick.imaging.volume import Volume
    from zeroclick.pipelines.cardiac import run
    from zeroclick.pipelines.cardiac.inputs import load_case

    out, truth, gt = exam
    case = load_case(out / "dicom")
    split = []
    for v in case.t1:
        if v.meta["label"] != "t1_map":
            continue
        for s in range(v.spatial_shape[0]):
            aff = v.affine.copy()
            aff[:3, 3] = v.meta["slice_positions_lps_mm"][s]
            meta = {**v.meta, "slice_positions_lps_mm": [v.meta["slice_positions_lps_mm"][s]],
                    "series_number": 100 * (v.meta.get("series_number") or 0) + s}
            split.append(Volume(v.array[s:s + 1], aff, v.spacing_mm, meta=meta))
    segs = {"cine_segmenter": TruthSegmenter(case.cine, truth["cine_sax"].array.astype(np.uint8)),
            "lge_segmenter": TruthSegmenter(case.lge, truth["lge"].array.astype(np.uint8))}
    mollis = tuple(v for v in case.t1 if v.meta["label"] != "t1_map")  # their trigger time picks the cine phase
    whole = run(case, hematocrit=0.42, **segs)
    pooled = run(dataclasses.replace(case, t1=tuple(split) + mollis), hematocrit=0.42, **segs)
    assert len(split) == 6
    # each single-slice series is registered on its own (separate breath-holds), so a pixel may move
    for a, b in zip(whole.t1.segments, pooled.t1.segments):
        assert abs(b.native_pixels - a.native_pixels) <= 3 and abs(b.post_pixels - a.post_pixels) <= 3, a.segment
        assert b.native_t1_ms == pytest.approx(a.native_t1_ms, rel=0.005) if a.native_t1_ms else b.native_t1_ms is None
        assert b.ecv_fraction == pytest.approx(a.ecv_fraction, abs=0.005) if a.ecv_fraction else b.ecv_fraction is None
    _check_segments(pooled, gt)
