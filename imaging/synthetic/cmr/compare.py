"""Side-by-side figure: the phantom's mid-ventricular short-axis slice next to a real ACDC slice, ED and ES.

``python -m zeroclick.imaging.synthetic.cmr.compare docs/phantom_vs_acdc.png [--acdc-dir DIR] [--seed N]`` renders
both in the DICOM display orientation (rows top to bottom, the NIfTI array transposed) with the same
percentile windowing, plus the phantom's truth contours: end-diastole on the first row, end-systole on the
second. Needs matplotlib (not a runtime dependency).
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


def phantom_mid(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """``{"ED"|"ES": (image, ACDC labels, pixel spacing mm)}`` of the mid-ventricular slice of a small exam."""
    import pydicom

    from .exam import generate_exam
    from .truth import load_truth

    with tempfile.TemporaryDirectory() as tmp:
        info = generate_exam(Path(tmp) / "exam", n_images=400, seed=seed)
        truth = load_truth(info.out_dir)["cine_sax"]
        lv = info.truth["sax"]["lv_slices_ed"]
        mid = sorted(lv)[len(lv) // 2]
        phases = {"ED": int(info.truth["ed_phase"]), "ES": int(info.truth["es_phase"])}
        times = truth.trigger_times_ms or ()
        images: dict[str, dict[float, np.ndarray]] = {name: {} for name in phases}
        for path in (info.dicom_dir).rglob("*.dcm"):
            ds = pydicom.dcmread(path)
            if ds.SeriesInstanceUID != truth.series_instance_uid:
                continue
            for name, phase in phases.items():
                if abs(float(ds.TriggerTime) - times[phase]) > 1.0:
                    continue
                normal = np.cross(np.array(ds.ImageOrientationPatient[:3], float),
                                  np.array(ds.ImageOrientationPatient[3:], float))
                images[name][float(np.dot(np.array(ds.ImagePositionPatient, float), normal))] = (
                    ds.pixel_array.astype(np.float32))
        out = {}
        for name, phase in phases.items():
            ordered = [images[name][k] for k in sorted(images[name])]
            out[name] = (ordered[mid], truth.array[phase, mid], float(truth.spacing_mm[1]))
        return out


def phantom_mid_ed(seed: int = 0) -> tuple[np.ndarray, np.ndarray, float]:
    """(image, ACDC labels, pixel spacing mm) of the mid-ventricular ED slice of a small exam."""
    return phantom_mid(seed)["ED"]


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    p = argparse.ArgumentParser(prog="python -m zeroclick.imaging.synthetic.cmr.compare")
    p.add_argument("out", help="PNG to write")
    p.add_argument("--acdc-dir", default=str(Path(__file__).resolve().parents[4] / "shared/data/cmr/acdc"),
                   help="folder with patient101_frame01.nii.gz (ED) and patient101_frame14.nii.gz (ES)")
    p.add_argument("--acdc-slice", type=int, default=4, help="mid-ventricular slice of the ACDC volume")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    phantom = phantom_mid(args.seed)
    fig, axes = plt.subplots(2, 3, figsize=(15, 11))
    for row, (name, frame) in enumerate((("ED", "01"), ("ES", "14"))):
        img, labels, px = phantom[name]
        acdc = cast(nib.Nifti1Image, nib.load(Path(args.acdc_dir) / f"patient101_frame{frame}.nii.gz"))
        real = np.asarray(acdc.dataobj, dtype=np.float32)[:, :, args.acdc_slice].T  # DICOM display orientation
        real_px = float(acdc.header.get_zooms()[0])
        for ax, im, title, spacing in ((axes[row, 0], img, f"phantom: mid-ventricular SAX, {name}", px),
                                       (axes[row, 1], real, f"ACDC patient101: mid-ventricular SAX, {name}",
                                        real_px)):
            h, w = im.shape
            ax.imshow(_window(im), cmap="gray", extent=(0, w * spacing, h * spacing, 0))
            ax.set_title(title)
            ax.set_xlabel("mm")
        h, w = img.shape
        axes[row, 2].imshow(_window(img), cmap="gray", extent=(0, w * px, h * px, 0))
        xs, ys = (np.arange(w) + 0.5) * px, (np.arange(h) + 0.5) * px
        for value, colour in ((1, "tab:blue"), (2, "tab:green"), (3, "tab:red")):
            axes[row, 2].contour(xs, ys, (labels == value).astype(float), levels=[0.5], colors=colour,
                                 linewidths=0.8)
        axes[row, 2].set_title(f"phantom truth ({name}): RV cavity (blue), myocardium (green), LV cavity (red)")
        axes[row, 2].title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(args.out, dpi=80)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
