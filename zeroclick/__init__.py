"""zeroclick: medical images in, clinical numbers out, with no human click.

The stable public API (everything else lives in the subpackages and may change between releases):

* :mod:`zeroclick.cardiac` - ``run(exam)`` -> :class:`~zeroclick.cardiac.CardiacResult` (cine, LGE, AHA, risk).
* :mod:`zeroclick.slide` - ``run(slide)`` -> :class:`~zeroclick.slide.HistologyResult` (tissue, nuclei, features).
* :func:`zeroclick.scan` - read and classify a DICOM exam (folder, zip or tar) without loading pixels.
* the error tree: :class:`ZeroClickError` and its subclasses.

The implementation keeps the project's layout: :mod:`zeroclick.imaging` (files, pixels, geometry, devices),
:mod:`zeroclick.pipelines` (clinical pipelines, PACS, CLI), :mod:`zeroclick.weights`, :mod:`zeroclick.benchmarks`.
Everything is installed under this one name, so a user's own ``weights.py`` or ``benchmarks/`` cannot shadow it.

>>> import zeroclick                                            # doctest: +SKIP
>>> result = zeroclick.cardiac.run("exam/dicom")                # doctest: +SKIP
>>> result.function.lv_ef_percent                               # doctest: +SKIP

Submodules are imported on first use, so ``import zeroclick`` is cheap (no torch, no MONAI).
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

from zeroclick.imaging._version import __version__
from zeroclick.imaging.errors import (
    InvalidInputError,
    InvalidSeriesError,
    MissingCodecError,
    SlideUnreadableError,
    WeightsError,
    ZeroClickError,
)

logging.getLogger("zeroclick").addHandler(logging.NullHandler())

if TYPE_CHECKING:  # pragma: no cover
    from zeroclick import cardiac, slide
    from zeroclick.imaging.dicom import scan

_LAZY_MODULES = {"cardiac": "zeroclick.cardiac", "slide": "zeroclick.slide", "plot": "zeroclick.plot"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_MODULES:
        return importlib.import_module(_LAZY_MODULES[name])
    if name == "scan":
        from zeroclick.imaging.dicom import scan

        return scan
    raise AttributeError(f"module 'zeroclick' has no attribute {name!r}")


__all__ = [
    "InvalidInputError",
    "InvalidSeriesError",
    "MissingCodecError",
    "SlideUnreadableError",
    "WeightsError",
    "ZeroClickError",
    "__version__",
    "cardiac",
    "scan",
    "slide",
]
