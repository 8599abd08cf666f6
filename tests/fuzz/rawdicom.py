"""Byte-level edits of explicit VR little-endian Part 10 files: the damage a broken exporter or an attacker does.

pydicom refuses to write most of it (a DS of ``'1,58'``, a duplicated tag, a wrong length), so the fuzz tests
write a clean file with pydicom and then edit its bytes here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


@dataclass(frozen=True)
class Element:
    tag: int
    vr: bytes
    start: int  # first byte of the element header
    value_start: int
    length: int

    @property
    def end(self) -> int:
        return self.value_start + self.length


def elements(buf: bytes) -> list[Element]:
    """Top-level elements of the dataset (after the file meta group), in file order; stops at undefined lengths."""
    pos = 132
    out: list[Element] = []
    while pos + 8 <= len(buf):
        group, elem = struct.unpack_from("<HH", buf, pos)
        vr = buf[pos + 4: pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(buf):  # a truncated file: the element header itself is cut
                break
            length = struct.unpack_from("<I", buf, pos + 8)[0]
            value_start = pos + 12
        else:
            length = struct.unpack_from("<H", buf, pos + 6)[0]
            value_start = pos + 8
        if length == 0xFFFFFFFF:
            break
        tag = group << 16 | elem
        if group != 0x0002:
            out.append(Element(tag, vr, pos, value_start, length))
        pos = value_start + length
    return out


def find(buf: bytes, tag: int) -> Element | None:
    return next((e for e in elements(buf) if e.tag == tag), None)


def encode(vr: bytes, value: bytes) -> bytes:
    """An element header + value (padded to even length) for ``vr``."""
    if len(value) % 2:
        value += b"\x00" if vr in (b"UI", b"OB") else b" "
    if vr in _LONG_VRS:
        return vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return vr + struct.pack("<H", len(value)) + value


def _tag_bytes(tag: int) -> bytes:
    return struct.pack("<HH", tag >> 16, tag & 0xFFFF)


def set_value(buf: bytes, tag: int, value: bytes, vr: bytes | None = None) -> bytes:
    """Replace (or insert in tag order) element ``tag`` with raw ``value`` bytes."""
    e = find(buf, tag)
    if e is not None:
        return buf[: e.start] + _tag_bytes(tag) + encode(vr or e.vr, value) + buf[e.end:]
    after = next((x for x in elements(buf) if x.tag > tag), None)
    at = after.start if after is not None else len(buf)
    return buf[:at] + _tag_bytes(tag) + encode(vr or b"DS", value) + buf[at:]


def delete(buf: bytes, tag: int) -> bytes:
    e = find(buf, tag)
    return buf if e is None else buf[: e.start] + buf[e.end:]


def duplicate(buf: bytes, tag: int, value: bytes | None = None) -> bytes:
    """Write element ``tag`` twice (the second copy right after the first, optionally with another value)."""
    e = find(buf, tag)
    if e is None:
        return buf
    copy = buf[e.start: e.end] if value is None else _tag_bytes(tag) + encode(e.vr, value)
    return buf[: e.end] + copy + buf[e.end:]


def set_length(buf: bytes, tag: int, length: int) -> bytes:
    """Overwrite the length field of ``tag`` without changing the bytes (a lying length)."""
    e = find(buf, tag)
    if e is None:
        return buf
    if e.vr in _LONG_VRS:
        return buf[: e.start + 8] + struct.pack("<I", length & 0xFFFFFFFF) + buf[e.start + 12:]
    return buf[: e.start + 6] + struct.pack("<H", length & 0xFFFF) + buf[e.start + 8:]


def set_vr(buf: bytes, tag: int, vr: bytes) -> bytes:
    """Overwrite the two VR bytes of ``tag`` (the length field keeps its short/long form)."""
    e = find(buf, tag)
    if e is None:
        return buf
    return buf[: e.start + 4] + vr[:2] + buf[e.start + 6:]


def set_us(buf: bytes, tag: int, value: int) -> bytes:
    return set_value(buf, tag, struct.pack("<H", value & 0xFFFF), b"US")
