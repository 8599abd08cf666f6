"""Synthetic cardiac MR exams with exact ground truth, and a NIfTI -> DICOM converter.

>>> from zeroclick.imaging.synthetic.cmr import generate_exam, load_truth
>>> info = generate_exam("exam", n_images=400, vendor="ge", seed=3)  # doctest: +SKIP
>>> load_truth("exam")["cine_sax"].array.shape  # doctest: +SKIP
"""

from __future__ import annotations

from .convert import ConvertedSeries, nifti_to_dicom
from .exam import ExamInfo, SeriesInfo, generate_exam
from .plan import minimum_images
from .truth import load_truth

__all__ = ["ConvertedSeries", "ExamInfo", "SeriesInfo", "generate_exam", "load_truth", "minimum_images",
           "nifti_to_dicom"]
