"""zeroclick.imaging.nifti: orientation contract, exact round trip, and the real ACDC/EMIDEC cases."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from zeroclick.imaging.nifti import load, save
from zeroclick.imaging.volume import Volume


def _ras_to_lps(p):
    return np.array([-p[0], -p[1], p[2]])


def test_contract_array_and_affine(tmp_path):
    data = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)  # x, y, z
    aff = np.array([[0.0, -1.2, 0.0, 10.0], [1.5, 0.0, 0.0, -3.0], [0.0, 0.0, 6.0, 7.0], [0, 0, 0, 1]])
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "a.nii.gz")
    vol = load(tmp_path / "a.nii.gz")
    assert vol.array.shape == (3, 5, 4)
    assert vol.array.dtype == np.int16
    x, y, z = 3, 1, 2
    assert vol.array[z, y, x] == data[x, y, z]
    np.testing.assert_allclose(vol.index_to_lps(np.array([z, y, x])), _ras_to_lps(aff[:3, :3] @ [x, y, z] + aff[:3, 3]))
    assert vol.spacing_mm == pytest.approx((6.0, 1.2, 1.5))


def test_exact_round_trip_3d_and_4d(tmp_path):
    rng = np.random.default_rng(0)
    affine = np.array([[0.0, 0.3, 1.4, -20.0], [0.2, -1.3, 0.3, 15.0], [8.0, 0.1, 0.0, 40.0], [0, 0, 0, 1]])
    for arr, tt in ((rng.random((5, 7, 6), dtype=np.float32), None),
                    (rng.integers(0, 4, (3, 5, 7, 6)).astype(np.uint8), (0.0, 40.0, 80.0))):
        vol = Volume(arr, affine=affine, spacing_mm=tuple(np.linalg.norm(affine[:3, :3], axis=0)),
                     trigger_times_ms=tt)
        path = save(vol, tmp_path / f"v{arr.ndim}.nii.gz")
        back = load(path)
        np.testing.assert_array_equal(back.array, arr)
        assert back.array.dtype == arr.dtype
        np.testing.assert_allclose(back.affine, affine, atol=1e-5)
        if tt:
            assert back.trigger_times_ms == pytest.approx(tt)
        again = load(save(back, tmp_path / "again.nii"))
        np.testing.assert_array_equal(again.array, back.array)
        np.testing.assert_array_equal(again.affine, back.affine)
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("name,shape_xyz,spacing_xyz", [
    ("cmr/acdc/patient101_frame01.nii.gz", (232, 256, 10), (1.64062, 1.64062, 10.0)),
    ("cmr/acdc/patient101_frame14.nii.gz", (232, 256, 10), (1.64062, 1.64062, 10.0)),
    ("cmr/emidec/Case_P087.nii.gz", (246, 278, 6), (1.5625, 1.5625, 10.0)),
])
def test_real_cases_spacing_and_orientation(shared_data, name, shape_xyz, spacing_xyz):
    vol = load(shared_data / name)
    assert vol.array.shape == shape_xyz[::-1]
    # spacing is (slice, row, col) = (z, y, x): from pixdim, not the unit-scaled sform these files carry
    assert vol.spacing_mm == pytest.approx(spacing_xyz[::-1], rel=1e-4)
    assert "pixdim used" in vol.meta["affine_note"]
    img = nib.load(shared_data / name)
    data = np.asanyarray(img.dataobj)
    x, y, z = 100, 120, 3
    assert vol.array[z, y, x] == data[x, y, z]
    # axis directions are nibabel's (RAS -> LPS flips x and y): x runs to patient right, y anterior in LPS terms
    dirs = vol.affine[:3, :3] / np.array(vol.spacing_mm)
    np.testing.assert_allclose(dirs[:, 2], _ras_to_lps(img.affine[:3, 0] / np.linalg.norm(img.affine[:3, 0])))
    np.testing.assert_allclose(dirs[:, 1], _ras_to_lps(img.affine[:3, 1] / np.linalg.norm(img.affine[:3, 1])))
    np.testing.assert_allclose(dirs[:, 0], _ras_to_lps(img.affine[:3, 2] / np.linalg.norm(img.affine[:3, 2])))
    # voxel volume as the cardiac pipeline uses it
    assert vol.voxel_volume_ml == pytest.approx(np.prod(spacing_xyz) / 1000, rel=1e-4)
