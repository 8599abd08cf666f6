"""TID 1500 Measurement Report (Comprehensive 3D SR) whose measurements point at SEG segments.

Each :class:`SegmentMeasurements` becomes one TID 1411 "Volumetric ROI measurements" group that
references a segment of a SEG written by :mod:`zeroclick.imaging.dicom.write.seg`; its measurements carry
coded names and UCUM units. Values that are not finite are left out (never reported as valid).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset

from zeroclick.imaging._version import __version__
from zeroclick.imaging.dicom.write.codes import LOCAL_SCHEME
from zeroclick.imaging.dicom.write.seg import MANUFACTURER, MODEL_NAME
from zeroclick.imaging.dicom.write.uids import derived_uid
from zeroclick.imaging.errors import InvalidInputError

__all__ = ["MeasurementItem", "SegmentMeasurements", "measurement_report"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MeasurementItem:
    """One numeric measurement: coded name, value, UCUM unit."""

    name: CodedConcept
    value: float
    unit: CodedConcept


@dataclass(frozen=True)
class SegmentMeasurements:
    """Measurements of one SEG segment (one TID 1411 group).

    Parameters
    ----------
    segmentation
        The SEG dataset that holds the segment (must be in the SR's evidence).
    segment_number
        The segment's number in that SEG (1-based).
    tracking_id
        Human-readable identifier of the group ("LV cavity at ED").
    finding_type
        What was measured (usually the segment's property type).
    measurements
        The measurements; non-finite values are skipped.
    """

    segmentation: Dataset
    segment_number: int
    tracking_id: str
    finding_type: CodedConcept
    measurements: tuple[MeasurementItem, ...]


def measurement_report(
    groups: Sequence[SegmentMeasurements],
    *,
    source_images: Sequence[Dataset],
    procedure_reported: CodedConcept,
    series_instance_uid: str,
    sop_instance_uid: str,
    series_number: int,
    series_description: str,
    algorithm_name: str,
    algorithm_version: str,
    software_versions: str = __version__,
    instance_number: int = 1,
) -> hd.sr.Comprehensive3DSR:
    """Build a TID 1500 Comprehensive 3D SR from segment measurement groups.

    Parameters
    ----------
    groups
        One group per measured segment; groups without a finite value are dropped.
    source_images
        Headers of the images the SEGs were derived from (they are listed as evidence).
    procedure_reported
        E.g. SCT 241620005 "Cardiac MRI".
    series_instance_uid, sop_instance_uid, series_number, series_description
        Attributes of the new object.
    algorithm_name, algorithm_version
        Recorded as the device observer and as each group's algorithm identification.

    Returns
    -------
    highdicom.sr.Comprehensive3DSR
        Complete (not verified) SR in the study of the SEGs.

    Raises
    ------
    InvalidInputError
        When no group has a finite measurement.
    """
    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version)
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=derived_uid(MANUFACTURER, "device-observer", version=software_versions),
        name=algorithm_name,
        manufacturer_name=MANUFACTURER,
        model_name=MODEL_NAME,
    )
    context = hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=CodedConcept("121007", "DCM", "Device"), observer_identifying_attributes=device
        )
    )
    evidence: dict[str, Dataset] = {}
    content_groups = []
    for g in groups:
        items = [
            hd.sr.Measurement(name=m.name, value=float(m.value), unit=m.unit, algorithm_id=algorithm)
            for m in g.measurements
            if m.value is not None and math.isfinite(float(m.value))
        ]
        if not items:
            logger.info("SR group %r has no finite measurement; left out", g.tracking_id)
            continue
        seg_uid = str(g.segmentation.SOPInstanceUID)
        evidence[seg_uid] = g.segmentation
        content_groups.append(
            hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=derived_uid(seg_uid, str(g.segment_number), g.tracking_id), identifier=g.tracking_id
                ),
                referenced_segment=hd.sr.ReferencedSegment.from_segmentation(g.segmentation, g.segment_number),
                finding_type=g.finding_type,
                algorithm_id=algorithm,
                measurements=items,
            )
        )
    if not content_groups:
        raise InvalidInputError("no finite measurement to report: the SR would be empty")
    report = hd.sr.MeasurementReport(
        observation_context=context,
        procedure_reported=procedure_reported,
        imaging_measurements=content_groups,
    )
    sr = hd.sr.Comprehensive3DSR(
        evidence=[*evidence.values(), *_unique(source_images)],
        content=report,
        series_instance_uid=series_instance_uid,
        series_number=series_number,
        sop_instance_uid=sop_instance_uid,
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=series_description,
    )
    sr.SoftwareVersions = software_versions
    sr.ManufacturerModelName = MODEL_NAME
    _declare_local_scheme(sr)
    return sr


def _unique(datasets: Sequence[Dataset]) -> list[Dataset]:
    seen: dict[str, Dataset] = {}
    for ds in datasets:
        seen.setdefault(str(ds.SOPInstanceUID), ds)
    return list(seen.values())


def _declare_local_scheme(ds: Dataset) -> None:
    """Add the Coding Scheme Identification for the local ``99ZCLK`` codes."""
    item = Dataset()
    item.CodingSchemeDesignator = LOCAL_SCHEME
    item.CodingSchemeName = "zeroclick local codes"
    item.CodingSchemeResponsibleOrganization = "zeroclick project"
    item.CodingSchemeVersion = "1"
    ds.CodingSchemeIdentificationSequence = [item]
