"""``zeroclick cmr INPUT --out DIR``: the zero-click cardiac MRI analysis of one exam."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

EPILOG = """outputs in DIR: report.json (top-level "measurements"), measurements.csv, masks/*.nii.gz, run.json;
with --report also report.pdf + report.png (the one-page report); with --dicom also those and dicom/
(SEG ED/ES/LGE, TID 1500 SR, encapsulated PDF report).

exit codes:
  0  ok
  2  usage error (also: --out holds files and --overwrite was not given)
  3  analysis failed (reason on stderr and in report.json)
  4  partial result (a QC error, a missing part, or DICOM outputs/sending failed)
  5  environment problem (weights missing or unverified, device unavailable, DICOM writer not installed)
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cmr", help="analyse a cardiac MRI exam (DICOM folder/zip, ACDC folder or LGE NIfTI)",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="INPUT", help="DICOM folder/zip/tar, ACDC patient folder (Info.cfg) or LGE NIfTI")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created; a folder that holds files is refused without --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty --out folder whole (the new results are written aside, then swapped in)")
    p.add_argument("--device", default="auto", choices=("auto", "cuda", "mps", "cpu"))
    p.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnxruntime", "openvino"),
                   help="network runtime: auto = on the CPU OpenVINO (bf16 where the CPU has native bf16, else fp32; "
                        "not under a jemalloc LD_PRELOAD), else ONNX Runtime fp32, the same network exported once; "
                        "PyTorch (bf16) on a GPU")
    p.add_argument("--weights", action="append", metavar="NAME|PATH",
                   help="weights instead of the built-in ones: a name from `zeroclick weights list` (built-in or "
                        "imported) or a weights file to import (ONNX, safetensors, MONAI bundle); 4-class models "
                        "replace the cine network, 5-class the LGE network; repeat for both. Recorded in provenance")
    p.add_argument("--volume-rule", default="scmr", choices=("scmr", "reference"),
                   help="which slices count toward the volumes: scmr = basal/apical rules of the SCMR 2020 "
                        "recommendations (default), reference = every labelled voxel, as the published myopari code")
    p.add_argument("--hematocrit", type=float, metavar="HCT",
                   help="haematocrit (0.42 or 42) for ECV from native + post-contrast T1 maps; default: a "
                        "hematocrit.json sidecar ({\"hematocrit\": 0.42}) in the input folder, else no ECV")
    p.add_argument("--all-phases", action="store_true", help="segment every phase (volume-time curve; slower)")
    p.add_argument("--prior", metavar="REPORT.json", help="an earlier report.json of the same patient (remodeling)")
    p.add_argument("--report", action="store_true",
                   help="also write the one-page report as DIR/report.pdf and DIR/report.png")
    p.add_argument("--dicom", action="store_true",
                   help="also write DICOM SEG, TID 1500 SR and the PDF report into DIR/dicom (implies --report)")
    p.add_argument("--send", metavar="AET@HOST:PORT", help="send the DICOM outputs by C-STORE (implies --dicom)")
    p.add_argument("--json", action="store_true", help="print report.json to stdout instead of a summary")
    p.set_defaults(func=_cmr)


def _parse_destination(text: str) -> tuple[str, str, int]:
    try:
        aet, rest = text.split("@", 1)
        host, port = rest.rsplit(":", 1)
        if not aet or not host:
            raise ValueError
        return aet, host, int(port)
    except ValueError:
        raise ValueError(f"--send must look like AET@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242), got {text!r}") from None


def _summary(report: dict[str, Any]) -> str:
    m = report.get("measurements", {})
    lines = [f"status: {report.get('status')}"]
    for key in ("lv_edv_ml", "lv_esv_ml", "lv_ef_percent", "rv_edv_ml", "rv_esv_ml", "rv_ef_percent",
                "myo_mass_ed_g", "myocardium_ml", "infarct_ml", "infarct_percent_of_myocardium", "mvo_ml",
                "mvo_percent_of_myocardium"):
        if m.get(key) is not None:
            lines.append(f"  {key:32s} {m[key]:.2f}")
    phases = report.get("phases") or {}
    if phases:
        lines.append(f"  ED phase {phases.get('ed_phase')}, ES phase {phases.get('es_phase')} ({phases.get('method')})")
    for q in report.get("qc", []):
        if q.get("severity") in ("warning", "error"):
            lines.append(f"  qc {q['severity']}: {q['message']}")
    return "\n".join(lines)


def _cmr(args: argparse.Namespace) -> int:
    from zeroclick.imaging import progress

    with progress.terminal(quiet=getattr(args, "quiet", False)):
        return _cmr_run(args)


def _cmr_run(args: argparse.Namespace) -> int:
    from zeroclick.imaging import progress
    from zeroclick.imaging.errors import OutputFolderError, ZeroClickError
    from zeroclick.pipelines.cardiac import run
    from zeroclick.pipelines.cardiac.outputs import atomic_write_json, write_failure, write_outputs
    from zeroclick.pipelines.commands.output_folder import check_output_folder, staged_output

    try:
        destination = _parse_destination(args.send) if args.send else None
    except ValueError as exc:
        print(f"zeroclick cmr: {exc}", file=sys.stderr)
        return 2
    try:
        check_output_folder(Path(args.out), overwrite=args.overwrite, inputs=[args.input])
    except OutputFolderError as exc:
        print(f"zeroclick cmr: {exc}", file=sys.stderr)
        return 2
    # everything goes into a fresh sibling folder that replaces --out whole at the end (also on failure)
    with staged_output(args.out, overwrite=True) as out:
        try:
            # options that exist only where their command-line flag is declared
            optional = {k: getattr(args, k) for k in ("volume_rule", "hematocrit") if getattr(args, k, None) is not None}
            result = run(args.input, device=args.device, all_phases=args.all_phases, prior=args.prior,
                         runtime=args.runtime, weights=args.weights, **optional)
        except ZeroClickError as exc:
            write_failure(out, str(args.input), str(exc), code=exc.code)
            raise  # zeroclick.pipelines.cli maps it to exit 3 (analysis/input) or 5 (environment) and prints it
        progress.stage("writing outputs")
        write_outputs(result, out)
        report = result.to_dict()
        code = 0 if result.status == "ok" else 4
        if args.report or args.dicom or destination:
            from zeroclick.pipelines.cardiac.report import write_report_files

            progress.stage("rendering the report")
            write_report_files(result, out)
        if args.dicom or destination:
            extra, dicom_code = _dicom_and_send(result, out, destination, str(args.input))
            report["outputs"] = extra
            atomic_write_json(out / "report.json", report)
            code = dicom_code or code
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
    else:
        sys.stdout.write(_summary(report) + f"\nresults in {args.out}\n")
    return code


def _dicom_and_send(result, out: Path, destination: tuple[str, str, int] | None, source: str
                    ) -> tuple[dict[str, Any], int]:
    """DICOM SEG/SR/PDF (+ C-STORE). Returns the report's ``outputs`` section and an exit code (0 when fine)."""
    from zeroclick.imaging.errors import ZeroClickError

    extra: dict[str, Any] = {"dicom": [], "errors": []}
    try:
        from zeroclick.pipelines.cardiac.report import write_dicom_outputs
    except ImportError as exc:
        msg = f"DICOM outputs need zeroclick.pipelines.cardiac.report.write_dicom_outputs, not available here ({exc})"
        print(f"zeroclick: {msg}", file=sys.stderr)
        extra["errors"].append(msg)
        return extra, 5
    try:
        paths = write_dicom_outputs(result, out / "dicom", source=source)
    except (ZeroClickError, OSError, ValueError) as exc:
        msg = f"DICOM outputs failed: {exc}"
        print(f"zeroclick: {msg}", file=sys.stderr)
        extra["errors"].append(msg)
        return extra, 4
    extra["dicom"] = [str(p.relative_to(out)) for p in paths]
    if destination is None:
        return extra, 0
    try:
        from zeroclick.pipelines.pacs.send import send_files
    except ImportError as exc:
        msg = f"--send needs zeroclick.pipelines.pacs.send.send_files, not available here ({exc})"
        print(f"zeroclick: {msg}", file=sys.stderr)
        extra["errors"].append(msg)
        return extra, 5
    aet, host, port = destination
    try:
        sent = send_files(paths, f"{aet}@{host}:{port}")
    except (ZeroClickError, OSError, RuntimeError, ValueError) as exc:
        msg = f"sending to {aet}@{host}:{port} failed: {exc}"
        print(f"zeroclick: {msg}", file=sys.stderr)
        extra["errors"].append(msg)
        return extra, 4
    extra["sent_to"] = f"{aet}@{host}:{port}"
    stored = getattr(sent, "stored", ())
    failed = list(getattr(sent, "failed", ()))
    extra["send_result"] = {"stored": len(stored), "failed": [list(f) for f in failed],
                            "attempts": getattr(sent, "attempts", None), "seconds": getattr(sent, "seconds", None)}
    if failed:
        msg = f"{len(failed)} of {len(paths)} DICOM outputs were not stored by {aet}@{host}:{port}"
        print(f"zeroclick: {msg}", file=sys.stderr)
        extra["errors"].append(msg)
        return extra, 4
    return extra, 0
