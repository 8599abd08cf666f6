"""Whether two series show the same patient, without keeping who the patient is."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

# A fresh secret per process: patient keys compare series within one run and mean nothing outside it.
_PATIENT_KEY_SALT = secrets.token_bytes(16)


def patient_key(h: Any) -> str:
    """A salted digest of PatientID, PatientName and PatientBirthDate: compares the patients of two series
    without keeping who they are (the salt is new in every process, so the key cannot be looked up later).

    Empty when the header names none of them (anonymised exams), so that such series are never called
    different patients.
    """
    parts = [str(h.get(k) or "").strip().upper() for k in ("PatientID", "PatientName", "PatientBirthDate")]
    if not any(parts):
        return ""
    return hashlib.sha256(_PATIENT_KEY_SALT + "\x1f".join(parts).encode("utf-8", "replace")).hexdigest()[:16]
