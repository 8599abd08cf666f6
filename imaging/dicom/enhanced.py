"""Per-frame fields of enhanced multi-frame MR objects (functional groups) as classic header dicts.

Each frame becomes a dict with the same keywords as a single-frame image header
(``ImagePositionPatient``, ``TriggerTime``, ``InversionTime``, ``ImageType``...), so geometry and
classification treat one enhanced file like the set of classic images it replaces.
"""

from __future__ import annotations

from typing import Any

# functional group sequence -> ((keyword in that item, classic keyword, VR), ...)
_MACROS: tuple[tuple[str, tuple[tuple[str, str, str], ...]], ...] = (
    ("PlanePositionSequence", (("ImagePositionPatient", "ImagePositionPatient", "DS"),)),
    ("PlaneOrientationSequence", (("ImageOrientationPatient", "ImageOrientationPatient", "DS"),)),
    ("PixelMeasuresSequence", (("PixelSpacing", "PixelSpacing", "DS"), ("SliceThickness", "SliceThickness", "DS"),
                               ("SpacingBetweenSlices", "SpacingBetweenSlices", "DS"))),
    ("CardiacSynchronizationSequence", (("NominalCardiacTriggerDelayTime", "TriggerTime", "DS"),
                                        ("RRIntervalTimeNominal", "NominalInterval", "DS"))),
    ("MREchoSequence", (("EffectiveEchoTime", "EchoTime", "DS"),)),
    ("MRTimingAndRelatedParametersSequence", (("RepetitionTime", "RepetitionTime", "DS"),
                                              ("FlipAngle", "FlipAngle", "DS"),
                                              ("EchoTrainLength", "EchoTrainLength", "IS"))),
    ("MRModifierSequence", (("InversionTimes", "InversionTime", "DS"),
                            ("InversionRecovery", "InversionRecovery", "CS"))),
    ("MRImageFrameTypeSequence", (("FrameType", "ImageType", "CS"),)),
    ("PixelValueTransformationSequence", (("RescaleIntercept", "RescaleIntercept", "DS"),
                                          ("RescaleSlope", "RescaleSlope", "DS"))),
    ("FrameContentSequence", (("TemporalPositionIndex", "TemporalPositionIdentifier", "IS"),
                              ("InStackPositionNumber", "InStackPositionNumber", "IS"),
                              ("FrameAcquisitionDateTime", "AcquisitionTime", "DT"))),
    ("MRVelocityEncodingSequence", (("VelocityEncodingMaximumValue", "VelocityEncodingMaximumValue", "DS"),)),
)


def _value(item: Any, keyword: str, vr: str) -> Any:
    from imaging.dicom.headers import _normalise

    if keyword not in item:
        return None
    value = item[keyword].value
    if vr == "DT":  # keep HHMMSS.FFFFFF so it sorts like AcquisitionTime (TM)
        text = str(value).strip()
        return text[8:] or None if len(text) > 8 else None
    value = _normalise(value, vr)
    if keyword == "InversionTimes" and isinstance(value, tuple):
        value = value[0]
    return value


def _apply(groups: Any, out: dict[str, Any]) -> None:
    if groups is None:
        return
    for seq_kw, fields in _MACROS:
        seq = groups.get(seq_kw)
        if not seq:
            continue
        item = seq[0]
        for kw, classic, vr in fields:
            v = _value(item, kw, vr)
            if v is not None:
                out[classic] = v


def frames_from_dataset(ds: Any) -> list[dict[str, Any]]:
    """One dict per frame (shared groups first, per-frame groups override them)."""
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared: dict[str, Any] = {}
    _apply(shared_seq[0] if shared_seq else None, shared)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n_frames = int(ds.get("NumberOfFrames", len(per_frame)) or len(per_frame))
    frames = []
    for i in range(n_frames):
        frame = dict(shared)
        if i < len(per_frame):
            _apply(per_frame[i], frame)
        frames.append(frame)
    return frames
