"""The zeroclick error tree and the strictness switch for messy input.

Every error is a :class:`ZeroClickError` and also the built-in exception that fits, so callers can
catch either. Messages say what to do. The original exception is kept as ``__cause__``.
"""

from __future__ import annotations

import logging
import warnings
from typing import Literal

Strictness = Literal["ignore", "warn", "raise"]
STRICTNESS_VALUES: tuple[str, ...] = ("ignore", "warn", "raise")


class ZeroClickError(Exception):
    """Base class of every error raised on purpose by zeroclick.

    ``code`` is a short stable key for machines (``report.json`` ``failure_code``); each class has a default
    and a raise site may name a more precise one: ``InvalidInputError("...", code="mixed_patients")``.
    """

    code: str = "error"

    def __init__(self, *args: object, code: str | None = None) -> None:
        super().__init__(*args)
        if code is not None:
            self.code = code


class InvalidInputError(ZeroClickError, ValueError):
    """The input cannot be analysed as given (wrong kind of file, missing data)."""

    code = "invalid_input"


class InvalidSeriesError(InvalidInputError):
    """A DICOM series is inconsistent (geometry, sizes, missing tags)."""

    code = "invalid_series"


class InvalidDicomError(InvalidInputError):
    """A file is not DICOM, is truncated, or lacks tags every image needs."""

    code = "invalid_dicom"


class ResourceLimitError(InvalidInputError):
    """The input exceeds a documented ceiling (files per exam, bytes per file, pixels per image, archive
    expansion); see :mod:`zeroclick.imaging.dicom.limits`. The message names the limit and how to raise it."""

    code = "resource_limit"


class OutputFolderError(ZeroClickError, FileExistsError):
    """The output folder holds results of an earlier run; pass ``--overwrite`` to replace it whole."""

    code = "output_folder_not_empty"


class MissingCodecError(ZeroClickError, ImportError):
    """Pixel data uses a compression no installed plugin decodes; the message names the package."""

    code = "missing_codec"


class SlideUnreadableError(ZeroClickError, OSError):
    """A whole-slide image cannot be opened or read."""

    code = "slide_unreadable"


class WeightsError(ZeroClickError, RuntimeError):
    """Model weights are missing, unverified or do not match the manifest."""

    code = "weights"


class DeviceError(ZeroClickError, RuntimeError):
    """The requested compute device is not available."""

    code = "device"


class AnalysisError(ZeroClickError, RuntimeError):
    """A pipeline could not produce a valid result; the message says which stage and why."""

    code = "analysis_failed"


class ZeroClickWarning(UserWarning):
    """Warning category for recoverable input problems (recorded in results too)."""


def check_strictness(value: str) -> Strictness:
    """Validate a strictness option, with a "did you mean" style message."""
    if value not in STRICTNESS_VALUES:
        raise InvalidInputError(
            f"strictness={value!r} is not one of {', '.join(STRICTNESS_VALUES)}; "
            "use 'warn' to record problems and go on, 'raise' to stop at the first one."
        )
    return value  # type: ignore[return-value]


def report_problem(
    message: str,
    strictness: Strictness,
    *,
    error: type[ZeroClickError] = InvalidInputError,
    logger: logging.Logger | None = None,
) -> None:
    """Handle one recoverable problem according to ``strictness``.

    ``raise`` raises ``error(message)``; ``warn`` emits a :class:`ZeroClickWarning` and logs it;
    ``ignore`` only logs at debug level. Callers record the message in their result in every case.
    """
    log = logger or logging.getLogger("zeroclick.imaging")
    if strictness == "raise":
        raise error(message)
    if strictness == "warn":
        log.warning(message)
        warnings.warn(message, ZeroClickWarning, stacklevel=3)
    else:
        log.debug(message)
