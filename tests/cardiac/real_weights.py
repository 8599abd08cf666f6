"""Skip a test, with the reason, when the real cardiac weights have not been fetched (`zeroclick weights fetch`)."""

from __future__ import annotations

import pytest


def weights_or_skip(*models: str) -> None:
    """Load each model (default: the ACDC cine and EMIDEC LGE networks) or skip the calling test."""
    from zeroclick.imaging.errors import WeightsError
    from zeroclick.weights.store import load_model

    try:
        for name in models or ("acdc", "emidec"):
            load_model(name)
    except WeightsError as exc:
        pytest.skip(f"weights not fetched (zeroclick weights fetch): {exc}")
