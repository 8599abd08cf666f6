"""``zeroclick synth cmr|slide``: seeded synthetic exams and slides with exact ground truth."""

from __future__ import annotations

import argparse
import json
import sys


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="generate synthetic cardiac MRI exams or whole-slide images with ground truth")
    ssub = p.add_subparsers(dest="synth_kind", metavar="KIND", required=True)

    c = ssub.add_parser("cmr", help="a whole cardiac MRI exam as DICOM files + ground truth")
    c.add_argument("out_dir", metavar="OUT_DIR")
    c.add_argument("--images", type=int, default=3000, help="total number of images in the exam (default 3000)")
    c.add_argument("--vendor", choices=("siemens", "ge", "philips"), default="siemens")
    c.add_argument("--transfer-syntax", choices=("explicit", "jpegls", "rle", "j2k"), default="explicit")
    c.add_argument("--enhanced", action="store_true", help="Philips-style enhanced multi-frame MR objects")
    c.add_argument("--seed", type=int, default=0)
    c.set_defaults(func=_cmr)

    s = ssub.add_parser("slide", help="a pyramidal tiled TIFF (JPEG tiles) with known nuclei")
    s.add_argument("out", metavar="OUT.tiff")
    s.add_argument("--size", default="20000x20000", help="WIDTHxHEIGHT in pixels at level 0")
    s.add_argument("--mpp", type=float, default=0.25, help="microns per pixel at level 0")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=_slide)


def _cmr(args: argparse.Namespace) -> int:
    from zeroclick.imaging.synthetic.cmr import generate_exam

    info = generate_exam(
        args.out_dir,
        n_images=args.images,
        vendor=args.vendor,
        transfer_syntax=args.transfer_syntax,
        enhanced=args.enhanced,
        seed=args.seed,
    )
    sys.stdout.write(json.dumps(info.summary(), indent=2) + "\n")
    return 0


def _slide(args: argparse.Namespace) -> int:
    from zeroclick.imaging.synthetic.slide import generate_slide

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        print(f"zeroclick: --size must look like 20000x20000, got {args.size!r}", file=sys.stderr)
        return 2
    info = generate_slide(args.out, width=width, height=height, mpp=args.mpp, seed=args.seed)
    sys.stdout.write(json.dumps(info.summary(), indent=2) + "\n")
    return 0
