"""Progress (issue 13): the ambient reporter, the engine's slice counts, bars only in a terminal and never with -q."""

from __future__ import annotations

import os
import pty
import select
import time

import numpy as np
import pytest
import torch

import zeroclick.pipelines.cardiac.segmentation as segmentation
from tests.cardiac.phantom import LutSegmenter, cine_phantom, write_acdc_folder
from zeroclick.imaging import progress


def test_engine_advances_the_ambient_reporter_per_slice():
    from zeroclick.imaging.engine import Engine

    seen: list[tuple[str, int, int | None]] = []
    model = torch.nn.Conv2d(1, 2, 3, padding=1).eval()
    with progress.reporting(lambda stage, done, total: seen.append((stage, done, total))):
        progress.stage("segmentation", total=10, unit="slices")
        out = Engine(device="cpu", runtime="torch").predict(model, np.zeros((10, 1, 8, 8), np.float32), batch_size=4)
    assert out.shape == (10, 2, 8, 8)
    assert [d for s, d, _ in seen if s == "segmentation"] == [0, 4, 8, 10]
    assert progress.current().__class__ is progress.Reporter  # silent again outside the block


def test_reporting_rejects_what_it_cannot_use():
    with pytest.raises(TypeError, match="progress must be"):
        with progress.reporting(42):  # type: ignore[arg-type]
            pass


def _cli_in_pty(argv: list[str], monkeypatch) -> str:
    """Run ``zeroclick ARGV`` in a forked child whose stdout/stderr are a pseudo-terminal; return what it printed."""
    from zeroclick.pipelines.cli import main

    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: LutSegmenter(4))
    monkeypatch.setattr(segmentation, "LgeSegmenter", lambda *a, **k: LutSegmenter(5))
    pid, fd = pty.fork()
    if pid == 0:  # child: the CLI with the exact look-up network, then leave without running pytest's teardown
        import sys

        code = 1
        try:  # pytest's capture replaced sys.stdout/stderr: write to the terminal the child now has on fds 1 and 2
            sys.stdout = open(1, "w", closefd=False, buffering=1)  # noqa: SIM115
            sys.stderr = open(2, "w", closefd=False, buffering=1)  # noqa: SIM115
            code = main(argv)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    chunks, deadline = [], time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_cmr_shows_progress_in_a_terminal_only(tmp_path, monkeypatch, run_cli):
    case = write_acdc_folder(tmp_path / "p", cine_phantom(), ed=0, es=6)
    shown = _cli_in_pty(["cmr", str(case), "--out", str(tmp_path / "tty")], monkeypatch)
    for stage in ("loading libraries", "reading the exam", "cine: ED/ES search", "writing outputs"):
        assert stage in shown, stage
    assert "status: ok" in shown

    quiet = _cli_in_pty(["-q", "cmr", str(case), "--out", str(tmp_path / "quiet")], monkeypatch)
    assert "loading libraries" not in quiet and "\x1b[" not in quiet and "status: ok" in quiet

    monkeypatch.setattr(segmentation, "CineSegmenter", lambda *a, **k: LutSegmenter(4))
    code, out, err = run_cli("cmr", str(case), "--out", str(tmp_path / "pipe"))  # not a terminal
    assert code == 0, err
    assert "status: ok" in out and "loading libraries" not in err + out and "\x1b[" not in err + out


@pytest.mark.slow
def test_slide_run_reports_every_tile(tmp_path):
    import zeroclick
    from zeroclick.imaging.synthetic.slide import generate_slide

    generate_slide(tmp_path / "syn.tiff", width=2048, height=2048, mpp=0.25, seed=3)
    seen: list[tuple[str, int, int | None]] = []
    with progress.reporting(lambda stage, done, total: seen.append((stage, done, total))):
        result = zeroclick.slide.run(tmp_path / "syn.tiff", out_dir=tmp_path / "out", workers=1)
    tile_updates = [(d, t) for s, d, t in seen if s.startswith("nuclei")]
    assert tile_updates[0] == (0, result.tiles_total)
    assert tile_updates[-1] == (result.tiles_total, result.tiles_total)
