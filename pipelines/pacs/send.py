"""Send DICOM files to a PACS by C-STORE, with retries, backoff and TCP_NODELAY.

``send_files(paths, "ORTHANC@127.0.0.1:4242")`` opens one association, stores every file, and retries
the files that were not stored (association refused or aborted, failure status) with exponential
backoff. Without TCP_NODELAY on both ends a 315-image C-STORE took ~30 s instead of ~1.5 s on loopback
(Nagle + delayed ACK), so the option is set on every socket pynetdicom opens for us.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from zeroclick.imaging.errors import InvalidInputError, ZeroClickError

__all__ = [
    "Destination",
    "SendError",
    "SendReport",
    "parse_destination",
    "send_files",
    "set_tcp_nodelay",
]

logger = logging.getLogger(__name__)

DEFAULT_CALLING_AET = "ZEROCLICK"
_NATIVE = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
# Status codes that mean "stored" (success and the C-STORE warnings of PS3.4 B.2.3).
_STORED = {0x0000, 0xB000, 0xB006, 0xB007}


class SendError(ZeroClickError, ConnectionError):
    """The destination could not be reached or refused every attempt."""


@dataclass(frozen=True)
class Destination:
    """A DICOM peer: ``AET@HOST:PORT``."""

    ae_title: str
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """Parse ``AET@HOST:PORT`` (IPv6 hosts in brackets: ``AET@[::1]:104``).

    Raises
    ------
    InvalidInputError
        When the text does not have that form or the AE title is longer than 16 characters.
    """
    m = re.fullmatch(r"([^@]{1,16})@(\[[^\]]+\]|[^:@]+):(\d{1,5})", text.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise InvalidInputError(f"destination {text!r} must look like AET@HOST:PORT, e.g. ORTHANC@127.0.0.1:4242")
    return Destination(m.group(1).strip(), m.group(2).strip("[]"), int(m.group(3)))


@dataclass(frozen=True)
class SendReport:
    """What a :func:`send_files` call achieved."""

    destination: str
    stored: tuple[str, ...] = ()  # SOP Instance UIDs the peer accepted
    failed: tuple[tuple[str, str], ...] = ()  # (path, reason)
    attempts: int = 0
    seconds: float = 0.0
    statuses: dict[str, int] = field(default_factory=dict)  # SOP Instance UID -> last status

    @property
    def ok(self) -> bool:
        return not self.failed


def set_tcp_nodelay(event) -> None:
    """pynetdicom ``EVT_CONN_OPEN`` handler: disable Nagle on the association's socket."""
    sock = getattr(getattr(event.assoc, "dul", None), "socket", None)
    raw = getattr(sock, "socket", None)
    if raw is not None:
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # not fatal: only slower
            logger.debug("TCP_NODELAY not set: %s", exc)


def _negotiated(assoc, ds: pydicom.Dataset) -> pydicom.Dataset:
    """``ds`` itself when its transfer syntax was accepted, else a decompressed copy for a native context."""
    sop, ts = str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)
    accepted = {str(cx.transfer_syntax[0]) for cx in assoc.accepted_contexts if cx.abstract_syntax == sop}
    if ts in accepted:
        return ds
    if accepted & set(_NATIVE):
        copy = pydicom.dcmread(pydicom.filebase.DicomBytesIO(_encode(ds)))
        copy.decompress()
        return copy
    raise ValueError(f"the peer accepts no transfer syntax we can send for SOP class {sop}")


def _encode(ds: pydicom.Dataset) -> bytes:
    import io

    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def send_files(
    paths: Iterable[str | os.PathLike[str]],
    destination: str | Destination,
    *,
    calling_aet: str = DEFAULT_CALLING_AET,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 30.0,
    tls: ssl.SSLContext | None = None,
) -> SendReport:
    """C-STORE ``paths`` to ``destination`` with retries and exponential backoff.

    Parameters
    ----------
    paths
        DICOM files (Part 10).
    destination
        ``AET@HOST:PORT`` or a :class:`Destination`.
    calling_aet
        Our AE title (the peer may whitelist it).
    retries
        Further attempts after the first for files not yet stored; waits ``backoff_s * 2**k`` between.
    timeout_s
        ACSE, DIMSE and network timeout of each association.
    tls
        An ``ssl.SSLContext`` to use TLS (the peer's host name is checked against its certificate).

    Returns
    -------
    SendReport
        ``report.ok`` is True when every file was stored.
    """
    from pynetdicom import AE, evt
    from pynetdicom.presentation import build_context

    dest = destination if isinstance(destination, Destination) else parse_destination(destination)
    t0 = time.perf_counter()
    files = [Path(p) for p in paths]
    datasets: dict[Path, pydicom.Dataset] = {}
    failed: dict[str, str] = {}
    for path in files:
        try:
            datasets[path] = pydicom.dcmread(path)
        except Exception as exc:  # noqa: BLE001 - reported per file
            failed[str(path)] = f"not a readable DICOM file: {exc}"
    # One presentation context per (SOP class, transfer syntax) so the peer cannot answer a compressed file's
    # context with an uncompressed syntax; plus an uncompressed fallback for compressed files (decompressed
    # before sending when the peer accepts nothing else).
    pairs: set[tuple[str, tuple[str, ...]]] = set()
    for ds in datasets.values():
        sop, ts = str(ds.SOPClassUID), ds.file_meta.TransferSyntaxUID
        pairs.add((sop, (str(ts),)))
        if ts.is_compressed or ts not in _NATIVE:
            pairs.add((sop, _NATIVE))

    pending = list(datasets)
    stored: list[str] = []
    statuses: dict[str, int] = {}
    attempts = 0
    for attempt in range(retries + 1):
        if not pending:
            break
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        attempts += 1
        ae = AE(ae_title=calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout_s
        ae.requested_contexts = [build_context(sop, list(ts)) for sop, ts in sorted(pairs)]
        assoc = ae.associate(
            dest.host, dest.port, ae_title=dest.ae_title, evt_handlers=[(evt.EVT_CONN_OPEN, set_tcp_nodelay)],
            tls_args=(tls, dest.host) if tls is not None else None,
        )
        if not assoc.is_established:
            logger.warning("association to %s not established (attempt %d of %d)", dest, attempt + 1, retries + 1)
            continue
        still: list[Path] = []
        try:
            for path in pending:
                ds = datasets[path]
                uid = str(ds.SOPInstanceUID)
                if not assoc.is_established:
                    still.append(path)
                    continue
                try:
                    status = assoc.send_c_store(_negotiated(assoc, ds))
                except (ValueError, RuntimeError) as exc:  # no usable context, cannot decompress
                    failed[str(path)] = str(exc)[:200]
                    continue
                code = int(getattr(status, "Status", -1)) if status else -1
                statuses[uid] = code
                if code in _STORED:
                    stored.append(uid)
                    failed.pop(str(path), None)
                else:
                    failed[str(path)] = f"C-STORE status 0x{code:04X}" if code >= 0 else "no response"
                    still.append(path)
        finally:
            if assoc.is_established:
                assoc.release()
        pending = still
    for path in pending:
        failed.setdefault(str(path), "association could not be established")
    report = SendReport(
        destination=str(dest), stored=tuple(stored), failed=tuple(sorted(failed.items())), attempts=attempts,
        seconds=time.perf_counter() - t0, statuses=statuses,
    )
    logger.info("sent %d of %d files to %s in %.2f s (%d attempts)", len(stored), len(files), dest,
                report.seconds, attempts)
    return report

