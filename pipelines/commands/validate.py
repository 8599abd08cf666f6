"""``zeroclick validate cmr|nuclei DATA --out DIR [--json]``: a pipeline measured against manual labels.

Each kind lives with its pipeline (:mod:`zeroclick.pipelines.cardiac.validate`,
:mod:`zeroclick.pipelines.histology.validation`); this module only declares the command line.
"""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "validate",
        help="measure a pipeline against manual labels (per case and pooled agreement, plots, CSV)",
        description="Runs a pipeline on every case of a labelled set and compares it with the manual labels.",
    )
    kinds = p.add_subparsers(dest="validate_kind", metavar="KIND", required=True)

    # --- cardiac (issue 11) -------------------------------------------------------------------------------
    c = kinds.add_parser(
        "cmr",
        help="cardiac MRI against manual labels (ACDC-style NIfTI folders, Sunnybrook-style DICOM + contours)",
    )
    c.add_argument("data", metavar="DATA", help="folder of labelled cases")
    c.add_argument("--out", required=True, help="output folder (per-case CSV, summary JSON, Bland-Altman PNG)")
    c.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    c.add_argument("--volume-rule", default="scmr", choices=("scmr", "reference"),
                   help="which slices count toward the volumes (as `zeroclick cmr --volume-rule`)")
    c.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    c.add_argument("--runtime", default="auto", help="network runtime (as `zeroclick cmr --runtime`)")
    c.add_argument("--case", action="append", metavar="ID", help="only this case id (repeatable)")
    c.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average the network over flipped inputs (4x network time)")
    c.set_defaults(func=_cmr)

    # --- nuclei (issue 12) --------------------------------------------------------------------------------
    n = kinds.add_parser(
        "nuclei",
        help="nuclei segmentation against manual annotations (MoNuSeg XML, instance-mask layouts)",
    )
    n.add_argument("data", metavar="DATA", help="folder of annotated tiles")
    n.add_argument("--out", help="output folder (per-tile CSV, summary JSON, overlay PNGs); none: print only")
    n.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    n.add_argument("--layout", choices=("monuseg", "instance-mask"),
                   help="annotation layout (default: detected from the folder)")
    n.add_argument("--engine", choices=("classical",), default="classical", help="nuclei engine")
    n.add_argument("--target-mpp", type=float, default=0.5, help="analysis resolution in µm/px (default 0.5)")
    n.add_argument("--radius-um", type=float, default=6.0, help="centroid matching radius in µm (default 6)")
    n.set_defaults(func=_nuclei)


def _cmr(args: argparse.Namespace) -> int:
    from zeroclick.pipelines.cardiac.validate import cli_main

    return int(cli_main(args))


def _nuclei(args: argparse.Namespace) -> int:
    from zeroclick.pipelines.histology.validation import cli_main

    return int(cli_main(args))
