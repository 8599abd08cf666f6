"""NIfTI -> DICOM converter on the real ACDC / EMIDEC cases: pixels and geometry round-trip."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.imaging.synthetic.cmr import nifti_to_dicom

_FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])
_P = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def _volume_from_dicom(files):
    """[slice, row, col] array and (slice,row,col)->LPS affine, slices sorted along the normal."""
    dss = [pydicom.dcmread(f) for f in files]
    iop = np.array(dss[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, dtype=float), normal)))
    arr = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss])
    ps = [float(v) for v in dss[0].PixelSpacing]
    p0 = np.array(dss[0].ImagePositionPatient, dtype=float)
    aff = np.eye(4)
    aff[:3, 0] = np.array(dss[1].ImagePositionPatient, dtype=float) - p0
    aff[:3, 1] = iop[3:] * ps[0]
    aff[:3, 2] = iop[:3] * ps[1]
    aff[:3, 3] = p0
    return arr, aff


@pytest.mark.parametrize("name", ["acdc/patient101_frame01.nii.gz", "emidec/Case_P087.nii.gz"])
def test_real_case_round_trips_pixels_and_geometry(shared_data, tmp_path, name):
    path = shared_data / "cmr" / name
    img = nib.load(path)
    data = np.asarray(img.dataobj)
    series = nifti_to_dicom(path, tmp_path / "dcm", series_description="real case")
    assert len(series.files) == data.shape[2]
    arr, aff = _volume_from_dicom(series.files)
    # orientation contract: Volume.array[z, y, x] = data[x, y, z]
    assert np.array_equal(arr, data.transpose(2, 1, 0))
    # these files' sforms carry unit columns; the header voxel sizes are the truth (and a warning says so)
    assert series.warnings and "voxel sizes" in series.warnings[0]
    zooms = img.header.get_zooms()[:3]
    nifti_aff = np.asarray(img.affine, dtype=float).copy()
    nifti_aff[:3, :3] = nifti_aff[:3, :3] / np.linalg.norm(nifti_aff[:3, :3], axis=0) * np.array(zooms)
    assert np.allclose(aff, _FLIP @ nifti_aff @ _P, atol=1e-4)
    ds = pydicom.dcmread(series.files[0])
    assert ds.SeriesDescription == "real case" and ds.Modality == "MR"
    assert float(ds.SliceThickness) == pytest.approx(zooms[2])


def test_oblique_float_cine_round_trips(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(100.0, 30.0, (20, 16, 4, 5)).astype(np.float32)
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    aff = np.eye(4)
    aff[:3, :3] = rot * np.array([1.5, 1.25, 8.0])
    aff[:3, 3] = [10.0, -20.0, 30.0]
    nib.save(nib.Nifti1Image(data, aff), tmp_path / "cine.nii.gz")
    series = nifti_to_dicom(tmp_path / "cine.nii.gz", tmp_path / "dcm", trigger_times_ms=[0, 40, 80, 120, 160])
    assert not series.warnings and len(series.files) == 20
    first = [f for i, f in enumerate(series.files) if i % 5 == 0]  # phase 0 of each slice
    arr, vol_aff = _volume_from_dicom(first)
    assert np.allclose(arr, data[..., 0].transpose(2, 1, 0), atol=series.rescale_slope / 2 + 1e-6)
    expected = _FLIP @ aff @ _P
    sign = np.sign(np.dot(vol_aff[:3, 0], expected[:3, 0]))
    if sign > 0:
        assert np.allclose(vol_aff, expected, atol=1e-4)
    else:  # a left-handed affine: the reader's slice order runs the other way
        assert np.allclose(vol_aff[:3, 1:3], expected[:3, 1:3], atol=1e-4)
    times = sorted(float(pydicom.dcmread(f).TriggerTime) for f in series.files[:5])
    assert times == [0, 40, 80, 120, 160]


def test_bad_input_is_refused(tmp_path):
    (tmp_path / "x.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(InvalidInputError, match="NIfTI"):
        nifti_to_dicom(tmp_path / "x.nii.gz", tmp_path / "out")
    with pytest.raises(InvalidInputError, match="modality"):
        nifti_to_dicom(tmp_path / "x.nii.gz", tmp_path / "out", modality="CT")
