"""The header-reading fan-out (imaging/dicom/workers.py): every path once, in input order, whatever happens to a
forked reader."""

from __future__ import annotations

import os
import sys
import time

import pytest

from zeroclick.imaging.dicom.workers import _parallel

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked readers on Linux only")

PATHS = [f"file{i:05d}" for i in range(2000)]


def _tagged(chunk):
    time.sleep(0.02)  # real chunks take ~10 ms: without it the caller may claim every chunk before a fork starts
    return [(p, os.getpid()) for p in chunk]


def test_results_in_input_order_and_both_processes_read():
    out = _parallel(_tagged, PATHS, 2)
    assert [p for p, _ in out] == PATHS
    pids = {pid for _, pid in out}
    assert os.getpid() in pids and len(pids) == 2  # the caller reads a share, one forked reader the rest


def test_a_reader_that_dies_costs_time_not_files():
    caller = os.getpid()

    def dies_in_child(chunk):
        if os.getpid() != caller:
            os._exit(3)
        return [(p, os.getpid()) for p in chunk]

    out = _parallel(dies_in_child, PATHS, 3)
    assert [p for p, _ in out] == PATHS
    assert {pid for _, pid in out} == {caller}


def test_an_error_in_the_callers_share_is_raised_and_no_reader_is_left(monkeypatch):
    forked = []
    real_fork = os.fork

    def fork():
        pid = real_fork()
        if pid:
            forked.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", fork)

    def fails(chunk):
        time.sleep(0.02)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        _parallel(fails, PATHS, 3)
    assert len(forked) == 2
    for pid in forked:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # every forked reader was reaped


def test_small_inputs_stay_in_one_process():
    out = _parallel(_tagged, PATHS[:300], 4)
    assert {pid for _, pid in out} == {os.getpid()}


def test_a_fork_that_fails_leaves_the_reading_to_the_caller(monkeypatch):
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    out = _parallel(_tagged, PATHS, 2)
    assert [p for p, _ in out] == PATHS
    assert {pid for _, pid in out} == {os.getpid()}
