"""NIfTI in and out (nibabel) into the same :class:`~zeroclick.imaging.volume.Volume` the DICOM reader makes.

NIfTI data as nibabel loads it is ``data[x, y, z(, t)]`` with ``x`` the DICOM column and ``y`` the DICOM
row, and its affine maps ``(x, y, z)`` to RAS millimetres. A Volume is ``[(phase,) slice, row, col]`` with
an affine to LPS. So ``array = data.transpose(2, 1, 0)`` (``(3, 2, 1, 0)`` for 4-D) and
``affine_lps = diag(-1, -1, 1, 1) @ affine_ras @ P`` where ``P`` maps ``(slice, row, col)`` to
``(x=col, y=row, z=slice)``. :func:`save` is the exact inverse (tested round trip).

Research datasets (ACDC, EMIDEC, M&Ms) ship their images this way, so the same pipelines run on them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.imaging.volume import Volume

logger = logging.getLogger(__name__)

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
# (slice, row, col, 1) -> (x=col, y=row, z=slice, 1); a permutation, so its own inverse.
_P = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=np.float64)
_TIME_UNIT_TO_MS = {"sec": 1000.0, "msec": 1.0, "usec": 0.001}


def load(path: str | os.PathLike, *, dtype: Any = None) -> Volume:
    """Load a 3-D or 4-D NIfTI file as a Volume (LPS affine, spacing in (slice, row, col) mm).

    Parameters
    ----------
    path
        ``.nii`` or ``.nii.gz`` file.
    dtype
        Cast the pixels to this dtype; default keeps what the file stores (scaled data becomes float).

    Raises
    ------
    InvalidInputError
        When the file is not a readable NIfTI image or not 3-D/4-D.
    """
    p = Path(path)
    try:
        img: Any = nib.load(str(p))
        data = np.asanyarray(img.dataobj)
    except (OSError, nib.filebasedimages.ImageFileError, EOFError, ValueError) as exc:
        raise InvalidInputError(f"{p.name} is not a readable NIfTI image ({exc}); check the file") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (3, 4):
        raise InvalidInputError(f"{p.name} has {data.ndim} dimensions; expected a 3-D or 4-D image")
    array = data.transpose(2, 1, 0) if data.ndim == 3 else data.transpose(3, 2, 1, 0)
    array = np.ascontiguousarray(array if dtype is None else array.astype(dtype))
    affine_ras, note = _checked_affine(img)
    affine = _LPS_FROM_RAS @ affine_ras @ _P
    spacing = tuple(float(v) for v in np.linalg.norm(affine[:3, :3], axis=0))
    trigger_times = None
    if data.ndim == 4:
        zooms = img.header.get_zooms()
        unit = img.header.get_xyzt_units()[1]
        step = float(zooms[3]) * _TIME_UNIT_TO_MS.get(unit, 0.0) if len(zooms) > 3 else 0.0
        if step > 0:
            trigger_times = tuple(i * step for i in range(data.shape[3]))
    return Volume(
        array=array,
        affine=affine,
        spacing_mm=spacing,  # type: ignore[arg-type]
        trigger_times_ms=trigger_times,
        source=str(p),
        meta={"format": "nifti", "nifti_shape": tuple(int(v) for v in data.shape),
              **({"affine_note": note} if note else {})},
    )


def _checked_affine(img: Any) -> tuple[np.ndarray, str]:
    """The image affine (RAS); voxel sizes taken from pixdim when the affine disagrees with them.

    Some research files (the ACDC/EMIDEC copies in ../shared/data among them) carry an sform with unit
    voxel sizes while pixdim holds the real ones (1.64 x 1.64 x 10 mm); the directions are kept and
    each axis is rescaled to its pixdim, with a note in ``meta["affine_note"]``.
    """
    affine = np.asarray(img.affine, dtype=np.float64).copy()
    zooms = np.asarray(img.header.get_zooms()[:3], dtype=np.float64)
    norms = np.linalg.norm(affine[:3, :3], axis=0)
    if np.all(zooms > 0) and np.all(norms > 0) and np.any(np.abs(norms - zooms) > 1e-3 * zooms):
        affine[:3, :3] = affine[:3, :3] / norms * zooms
        note = (f"affine voxel sizes {np.round(norms, 4).tolist()} disagree with pixdim {np.round(zooms, 4).tolist()}: "
                "pixdim used")
        logger.warning("NIfTI %s", note)
        return affine, note
    return affine, ""


def save(volume: Volume, path: str | os.PathLike) -> Path:
    """Write ``volume`` as NIfTI (the exact inverse of :func:`load`), atomically (temporary name, rename)."""
    p = Path(path)
    arr = volume.array
    data = arr.transpose(2, 1, 0) if arr.ndim == 3 else arr.transpose(3, 2, 1, 0)
    affine_ras = _LPS_FROM_RAS @ volume.affine @ _P
    img = nib.Nifti1Image(np.ascontiguousarray(data), affine_ras)
    img.header.set_xyzt_units("mm", "msec")
    if arr.ndim == 4 and volume.trigger_times_ms and len(volume.trigger_times_ms) > 1:
        zooms = list(img.header.get_zooms())
        zooms[3] = float(np.median(np.diff(volume.trigger_times_ms)))
        img.header.set_zooms(zooms)
    suffix = ".nii.gz" if p.name.endswith(".nii.gz") else ".nii"
    tmp = p.with_name(f".{p.name[: -len(suffix)]}.tmp{os.getpid()}{suffix}")
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p
