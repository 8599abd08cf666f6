"""Packaging: everything installs under the one ``zeroclick`` namespace.

The client's folder layout stays (``imaging/``, ``pipelines/``, ``weights/``, ``benchmarks/`` at the top of the
repository), but they are installed as ``zeroclick.imaging`` ... so that no generic top-level name (a user's own
``weights.py`` or ``benchmarks/``) can shadow the library. Metadata lives in setup.cfg.
"""

from setuptools import find_packages, setup

ROOTS = ("imaging", "pipelines", "weights", "benchmarks")
packages = ["zeroclick"] + [
    f"zeroclick.{name}" for root in ROOTS for name in find_packages(include=[root, f"{root}.*"])
]
package_dir = {"zeroclick": "zeroclick", **{f"zeroclick.{root}": root for root in ROOTS}}

setup(packages=packages, package_dir=package_dir)
