"""Coded concepts used by the zeroclick DICOM writers (SNOMED CT, LOINC, DCM, UCUM).

Standard codes where the DICOM content mapping resource has one (CID 7152 cardiac structures,
CID 7151 anatomy, LOINC cardiac function codes); a small local scheme ``99ZCLK`` (declared in the SR's
Coding Scheme Identification Sequence) only for what no standard code expresses (infarct and MVO percentages,
T1 and ECV of remote myocardium and infarct).
pydicom's code dictionary has no LVEF LOINC 10230-1, so it is built here.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

__all__ = [
    "ANATOMICAL_STRUCTURE",
    "CARDIAC_MRI",
    "ECV",
    "ECV_INFARCT",
    "INFARCT",
    "INFARCT_PERCENT_OF_LV",
    "LOCAL_SCHEME",
    "LV",
    "LV_EDV",
    "LV_EF",
    "LV_ESV",
    "LV_MYOCARDIUM",
    "LV_SV",
    "MASS",
    "MORPHOLOGICALLY_ABNORMAL",
    "MVO",
    "MVO_PERCENT_OF_LV",
    "NATIVE_T1",
    "NATIVE_T1_INFARCT",
    "POST_T1",
    "RV",
    "RV_EDV",
    "RV_EF",
    "RV_ESV",
    "TISSUE",
    "UNIT_G",
    "UNIT_ML",
    "UNIT_MS",
    "UNIT_PERCENT",
    "VOLUME",
]

LOCAL_SCHEME = "99ZCLK"

# Segmented property categories (CID 7150)
ANATOMICAL_STRUCTURE = CodedConcept("91723000", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL = CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
TISSUE = CodedConcept("85756007", "SCT", "Tissue")

# Segmented property types (CID 7152 Cardiac Structure Segmentation Type, CID 7151)
LV = CodedConcept("87878005", "SCT", "Left Ventricle")
RV = CodedConcept("53085002", "SCT", "Right Ventricle")
LV_MYOCARDIUM = CodedConcept("49848007", "SCT", "Left ventricle myocardium")
INFARCT = CodedConcept("55641003", "SCT", "Infarct")
MVO = CodedConcept("26036001", "SCT", "Obstruction")

# Measurements
LV_EF = CodedConcept("10230-1", "LN", "Left ventricular Ejection fraction")
LV_EDV = CodedConcept("18026-5", "LN", "Left Ventricular End Diastolic Volume")
LV_ESV = CodedConcept("18148-7", "LN", "Left Ventricular End Systolic Volume")
LV_SV = CodedConcept("90096001", "SCT", "Stroke Volume")
RV_EF = CodedConcept("8818-7", "LN", "Right ventricular ejection fraction by MR")
RV_EDV = CodedConcept("8822-9", "LN", "Right Ventricular ED Volume")
RV_ESV = CodedConcept("8824-5", "LN", "Right Ventricular ES Volume")
MASS = CodedConcept("4147007", "SCT", "Mass")
VOLUME = CodedConcept("118565006", "SCT", "Volume")
INFARCT_PERCENT_OF_LV = CodedConcept("ZC0001", LOCAL_SCHEME, "Infarct size as percent of LV myocardium")
MVO_PERCENT_OF_LV = CodedConcept("ZC0002", LOCAL_SCHEME, "MVO as percent of LV myocardium")
NATIVE_T1 = CodedConcept("ZC0003", LOCAL_SCHEME, "Native myocardial T1, remote myocardium")
POST_T1 = CodedConcept("ZC0004", LOCAL_SCHEME, "Post-contrast myocardial T1, remote myocardium")
ECV = CodedConcept("ZC0005", LOCAL_SCHEME, "Extracellular volume fraction, remote myocardium")
NATIVE_T1_INFARCT = CodedConcept("ZC0006", LOCAL_SCHEME, "Native T1 of the infarct")
ECV_INFARCT = CodedConcept("ZC0007", LOCAL_SCHEME, "Extracellular volume fraction of the infarct")

CARDIAC_MRI = CodedConcept.from_code(codes.SCT.CardiacMRI)

# UCUM units
UNIT_ML = CodedConcept("mL", "UCUM", "milliliter")
UNIT_G = CodedConcept("g", "UCUM", "gram")
UNIT_PERCENT = CodedConcept("%", "UCUM", "percent")
UNIT_MS = CodedConcept("ms", "UCUM", "millisecond")
