"""Fixtures for the weights tests: the user's fetched cache (skip when absent; tests never download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeroclick.weights import store


@pytest.fixture(scope="session")
def fetched_cache() -> Path:
    """The cache filled by `zeroclick weights fetch` ($ZEROCLICK_WEIGHTS_DIR or ~/.cache/zeroclick/weights)."""
    root = store.cache_dir()
    if any(s.state != "ok" for s in store.status(cache=root)):
        pytest.skip(f"weights not fetched in {root}: run `zeroclick weights fetch` once (tests never download)")
    return root


@pytest.fixture(scope="session")
def source_wheel(fetched_cache: Path) -> Path:
    """The verified myopari wheel kept in the cache by `zeroclick weights fetch`."""
    entry = store.resolve("acdc", fetched_cache)
    for w in sorted((fetched_cache / "downloads").glob("myopari-*.whl")):
        if store.sha256_file(w) == entry.source["wheel_sha256"]:
            return w
    pytest.skip("the myopari wheel is not in the weights cache; run `zeroclick weights fetch --force`")
