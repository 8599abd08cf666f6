"""Benchmarks: one module per benchmark; each prints one JSON object.

A benchmark module defines ``DESCRIPTION: str``, ``add_arguments(parser)`` and ``run(args) -> dict``.
``zeroclick bench NAME --json`` runs it and prints the dict (with machine info added) as one JSON object.
"""

# name on the command line -> module under benchmarks/. A module that does not exist yet is listed as missing.
REGISTRY: dict[str, str] = {
    "dicom-scan": "zeroclick.benchmarks.dicom_scan",
    "cmr": "zeroclick.benchmarks.cmr",
    "slide": "zeroclick.benchmarks.slide",
    "pacs": "zeroclick.benchmarks.pacs",
    "regression": "zeroclick.benchmarks.regression",
    "runtimes": "zeroclick.benchmarks.runtimes",
}
