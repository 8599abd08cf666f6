"""PACS integration: send results back by C-STORE, an Orthanc plugin, and the ``zeroclick listen`` SCP.

* :func:`zeroclick.pipelines.pacs.send.send_files` - C-STORE with retries, backoff and TCP_NODELAY.
* :mod:`zeroclick.pipelines.pacs.analysis` - the analysis one received study goes through (``python -m`` entry point
  used by the Orthanc plugin and the listener's worker processes).
* ``pipelines/pacs/orthanc_plugin.py`` - an Orthanc Python-plugin script: stable study -> analysis -> results
  stored back into the same study.
* :mod:`zeroclick.pipelines.pacs.listener` - our own Storage SCP with a crash-safe spool and job queue; its parts:
  :mod:`~zeroclick.pipelines.pacs.spool` (safe names, per-UID serialised stores, conflicts),
  :mod:`~zeroclick.pipelines.pacs.guard` (connection deadlines and limits),
  :mod:`~zeroclick.pipelines.pacs.completeness` (complete by geometry before analysis),
  :mod:`~zeroclick.pipelines.pacs.supersede` (a re-analysis names the results it replaces);
  running it as a service: :mod:`~zeroclick.pipelines.pacs.config` (TOML file, ``--check-config``),
  :mod:`~zeroclick.pipelines.pacs.jobs` (``zeroclick jobs``, retention), :mod:`~zeroclick.pipelines.pacs.observe`
  (structured logs, ``/metrics``, status page); ``deploy/`` holds the systemd unit and the Containerfile.
"""

from zeroclick.pipelines.pacs.send import Destination, SendReport, parse_destination, send_files

__all__ = ["Destination", "SendReport", "parse_destination", "send_files"]
