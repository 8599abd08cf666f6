"""Per-frame fields of enhanced multi-frame MR objects (functional groups) as classic header dicts.

Each frame becomes a dict with the same keywords as a single-frame image header
(``ImagePositionPatient``, ``TriggerTime``, ``InversionTime``, ``ImageType``...), so geometry and
classification treat one enhanced file like the set of classic images it replaces. Two readers fill it:
:func:`frames_from_dataset` from a pydicom dataset, and :func:`frames_from_bytes` from the raw
functional-group sequences found by the fast header reader (pydicom spends ~10 ms per frame converting
these nested elements on the development machine; the byte walk is ~50x cheaper). Both must agree
(``tests/dicom/test_dicom_headers.py``).
"""

from __future__ import annotations

import struct
from typing import Any

SHARED_GROUPS_TAG = 0x52009229
PER_FRAME_GROUPS_TAG = 0x52009230

# functional group sequence (tag, keyword) -> ((element tag, element keyword, classic keyword, VR), ...)
MACROS: tuple[tuple[int, str, tuple[tuple[int, str, str, str], ...]], ...] = (
    (0x00209113, "PlanePositionSequence", ((0x00200032, "ImagePositionPatient", "ImagePositionPatient", "DS"),)),
    (0x00209116, "PlaneOrientationSequence",
     ((0x00200037, "ImageOrientationPatient", "ImageOrientationPatient", "DS"),)),
    (0x00289110, "PixelMeasuresSequence", ((0x00280030, "PixelSpacing", "PixelSpacing", "DS"),
                                           (0x00180050, "SliceThickness", "SliceThickness", "DS"),
                                           (0x00180088, "SpacingBetweenSlices", "SpacingBetweenSlices", "DS"))),
    (0x00189118, "CardiacSynchronizationSequence",
     ((0x00209153, "NominalCardiacTriggerDelayTime", "TriggerTime", "FD"),
      (0x00209251, "RRIntervalTimeNominal", "NominalInterval", "FD"))),
    (0x00189114, "MREchoSequence", ((0x00189082, "EffectiveEchoTime", "EchoTime", "FD"),)),
    (0x00189112, "MRTimingAndRelatedParametersSequence", ((0x00180080, "RepetitionTime", "RepetitionTime", "DS"),
                                                          (0x00181314, "FlipAngle", "FlipAngle", "DS"),
                                                          (0x00180091, "EchoTrainLength", "EchoTrainLength", "IS"))),
    (0x00189115, "MRModifierSequence", ((0x00189079, "InversionTimes", "InversionTime", "FD"),
                                        (0x00189009, "InversionRecovery", "InversionRecovery", "CS"))),
    (0x00189226, "MRImageFrameTypeSequence", ((0x00089007, "FrameType", "ImageType", "CS"),)),
    (0x00289145, "PixelValueTransformationSequence", ((0x00281052, "RescaleIntercept", "RescaleIntercept", "DS"),
                                                      (0x00281053, "RescaleSlope", "RescaleSlope", "DS"))),
    (0x00209111, "FrameContentSequence", ((0x00209128, "TemporalPositionIndex", "TemporalPositionIdentifier", "UL"),
                                          (0x00209057, "InStackPositionNumber", "InStackPositionNumber", "UL"),
                                          (0x00189074, "FrameAcquisitionDateTime", "AcquisitionTime", "DT"))),
    (0x00189197, "MRVelocityEncodingSequence",
     ((0x00189217, "VelocityEncodingMaximumValue", "VelocityEncodingMaximumValue", "FD"),)),
)
_MACRO_TAGS = {seq_tag: fields for seq_tag, _, fields in MACROS}
_NORMALISE_VR = {"FD": "DS", "UL": "IS"}


def _finish(classic: str, vr: str, value: Any) -> Any:
    if value is None:
        return None
    if vr == "DT":  # keep HHMMSS.FFFFFF so it sorts like AcquisitionTime (TM)
        text = str(value).strip()
        return (text[8:] or None) if len(text) > 8 else None
    if classic == "InversionTime" and isinstance(value, tuple):
        return value[0]
    return value


# ------------------------------------------------------------------------------------------ pydicom


def _apply_dataset(groups: Any, out: dict[str, Any]) -> None:
    from zeroclick.imaging.dicom.headers import _normalise

    if groups is None:
        return
    for seq_tag, _, fields in MACROS:
        if seq_tag not in groups:
            continue
        seq = groups[seq_tag].value
        if not seq:
            continue
        item = seq[0]
        for tag, _, classic, vr in fields:
            if tag not in item:
                continue
            try:
                raw = item[tag].value
                value = str(raw) if vr == "DT" else _normalise(raw, _NORMALISE_VR.get(vr, vr))
            except (ValueError, TypeError, OverflowError):  # a frame value that is no number: left out, as in
                continue  # the fast reader; validate() rejects the file when placement depends on it
            value = _finish(classic, vr, value)
            if value is not None:
                out[classic] = value


def frames_from_dataset(ds: Any) -> list[dict[str, Any]]:
    """One dict per frame (shared groups first, per-frame groups override them)."""
    shared_seq = ds.get("SharedFunctionalGroupsSequence")
    shared: dict[str, Any] = {}
    _apply_dataset(shared_seq[0] if shared_seq else None, shared)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    n_frames = int(ds.get("NumberOfFrames", len(per_frame)) or len(per_frame))
    frames = []
    for i in range(n_frames):
        frame = dict(shared)
        if i < len(per_frame):
            _apply_dataset(per_frame[i], frame)
        frames.append(frame)
    return frames


# ------------------------------------------------------------------------------------------ raw bytes

_HEAD = struct.Struct("<HHI")
_EXPLICIT = struct.Struct("<HH2sH")
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_KNOWN_SQ = frozenset(_MACRO_TAGS) | {SHARED_GROUPS_TAG, PER_FRAME_GROUPS_TAG}


class EnhancedParseError(ValueError):
    """The functional groups do not parse as expected (the caller falls back to pydicom)."""


def _items(buf: bytes, pos: int, end: int | None, implicit: bool) -> tuple[list[dict[int, Any]], int]:
    """Items of a sequence whose value starts at ``pos`` (``end`` None: undefined length)."""
    items: list[dict[int, Any]] = []
    n = len(buf)
    while end is None or pos < end:
        if pos + 8 > n:
            raise EnhancedParseError("sequence runs past the end of the data")
        group, elem, length = _HEAD.unpack_from(buf, pos)
        pos += 8
        if group != 0xFFFE:
            raise EnhancedParseError("expected an item")
        if elem == 0xE0DD:
            return items, pos
        if elem != 0xE000:
            raise EnhancedParseError("unexpected delimiter")
        item_end = None if length == 0xFFFFFFFF else pos + length
        item, pos = _dataset(buf, pos, item_end, implicit)
        items.append(item)
    return items, pos


def _dataset(buf: bytes, pos: int, end: int | None, implicit: bool) -> tuple[dict[int, Any], int]:
    out: dict[int, Any] = {}
    n = len(buf)
    while end is None or pos < end:
        if pos + 8 > n:
            raise EnhancedParseError("item runs past the end of the data")
        if implicit:
            group, elem, length = _HEAD.unpack_from(buf, pos)
            vr = None
            start = pos + 8
        else:
            group, elem, vr, length = _EXPLICIT.unpack_from(buf, pos)
            if group == 0xFFFE:
                length = _HEAD.unpack_from(buf, pos)[2]
                start = pos + 8
            elif vr in _LONG_VRS:
                length = struct.unpack_from("<I", buf, pos + 8)[0]
                start = pos + 12
            else:
                start = pos + 8
        if group == 0xFFFE and elem == 0xE00D:
            return out, pos + 8
        tag = group << 16 | elem
        is_seq = vr == b"SQ" or (vr in (None, b"UN") and (length == 0xFFFFFFFF or tag in _KNOWN_SQ))
        if is_seq:
            value, pos = _items(buf, start, None if length == 0xFFFFFFFF else start + length,
                                implicit or vr == b"UN")
            out[tag] = value
            continue
        if length == 0xFFFFFFFF:
            raise EnhancedParseError("undefined length outside a sequence")
        out[tag] = (vr, buf[start: start + length])
        pos = start + length
    return out, pos


def _value(vr: str, raw: bytes, encoding: str) -> Any:
    from zeroclick.imaging.dicom.headers import _convert

    if vr == "FD":
        k = len(raw) // 8
        vals = struct.unpack(f"<{k}d", raw[: 8 * k]) if k else ()
        return None if not vals else (float(vals[0]) if k == 1 else tuple(float(v) for v in vals))
    if vr == "UL":
        k = len(raw) // 4
        vals = struct.unpack(f"<{k}I", raw[: 4 * k]) if k else ()
        return None if not vals else (int(vals[0]) if k == 1 else tuple(int(v) for v in vals))
    if vr == "DT":
        return raw.decode(encoding).strip("\x00 ") or None
    return _convert(raw, vr, encoding)


def _apply_raw(group: dict[int, Any], out: dict[str, Any], encoding: str) -> None:
    for seq_tag, fields in _MACRO_TAGS.items():
        seq = group.get(seq_tag)
        if not seq:
            continue
        if not isinstance(seq, list):
            raise EnhancedParseError("functional group is not a sequence")
        item = seq[0]
        for tag, _, classic, vr in fields:
            elem = item.get(tag)
            if elem is None:
                continue
            file_vr, raw = elem
            if file_vr is not None and file_vr not in (vr.encode(), b"UN") and not (
                    vr in ("DS", "IS") and file_vr in (b"DS", b"IS")):
                raise EnhancedParseError(f"{classic} stored as {file_vr!r}, expected {vr}")
            value = _finish(classic, vr, _value(vr, raw, encoding))
            if value is not None:
                out[classic] = value


def frames_from_bytes(buf: bytes, sequences: dict[int, tuple[int, int | None]], implicit: bool, n_frames: int,
                      encoding: str = "latin-1") -> list[dict[str, Any]]:
    """Frames from the raw shared/per-frame functional group sequences (value start, end or None)."""
    parsed: dict[int, list[dict[int, Any]]] = {}
    for tag, (start, end) in sequences.items():
        parsed[tag], _ = _items(buf, start, end, implicit)
    shared: dict[str, Any] = {}
    if parsed.get(SHARED_GROUPS_TAG):
        _apply_raw(parsed[SHARED_GROUPS_TAG][0], shared, encoding)
    per_frame = parsed.get(PER_FRAME_GROUPS_TAG, [])
    n = n_frames or len(per_frame)
    frames = []
    for i in range(n):
        frame = dict(shared)
        if i < len(per_frame):
            _apply_raw(per_frame[i], frame, encoding)
        frames.append(frame)
    return frames
