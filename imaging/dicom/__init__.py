"""DICOM input: fast whole-exam scan, explainable series classification, geometry and lazy pixel decoding.

>>> from zeroclick.imaging.dicom import scan                              # doctest: +SKIP
>>> exam = scan("exam.zip")                                     # doctest: +SKIP
>>> sax = exam.find("cine_sax")[0]                              # doctest: +SKIP
>>> sax.classification.reasons                                  # doctest: +SKIP
>>> vol = sax.volume()      # [phase, slice, row, col], LPS affine   # doctest: +SKIP
"""

from zeroclick.imaging.dicom.classify import LABELS, Classification
from zeroclick.imaging.dicom.geometry import Geometry, Image
from zeroclick.imaging.dicom.headers import read_header
from zeroclick.imaging.dicom.scan import Exam, Rejected, Series, Study, scan

__all__ = [
    "LABELS",
    "Classification",
    "Exam",
    "Geometry",
    "Image",
    "Rejected",
    "Series",
    "Study",
    "read_header",
    "scan",
]
