"""``zeroclick slide SLIDE --out DIR``: whole-slide histology (tissue, nuclei, features, viewer outputs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_PARTIAL = 0, 2, 3, 4


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "slide",
        help="analyse a whole-slide image: tissue, nuclei, density, heatmaps, QuPath GeoJSON",
        description="Analyse one whole-slide image (SVS, NDPI, MRXS, tiled TIFF, DICOM WSI). Exit codes: "
                    "0 ok, 2 usage (also: --out holds files, no --overwrite), 3 nothing valid measured (no tissue; or refused, with result.json qc.code: not brightfield H&E, implausible µm/px, too large), 4 partial (some tiles unreadable), "
                    "5 environment (weights, device).",
    )
    p.add_argument("slide", metavar="SLIDE")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created; a folder that holds files is refused without --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out folder whole (the new results are written aside, then swapped in)")
    p.add_argument("--mpp", type=float, help="level-0 microns per pixel, for slides that do not record it")
    p.add_argument("--engine", choices=("classical", "hovernet"), default="classical")
    p.add_argument("--weights", help="HoVerNet weights: a MONAI bundle folder or a state-dict file")
    p.add_argument("--target-mpp", type=float, default=0.5, help="analysis resolution in µm/px (default 0.5)")
    p.add_argument("--tile", type=int, default=512, help="tile size in pixels at the analysis resolution")
    p.add_argument("--overlap", type=int, default=64, help="tile overlap in pixels (even)")
    p.add_argument("--workers", type=int, help="reader processes (default: one per core, at most 4)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from zeroclick.imaging import progress

    with progress.terminal(quiet=getattr(args, "quiet", False)):
        return _run_slide(args)


def _refuse_bad_mpp_early(args: argparse.Namespace, staged_output) -> None:
    """A missing, implausible or 72-dpi µm/px (issue 12) is refused from the slide's properties, before
    scikit-image and torch load: result.json gets the QC code, the error asks for --mpp (exit 3)."""
    import json

    from zeroclick.imaging.slide.open import MissingMppError, check_slide_mpp

    try:
        check_slide_mpp(args.slide, mpp=args.mpp)
    except MissingMppError as exc:
        doc = {"slide_name": Path(args.slide).name, "qc": {"status": "refused", "code": exc.code},
               "warnings": [str(exc)]}
        with staged_output(args.out, overwrite=True) as out:
            (Path(out) / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
        raise


def _run_slide(args: argparse.Namespace) -> int:
    from zeroclick.imaging.errors import OutputFolderError
    from zeroclick.pipelines.commands.output_folder import check_output_folder, rebase_text, staged_output

    try:
        check_output_folder(Path(args.out), overwrite=args.overwrite, inputs=[args.slide])
    except OutputFolderError as exc:
        print(f"zeroclick slide: {exc}", file=sys.stderr)
        return EXIT_USAGE
    _refuse_bad_mpp_early(args, staged_output)  # before the heavy imports: answers in about a second
    from zeroclick.pipelines.histology import run

    # a fresh sibling folder replaces --out whole at the end, also when the run fails (no mix of two runs)
    with staged_output(args.out, overwrite=True) as out:
        result = _analyse(run, args, out)
    if args.json:
        sys.stdout.write(rebase_text(result.to_json(), out, args.out) + "\n")
    else:
        density = result.nuclei_density_per_mm2
        sys.stdout.write(
            f"{result.slide_name}: {result.qc['status']}, tissue {result.tissue_area_mm2:.2f} mm², "
            f"{result.nuclei_count} nuclei"
            + (f", {density:.0f} /mm²" if density is not None else "")
            + f"; outputs in {args.out}\n"
        )
    for w in result.warnings[:5]:
        sys.stderr.write(f"zeroclick: warning: {w}\n")
    status = result.qc.get("status")
    if status in ("no_tissue", "failed", "refused"):  # refused: qc["code"] says why (issue 12)
        return EXIT_FAILED
    return EXIT_PARTIAL if status == "partial" else EXIT_OK


def _analyse(run, args: argparse.Namespace, out: Path):
    return run(
        args.slide, out_dir=out, mpp=args.mpp, engine=args.engine, weights=args.weights,
        target_mpp=args.target_mpp, tile_px=args.tile, overlap_px=args.overlap, workers=args.workers,
        batch_size=args.batch_size, device=args.device,
    )
