"""Zero-click cardiac MRI: one call turns an exam into the numbers reported after a myocardial infarction.

``run(source)`` reads top to bottom like the protocol: inputs -> segmentation (ED/ES search) -> function ->
AHA segments -> LGE -> risk features -> QC. Each stage lives in its own module of this package.
"""

from pipelines.cardiac.result import (
    AHA_SEGMENT_NAMES,
    AhaResult,
    CardiacImages,
    CardiacMasks,
    CardiacResult,
    FunctionResult,
    LgeResult,
    PhaseChoice,
    Provenance,
    QcFlag,
    RiskFeature,
    RiskFeatures,
    SegmentValues,
    SeriesReference,
    ThresholdScar,
    WeightsRef,
)

__all__ = [
    "AHA_SEGMENT_NAMES",
    "AhaResult",
    "CardiacImages",
    "CardiacMasks",
    "CardiacResult",
    "FunctionResult",
    "LgeResult",
    "PhaseChoice",
    "Provenance",
    "QcFlag",
    "RiskFeature",
    "RiskFeatures",
    "SegmentValues",
    "SeriesReference",
    "ThresholdScar",
    "WeightsRef",
]
