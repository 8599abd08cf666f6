"""Network architectures written for zeroclick (weights are converted into them, never downloaded here)."""

from zeroclick.imaging.networks.fcdensenet import FCDenseNet, fcdensenet_myopari

__all__ = ["FCDenseNet", "fcdensenet_myopari"]
