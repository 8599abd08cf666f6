"""Fixtures for the cohort tests: the cheap ``fake`` unit kind registered for the duration of a test."""

from __future__ import annotations

import pytest
from cohort_fakes import FAKE

from zeroclick.pipelines.cohort import register_kind
from zeroclick.pipelines.cohort.kinds import unregister_kind


@pytest.fixture
def fake_kind():
    register_kind(FAKE)
    yield FAKE
    unregister_kind("fake")
