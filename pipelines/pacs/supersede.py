"""A re-analysis of a study supersedes the results sent before: its SR names the earlier SR as its predecessor.

DICOM has no "delete" over C-STORE, and a PACS keeps the first version of a SOP Instance UID (Orthanc does, silently),
so re-using UIDs cannot replace a result. Instead every SR of the new result set carries a Predecessor Documents
Sequence (0040,A360) naming the SR it replaces (study, series and SOP Instance UIDs), and the listener records
which job superseded which: the PACS holds two result sets, but never two silent ones.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["link_predecessor"]

logger = logging.getLogger(__name__)


def _srs(paths: Sequence[Path]) -> list:
    import pydicom

    found = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not an SR we can name; skipped
            continue
        if str(ds.get("Modality", "")) == "SR":
            found.append((Path(path), ds))
    return found


def link_predecessor(new_outputs: Sequence[Path], old_outputs: Sequence[Path]) -> int:
    """Add a Predecessor Documents Sequence naming the SRs of ``old_outputs`` to each SR of ``new_outputs``.

    Returns the number of SRs rewritten (atomically: temporary name, then rename).
    """
    import pydicom
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as DicomSequence

    old = _srs(old_outputs)
    if not old:
        return 0
    by_study: dict[str, dict[str, list[Dataset]]] = {}
    for _, ds in old:
        ref = Dataset()
        ref.ReferencedSOPClassUID = ds.SOPClassUID
        ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
        by_study.setdefault(str(ds.StudyInstanceUID), {}).setdefault(str(ds.SeriesInstanceUID), []).append(ref)
    rewritten = 0
    for path, _ in _srs(new_outputs):
        ds = pydicom.dcmread(path)
        old_uids = {str(r.ReferencedSOPInstanceUID) for s in by_study.values() for refs in s.values() for r in refs}
        if str(ds.SOPInstanceUID) in old_uids:
            continue  # the same document: nothing replaces itself
        studies = []
        for study_uid, series in by_study.items():
            item = Dataset()
            item.StudyInstanceUID = study_uid
            item.ReferencedSeriesSequence = DicomSequence()
            for series_uid, refs in series.items():
                s = Dataset()
                s.SeriesInstanceUID = series_uid
                s.ReferencedSOPSequence = DicomSequence(refs)
                item.ReferencedSeriesSequence.append(s)
            studies.append(item)
        ds.PredecessorDocumentsSequence = DicomSequence(studies)
        tmp = path.with_name(path.name + ".tmp")
        ds.save_as(tmp, enforce_file_format=True)
        os.replace(tmp, path)
        rewritten += 1
    if rewritten:
        logger.info("%d SR(s) marked as replacing %d earlier SR(s)", rewritten, len(old))
    return rewritten
