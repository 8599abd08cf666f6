"""Cardiac MRI, the public API: :func:`run` an exam (DICOM folder/zip/tar or NIfTI) into a :class:`CardiacResult`.

Implementation: :mod:`zeroclick.pipelines.cardiac`, one module per stage.
"""

from zeroclick.pipelines.cardiac import *  # noqa: F401,F403
from zeroclick.pipelines.cardiac import __all__  # noqa: F401
