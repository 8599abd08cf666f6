"""What a PACS administrator watches: structured log lines, Prometheus metrics and a status page.

Log lines
    The listener's important lines carry their fields as ``extra={"zc": {"event": ..., ...}}``
    (:func:`fields`): ``association_accepted`` / ``association_rejected`` (calling and called AE title, peer
    address, reason), ``study_receiving`` / ``study_stable`` (instances received per study), ``job_state``
    (job id, study, state, attempt, error), ``send`` (job, destination, stored, failed). :class:`JsonFormatter`
    (``zeroclick listen --log-json``) writes one JSON object per line with those fields. Studies are named by a
    hash of their UID (:func:`~zeroclick.pipelines.pacs.spool.study_key`); no patient attribute is ever logged.

HTTP (:class:`StatusServer`, loopback by default)
    ``/healthz`` (``ok`` with 200 while the scheduler runs, 503 otherwise), ``/metrics`` (Prometheus text format
    0.0.4) and ``/`` (an HTML page: queue, recent jobs with QC status and timings, recent errors).
"""

from __future__ import annotations

import html
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["ANALYSIS_BUCKETS_S", "JsonFormatter", "Metrics", "StatusServer", "fields", "spool_bytes"]

logger = logging.getLogger(__name__)

#: Upper bounds of the analysis-seconds histogram (a CPU cardiac exam takes 1-3 minutes, a GPU one seconds).
ANALYSIS_BUCKETS_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def fields(event: str, **values: Any) -> dict[str, Any]:
    """``extra=`` argument of a structured log line: ``logger.info(msg, ..., extra=fields("send", job=3))``."""
    return {"zc": {"event": event, **values}}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message and the line's ``zc`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "zc", None) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def spool_bytes(root: Path) -> int:
    """Bytes of the files under ``root`` (walks the tree; the listener caches it for a minute)."""
    total = 0
    for path in Path(root).rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except OSError:  # removed while walking
            continue
    return total


class Metrics:
    """In-process counters of one listener run (Prometheus counters restart at 0 with the process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.analysis_s: list[float] = []
        self.errors: deque[dict[str, Any]] = deque(maxlen=20)
        self.started = time.time()

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            self.counters[key] = self.counters.get(key, 0.0) + amount

    def observe_analysis(self, seconds: float) -> None:
        with self._lock:
            self.analysis_s.append(float(seconds))

    def error(self, what: str, **values: Any) -> None:
        """Remember a recent error for the status page (no patient attribute in ``values``)."""
        with self._lock:
            self.errors.append({"time": time.time(), "what": what, **values})

    def get(self, name: str, **labels: str) -> float:
        with self._lock:
            return self.counters.get((name, tuple(sorted(labels.items()))), 0.0)


def _labels(pairs: tuple[tuple[str, str], ...] | dict[str, str]) -> str:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    inner = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                     for k, v in items)
    return "{" + inner + "}" if inner else ""


_COUNTER_HELP = {
    "zeroclick_instances_received_total": "Instances received by C-STORE and spooled, by outcome (stored, same, duplicate)",
    "zeroclick_associations_total": "Associations, by result (accepted, rejected)",
    "zeroclick_sends_total": "Result sends, by outcome (ok, failed)",
    "zeroclick_send_failures_total": "Result sends that failed (each attempt)",
    "zeroclick_jobs_finished_total": "Analysis jobs that ended, by outcome (analysed, failed, retry)",
}


def render_metrics(metrics: Metrics, *, jobs_by_state: dict[str, int], studies_by_state: dict[str, int],
                   spool_size: int) -> str:
    """The Prometheus text exposition of the counters, the queue (from the database) and the spool size."""
    lines: list[str] = []
    with metrics._lock:
        counters = dict(metrics.counters)
        analysis = list(metrics.analysis_s)
    for name, help_text in _COUNTER_HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
        mine = {k: v for k, v in counters.items() if k[0] == name}
        if not mine:
            lines.append(f"{name} 0")
        for (_, labels), value in sorted(mine.items()):
            lines.append(f"{name}{_labels(labels)} {value:g}")
    lines += ["# HELP zeroclick_jobs Jobs in the queue database, by state", "# TYPE zeroclick_jobs gauge"]
    for state in sorted(set(jobs_by_state) | {"queued", "running", "failed", "sent", "send_failed"}):
        lines.append(f'zeroclick_jobs{{state="{state}"}} {jobs_by_state.get(state, 0)}')
    lines += ["# HELP zeroclick_studies Studies in the queue database, by state", "# TYPE zeroclick_studies gauge"]
    for state, n in sorted(studies_by_state.items()):
        lines.append(f'zeroclick_studies{{state="{state}"}} {n}')
    lines += ["# HELP zeroclick_analysis_seconds Wall time of successful analyses (worker process)",
              "# TYPE zeroclick_analysis_seconds histogram"]
    for bound in ANALYSIS_BUCKETS_S:
        lines.append(f'zeroclick_analysis_seconds_bucket{{le="{bound:g}"}} {sum(s <= bound for s in analysis)}')
    lines += [f'zeroclick_analysis_seconds_bucket{{le="+Inf"}} {len(analysis)}',
              f"zeroclick_analysis_seconds_sum {sum(analysis):.3f}", f"zeroclick_analysis_seconds_count {len(analysis)}",
              "# HELP zeroclick_spool_bytes Bytes of the files in the spool", "# TYPE zeroclick_spool_bytes gauge",
              f"zeroclick_spool_bytes {spool_size}",
              "# HELP zeroclick_start_time_seconds Start of this listener process (Unix time)",
              "# TYPE zeroclick_start_time_seconds gauge", f"zeroclick_start_time_seconds {metrics.started:.0f}"]
    return "\n".join(lines) + "\n"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + " UTC" if t else ""


def render_status_page(snapshot: dict[str, Any]) -> str:
    """The HTML status page from :meth:`Listener.snapshot`-like data (queue, recent jobs, errors)."""
    e = html.escape
    queue = "".join(f"<tr><td>{e(s)}</td><td>{n}</td></tr>" for s, n in sorted(snapshot["studies_by_state"].items()))
    jobs = "".join(
        f"<tr class='{e(j['state'])}'><td>{j['id']}</td><td><code>{e(j['study'])}</code></td><td>{e(j['state'])}</td>"
        f"<td>{j['attempts']}</td><td>{e(j.get('qc') or '')}</td>"
        f"<td>{'' if j.get('analysis_s') is None else format(j['analysis_s'], '.1f')}</td>"
        f"<td>{e(_when(j.get('created')))}</td><td>{e(_when(j.get('sent_at')))}</td>"
        f"<td>{e((j.get('error') or '')[:160])}</td></tr>"
        for j in snapshot["recent_jobs"])
    errors = "".join(f"<li>{e(_when(x['time']))}: {e(x['what'])} {e(json.dumps({k: v for k, v in x.items() if k not in ('time', 'what')}))}</li>"
                     for x in reversed(snapshot["errors"])) or "<li>none</li>"
    c = snapshot["counters"]
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
<title>zeroclick listen - {e(snapshot['ae_title'])}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
h1 {{ font-size: 1.4em; }} h2 {{ font-size: 1.1em; margin-top: 1.4em; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; font-size: 0.9em; }}
th {{ background: #eee; }} tr.failed td, tr.send_failed td {{ background: #fde2e2; }}
tr.sent td, tr.done td {{ background: #e4f5e4; }} tr.running td {{ background: #fff6d5; }}
.kpi span {{ display: inline-block; margin-right: 2em; }} .kpi b {{ font-size: 1.3em; }}
</style></head><body>
<h1>zeroclick listen &mdash; {e(snapshot['ae_title'])} on port {snapshot['port']}</h1>
<p class="kpi"><span>health <b>{'ok' if snapshot['healthy'] else 'NOT OK'}</b></span>
<span>instances received since start <b>{c['received']:g}</b></span><span>jobs queued <b>{snapshot['jobs_by_state'].get('queued', 0)}</b></span>
<span>running <b>{snapshot['jobs_by_state'].get('running', 0)}</b></span>
<span>send failures <b>{c['send_failures']:g}</b></span><span>spool <b>{snapshot["spool_bytes"] / 1e6:,.0f} MB</b></span></p>
<p>Up since {e(_when(snapshot['started']))}. Studies are named by a hash of their UID; no patient data is shown.
Machine-readable: <a href="/metrics">/metrics</a>, <a href="/healthz">/healthz</a>.</p>
<h2>Studies by state</h2><table><tr><th>state</th><th>studies</th></tr>{queue or '<tr><td colspan=2>none</td></tr>'}</table>
<h2>Recent jobs</h2>
<table><tr><th>job</th><th>study</th><th>state</th><th>attempts</th><th>QC</th><th>analysis s</th><th>queued</th>
<th>sent</th><th>error</th></tr>{jobs or '<tr><td colspan=9>none</td></tr>'}</table>
<h2>Recent errors</h2><ul>{errors}</ul>
</body></html>
"""


class StatusServer:
    """``/healthz``, ``/metrics`` and ``/`` over HTTP in a daemon thread (stdlib ``http.server``)."""

    def __init__(self, host: str, port: int, *, snapshot: Callable[[], dict[str, Any]],
                 metrics_text: Callable[[], str], healthy: Callable[[], bool]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                path = self.path.split("?", 1)[0]
                try:
                    if path == "/healthz":
                        ok = healthy()
                        self._send(200 if ok else 503, "text/plain; charset=utf-8", "ok\n" if ok else "unhealthy\n")
                    elif path == "/metrics":
                        self._send(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text())
                    elif path in ("/", "/status"):
                        self._send(200, "text/html; charset=utf-8", render_status_page(snapshot()))
                    elif path == "/status.json":
                        self._send(200, "application/json", json.dumps(snapshot(), default=str))
                    else:
                        self._send(404, "text/plain; charset=utf-8", "not found: try /, /healthz or /metrics\n")
                except Exception:  # noqa: BLE001 - a broken page must not take the listener down
                    logger.exception("status page failed")
                    self._send(500, "text/plain; charset=utf-8", "internal error (see the listener log)\n")

            def _send(self, code: int, ctype: str, body: str) -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet access log
                logger.debug("http %s", format % args)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="zeroclick-http", daemon=True)
        self.host, self.port = host, int(self.server.server_address[1])

    def start(self) -> None:
        self.thread.start()
        logger.info("status page on http://%s:%d/ (/healthz, /metrics)", self.host, self.port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
