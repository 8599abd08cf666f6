"""Small MR exam written with pydicom (cine SAX, 2 phases, + LGE; pixel value = 300 x label + 50) and a
CardiacResult built from it by hand. Shared by tests/dicom_write and tests/pacs (imported by path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
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


def _volume(series: MiniSeries, n_phases: int, array: np.ndarray, *, uids: bool = True):
    from zeroclick.imaging.volume import Volume

    ds0 = series.datasets[0]
    affine = np.array([[0, 0, 1.5, -48.0], [0, 1.5, 0, -48.0], [10.0, 0, 0, 0.0], [0, 0, 0, 1]])
    sop = np.array([ds.SOPInstanceUID for ds in series.datasets]).reshape((n_phases, N_SLICES) if n_phases > 1
                                                                            else (N_SLICES,))
    return Volume(array, affine=affine, spacing_mm=(10.0, 1.5, 1.5),
                  trigger_times_ms=tuple(40.0 * p for p in range(n_phases)) if n_phases > 1 else None,
                  sop_instance_uids=sop if uids else None, series_instance_uid=ds0.SeriesInstanceUID,
                  study_instance_uid=ds0.StudyInstanceUID, frame_of_reference_uid=ds0.FrameOfReferenceUID)


def build_result(exam: MiniExam):
    """A CardiacResult as the pipeline would return it for the mini exam (numbers chosen by hand)."""
    from zeroclick.pipelines.cardiac.result import (
        AHA_SEGMENT_NAMES,
        AhaResult,
        CardiacImages,
        CardiacMasks,
        CardiacResult,
        FunctionResult,
        LgeResult,
        PhaseChoice,
        QcFlag,
        RiskFeature,
        RiskFeatures,
        SegmentValues,
        SeriesReference,
    )

    cine_px = np.stack([np.frombuffer(ds.PixelData, np.uint16).reshape(ROWS, COLS) for ds in exam.cine.datasets])
    cine_img = _volume(exam.cine, 2, cine_px.reshape(2, N_SLICES, ROWS, COLS).astype(np.float32))
    cine_lab = _volume(exam.cine, 2, exam.cine.labels)
    lge_px = np.stack([np.frombuffer(ds.PixelData, np.uint16).reshape(ROWS, COLS) for ds in exam.lge.datasets])
    lge_img = _volume(exam.lge, 1, lge_px.astype(np.float32))
    lge_lab = _volume(exam.lge, 1, exam.lge.labels)
    function = FunctionResult(
        lv_edv_ml=160.0, lv_esv_ml=96.0, lv_sv_ml=64.0, lv_ef_percent=40.0, rv_edv_ml=150.0, rv_esv_ml=70.0,
        rv_sv_ml=80.0, rv_ef_percent=53.3, myo_volume_ed_ml=120.0, myo_mass_ed_g=126.0, myo_volume_es_ml=121.0,
        myo_mass_es_g=127.0, heart_rate_bpm=70.0, lv_co_l_per_min=4.5, bsa_m2=1.9, lv_edv_index_ml_per_m2=84.2,
        lv_esv_index_ml_per_m2=50.5, lv_sv_index_ml_per_m2=33.7, rv_edv_index_ml_per_m2=78.9,
        rv_esv_index_ml_per_m2=36.8, myo_mass_index_g_per_m2=66.3, lv_ci_l_per_min_per_m2=2.4,
        lv_volume_curve_ml=(160.0, 96.0),
    )
    lge = LgeResult(myocardium_ml=110.0, myocardium_g=115.5, cavity_ml=60.0, infarct_ml=20.0, infarct_g=21.0,
                    infarct_percent_of_myocardium=18.2, mvo_ml=2.0, mvo_g=2.1, mvo_percent_of_myocardium=1.8,
                    segment_transmurality_percent={i: (60.0 if i in (1, 7, 13) else 0.0) for i in range(1, 17)})
    aha = AhaResult(segments=tuple(SegmentValues(i, AHA_SEGMENT_NAMES[i], ed_thickness_mm=4.9 if i == 7 else 8.0,
                                                 thin_at_ed=i == 7) for i in range(1, 17)))
    risk = RiskFeatures((RiskFeature("LVEF", 40.0, "%", False, "<= 35 %: consider ICD (class I/IIa)", "",
                                     "Zeppenfeld K et al. 2022 ESC Guidelines. Eur Heart J 2022;43:3997-4126"),
                         RiskFeature("Infarct size", 18.2, "% LV", None, "", "HR 1.19 death per +5 % LV",
                                     "Stone GW et al. Infarct size. J Am Coll Cardiol 2016;67:1674-1683")))
    return CardiacResult(
        status="partial", source=str(exam.root), function=function, aha=aha, lge=lge, risk=risk,
        phases=PhaseChoice(ed_phase=0, es_phase=1, method="all_phases", n_phases=2),
        series=(SeriesReference("cine_sax", cine_img.series_instance_uid, description="cine SAX", n_images=12),
                SeriesReference("lge", lge_img.series_instance_uid, description="LGE PSIR SAX", n_images=6)),
        qc=(QcFlag("apex_missing", "warning", "The apex may not be covered: the last slice still shows LV cavity."),
            QcFlag("rv_ef_bad", "error", "RV contour missing on the basal slice: RVEF not reported.",
                   affects=("rv_ef_percent",))),
        masks=CardiacMasks(cine_ed=cine_lab.phase(0), cine_es=cine_lab.phase(1), lge=lge_lab),
        images=CardiacImages(cine=cine_img, lge=lge_img),
    )




def make_mini_exam(root: Path) -> MiniExam:
    study = generate_uid(entropy_srcs=["zeroclick-test-study"])
    frame = generate_uid(entropy_srcs=["zeroclick-test-frame"])
    cine = make_mr_series(root / "cine", study_uid=study, frame_uid=frame, series_number=5,
                          description="cine SAX", n_phases=2, lge=False)
    lge = make_mr_series(root / "lge", study_uid=study, frame_uid=frame, series_number=9,
                         description="LGE PSIR SAX", n_phases=1, lge=True)
    return MiniExam(root, cine, lge)


def load_mini_exam(folder: Path) -> MiniExam:
    """Read a mini exam back from any folder of its files (labels recovered from the pixel values)."""
    import pydicom

    by_series: dict[str, list[tuple[Dataset, Path]]] = {}
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(path)
        except Exception:
            continue
        if ds.get("Modality") == "MR":
            by_series.setdefault(str(ds.SeriesDescription), []).append((ds, path))
    parts = {}
    for desc, items in by_series.items():
        items.sort(key=lambda t: int(t[0].InstanceNumber))
        px = np.stack([ds.pixel_array for ds, _ in items]).astype(np.int32)
        labels = ((px - 50) // 300).astype(np.uint8)
        n_phases = len(items) // N_SLICES
        labels = labels.reshape((n_phases, N_SLICES, ROWS, COLS)) if n_phases > 1 else labels
        parts[desc] = MiniSeries([ds for ds, _ in items], labels, [p for _, p in items])
    return MiniExam(Path(folder), parts["cine SAX"], parts["LGE PSIR SAX"])
