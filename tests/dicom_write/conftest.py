"""Small MR series written with pydicom: a cine SAX stack (2 phases) and an LGE stack, plus labels."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

ROWS = COLS = 64
N_SLICES = 6


@dataclass
class MiniSeries:
    datasets: list[Dataset]  # [phase * N_SLICES + slice]
    labels: np.ndarray  # [phase, slice, row, col] (cine) or [slice, row, col]
    paths: list[Path]


def _disk(shape: tuple[int, int], cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def make_mr_series(
    out: Path, *, study_uid: str, frame_uid: str, series_number: int, description: str, n_phases: int, lge: bool
) -> MiniSeries:
    out.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[study_uid, description])
    datasets, paths = [], []
    labels = np.zeros((n_phases, N_SLICES, ROWS, COLS), np.uint8)
    for p in range(n_phases):
        for s in range(N_SLICES):
            r_lv = 10 - 3 * p - 0.5 * s
            lab = np.zeros((ROWS, COLS), np.uint8)
            if lge:
                lab[_disk((ROWS, COLS), 32, 32, r_lv + 5)] = 2
                lab[_disk((ROWS, COLS), 32, 32, r_lv)] = 1
                wedge = np.zeros_like(lab, bool)
                wedge[: 32, 32:] = True
                lab[(lab == 2) & wedge] = 3
                lab[(lab == 3) & _disk((ROWS, COLS), 32 - r_lv - 2, 32, 2.5)] = 4
            else:
                lab[_disk((ROWS, COLS), 32, 20, r_lv + 2)] = 1
                lab[_disk((ROWS, COLS), 32, 32, r_lv + 5)] = 2
                lab[_disk((ROWS, COLS), 32, 32, r_lv)] = 3
            labels[p, s] = lab
            img = (lab.astype(np.uint16) * 300 + 50).astype(np.uint16)
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
            sop = generate_uid(entropy_srcs=[series_uid, str(p), str(s)])
            ds.file_meta.MediaStorageSOPInstanceUID = sop
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = sop
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.PatientName = "Test^Patient"
            ds.PatientID = "ZC-TEST-1"
            ds.PatientBirthDate = "19600101"
            ds.PatientSex = "M"
            ds.StudyDate = "20260101"
            ds.StudyTime = "101010"
            ds.AccessionNumber = "ACC1"
            ds.ReferringPhysicianName = ""
            ds.StudyID = "1"
            ds.Modality = "MR"
            ds.Manufacturer = "SIEMENS"
            ds.SeriesNumber = series_number
            ds.SeriesDescription = description
            ds.InstanceNumber = p * N_SLICES + s + 1
            ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
            ds.ScanningSequence = "GR"
            ds.SequenceVariant = "SP"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.EchoTime = 1.2
            ds.RepetitionTime = 3.0
            ds.EchoTrainLength = 1
            ds.MagneticFieldStrength = 1.5
            ds.SliceThickness = 8.0
            ds.PixelSpacing = [1.5, 1.5]
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-48.0, -48.0, 10.0 * s]
            ds.SliceLocation = 10.0 * s
            ds.PositionReferenceIndicator = ""
            ds.TriggerTime = 40.0 * p
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = ROWS, COLS
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            ds.PixelData = img.tobytes()
            path = out / f"{p:02d}_{s:02d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            datasets.append(ds)
            paths.append(path)
    return MiniSeries(datasets, labels if n_phases > 1 else labels[0], paths)


@dataclass
class MiniExam:
    root: Path
    cine: MiniSeries
    lge: MiniSeries


@pytest.fixture(scope="session")
def mini_exam(tmp_path_factory: pytest.TempPathFactory) -> MiniExam:
    root = tmp_path_factory.mktemp("mini_exam")
    study = generate_uid(entropy_srcs=["zeroclick-test-study"])
    frame = generate_uid(entropy_srcs=["zeroclick-test-frame"])
    cine = make_mr_series(root / "cine", study_uid=study, frame_uid=frame, series_number=5,
                          description="cine SAX", n_phases=2, lge=False)
    lge = make_mr_series(root / "lge", study_uid=study, frame_uid=frame, series_number=9,
                         description="LGE PSIR SAX", n_phases=1, lge=True)
    return MiniExam(root, cine, lge)


@pytest.fixture(scope="session")
def dciodvfy_errors():
    """A function running dciodvfy on one file and returning its error lines (skips without dciodvfy)."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed: `apt-get install dicom3tools`")

    def run(path: Path) -> list[str]:
        proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True, timeout=60)
        lines = (proc.stdout + proc.stderr).splitlines()
        return [line for line in lines if line.startswith("Error")]

    return run
