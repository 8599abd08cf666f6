"""The shard partition property, searched by hypothesis (skipped where hypothesis is not installed)."""

from __future__ import annotations

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from test_cohort_shards import _check_partition  # noqa: E402

ids_strategy = st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12),
                        unique=True, max_size=60)


@settings(max_examples=200, deadline=None)
@given(ids=ids_strategy, count=st.integers(min_value=1, max_value=12), seed=st.integers(0, 2**32 - 1))
def test_shards_partition_the_input_for_any_ids(ids, count, seed):
    _check_partition(ids, count, seed)
