"""Connection handling that a few sockets cannot exhaust: deadlines, per-peer limits, early AE check, size caps.

pynetdicom's server does the TLS handshake in its accept thread (one idle socket blocks every TLS peer), counts
a connection against ``maximum_associations`` from the moment it is accepted (idle sockets lock everyone out),
checks the calling AE title only after that, and reads a PDU of whatever length the peer announces. This module
replaces those parts, keeping pynetdicom's association machinery:

* **Before an association** a connection is *pending*: at most ``max_pending_per_peer`` per IP address and
  ``max_pending`` in all. When a limit is reached the *oldest* pending connection is closed, so a flood of idle
  sockets cannot keep out a sender, which leaves the pending state within milliseconds. A pending connection
  must deliver a complete A-ASSOCIATE-RQ (TLS handshake included) within ``association_request_s`` seconds or
  it is closed (a watchdog shuts the socket, which also ends a peer trickling one byte at a time). The TLS
  handshake runs in the connection's own thread.
* **At the A-ASSOCIATE-RQ** (``EVT_REQUESTED``, before any slot is held) the calling AE title is checked against
  the whitelist, then the association slots: ``max_associations`` in all and ``max_associations_per_peer`` per IP
  (A-ASSOCIATE-RJ, transient, local-limit-exceeded), and the free-disk watermark.
* **During an association**: every PDU is at most ``max_pdu_bytes`` (what we announce; a longer one closes the
  connection before it is read); a PDU not completed within ``idle_s`` seconds closes the connection; a data set
  over ``max_instance_bytes`` is not kept (its further fragments are dropped as they arrive, so neither memory
  nor disk grows) and the C-STORE is answered with a failure status.

Nothing here logs patient data: connections are named by peer address only.
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

__all__ = ["ConnectionGuard", "ConnectionLimits", "GuardedServer"]

logger = logging.getLogger(__name__)

_P_DATA_TF = 0x04
_A_ASSOCIATE_RQ_MAX_BYTES = 1 << 16  # an A-ASSOCIATE-RQ with every storage context is ~20 KiB


@dataclass(frozen=True)
class ConnectionLimits:
    """Deadlines and limits of the listener's connections (CLI: ``zeroclick listen --help``)."""

    association_request_s: float = 10.0
    idle_s: float = 60.0
    max_pending: int = 64
    max_pending_per_peer: int = 8
    max_associations: int = 16
    max_associations_per_peer: int = 4
    max_pdu_bytes: int = 1 << 20
    max_instance_bytes: int = 2 << 30


class _Conn:
    """One accepted TCP connection."""

    __slots__ = ("sock", "peer", "opened", "assoc", "state", "message_bytes", "oversize", "oversize_seen", "pdu_since")

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock, self.peer, self.opened = sock, peer, time.monotonic()
        self.assoc: Any = None
        self.state = "pending"  # -> "associated" -> "closed"
        self.message_bytes = 0
        self.oversize = False  # the data set now arriving is over the limit
        self.oversize_seen = 0  # completed oversize messages not yet answered
        self.pdu_since: float | None = None  # monotonic time a partly received PDU started


class ConnectionGuard:
    """Book-keeping of every connection, the checks at each stage, and the watchdog thread."""

    def __init__(self, limits: ConnectionLimits, *, allowed_aets: tuple[str, ...] = (),
                 disk_ok: Callable[[], bool] = lambda: True, called_aet: str | None = None,
                 on_reject: Callable[[dict[str, str]], None] | None = None) -> None:
        self.limits = limits
        self.allowed_aets = tuple(a.strip() for a in allowed_aets)
        self.called_aet = called_aet.strip() if called_aet else None  # None: any called AE title
        self.on_reject = on_reject  # told {calling_aet, called_aet, peer, reason} of each rejected association
        self.disk_ok = disk_ok
        self._conns: dict[int, _Conn] = {}  # id(raw socket) -> connection
        self._by_assoc: dict[int, _Conn] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="zeroclick-connection-watchdog", daemon=True)
        self._watchdog.start()

    def stop(self) -> None:
        self._stop.set()

    # ---- stage 1: TCP accept (before a thread or a slot is used)
    def admit(self, sock: socket.socket, address: Any) -> bool:
        peer = str(address[0]) if isinstance(address, tuple) else str(address)
        evict: list[_Conn] = []
        with self._lock:
            pending = sorted((c for c in self._conns.values() if c.state == "pending"), key=lambda c: c.opened)
            mine = [c for c in pending if c.peer == peer]
            if len(mine) >= self.limits.max_pending_per_peer:
                evict.append(mine[0])
            elif len(pending) >= self.limits.max_pending:
                evict.append(pending[0])
            for c in evict:
                c.state = "closed"
            self._conns[id(sock)] = _Conn(sock, peer)
        for c in evict:
            logger.warning("peer %s: too many connections without an association request; the oldest is closed",
                           c.peer)
            _shut(c.sock)
        return True

    def conn_of(self, sock: socket.socket) -> _Conn | None:
        with self._lock:
            return self._conns.get(id(sock))

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            conn = self._conns.pop(id(sock), None)
            if conn is not None:
                conn.state = "closed"
                if conn.assoc is not None:
                    self._by_assoc.pop(id(conn.assoc), None)

    # ---- stage 2: A-ASSOCIATE-RQ received (EVT_REQUESTED), before pynetdicom negotiates
    def on_requested(self, event) -> None:
        assoc = event.assoc
        calling = str(assoc.requestor.primitive.calling_ae_title).strip()
        called = str(assoc.requestor.primitive.called_ae_title).strip()
        conn = self._conn_of_assoc(assoc)
        peer = conn.peer if conn else "?"
        reason = None
        diagnostic = (0x01, 0x01, 0x03)  # permanent, service user, calling AE title not recognised
        if self.allowed_aets and calling not in self.allowed_aets:
            reason = "calling AE title not on the whitelist (--allow, [[peers]])"
        elif self.called_aet and called != self.called_aet:
            reason, diagnostic = f"called AE title is not {self.called_aet}", (0x01, 0x01, 0x07)
        elif not self.disk_ok():
            reason, diagnostic = "free disk under the watermark", (0x02, 0x03, 0x02)
        else:
            with self._lock:
                associated = [c for c in self._conns.values() if c.state == "associated"]
                if len(associated) >= self.limits.max_associations:
                    reason, diagnostic = (f"all {self.limits.max_associations} association slots busy",
                                          (0x02, 0x03, 0x02))
                elif sum(c.peer == peer for c in associated) >= self.limits.max_associations_per_peer:
                    reason, diagnostic = (f"peer already holds {self.limits.max_associations_per_peer} associations",
                                          (0x02, 0x03, 0x02))
                elif conn is not None:
                    conn.state = "associated"
        if reason:
            fields = {"event": "association_rejected", "calling_aet": calling, "called_aet": called, "peer": peer,
                      "reason": reason}
            logger.warning("association from %s rejected (calling AE %s, called AE %s): %s", peer, calling, called,
                           reason, extra={"zc": fields})
            if self.on_reject is not None:
                self.on_reject(fields)
            assoc.acse.send_reject(*diagnostic)
            _wait_until_sent(assoc)

    def _conn_of_assoc(self, assoc) -> _Conn | None:
        with self._lock:
            return self._by_assoc.get(id(assoc))

    def bind(self, conn: _Conn, assoc) -> None:
        with self._lock:
            conn.assoc = assoc
            self._by_assoc[id(assoc)] = conn

    # ---- stage 3: C-STORE answered
    def take_oversize(self, assoc) -> bool:
        """True (once) when the data set of the C-STORE being answered was over ``max_instance_bytes``."""
        conn = self._conn_of_assoc(assoc)
        if conn is None:
            return False
        with self._lock:
            if conn.oversize_seen:
                conn.oversize_seen -= 1
                return True
        return False

    # ---- the watchdog
    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            now = time.monotonic()
            late: list[tuple[_Conn, str]] = []
            with self._lock:
                for c in self._conns.values():
                    if c.state == "pending" and now - c.opened > self.limits.association_request_s:
                        late.append((c, f"no complete association request within "
                                        f"{self.limits.association_request_s:g} s"))
                    elif c.state == "associated" and c.pdu_since is not None \
                            and now - c.pdu_since > self.limits.idle_s:
                        late.append((c, f"a PDU took longer than {self.limits.idle_s:g} s to arrive"))
                for c, _ in late:
                    c.state = "closed"
            for c, why in late:
                logger.warning("connection from %s closed: %s", c.peer, why)
                _shut(c.sock)


def _wait_until_sent(assoc, timeout_s: float = 2.0) -> None:
    """Let the DUL thread put the A-ASSOCIATE-RJ on the wire (state Sta13) before pynetdicom closes the socket
    (without this wait the peer saw an abort instead of the rejection and its reason)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and getattr(assoc.dul.state_machine, "current_state", "Sta13") != "Sta13":
        time.sleep(0.005)


def _shut(sock: socket.socket) -> None:
    """Shut a socket down from another thread: a blocked ``recv`` returns at once."""
    try:  # the plain socket call, also for an SSLSocket (whose shutdown() needs the TLS state of another thread)
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class _LimitedSocket(AssociationSocket):
    """An AssociationSocket that refuses over-long PDUs and drops the data of over-size instances."""

    _zc_conn: _Conn
    _zc_limits: ConnectionLimits
    _zc_body: bytes | None

    def recv(self, nr_bytes: int) -> bytearray:
        conn, limits = self._zc_conn, self._zc_limits
        if self._zc_body is not None:  # the body of a PDU read (and maybe rewritten) with its header
            body, self._zc_body = self._zc_body, None
            return bytearray(body)
        if nr_bytes != 6:
            return super().recv(nr_bytes)
        conn.pdu_since = time.monotonic()
        header = super().recv(6)
        if len(header) < 6:
            conn.pdu_since = None
            return header
        pdu_type, _, length = struct.unpack(">BBL", header)
        cap = limits.max_pdu_bytes if conn.state == "associated" else _A_ASSOCIATE_RQ_MAX_BYTES
        if length > cap + 6:
            logger.warning("connection from %s closed: a PDU of %d bytes announced (limit %d)", conn.peer, length, cap)
            conn.pdu_since = None
            raise OSError("PDU longer than the negotiated maximum")
        body = bytes(super().recv(length))
        conn.pdu_since = None
        if pdu_type == _P_DATA_TF and len(body) == length:
            body = self._limit_data(body)
            header = bytearray(struct.pack(">BBL", pdu_type, 0, len(body)))
        self._zc_body = body
        return header

    def _limit_data(self, body: bytes) -> bytes:
        """Count the data set bytes of the current message; drop fragments past ``max_instance_bytes``."""
        conn, limit = self._zc_conn, self._zc_limits.max_instance_bytes
        out, pos, changed = [], 0, False
        while pos + 6 <= len(body):
            (item_len,) = struct.unpack(">L", body[pos:pos + 4])
            item = body[pos:pos + 4 + item_len]
            pos += 4 + item_len
            if item_len < 2 or len(item) < 6:
                out.append(item)
                continue
            control = item[5]
            if control & 1:  # command fragment: a new message starts after its last one
                if control & 2:
                    conn.message_bytes, conn.oversize = 0, False
                out.append(item)
                continue
            conn.message_bytes += item_len - 2
            if conn.message_bytes > limit:
                if not conn.oversize:
                    logger.warning("connection from %s: data set over %d bytes; the rest is discarded and the "
                                   "C-STORE will be refused", conn.peer, limit)
                conn.oversize = True
            if conn.oversize:
                item, changed = struct.pack(">L", 2) + item[4:6], True  # keep the context and control bytes
            if control & 2 and conn.oversize:
                conn.oversize_seen += 1
            out.append(item)
        if not changed:
            return body
        return b"".join(out) + body[pos:]


class _GuardedHandler(RequestHandler):
    """Runs one connection in its own thread: TLS handshake, the association, and the book-keeping."""

    server: GuardedServer

    def handle(self) -> None:
        guard, raw = self.server.guard, self.request
        conn = guard.conn_of(raw)
        try:
            if conn is None or conn.state == "closed":
                return
            raw.settimeout(guard.limits.idle_s)
            if self.server.tls_context is not None:
                try:
                    tls = self.server.tls_context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                    conn.sock = tls  # wrap_socket() detached ``raw``: the watchdog must shut this one
                    tls.do_handshake()  # bounded: the watchdog shuts the socket at the deadline
                except (OSError, ssl.SSLError) as exc:
                    logger.warning("TLS handshake with %s failed (%s)", conn.peer, type(exc).__name__)
                    return
                self.request = tls
            assoc = self._create_association()
            sock = assoc.dul.socket
            assert sock is not None
            sock.__class__ = _LimitedSocket  # same object, with the limits above on recv()
            limited = cast(_LimitedSocket, sock)
            limited._zc_conn, limited._zc_limits, limited._zc_body = conn, guard.limits, None
            guard.bind(conn, assoc)
            from pynetdicom import evt

            evt.trigger(assoc, evt.EVT_CONN_OPEN, {"address": self.client_address})
            assoc.start()
            assoc.join()
            _shut(raw)
            assoc.kill()
        finally:
            guard.forget(raw)


class GuardedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server with :class:`ConnectionGuard` at accept time and TLS in the handler thread."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, ae, address, ae_title, contexts, ssl_context=None, evt_handlers=None, *,
                 guard: ConnectionGuard) -> None:
        self.guard = guard
        self.tls_context = ssl_context
        super().__init__(ae, address, ae_title, contexts, None, evt_handlers=evt_handlers,
                         request_handler=_GuardedHandler)

    def get_request(self) -> tuple[socket.socket, Any]:
        assert self.socket is not None
        return self.socket.accept()  # no TLS handshake here: it would block the accept loop

    def verify_request(self, request, client_address) -> bool:  # type: ignore[override]
        return self.guard.admit(request, client_address)

    def shutdown(self) -> None:
        self.guard.stop()
        super().shutdown()


def start_guarded_server(ae, address: tuple[str, int], *, guard: ConnectionGuard, evt_handlers: list,
                         ssl_context: ssl.SSLContext | None) -> GuardedServer:
    """Start a :class:`GuardedServer` for ``ae`` in a daemon thread (like ``AE.start_server(block=False)``)."""
    server = ae.make_server(address, evt_handlers=evt_handlers, ssl_context=ssl_context, server_class=GuardedServer,
                            guard=guard)
    thread = threading.Thread(target=server.serve_forever, name="zeroclick-acceptor", daemon=True)
    thread.start()
    ae._servers.append(server)  # pynetdicom's own bookkeeping (server.shutdown() removes it)
    return server
