"""The built-in unit kinds: ``cmr`` (one cardiac MRI exam) and ``slide`` (one whole-slide image).

Both adapt a single-study pipeline to the :class:`~pipelines.cohort.kinds.UnitKind` interface. The pipelines
are imported only when a worker loads them, so a missing pipeline gives a clear error before any unit runs.
Each unit writes what ``zeroclick cmr INPUT --out DIR`` / ``zeroclick slide SLIDE --out DIR`` write.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imaging import __version__
from pipelines.cohort.kinds import PipelineUnavailableError, UnitKind

CMR_ARCHIVES = (".zip", ".tar", ".tar.gz", ".tgz", ".nii", ".nii.gz")
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".svslide", ".bif", ".vms", ".vmu", ".dcm")


@dataclass(frozen=True)
class PipelineContext:
    """What a worker loaded once: the pipeline's ``run``, its output writer and pre-loaded models."""

    run: Any
    write: Any
    device: str
    run_kwargs: Mapping[str, Any] = field(default_factory=dict)


def _load_pipeline(module_name: str, label: str, command: str, device: str) -> PipelineContext:
    try:
        module = importlib.import_module(module_name)
        run = module.run
    except (ImportError, AttributeError) as exc:
        raise PipelineUnavailableError(
            f"the {label} pipeline ({module_name}.run) is not available in this installation; "
            f"install the full zeroclick package, or check that `zeroclick {command} --help` works"
        ) from exc
    write = getattr(module, "write_outputs", None)
    kwargs: dict[str, Any] = {}
    loader = getattr(module, "load_models", None)
    if loader is not None and "models" in inspect.signature(run).parameters:
        kwargs["models"] = loader(device=device)  # weights loaded once per worker
    return PipelineContext(run=run, write=write, device=device, run_kwargs=kwargs)


def _process(context: PipelineContext, source: Path, out_dir: Path, summary_keys: tuple[str, ...]) -> dict[str, Any]:
    result = context.run(str(source), device=context.device, **context.run_kwargs)
    if context.write is not None:
        context.write(result, out_dir)
    else:
        (out_dir / "report.json").write_text(result.to_json() + "\n")
    data = result.to_dict()
    flat = dict(data.get("measurements") or {})
    flat.update({k: v for k, v in data.items() if not isinstance(v, (dict, list))})
    summary = {k: flat[k] for k in summary_keys if k in flat}
    summary["status"] = data.get("status", "ok")
    json.dumps(summary)
    return summary


def _weights_id(module_name: str) -> str:
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return "unavailable"
    describe = getattr(module, "weights_id", None)
    return str(describe()) if callable(describe) else "default"


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
        from imaging.engine import Engine
        from pipelines.cardiac import run  # noqa: F401  (the pipeline must be importable)
        from pipelines.cardiac.segmentation import CineSegmenter, LgeSegmenter
    except ImportError as exc:
        raise PipelineUnavailableError(
            f"the cardiac pipeline is not available in this installation ({exc}); "
            "install the full zeroclick package and check that `zeroclick cmr --help` works"
        ) from exc
    engine = Engine(device=device)
    return CardiacContext(device, CineSegmenter(engine=engine), LgeSegmenter(engine=engine))


def cmr_process(context: CardiacContext, source: Path, out_dir: Path) -> dict[str, Any]:
    """Analyse one exam into ``out_dir`` exactly as ``zeroclick cmr SOURCE --out OUT_DIR`` does.

    The manifest summary keeps the status and the headline numbers.
    """
    from pipelines.cardiac import run
    from pipelines.cardiac.outputs import write_outputs

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
        from pipelines.cardiac.segmentation import CineSegmenter, LgeSegmenter
        from weights.store import resolve
    except ImportError:
        return "unavailable"
    parts = []
    for name in (CineSegmenter.default_weights, LgeSegmenter.default_weights):
        entry = resolve(name)
        parts.append(f"{entry.id}@{entry.version}:sha256:{entry.sha256[:16]}")
    return "+".join(parts)


# --- slide -----------------------------------------------------------------------------------------------


def slide_is_unit(path: Path) -> bool:
    """A whole-slide image file, or a folder (DICOM WSI)."""
    return path.is_dir() or path.name.lower().endswith(SLIDE_SUFFIXES)


def slide_load(device: str) -> PipelineContext:
    """Import the histology pipeline and load its models once."""
    return _load_pipeline("pipelines.histology", "histology", "slide", device)


def slide_process(context: PipelineContext, source: Path, out_dir: Path) -> dict[str, Any]:
    """Analyse one slide into ``out_dir``; the manifest summary keeps the headline numbers."""
    return _process(context, source, out_dir, ("n_nuclei", "tissue_area_mm2", "nuclei_density_per_mm2",
                                               "lymphocyte_fraction", "cellularity_percent"))


def slide_weights_id() -> str:
    """Id and SHA-256 of the histology weights (``classical`` needs none)."""
    return _weights_id("pipelines.histology")


CMR = UnitKind("cmr", cmr_is_unit, cmr_load, cmr_process, cmr_weights_id, version)
SLIDE = UnitKind("slide", slide_is_unit, slide_load, slide_process, slide_weights_id, version)
