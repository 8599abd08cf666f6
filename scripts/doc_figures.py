"""Remake the screenshots in docs/ (issue 13): report pages, notebook repr, bullseye, curve, overlays, slide overlay.

    python scripts/doc_figures.py [--data ../shared/data] [--work /tmp/zc-doc-figures]

Runs the real networks on ACDC patient 101 and on a generated 400-image exam (seed 0), and the histology
pipeline on CMU-1-Small-Region.svs; renders the report PDFs with pdftoppm and the notebook HTML repr with
headless Chromium (Debian ``chromium``). Takes ~3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

import zeroclick
from zeroclick.imaging.synthetic.cmr import generate_exam
from zeroclick.pipelines.cardiac.report import write_report_files

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _page_png(pdf: Path, out: Path) -> None:
    subprocess.run(["pdftoppm", "-r", "90", "-png", "-singlefile", str(pdf), str(out.with_suffix(""))], check=True)


def _html_png(html: str, out: Path, work: Path) -> None:
    page = work / "repr.html"
    page.write_text("<html><head><meta charset='utf-8'><style>body{font-family:sans-serif;font-size:13px;"
                    "margin:16px} table{border-collapse:collapse} td,th{padding:2px 10px;border-bottom:1px solid "
                    "#ddd}</style></head><body><pre style='color:#555'>In [3]: r</pre>" + html + "</body></html>")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("headless Chromium is needed for the notebook screenshot: apt-get install chromium")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={out}",
                    "--window-size=760,560", page.as_uri()], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/zc-doc-figures")
    args = parser.parse_args()
    data, work = Path(args.data), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    acdc = zeroclick.cardiac.run(data / "cmr" / "acdc")
    pdf, _ = write_report_files(acdc, work, stem="acdc101")
    _page_png(pdf, DOCS / "report_acdc101.png")

    if not (work / "exam" / "ground_truth.json").exists():
        generate_exam(work / "exam", n_images=400, seed=0)
    gen = zeroclick.cardiac.run(work / "exam" / "dicom")
    pdf, _ = write_report_files(gen, work, stem="generated")
    _page_png(pdf, DOCS / "report_generated_exam.png")
    _html_png(gen._repr_html_(), DOCS / "notebook_repr.png", work)
    zeroclick.plot.bullseye(gen.aha.bullseye("ed_thickness_mm"), title="ED wall thickness (mm)").savefig(
        DOCS / "bullseye.png", dpi=100)
    zeroclick.plot.volume_curve(gen).savefig(DOCS / "volume_curve.png", dpi=100)
    zeroclick.plot.overlays(gen).savefig(DOCS / "overlays.png", dpi=80)

    svs = data / "slides" / "CMU-1-Small-Region.svs"
    h = zeroclick.slide.run(svs)
    zeroclick.plot.slide_overlay(h, svs).savefig(DOCS / "slide_overlay.png", dpi=70)
    print("\n".join(str(p) for p in sorted(DOCS.glob("*.png"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
