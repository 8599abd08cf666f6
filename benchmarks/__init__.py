"""Benchmarks: one module per benchmark; each prints one JSON object.

A benchmark module defines ``DESCRIPTION: str``, ``add_arguments(parser)`` and ``run(args) -> dict``.
``zeroclick bench NAME --json`` runs it and prints the dict (with machine info added) as one JSON object.
"""

# name on the command line -> module under benchmarks/. A module that does not exist yet is listed as missing.
REGISTRY: dict[str, str] = {
    "dicom-scan": "benchmarks.dicom_scan",
    "cmr": "benchmarks.cmr",
    "slide": "benchmarks.slide",
    "pacs": "benchmarks.pacs",
    "regression": "benchmarks.regression",
}
