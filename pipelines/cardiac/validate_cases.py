"""Labelled cardiac cases for :mod:`zeroclick.pipelines.cardiac.validate`: find them, read their manual labels.

Two layouts are read, anywhere under the folder given (the folder itself may be one case):

* **ACDC-style**: a patient folder with ``Info.cfg`` (or ``patientNNN_Info.cfg``) naming ED and ES (1-based
  frames), the frames ``*_frameXX.nii.gz`` and the manual labels ``*_frameXX_gt.nii.gz`` (0 background,
  1 RV cavity, 2 LV myocardium, 3 LV cavity) on the same grid.
* **Sunnybrook-style**: a DICOM folder ``NAME`` beside ``NAME_contours/`` holding ``i-contours/`` (LV
  endocardium) and optionally ``o-contours/`` (epicardium) files ``IM-0001-NNNN-icontour-manual.txt``: one
  ``x y`` point per line in pixel units (x = column), ``NNNN`` = the DICOM file ``N.dcm`` of that image. Which
  cine phase and slice a contour belongs to comes from that file's SOP Instance UID (never from its name alone).
  The endocardial contours fall on two phases; ED is the phase with epicardial contours (else the larger
  cavity). Only the LV is labelled: RV figures are not compared, myocardium only where epicardial contours exist.

The case id is the folder name; nothing else from the data goes into a path.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.imaging.volume import Volume
from zeroclick.pipelines.cardiac.inputs import CaseInputs, load_case, nifti_to_volume

__all__ = ["CaseRef", "LabelledCase", "find_cases", "read_contour"]

_CONTOUR_RE = re.compile(r"^IM-\d+-(\d+)-([io])contour-manual\.txt$", re.IGNORECASE)
_GT_RE = re.compile(r"_frame(\d+)_gt\.nii(\.gz)?$")

#: Measurement -> (structure, phases) it needs in the manual labels.
_NEEDS = {
    "lv_edv_ml": ("lv", ("ed",)), "lv_esv_ml": ("lv", ("es",)), "lv_ef_percent": ("lv", ("ed", "es")),
    "myo_mass_ed_g": ("myo", ("ed",)),
    "rv_edv_ml": ("rv", ("ed",)), "rv_esv_ml": ("rv", ("es",)), "rv_ef_percent": ("rv", ("ed", "es")),
}


@dataclass(frozen=True, eq=False)
class LabelledCase:
    """A case's images (as the pipeline reads them) and its manual labels at the expert's ED and ES.

    ``ed_index`` / ``es_index`` index the cine's phase axis; ``manual_ed`` / ``manual_es`` are ACDC label
    volumes on the cine grid; ``structures`` names what the expert labelled per phase (``rv``, ``myo``, ``lv``).
    """

    case_id: str
    inputs: CaseInputs
    ed_index: int
    es_index: int
    manual_ed: Volume
    manual_es: Volume
    structures: dict[str, frozenset[str]]

    def has_structure(self, name: str, phase: str) -> bool:
        return name in self.structures.get(phase, frozenset())

    def has_label(self, measurement: str) -> bool:
        """Whether the manual labels hold what ``measurement`` needs."""
        name, phases = _NEEDS.get(measurement, ("", ()))
        return bool(phases) and all(self.has_structure(name, p) for p in phases)


@dataclass(frozen=True)
class CaseRef:
    """Where one labelled case lies; :meth:`load` reads it."""

    case_id: str
    kind: str
    path: Path
    contours: Path | None = None

    def load(self) -> LabelledCase:
        return _load_acdc(self) if self.kind == "acdc" else _load_sunnybrook(self)


def find_cases(data: str | Path) -> list[CaseRef]:
    """Every labelled case under ``data`` (sorted by id); ``data`` itself may be one case."""
    root = Path(data)
    if not root.is_dir():
        raise InvalidInputError(f"{data}: not a folder of labelled cases")
    refs: list[CaseRef] = []
    folders = [root] + sorted(p for p in root.rglob("*") if p.is_dir())
    for folder in folders:
        if any(_GT_RE.search(p.name) for p in folder.glob("*_gt.nii*")) and _info_file(folder) is not None:
            refs.append(CaseRef(folder.name, "acdc", folder))
        elif folder.name.endswith("_contours") and (folder / "i-contours").is_dir():
            dicom = folder.with_name(folder.name[: -len("_contours")])
            if dicom.is_dir():
                refs.append(CaseRef(dicom.name, "sunnybrook", dicom, folder))
    return sorted(refs, key=lambda r: r.case_id)


def _info_file(folder: Path) -> Path | None:
    for p in (folder / "Info.cfg", *sorted(folder.glob("*_Info.cfg"))):
        if p.is_file():
            return p
    return None


def _load_acdc(ref: CaseRef) -> LabelledCase:
    inputs = load_case(ref.path)
    if inputs.cine is None or inputs.given_phases is None:
        raise InvalidInputError(f"{ref.path}: an ACDC case needs a cine and ED/ES in Info.cfg")
    ed_i, es_i = inputs.given_phases
    numbers = inputs.phase_numbers or tuple(range(inputs.cine.n_phases))
    gts = {int(m.group(1)) - 1: p for p in ref.path.glob("*_gt.nii*") if (m := _GT_RE.search(p.name))}
    labels = []
    for idx in (ed_i, es_i):
        path = gts.get(numbers[idx])
        if path is None:
            raise InvalidInputError(f"{ref.path}: no manual label file for frame {numbers[idx] + 1} "
                                    f"(expected *_frame{numbers[idx] + 1:02d}_gt.nii.gz)")
        gt = nifti_to_volume(path)
        if gt.array.shape != inputs.cine.spatial_shape:
            raise InvalidInputError(f"{path.name}: label grid {gt.array.shape} differs from the image's "
                                    f"{inputs.cine.spatial_shape}")
        labels.append(inputs.cine.phase(idx).with_array(np.rint(gt.array).astype(np.uint8)))
    present = {ph: frozenset(n for n, v in (("rv", 1), ("myo", 2), ("lv", 3)) if (lab.array == v).any())
               for ph, lab in zip(("ed", "es"), labels)}
    return LabelledCase(ref.case_id, inputs, ed_i, es_i, labels[0], labels[1], present)


def read_contour(path: Path) -> np.ndarray:
    """``[n, 2]`` float array of ``x y`` points (pixel units, x = column) from a contour text file."""
    try:
        points = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InvalidInputError(f"{path.name}: not a contour file of 'x y' lines") from exc
    if points.shape[1] != 2 or len(points) < 3:
        raise InvalidInputError(f"{path.name}: a contour needs at least 3 'x y' points, got shape {points.shape}")
    return points


def _fill(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.draw import polygon2mask

    return polygon2mask(shape, points[:, ::-1])  # (row, col) = (y, x)


def _load_sunnybrook(ref: CaseRef) -> LabelledCase:
    import pydicom

    assert ref.contours is not None
    inputs = load_case(ref.path)
    cine = inputs.cine
    if cine is None or cine.sop_instance_uids is None or cine.n_phases < 2:
        raise InvalidInputError(f"{ref.path}: no multi-phase cine short axis with SOP Instance UIDs found")
    where = {str(u): (int(p), int(s)) for (p, s), u in np.ndenumerate(cine.sop_instance_uids) if u}
    rows_cols = cine.spatial_shape[1:]
    contours: dict[str, dict[tuple[int, int], np.ndarray]] = {"i": {}, "o": {}}
    for sub in ("i-contours", "o-contours"):
        folder = ref.contours / sub
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            m = _CONTOUR_RE.match(path.name)
            if not m:
                continue
            image = ref.path / f"{int(m.group(1))}.dcm"
            if not image.is_file():
                raise InvalidInputError(f"{path.name}: its image {image.name} is not in {ref.path.name}")
            with warnings.catch_warnings():  # real scanners write UIDs pydicom finds invalid; the scan read them
                warnings.simplefilter("ignore", UserWarning)
                header = pydicom.dcmread(image, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            uid = str(header.SOPInstanceUID)
            if uid not in where:
                raise InvalidInputError(f"{path.name}: its image is not part of the cine short axis that was read")
            contours[m.group(2).lower()][where[uid]] = _fill(read_contour(path), rows_cols)
    phases = sorted({p for p, _ in contours["i"]})
    if len(phases) != 2:
        raise InvalidInputError(f"{ref.contours.name}: endocardial contours on {len(phases)} phase(s); "
                                "expected two (ED and ES)")
    cav = {p: np.zeros(cine.spatial_shape, np.uint8) for p in phases}
    for (p, s), mask in contours["i"].items():
        cav[p][s][mask] = 3
    with_epi = {p for p, _ in contours["o"]}
    if len(with_epi & set(phases)) == 1:
        ed_i = next(iter(with_epi & set(phases)))
    else:
        ed_i = max(phases, key=lambda p: int(np.count_nonzero(cav[p])))
    es_i = next(p for p in phases if p != ed_i)
    for (p, s), epi in contours["o"].items():
        if p in cav:
            ring = epi & (cav[p][s] == 0)
            cav[p][s][ring] = 2
    present = {name: frozenset({"lv"} | ({"myo"} if idx in with_epi else set()))
               for name, idx in (("ed", ed_i), ("es", es_i))}
    return LabelledCase(ref.case_id, inputs, ed_i, es_i, cine.phase(ed_i).with_array(cav[ed_i]),
                        cine.phase(es_i).with_array(cav[es_i]), present)
