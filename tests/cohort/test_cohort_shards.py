"""Shards are deterministic, disjoint, balanced, and together they are the whole input."""

from __future__ import annotations

import random

import pytest

from zeroclick.imaging.errors import InvalidInputError
from zeroclick.pipelines.cohort import Shard, parse_shard, select_shard


def _check_partition(ids: list[str], count: int, seed: int) -> None:
    shards = [select_shard(ids, Shard(i, count)) for i in range(count)]
    flat = [u for s in shards for u in s]
    assert len(flat) == len(set(flat))  # disjoint
    assert set(flat) == set(ids)  # union is the whole input
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1  # balanced
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    assert [select_shard(shuffled, Shard(i, count)) for i in range(count)] == shards  # deterministic


def test_shards_are_disjoint_cover_the_input_and_ignore_input_order():
    rng = random.Random(7)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_-."
    for case in range(300):
        ids = list({"".join(rng.choices(alphabet, k=rng.randint(1, 12))) for _ in range(rng.randint(0, 60))})
        _check_partition(ids, rng.randint(1, 12), seed=case)


def test_known_assignment():
    ids = ["e", "a", "d", "c", "b"]
    assert select_shard(ids, parse_shard("0/2")) == ["a", "c", "e"]
    assert select_shard(ids, parse_shard("1/2")) == ["b", "d"]
    assert select_shard(ids, parse_shard(None)) == ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize("text", ["3/3", "-1/2", "1", "a/b", "0/0", "1/2/3"])
def test_bad_shard_text_is_a_named_error(text):
    with pytest.raises(InvalidInputError, match="shard"):
        parse_shard(text)


def test_duplicate_ids_cannot_be_sharded():
    with pytest.raises(InvalidInputError, match="unique"):
        select_shard(["a", "a"], Shard(0, 2))


def test_manifest_names_sort_with_the_shard_index():
    assert Shard(0, 1).manifest_name == "manifest.jsonl"
    assert Shard(3, 12).manifest_name == "manifest.shard-03-of-12.jsonl"
    names = [Shard(i, 12).manifest_name for i in range(12)]
    assert names == sorted(names)
