"""Deterministic DICOM UIDs for derived objects.

Every object zeroclick writes (SEG, SR, encapsulated PDF) gets UIDs that depend only on the UIDs of
its inputs, on the kind of object and on the zeroclick version, so re-running the same version on
the same study gives byte-for-byte the same UIDs and a PACS replaces rather than duplicates.

Scheme (documented for interoperability): ``2.25.<decimal integer>`` (ISO/IEC 9834-8 UUID-derived
form, no registered root needed). The integer is a name-based UUID: the first 16 bytes of
``SHA-512("zeroclick" NUL version NUL part1 NUL part2 ...)`` (UTF-8) with the RFC 4122 variant bits and
version nibble 5 set. Typical parts are the source series UID, the kind of object (``"seg-ed"``,
``"sr"``) and ``"series"``/``"instance"``. (pydicom's ``generate_uid(prefix=None)`` ignores its
entropy sources and is random, so it cannot be used here.)

Examples
--------
>>> a = derived_uid("1.2.3", "seg-ed", "series", version="0.1.0")
>>> a == derived_uid("1.2.3", "seg-ed", "series", version="0.1.0")
True
>>> a.startswith("2.25.") and a != derived_uid("1.2.3", "seg-es", "series", version="0.1.0")
True
"""

from __future__ import annotations

import hashlib
import uuid

from pydicom.uid import UID

from zeroclick.imaging._version import __version__

__all__ = ["derived_uid"]


def derived_uid(*parts: str, version: str = __version__) -> UID:
    """A UID that depends only on ``parts`` and ``version`` (see module docstring for the scheme).

    Parameters
    ----------
    *parts
        Strings that identify the derived object, most stable first (source UIDs, object kind, role).
    version
        The zeroclick version; a new version gives new UIDs so results of different versions never
        overwrite each other in a PACS.

    Returns
    -------
    pydicom.uid.UID
        A valid UID of at most 64 characters under the ``2.25`` root.
    """
    if not parts:
        raise ValueError("derived_uid needs at least one part (e.g. the source series UID)")
    name = "\0".join(["zeroclick", version, *(str(p) for p in parts)]).encode("utf-8")
    digest = hashlib.sha512(name).digest()
    return UID(f"2.25.{uuid.UUID(bytes=digest[:16], version=5).int}")
