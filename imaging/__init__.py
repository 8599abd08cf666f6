"""zeroclick imaging layer: files, pixels, geometry and devices. No clinical meaning lives here.

``zeroclick.imaging`` never imports ``zeroclick.pipelines``.
"""

import logging

from zeroclick.imaging._version import __version__
from zeroclick.imaging.errors import (
    InvalidSeriesError,
    MissingCodecError,
    SlideUnreadableError,
    WeightsError,
    ZeroClickError,
)
from zeroclick.imaging.volume import Volume

logging.getLogger("zeroclick").addHandler(logging.NullHandler())

__all__ = [
    "InvalidSeriesError",
    "MissingCodecError",
    "SlideUnreadableError",
    "Volume",
    "WeightsError",
    "ZeroClickError",
    "__version__",
]
