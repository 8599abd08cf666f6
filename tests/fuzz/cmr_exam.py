"""A small DICOM cardiac exam whose images a look-up "network" segments exactly (for QC and fuzz tests).

Cine short axis: :func:`tests.cardiac.phantom.cine_phantom` labels drawn by ``image_from_labels`` (each label
its own grey value), so :class:`tests.cardiac.phantom.LutSegmenter` returns the true labels and every volume
is known analytically. LGE: the ED labels (myocardium grey) with a bright transmural infarct in one sector.
Headers as in ``tests/dicom/dicom_factory.py`` (Siemens-like cine and PSIR LGE).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.cardiac.phantom import N, cine_phantom, image_from_labels, polar
from tests.dicom.dicom_factory import LONG_AXIS, _basis, uid, write_mr
from tests.fuzz import rawdicom

PATIENT_SIZE_TAG = 0x00101020

N_PHASES = 8
N_SLICES = 6
ES_PHASE = 3
SLICE_MM = 8.0
PIXEL_MM = 1.5
HEIGHT_M = 1.58
WEIGHT_KG = 60.0


def sax_orientation(rotation_deg: float = 0.0) -> tuple[float, ...]:
    """Row and column cosines of the short-axis planes, optionally rotated in plane about the long axis."""
    e1, e2 = _basis(LONG_AXIS)
    a = np.radians(rotation_deg)
    row = np.cos(a) * e1 + np.sin(a) * e2
    col = np.cross(LONG_AXIS, row)
    return (*row, *col)


def positions(n: int, orientation: tuple[float, ...]) -> list[np.ndarray]:
    """Slice origins: the image centre on the long axis through a fixed heart centre, 8 mm apart."""
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    centre = np.array([20.0, 30.0, -40.0])
    half = (N - 1) / 2 * PIXEL_MM
    return [centre - half * row - half * col + (s - n / 2) * SLICE_MM * LONG_AXIS for s in range(n)]


def cine_labels() -> np.ndarray:
    return cine_phantom(n_phases=N_PHASES, n_slices=N_SLICES, es=ES_PHASE)


def lge_labels(cine: np.ndarray) -> np.ndarray:
    """ED labels with the myocardium between image angles 0 and 60 degrees enhanced (label 4 in EMIDEC terms)."""
    lab = np.where(cine[0] == 1, 0, cine[0]).astype(np.uint8)  # no RV label in the LGE network's output
    lab[lab == 3] = 1  # EMIDEC: 1 cavity, 2 myocardium, 3 infarct, 4 MVO
    _, theta = polar()
    sector = (theta > 0) & (theta < 60)
    for s in range(lab.shape[0]):
        lab[s][(lab[s] == 2) & sector] = 3
    return lab


# grey values that LutSegmenter(5) maps back to EMIDEC labels 0..4
_LGE_LUT = np.array([20.0, 300.0, 120.0, 320.0, 60.0])


def write_exam(out: Path, *, study: int = 1, patient: str = "PAT-A", patient_size: object = HEIGHT_M,
               patient_weight: object = WEIGHT_KG, lge: bool = True, lge_rotation_deg: float = 0.0,
               lge_patient: str | None = None, lge_study: int | None = None) -> dict[str, list[Path]]:
    """Write the exam under ``out`` (``cine/`` and ``lge/``); returns the files of each series."""
    labels = cine_labels()
    o = sax_orientation()
    raw_size = patient_size if isinstance(patient_size, str) else None  # e.g. "1,58": pydicom cannot write it
    common = dict(extra={"PatientSize": 1.0 if raw_size is not None else patient_size, "PatientWeight": patient_weight, "PatientID": patient,
                         "PatientName": f"{patient}^Test", "PatientBirthDate": "19600101"},
                  pixel_spacing=(PIXEL_MM, PIXEL_MM), rows=N, cols=N)
    study_uid = uid(5, study)
    files: dict[str, list[Path]] = {"cine": [], "lge": []}
    cine_series = uid(7, study, 2)
    inst = 0
    for s, pos in enumerate(positions(N_SLICES, o)):
        for p in range(N_PHASES):
            inst += 1
            files["cine"].append(write_mr(
                out / "cine" / f"im{inst:04d}.dcm", study=study_uid, series=cine_series, sop=uid(8, study, 2, inst),
                series_number=2, description="cine_sax", position=tuple(pos), orientation=o, instance_number=inst,
                trigger_time=40.0 * p + 0.3 * s, pixels=np.rint(image_from_labels(labels[p, s], seed=p)),
                **common))
    if lge:
        lab = lge_labels(labels)
        lo = sax_orientation(lge_rotation_deg)
        lge_common = dict(common)
        if lge_patient is not None:
            lge_common["extra"] = {**common["extra"], "PatientID": lge_patient,
                                   "PatientName": f"{lge_patient}^Test"}
        lge_study_uid = uid(5, lge_study) if lge_study is not None else study_uid
        series = uid(7, study, 7)
        rng = np.random.default_rng(7)
        for s, pos in enumerate(positions(N_SLICES, lo)):
            img = _LGE_LUT[lab[s]] + rng.normal(0, 2.0, lab[s].shape)
            files["lge"].append(write_mr(
                out / "lge" / f"im{s + 1:04d}.dcm", study=lge_study_uid, series=series, sop=uid(8, study, 7, s + 1),
                series_number=7, description="lge_psir", position=tuple(pos), orientation=lo, instance_number=s + 1,
                inversion_time=300.0, image_type=("DERIVED", "PRIMARY", "M", "PSIR"),
                scanning_sequence=["GR", "IR"], sequence_variant=["SP", "MP"], sequence_name="*tfl2d1",
                pixels=np.rint(img), **lge_common))
    if raw_size is not None:
        for path in files["cine"] + files["lge"]:
            path.write_bytes(rawdicom.set_value(path.read_bytes(), PATIENT_SIZE_TAG, raw_size.encode("latin-1")))
    return files


def truth(labels: np.ndarray | None = None) -> dict[str, float]:
    """Analytic volumes of the exam (mL), from the labels and the voxel size."""
    labels = cine_labels() if labels is None else labels
    voxel_ml = PIXEL_MM * PIXEL_MM * SLICE_MM / 1000.0
    edv = float((labels[0] == 3).sum()) * voxel_ml
    esv = float((labels[ES_PHASE] == 3).sum()) * voxel_ml
    return {"lv_edv_ml": edv, "lv_esv_ml": esv, "lv_ef_percent": 100.0 * (edv - esv) / edv,
            "bsa_m2": float(np.sqrt(HEIGHT_M * 100.0 * WEIGHT_KG / 3600.0))}
