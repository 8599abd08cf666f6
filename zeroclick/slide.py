"""Whole-slide histology, the public API: :func:`run` a slide into a :class:`HistologyResult`.

Implementation: :mod:`zeroclick.pipelines.histology`, one module per stage.
"""

from zeroclick.pipelines.histology import *  # noqa: F401,F403
from zeroclick.pipelines.histology import __all__  # noqa: F401
