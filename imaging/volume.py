"""Volume: pixels plus the geometry and provenance every pipeline needs.

Conventions (used by every reader and writer in zeroclick):

* ``array`` is ordered ``[phase, slice, row, col]`` for time series (cine) and ``[slice, row, col]``
  otherwise. ``row``/``col`` are DICOM rows/columns of the 2-D image.
* ``affine`` is a 4x4 matrix mapping the spatial index ``(slice, row, col, 1)`` (numpy order, zero
  based) to patient coordinates in millimetres, DICOM LPS. Its columns are therefore
  ``slice_step_vector, column_direction*row_spacing, row_direction*col_spacing, origin``.
* ``spacing_mm`` is ``(slice, row, col)`` spacing in mm (slice = centre-to-centre distance).
* ``sop_instance_uids`` has the array's non-pixel shape (``[phase, slice]`` or ``[slice]``), empty
  strings where the image did not come from DICOM.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Volume:
    """An image volume with its patient geometry.

    Examples
    --------
    >>> import numpy as np
    >>> v = Volume(np.zeros((2, 4, 4), np.float32), affine=np.eye(4), spacing_mm=(1.0, 1.0, 1.0))
    >>> v.is_cine, v.spatial_shape, round(v.voxel_volume_ml, 6)
    (False, (2, 4, 4), 0.001)
    """

    array: np.ndarray
    affine: np.ndarray
    spacing_mm: tuple[float, float, float]
    trigger_times_ms: tuple[float, ...] | None = None
    sop_instance_uids: np.ndarray | None = None
    series_instance_uid: str = ""
    study_instance_uid: str = ""
    frame_of_reference_uid: str = ""
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim not in (3, 4):
            raise ValueError(f"Volume array must be 3-D or 4-D, got shape {self.array.shape}")
        aff = np.asarray(self.affine, dtype=np.float64)
        if aff.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {aff.shape}")
        object.__setattr__(self, "affine", aff)
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))

    @property
    def is_cine(self) -> bool:
        return self.array.ndim == 4

    @property
    def n_phases(self) -> int:
        return int(self.array.shape[0]) if self.is_cine else 1

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        s = self.array.shape[-3:]
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (mm^3 / 1000)."""
        return float(np.prod(self.spacing_mm)) / 1000.0

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit vector of increasing slice index in patient LPS coordinates."""
        n = self.affine[:3, 0]
        norm = np.linalg.norm(n)
        if norm == 0:
            return np.cross(self.affine[:3, 2], self.affine[:3, 1]) / (
                np.linalg.norm(self.affine[:3, 2]) * np.linalg.norm(self.affine[:3, 1])
            )
        return n / norm

    def phase(self, index: int) -> Volume:
        """The 3-D volume of one phase of a cine (the volume itself when not cine)."""
        if not self.is_cine:
            if index != 0:
                raise IndexError("a non-cine Volume has only phase 0")
            return self
        uids = None if self.sop_instance_uids is None else self.sop_instance_uids[index]
        tt = None if self.trigger_times_ms is None else (self.trigger_times_ms[index],)
        return replace(self, array=self.array[index], sop_instance_uids=uids, trigger_times_ms=tt)

    def with_array(self, array: np.ndarray, **changes: Any) -> Volume:
        """Same geometry, new pixels (e.g. a label mask)."""
        return replace(self, array=array, **changes)

    def index_to_lps(self, index: np.ndarray) -> np.ndarray:
        """Map ``(..., 3)`` spatial indices ``(slice, row, col)`` to LPS mm."""
        idx = np.asarray(index, dtype=np.float64)
        return idx @ self.affine[:3, :3].T + self.affine[:3, 3]
