"""Vendor-styled DICOM headers for the synthetic exam (Siemens, GE, Philips).

Names, image types and sequence names follow what each vendor's cardiac protocols write (from public
DICOM conformance statements and de-identified sample exams); every patient attribute is synthetic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, MRImageStorage

VENDORS: tuple[str, ...] = ("siemens", "ge", "philips")

_MANUFACTURER = {
    "siemens": ("SIEMENS", "MAGNETOM Sola", "syngo MR XA31"),
    "ge": ("GE MEDICAL SYSTEMS", "SIGNA Artist", "29\\LX\\MR Software release:MR29.1_EA_2141.a"),
    "philips": ("Philips Medical Systems", "Ingenia", "5.7.1\\5.7.1.0"),
}


@dataclass(frozen=True)
class SeriesStyle:
    description: str
    protocol: str
    sequence_name: str
    image_type: tuple[str, ...]
    scanning_sequence: str
    sequence_variant: str
    repetition_ms: float
    echo_ms: float
    flip_deg: float


def _s(desc: str, prot: str, seq: str, it: str, ss: str, sv: str, tr: float, te: float, fa: float) -> SeriesStyle:
    return SeriesStyle(desc, prot, seq, tuple(it.split("\\")), ss, sv, tr, te, fa)


# series key -> style, per vendor. Keys are the generator's series keys (see exam.SERIES_KEYS).
STYLES: dict[str, dict[str, SeriesStyle]] = {
    "siemens": {
        "localizer": _s("localizer", "localizer", "*tfi2d1_12", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "GR", "SP", 3.1, 1.3, 50),
        "cine_sax": _s("cine_trufi_retro_sax", "cine_trufi_retro_sax", "*tfi2d1_25", "ORIGINAL\\PRIMARY\\M\\RETRO\\DIS2D", "GR", "SK\\SS", 40.0, 1.2, 58),
        "cine_lax_2ch": _s("cine_trufi_retro_2ch", "cine_trufi_retro_2ch", "*tfi2d1_25", "ORIGINAL\\PRIMARY\\M\\RETRO\\DIS2D", "GR", "SK\\SS", 40.0, 1.2, 58),
        "cine_lax_3ch": _s("cine_trufi_retro_3ch", "cine_trufi_retro_3ch", "*tfi2d1_25", "ORIGINAL\\PRIMARY\\M\\RETRO\\DIS2D", "GR", "SK\\SS", 40.0, 1.2, 58),
        "cine_lax_4ch": _s("cine_trufi_retro_4ch", "cine_trufi_retro_4ch", "*tfi2d1_25", "ORIGINAL\\PRIMARY\\M\\RETRO\\DIS2D", "GR", "SK\\SS", 40.0, 1.2, 58),
        "lge_mag": _s("tfl_psir_sax_MAG", "tfl_psir_sax", "*tfl2d1", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "GR\\IR", "SP\\MP", 700.0, 3.3, 25),
        "lge_psir": _s("tfl_psir_sax_PSIR", "tfl_psir_sax", "*tfl2d1", "DERIVED\\PRIMARY\\PSIR\\NORM\\DIS2D", "GR\\IR", "SP\\MP", 700.0, 3.3, 25),
        "t1_molli_source": _s("MOLLI_5(3)3_SAX", "MOLLI_5(3)3_SAX", "*tfi2d1_13", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "GR\\IR", "SK\\SS\\MP", 280.0, 1.1, 35),
        "t1_map": _s("MOLLI_5(3)3_SAX_T1 MAP", "MOLLI_5(3)3_SAX", "*tfi2d1_13", "DERIVED\\PRIMARY\\T1 MAP\\NORM\\DIS2D\\MOCO", "GR\\IR", "SK\\SS\\MP", 280.0, 1.1, 35),
        "t1_molli_source_post": _s("MOLLI_4(1)3(1)2_SAX_POST", "MOLLI_4(1)3(1)2_SAX_POST", "*tfi2d1_13", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "GR\\IR", "SK\\SS\\MP", 280.0, 1.1, 35),
        "t1_map_post": _s("MOLLI_4(1)3(1)2_SAX_POST_T1 MAP", "MOLLI_4(1)3(1)2_SAX_POST", "*tfi2d1_13", "DERIVED\\PRIMARY\\T1 MAP\\NORM\\DIS2D\\MOCO", "GR\\IR", "SK\\SS\\MP", 280.0, 1.1, 35),
        "perfusion_stress": _s("tfl_perf_stress_sax", "tfl_perf_stress", "*tfl2d1_16", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "GR", "SP\\MP", 180.0, 1.0, 12),
        "perfusion_rest": _s("tfl_perf_rest_sax", "tfl_perf_rest", "*tfl2d1_16", "ORIGINAL\\PRIMARY\\M\\NORM\\DIS2D", "GR", "SP\\MP", 180.0, 1.0, 12),
    },
    "ge": {
        "localizer": _s("3-Plane Loc", "CARDIAC LOC", "fgre", "ORIGINAL\\PRIMARY\\OTHER", "GR", "SS", 4.2, 1.6, 30),
        "cine_sax": _s("FIESTA CINE SAX", "CARDIAC FUNCTION", "fiestacine", "ORIGINAL\\PRIMARY\\OTHER", "GR", "SS", 3.6, 1.5, 55),
        "cine_lax_2ch": _s("FIESTA CINE 2CH", "CARDIAC FUNCTION", "fiestacine", "ORIGINAL\\PRIMARY\\OTHER", "GR", "SS", 3.6, 1.5, 55),
        "cine_lax_3ch": _s("FIESTA CINE 3CH", "CARDIAC FUNCTION", "fiestacine", "ORIGINAL\\PRIMARY\\OTHER", "GR", "SS", 3.6, 1.5, 55),
        "cine_lax_4ch": _s("FIESTA CINE 4CH", "CARDIAC FUNCTION", "fiestacine", "ORIGINAL\\PRIMARY\\OTHER", "GR", "SS", 3.6, 1.5, 55),
        "lge_mag": _s("MDE SAX", "CARDIAC VIABILITY", "fgre_mde", "ORIGINAL\\PRIMARY\\OTHER", "GR\\IR", "SS\\MP", 6.5, 3.1, 20),
        "lge_psir": _s("PSIR MDE SAX", "CARDIAC VIABILITY", "fgre_mde", "DERIVED\\PRIMARY\\PSIR", "GR\\IR", "SS\\MP", 6.5, 3.1, 20),
        "t1_molli_source": _s("MOLLI T1 SAX", "CARDIAC T1", "molli", "ORIGINAL\\PRIMARY\\OTHER", "GR\\IR", "SS\\MP", 3.2, 1.4, 35),
        "t1_map": _s("T1 Map MOLLI SAX", "CARDIAC T1", "molli", "DERIVED\\PRIMARY\\T1 MAP", "GR\\IR", "SS\\MP", 3.2, 1.4, 35),
        "t1_molli_source_post": _s("MOLLI T1 SAX POST", "CARDIAC T1", "molli", "ORIGINAL\\PRIMARY\\OTHER", "GR\\IR", "SS\\MP", 3.2, 1.4, 35),
        "t1_map_post": _s("T1 Map MOLLI SAX POST", "CARDIAC T1", "molli", "DERIVED\\PRIMARY\\T1 MAP", "GR\\IR", "SS\\MP", 3.2, 1.4, 35),
        "perfusion_stress": _s("Perfusion Stress SAX", "CARDIAC PERFUSION", "fgre_perf", "ORIGINAL\\PRIMARY\\OTHER", "GR", "SS\\MP", 3.0, 1.2, 20),
        "perfusion_rest": _s("Perfusion Rest SAX", "CARDIAC PERFUSION", "fgre_perf", "ORIGINAL\\PRIMARY\\OTHER", "GR", "SS\\MP", 3.0, 1.2, 20),
    },
    "philips": {
        "localizer": _s("Survey", "SURVEY_MST", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", "SS", 3.8, 1.9, 45),
        "cine_sax": _s("sBTFE_BH_SA", "WIP sBTFE_BH_SA", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", "SS", 2.9, 1.45, 60),
        "cine_lax_2ch": _s("sBTFE_BH_2CH", "WIP sBTFE_BH_2CH", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", "SS", 2.9, 1.45, 60),
        "cine_lax_3ch": _s("sBTFE_BH_3CH", "WIP sBTFE_BH_3CH", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", "SS", 2.9, 1.45, 60),
        "cine_lax_4ch": _s("sBTFE_BH_4CH", "WIP sBTFE_BH_4CH", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", "SS", 2.9, 1.45, 60),
        "lge_mag": _s("PSIR_TFE_SA", "PSIR_TFE_SA", "", "ORIGINAL\\PRIMARY\\M_IR\\M\\IR", "GR\\IR", "SS\\MP", 6.1, 3.0, 25),
        "lge_psir": _s("PSIR_TFE_SA", "PSIR_TFE_SA", "", "ORIGINAL\\PRIMARY\\R_IR\\R\\IR", "GR\\IR", "SS\\MP", 6.1, 3.0, 25),
        "t1_molli_source": _s("T1_MOLLI_SA", "T1_MOLLI_SA", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR\\IR", "SS\\MP", 2.6, 1.05, 35),
        "t1_map": _s("T1_MOLLI_SA T1map", "T1_MOLLI_SA", "", "DERIVED\\PRIMARY\\T1 MAP\\T1", "GR\\IR", "SS\\MP", 2.6, 1.05, 35),
        "t1_molli_source_post": _s("T1_MOLLI_SA_post", "T1_MOLLI_SA_post", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR\\IR", "SS\\MP", 2.6, 1.05, 35),
        "t1_map_post": _s("T1_MOLLI_SA_post T1map", "T1_MOLLI_SA_post", "", "DERIVED\\PRIMARY\\T1 MAP\\T1", "GR\\IR", "SS\\MP", 2.6, 1.05, 35),
        "perfusion_stress": _s("Perfusion_stress_SA", "Perfusion_stress_SA", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", "SS\\MP", 2.4, 1.1, 20),
        "perfusion_rest": _s("Perfusion_rest_SA", "Perfusion_rest_SA", "", "ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "GR", "SS\\MP", 2.4, 1.1, 20),
    },
}


def make_uid_root(*parts: object) -> str:
    """A deterministic ``2.25.<int>`` UID root (< 45 characters) from the exam parameters."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:15], "big"))


@dataclass(frozen=True)
class PatientInfo:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    age: str
    height_m: float
    weight_kg: float
    study_date: str
    study_time: str
    accession: str


def synthetic_patient(seed: int, height_m: float, weight_kg: float, sex: str, age_years: int) -> PatientInfo:
    return PatientInfo(
        name=f"SYNTHETIC^CMR{seed:05d}",
        patient_id=f"ZC-CMR-{seed:06d}",
        birth_date=f"{2026 - age_years}0101",
        sex=sex,
        age=f"{age_years:03d}Y",
        height_m=round(height_m, 2),
        weight_kg=round(weight_kg, 1),
        study_date="20260115",
        study_time="091500",
        accession=f"ZC{seed:08d}",
    )


def series_dataset(*, vendor: str, key: str, patient: PatientInfo, study_uid: str, series_uid: str,
                   frame_of_reference_uid: str, series_number: int, rows: int, cols: int,
                   pixel_spacing_mm: tuple[float, float], slice_thickness_mm: float,
                   spacing_between_slices_mm: float | None, orientation: list[float] | None,
                   heart_rate_bpm: float | None, n_phases: int | None, signed: bool = False) -> Dataset:
    """The attributes shared by every image of one series (per-image ones are set by the writer)."""
    style = STYLES[vendor][key]
    manufacturer, model, software = _MANUFACTURER[vendor]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "ZEROCLICK_SYNTH"
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = list(style.image_type)
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = series_uid + ".0"
    ds.StudyDate = patient.study_date
    ds.SeriesDate = patient.study_date
    ds.AcquisitionDate = patient.study_date
    ds.ContentDate = patient.study_date
    ds.StudyTime = patient.study_time
    ds.SeriesTime = f"{9 + series_number // 6:02d}{(series_number * 7) % 60:02d}00"
    ds.AcquisitionTime = ds.SeriesTime
    ds.ContentTime = ds.SeriesTime
    ds.AccessionNumber = patient.accession
    ds.Modality = "MR"
    ds.Manufacturer = manufacturer
    ds.InstitutionName = "Synthetic Hospital"
    ds.ReferringPhysicianName = ""
    ds.StationName = {"siemens": "AWP12345", "ge": "GEMR01", "philips": "PHMR01"}[vendor]
    ds.StudyDescription = {"siemens": "Cardiac^Viability", "ge": "MR CARDIAC W WO", "philips": "Cardiac Viability"}[vendor]
    ds.SeriesDescription = style.description
    ds.ManufacturerModelName = model
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.PatientAge = patient.age
    ds.PatientSize = f"{patient.height_m:.2f}"
    ds.PatientWeight = f"{patient.weight_kg:.1f}"
    ds.BodyPartExamined = "HEART"
    ds.ScanningSequence = style.scanning_sequence.split("\\") if "\\" in style.scanning_sequence else style.scanning_sequence
    ds.SequenceVariant = style.sequence_variant.split("\\") if "\\" in style.sequence_variant else style.sequence_variant
    ds.ScanOptions = "CG" if heart_rate_bpm is not None else ""  # ECG-gated series
    ds.MRAcquisitionType = "2D"
    if "IR" in style.scanning_sequence:
        ds.InversionTime = ""  # Type 2C: empty unless the image sets it (T1 maps)
    if style.sequence_name:
        ds.SequenceName = style.sequence_name
    ds.SliceThickness = f"{slice_thickness_mm:.4g}"
    ds.RepetitionTime = f"{style.repetition_ms:.4g}"
    ds.EchoTime = f"{style.echo_ms:.4g}"
    ds.NumberOfAverages = "1"
    ds.ImagingFrequency = "63.676" if vendor != "ge" else "63.8646"
    ds.MagneticFieldStrength = "1.5"
    if key.endswith("_post"):  # acquired after the contrast injection
        ds.ContrastBolusAgent = "Gadobutrol"
        ds.ContrastBolusVolume = "10"
    if spacing_between_slices_mm is not None:
        ds.SpacingBetweenSlices = f"{spacing_between_slices_mm:.4g}"
    ds.EchoTrainLength = "1"
    if heart_rate_bpm is not None:
        ds.NominalInterval = f"{60000.0 / heart_rate_bpm:.0f}"
        ds.HeartRate = f"{heart_rate_bpm:.0f}"
    if n_phases is not None:
        ds.CardiacNumberOfImages = str(n_phases)
    ds.SoftwareVersions = software
    ds.ProtocolName = style.protocol
    ds.FlipAngle = f"{style.flip_deg:.4g}"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = str(series_number)
    ds.InstanceNumber = "1"
    ds.ImagePositionPatient = [0.0, 0.0, 0.0]
    if orientation is not None:
        ds.ImageOrientationPatient = orientation
    ds.FrameOfReferenceUID = frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.PixelSpacing = [f"{pixel_spacing_mm[0]:.6g}", f"{pixel_spacing_mm[1]:.6g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if (signed and vendor != "siemens") or vendor == "philips":
        ds.RescaleIntercept = str(-2048 if signed else 0)
        ds.RescaleSlope = "1.25" if vendor == "philips" and not signed else "1"
        ds.RescaleType = "US"
    return ds


# Stored value of zero signal in a Siemens PSIR image: Siemens writes phase-sensitive images unsigned with
# no rescale, zero signal at 2048 (the background of the EMIDEC exports, e.g. case P087: air 2041-2060).
PSIR_ZERO_STORED = 2048.0


def psir_value_offset(vendor: str, signed: bool) -> float:
    """What the rescaled pixel value reads at zero signal: 2048 for Siemens PSIR, 0 for everything else
    (GE and Philips store phase-sensitive images signed through RescaleIntercept -2048)."""
    return PSIR_ZERO_STORED if signed and vendor == "siemens" else 0.0


def rescale_of(vendor: str, signed: bool) -> tuple[float, float]:
    """(slope, intercept) the writer must invert: stored = (value - intercept) / slope."""
    if signed and vendor == "siemens":
        return 1.0, 0.0
    if signed:
        return 1.0, -2048.0
    if vendor == "philips":
        return 1.25, 0.0
    return 1.0, 0.0
