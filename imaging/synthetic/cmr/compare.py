"""Side-by-side figure: the phantom's mid-ventricular ED short-axis slice next to a real ACDC slice.

``python -m imaging.synthetic.cmr.compare docs/phantom_vs_acdc.png [--acdc PATH] [--seed N]`` renders
both in the DICOM display orientation (rows top to bottom, the NIfTI array transposed) with the same
percentile windowing, plus the phantom's truth contours. Needs matplotlib (not a runtime dependency).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import cast

import numpy as np


def _window(img: np.ndarray) -> np.ndarray:
    nz = img[img > 0]
    lo, hi = np.percentile(nz, 0.5), np.percentile(nz, 99.5)
    return np.clip((img - lo) / (hi - lo), 0, 1)


def phantom_mid_ed(seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(image, ACDC labels, pixel spacing mm) of the mid-ventricular ED slice of a small exam."""
    import pydicom

    from .exam import generate_exam
    from .truth import load_truth

    with tempfile.TemporaryDirectory() as tmp:
        info = generate_exam(Path(tmp) / "exam", n_images=400, seed=seed)
        truth = load_truth(info.out_dir)["cine_sax"]
        lv = info.truth["sax"]["lv_slices_ed"]
        mid = sorted(lv)[len(lv) // 2]
        images = {}
        for path in (info.dicom_dir).rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            if ds.SeriesInstanceUID != truth.series_instance_uid or float(ds.TriggerTime) > 1.0:
                continue
            images[float(np.dot(np.array(ds.ImagePositionPatient, float), np.cross(
                np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float))))] = (
                ds.pixel_array.astype(np.float32))
        ordered = [images[k] for k in sorted(images)]
        return ordered[mid], truth.array[0, mid], float(truth.spacing_mm[1])


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    p = argparse.ArgumentParser(prog="python -m imaging.synthetic.cmr.compare")
    p.add_argument("out", help="PNG to write")
    p.add_argument("--acdc", default=str(Path(__file__).resolve().parents[4] / "shared/data/cmr/acdc/"
                                         "patient101_frame01.nii.gz"))
    p.add_argument("--acdc-slice", type=int, default=4, help="mid-ventricular slice of the ACDC volume")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    img, labels, px = phantom_mid_ed(args.seed)
    acdc = cast(nib.Nifti1Image, nib.load(args.acdc))
    real = np.asarray(acdc.dataobj, dtype=np.float32)[:, :, args.acdc_slice].T  # DICOM display orientation
    real_px = float(acdc.header.get_zooms()[0])

    fig, axes = plt.subplots(1, 3, figsize=(15, 5.6))
    for ax, im, title, spacing in ((axes[0], img, "phantom: mid-ventricular SAX, ED", px),
                                   (axes[1], real, "ACDC patient101: mid-ventricular SAX, ED", real_px)):
        h, w = im.shape
        ax.imshow(_window(im), cmap="gray", extent=(0, w * spacing, h * spacing, 0))
        ax.set_title(title)
        ax.set_xlabel("mm")
    h, w = img.shape
    axes[2].imshow(_window(img), cmap="gray", extent=(0, w * px, h * px, 0))
    xs, ys = (np.arange(w) + 0.5) * px, (np.arange(h) + 0.5) * px
    for value, colour in ((1, "tab:blue"), (2, "tab:green"), (3, "tab:red")):
        axes[2].contour(xs, ys, (labels == value).astype(float), levels=[0.5], colors=colour, linewidths=0.8)
    axes[2].set_title("phantom truth: RV cavity (blue), myocardium (green), LV cavity (red)")
    axes[2].title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
