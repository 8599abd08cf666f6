"""The built-in unit kinds: ``cmr`` (one cardiac MRI exam) and ``slide`` (one whole-slide image).

Both adapt a single-study pipeline to the :class:`~zeroclick.pipelines.cohort.kinds.UnitKind` interface. The pipelines
are imported only when a worker loads them, so a missing pipeline gives a clear error before any unit runs.
Each unit writes what ``zeroclick cmr INPUT --out DIR`` / ``zeroclick slide SLIDE --out DIR`` write; the cardiac
weights are loaded once per worker and reused for every exam.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroclick.imaging import __version__
from zeroclick.pipelines.cohort.kinds import PipelineUnavailableError, UnitKind

CMR_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".nii", ".nii.gz")
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".svslide", ".bif", ".vms", ".vmu", ".dcm")


def version() -> str:
    """The zeroclick version the outputs depend on."""
    return __version__


# --- cmr -------------------------------------------------------------------------------------------------

CMR_SUMMARY_KEYS = ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "rv_edv_ml", "rv_esv_ml", "rv_ef_percent",
                    "myo_mass_ed_g", "infarct_percent_of_myocardium", "mvo_ml")


@dataclass(frozen=True)
class CardiacContext:
    """The cardiac models of one worker: loaded once, reused for every exam."""

    device: str
    cine_segmenter: Any
    lge_segmenter: Any


def cmr_is_unit(path: Path) -> bool:
    """An exam: a folder (DICOM files or an ACDC case), a .zip/.tar(.gz) archive, or an LGE NIfTI file."""
    return path.is_dir() or path.name.lower().endswith(CMR_ARCHIVES)


def cmr_load(device: str) -> CardiacContext:
    """Import the cardiac pipeline and load the cine and LGE weights once (verified SHA-256)."""
    try:
        from zeroclick.imaging.engine import Engine
        from zeroclick.pipelines.cardiac import run  # noqa: F401  (the pipeline must be importable)
        from zeroclick.pipelines.cardiac.segmentation import CineSegmenter, LgeSegmenter, exports_dir
    except ImportError as exc:
        raise PipelineUnavailableError(
            f"the cardiac pipeline is not available in this installation ({exc}); "
            "install the full zeroclick package and check that `zeroclick cmr --help` works"
        ) from exc
    # Cohort workers share the cores out through OMP_NUM_THREADS (set by the runner and by Ray for its actors).
    threads = os.environ.get("OMP_NUM_THREADS", "")
    engine = Engine(device=device, num_threads=int(threads) if threads.isdigit() and int(threads) > 0 else None,
                    export_dir=exports_dir())
    return CardiacContext(device, CineSegmenter(engine=engine), LgeSegmenter(engine=engine))


def cmr_process(context: CardiacContext, source: Path, out_dir: Path) -> dict[str, Any]:
    """Analyse one exam into ``out_dir`` exactly as ``zeroclick cmr SOURCE --out OUT_DIR`` does.

    The manifest summary keeps the status and the headline numbers.
    """
    from zeroclick.pipelines.cardiac import run
    from zeroclick.pipelines.cardiac.outputs import write_outputs

    result = run(str(source), device=context.device, cine_segmenter=context.cine_segmenter,
                 lge_segmenter=context.lge_segmenter)
    write_outputs(result, out_dir)
    measurements = result.measurements
    summary: dict[str, Any] = {"status": result.status}
    summary.update({k: measurements[k] for k in CMR_SUMMARY_KEYS if measurements.get(k) is not None})
    summary["qc_errors"] = sum(q.severity == "error" for q in result.qc)
    return summary


def cmr_weights_id() -> str:
    """Ids, versions and SHA-256 prefixes of the cine and LGE weights the cardiac pipeline uses."""
    try:
        from zeroclick.pipelines.cardiac.segmentation import CineSegmenter, LgeSegmenter
        from zeroclick.weights.store import resolve
    except ImportError:
        return "unavailable"
    parts = []
    for name in (CineSegmenter.default_weights, LgeSegmenter.default_weights):
        entry = resolve(name)
        parts.append(f"{entry.id}@{entry.version}:sha256:{entry.sha256[:16]}")
    return "+".join(parts)


# --- slide -----------------------------------------------------------------------------------------------

SLIDE_SUMMARY_KEYS = ("nuclei_count", "nuclei_density_per_mm2", "cellularity_percent", "lymphocyte_fraction_percent",
                      "tiles_analysed", "tiles_failed")
SLIDE_ENGINE = "classical"


@dataclass(frozen=True)
class HistologyContext:
    """The histology settings of one worker (the classical engine loads no weights)."""

    device: str
    engine: str = SLIDE_ENGINE


def slide_is_unit(path: Path) -> bool:
    """A whole-slide image file, or a folder (DICOM WSI)."""
    return path.is_dir() or path.name.lower().endswith(SLIDE_SUFFIXES)


def slide_load(device: str) -> HistologyContext:
    """Import the histology pipeline (the classical engine needs no weights)."""
    try:
        from zeroclick.pipelines.histology import run  # noqa: F401  (the pipeline must be importable)
    except ImportError as exc:
        raise PipelineUnavailableError(
            f"the histology pipeline is not available in this installation ({exc}); "
            "install the full zeroclick package and check that `zeroclick slide --help` works"
        ) from exc
    return HistologyContext(device)


def slide_process(context: HistologyContext, source: Path, out_dir: Path) -> dict[str, Any]:
    """Analyse one slide into ``out_dir`` as ``zeroclick slide SLIDE --out OUT_DIR`` does."""
    from zeroclick.pipelines.histology import run

    result = run(str(source), out_dir=out_dir, device=context.device, engine=context.engine)
    data = result.to_dict()
    return {k: data[k] for k in SLIDE_SUMMARY_KEYS if data.get(k) is not None}


def slide_weights_id() -> str:
    """The classical engine uses no weights; the id names the engine so a change of engine reruns slides."""
    return f"{SLIDE_ENGINE}:no-weights"


CMR = UnitKind("cmr", cmr_is_unit, cmr_load, cmr_process, cmr_weights_id, version)
SLIDE = UnitKind("slide", slide_is_unit, slide_load, slide_process, slide_weights_id, version)
