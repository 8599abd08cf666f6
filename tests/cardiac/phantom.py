"""Analytic short-axis phantoms for the quantification tests (exact voxel counts, known geometry).

Geometry: identity affine, so patient y (LPS posterior) = row: the smaller row is anterior.
The RV crescent touches the LV myocardium between image angles 180 and 300 degrees (angle =
atan2(row offset, col offset)), so the anterior insertion point is at 300 degrees, the inferior one at
180 degrees and the septum at 240 degrees. Relative AHA angle phi = (300 - theta) mod 360.
"""

from __future__ import annotations

import numpy as np

from zeroclick.imaging.volume import Volume

N = 96
CENTRE = 48.0


def polar(n: int = N):
    r, c = np.mgrid[:n, :n]
    rad = np.hypot(r - CENTRE, c - CENTRE)
    theta = np.degrees(np.arctan2(r - CENTRE, c - CENTRE)) % 360.0
    return rad, theta


def sax_slice(cavity_mm: float, wall_mm: float, *, rv: bool = True, n: int = N) -> np.ndarray:
    """ACDC labels: LV cavity disc, myocardial annulus, RV crescent over 180..300 degrees (1 mm pixels)."""
    rad, theta = polar(n)
    lab = np.zeros((n, n), np.uint8)
    lab[rad < cavity_mm] = 3
    lab[(rad >= cavity_mm) & (rad < cavity_mm + wall_mm)] = 2
    if rv:
        outer = cavity_mm + wall_mm
        lab[(rad >= outer) & (rad < outer + 12) & (theta > 180) & (theta < 300)] = 1
    return lab


def volume(labels: np.ndarray, slice_mm: float = 8.0, affine: np.ndarray | None = None) -> Volume:
    aff = np.diag([slice_mm, 1.0, 1.0, 1.0]) if affine is None else affine
    return Volume(labels, aff, (slice_mm, 1.0, 1.0), series_instance_uid="1.2.3")


class TruthSegmenter:
    """Stands in for the network: returns the known labels of the image it is given (ground-truth injection).

    ``images`` and ``labels`` are both 4-D (cine) or both 3-D (LGE); a 3-D query is matched to its phase by
    pixel equality, so each phase image must differ.
    """

    def __init__(self, images: Volume, labels: np.ndarray) -> None:
        self.images = images
        self.labels = np.asarray(labels)
        self.calls = 0
        self.provenance = {"weights_id": "ground-truth", "weights_sha256": "0" * 64, "device": "cpu"}

    def segment(self, volume, slices=None):
        arr = volume.array if isinstance(volume, Volume) else np.asarray(volume)
        if self.labels.ndim == 3:
            out = self.labels.copy()
        else:
            matches = [p for p in range(self.images.array.shape[0]) if np.array_equal(self.images.array[p], arr)]
            assert len(matches) == 1, "each phase image must be unique"
            out = self.labels[matches[0]].copy()
        if slices is not None:
            keep = np.zeros(out.shape[0], bool)
            keep[list(slices)] = True
            out[~keep] = 0
        self.calls += out.shape[0] if slices is None else len(slices)
        return out


def image_from_labels(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """A plausible MR-like intensity image for labels (bright blood, grey muscle), with a little noise."""
    rng = np.random.default_rng(seed)
    lut = np.array([20.0, 300.0, 120.0, 320.0, 60.0])
    return (lut[labels] + rng.normal(0, 2.0, labels.shape)).astype(np.float32)


def cine_phantom(n_phases: int = 16, n_slices: int = 8, es: int = 6):
    """4-D ACDC labels: a cone-shaped LV (base = slice 0) whose cavity shrinks towards phase ``es``."""
    t = np.arange(n_phases)
    squeeze = np.sin(np.pi * np.clip(t / (2 * es), 0, 1)) ** 2  # 0 at ED (phase 0), 1 at ES
    labels = np.zeros((n_phases, n_slices, N, N), np.uint8)
    for p in range(n_phases):
        for s in range(n_slices):
            cav = (24 - 2.2 * s) * (1 - 0.3 * squeeze[p])
            wall = 8 + 3 * squeeze[p]
            labels[p, s] = sax_slice(cav, wall, rv=s < n_slices - 2)
    return labels


class LutSegmenter:
    """Segments :func:`image_from_labels` images by nearest intensity: an exact stand-in network for CLI tests."""

    lut = np.array([20.0, 300.0, 120.0, 320.0, 60.0])

    def __init__(self, n_labels: int = 4, *args, **kwargs) -> None:
        self.n_labels = n_labels
        self.provenance = {"weights_id": "lut", "weights_sha256": "", "device": "cpu"}

    def segment(self, volume, slices=None):
        arr = volume.array if isinstance(volume, Volume) else np.asarray(volume)
        lut = self.lut[: self.n_labels]
        out = np.abs(arr[..., None] - lut).argmin(axis=-1).astype(np.uint8)
        if slices is not None:
            keep = np.zeros(out.shape[0], bool)
            keep[list(slices)] = True
            out[~keep] = 0
        return out


def write_acdc_folder(folder, labels4d: np.ndarray, ed: int, es: int, *, height_cm=180.0, weight_kg=80.0):
    """An ACDC-style patient folder (Info.cfg + frame NIfTI files, 1 x 1 x 8 mm) from phantom labels."""
    import nibabel as nib

    folder.mkdir(parents=True, exist_ok=True)
    for p in (ed, es):
        data = image_from_labels(labels4d[p], seed=p).transpose(2, 1, 0)  # Volume [z, y, x] -> NIfTI [x, y, z]
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 8.0, 1.0])), folder / f"patient900_frame{p + 1:02d}.nii.gz")
    (folder / "Info.cfg").write_text(f"ED: {ed + 1}\nES: {es + 1}\nGroup: NOR\nHeight: {height_cm}\n"
                                     f"NbFrame: {labels4d.shape[0]}\nWeight: {weight_kg}\n")
    return folder
