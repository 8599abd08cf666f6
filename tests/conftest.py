"""Shared fixtures: where the real data lives, GPU skipping, a CLI runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path | None:
    env = os.environ.get("ZEROCLICK_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real-data folder (../shared/data or $ZEROCLICK_SHARED_DATA); skips when absent."""
    d = _shared_data_dir()
    if d is None:
        pytest.skip("real data not found: set ZEROCLICK_SHARED_DATA or place it at ../shared/data beside the checkout")
    return d


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (marker 'gpu'); none is available here")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]):
    """Run ``zeroclick`` in-process; returns (exit_code, stdout, stderr)."""
    from zeroclick.pipelines.cli import main

    def _run(*argv: str) -> tuple[int, str, str]:
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse --help / --version / usage errors
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return _run
