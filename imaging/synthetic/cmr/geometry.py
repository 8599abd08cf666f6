"""Image planes of the synthetic exam: double-oblique short-axis stack, long-axis views, 3-plane scouts.

A plane is stored the DICOM way: ``row_dir`` (direction of increasing column index, the first three values
of ImageOrientationPatient), ``col_dir`` (increasing row index), ``origin`` (centre of the first pixel,
ImagePositionPatient), pixel spacing (row, col) and size. Short-axis planes are built so that
``row_dir x col_dir`` points from the apex to the base: the standard "seen from the apex" view with the
anterior wall up and the RV on the image left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .phantom import HeartModel


@dataclass(frozen=True)
class Plane:
    origin: tuple[float, float, float]
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    rows: int
    cols: int
    spacing_mm: tuple[float, float]  # (between rows, between columns) = DICOM PixelSpacing

    @property
    def normal(self) -> np.ndarray:
        return np.cross(np.array(self.row_dir), np.array(self.col_dir))

    def points(self) -> np.ndarray:
        """LPS coordinates of every pixel centre, shape (rows, cols, 3)."""
        i = np.arange(self.rows, dtype=np.float64)[:, None, None]
        j = np.arange(self.cols, dtype=np.float64)[None, :, None]
        return (np.array(self.origin) + j * self.spacing_mm[1] * np.array(self.row_dir)
                + i * self.spacing_mm[0] * np.array(self.col_dir))

    @property
    def orientation(self) -> list[float]:
        return [round(float(v), 8) for v in (*self.row_dir, *self.col_dir)]

    @property
    def position(self) -> list[float]:
        return [round(float(v), 5) for v in self.origin]


def _centred(center: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, rows: int, cols: int,
             spacing: float) -> Plane:
    origin = center - 0.5 * (cols - 1) * spacing * row_dir - 0.5 * (rows - 1) * spacing * col_dir
    return Plane(_t3(origin), _t3(row_dir), _t3(col_dir), rows, cols, (spacing, spacing))


def _t3(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class SaxStack:
    """Short-axis stack: planes in DICOM sort order (ascending along the normal = apex -> base)."""

    planes: tuple[Plane, ...]
    z_mm: tuple[float, ...]  # heart-frame z of each plane (same order)
    spacing_mm: float
    thickness_mm: float

    @property
    def base_to_apex(self) -> list[int]:
        return sorted(range(len(self.z_mm)), key=lambda k: self.z_mm[k])


def sax_stack(heart: HeartModel, *, z_mm: list[float], spacing_mm: float, thickness_mm: float, rows: int,
              cols: int, pixel_mm: float, offset_mm: tuple[float, float] = (6.0, -4.0),
              rotation_deg: float = 20.0) -> SaxStack:
    """Short-axis planes at heart-frame positions ``z_mm`` (any order), returned in DICOM order."""
    ea, eb, u = heart.rot
    c, s = math.cos(math.radians(rotation_deg)), math.sin(math.radians(rotation_deg))
    row_dir = -c * ea - s * eb  # the septum/RV points to the image left, slightly up
    col_dir = -s * ea + c * eb  # anterior (-eb) is up
    planes = []
    zs = []
    n_slices = len(z_mm)
    for z in z_mm:
        centre = heart.origin + z * u + offset_mm[0] * row_dir + offset_mm[1] * col_dir
        planes.append(_centred(centre, row_dir, col_dir, rows, cols, pixel_mm))
        zs.append(z)
    # DICOM order: ascending projection on row_dir x col_dir (= -u): apex first
    order = sorted(range(n_slices), key=lambda k: float(np.dot(planes[k].origin, planes[k].normal)))
    return SaxStack(tuple(planes[k] for k in order), tuple(zs[k] for k in order), spacing_mm, thickness_mm)


def lax_plane(heart: HeartModel, view: str, *, rows: int, cols: int, pixel_mm: float) -> Plane:
    """2-, 3- or 4-chamber plane through the LV long axis, apex at the top of the image."""
    ea, eb, u = heart.rot
    angle = {"4ch": 0.0, "3ch": 125.0, "2ch": 90.0}[view]
    t = math.radians(angle)
    inplane = math.cos(t) * ea + math.sin(t) * eb  # direction in the SAX plane that the view contains
    col_dir = -u  # down the image = towards the base
    row_dir = inplane if view != "4ch" else -inplane  # 4ch: RV on the image left
    centre = heart.origin + 40.0 * u + (-8.0 if view == "4ch" else 0.0) * row_dir
    return _centred(centre, row_dir, col_dir, rows, cols, pixel_mm)


def localizer_planes(heart: HeartModel, *, per_plane: int, rows: int, cols: int, pixel_mm: float,
                     gap_mm: float = 15.0) -> list[Plane]:
    """Transverse, sagittal and coronal scouts through the heart centre (``per_plane`` each)."""
    c = heart.origin + 40.0 * heart.rot[2]
    X, Y, Z = np.eye(3)
    out = []
    for row_dir, col_dir in ((X, Y), (Y, -Z), (X, -Z)):  # axial, sagittal, coronal
        n = np.cross(row_dir, col_dir)
        for k in range(per_plane):
            off = (k - (per_plane - 1) / 2) * gap_mm
            out.append(_centred(c + off * n, row_dir, col_dir, rows, cols, pixel_mm))
    return out
