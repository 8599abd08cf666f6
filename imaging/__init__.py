"""zeroclick imaging layer: files, pixels, geometry and devices. No clinical meaning lives here.

``imaging`` never imports ``pipelines``.
"""

import logging

from imaging._version import __version__
from imaging.errors import (
    InvalidSeriesError,
    MissingCodecError,
    SlideUnreadableError,
    WeightsError,
    ZeroClickError,
)
from imaging.volume import Volume

logging.getLogger("imaging").addHandler(logging.NullHandler())

__all__ = [
    "InvalidSeriesError",
    "MissingCodecError",
    "SlideUnreadableError",
    "Volume",
    "WeightsError",
    "ZeroClickError",
    "__version__",
]
