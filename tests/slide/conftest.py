"""Small synthetic slides built once per test session (a few seconds in all)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeroclick.imaging.synthetic.slide import SlideInfo, generate_slide


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> SlideInfo:
    """A 3072 x 2560 synthetic slide at 0.25 µm/px (two pyramid levels) with its ground truth."""
    out: Path = tmp_path_factory.mktemp("slide") / "small.tiff"
    return generate_slide(out, width=3072, height=2560, mpp=0.25, seed=3)
