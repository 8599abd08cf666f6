"""A :class:`~zeroclick.pipelines.cardiac.result.CardiacResult` in a notebook and back from disk.

* :func:`short_repr` - one line (status, key numbers, QC counts), never pixel arrays;
* :func:`html_repr` - a small table of the key numbers with units and the QC findings (Jupyter ``_repr_html_``);
* :func:`to_frame` - a one-row pandas DataFrame of ``measurements`` (+ source, status, phases), ready to concat;
* :func:`from_dict` - rebuild the frozen dataclasses from a ``report.json`` dict (masks and images are not in
  the JSON, so they come back empty).
"""

from __future__ import annotations

import dataclasses
import html
import types
import typing
from typing import Any

#: key -> (label, unit, decimals) of the numbers shown first in reprs and tables.
KEY_NUMBERS: dict[str, tuple[str, str, int]] = {
    "lv_edv_ml": ("LV EDV", "mL", 1),
    "lv_esv_ml": ("LV ESV", "mL", 1),
    "lv_ef_percent": ("LV EF", "%", 1),
    "rv_edv_ml": ("RV EDV", "mL", 1),
    "rv_esv_ml": ("RV ESV", "mL", 1),
    "rv_ef_percent": ("RV EF", "%", 1),
    "myo_mass_ed_g": ("LV mass (ED)", "g", 1),
    "lv_edv_index_ml_per_m2": ("LV EDV index", "mL/m²", 1),
    "infarct_percent_of_myocardium": ("Infarct", "% of myocardium", 1),
    "mvo_ml": ("MVO", "mL", 2),
}


def _fmt(value: Any, decimals: int) -> str:
    return "—" if value is None else f"{value:.{decimals}f}"


def short_repr(result: Any) -> str:
    m = result.measurements
    numbers = ", ".join(f"{key}={_fmt(m[key], d)}" for key, (_, _, d) in KEY_NUMBERS.items()
                        if key in m and m[key] is not None)
    counts = {sev: sum(q.severity == sev for q in result.qc) for sev in ("error", "warning")}
    return (f"CardiacResult(status={result.status!r}, source={_short_source(result.source)!r}, {numbers}, "
            f"qc_errors={counts['error']}, qc_warnings={counts['warning']})")


def _short_source(source: str, width: int = 48) -> str:
    return source if len(source) <= width else "…" + source[-(width - 1):]


def html_repr(result: Any) -> str:
    m = result.measurements
    colour = {"ok": "#1a7f37", "partial": "#9a6700", "failed": "#cf222e"}.get(result.status, "#57606a")
    invalid = {f for q in result.qc_errors for f in q.affects}
    rows = []
    for key, (label, unit, d) in KEY_NUMBERS.items():
        if key not in m:
            continue
        note = " <b style='color:#cf222e'>not valid</b>" if key in invalid else ""
        rows.append(f"<tr><td>{label}</td><td style='text-align:right'>{_fmt(m[key], d)}</td>"
                    f"<td>{html.escape(unit)}{note}</td></tr>")
    phases = ""
    if result.phases is not None:
        phases = (f"<p>ED phase {result.phases.ed_phase}, ES phase {result.phases.es_phase} "
                  f"({html.escape(result.phases.method)})</p>")
    qc = "".join(f"<li><b>{html.escape(q.severity)}</b> <code>{html.escape(q.code)}</code>: "
                 f"{html.escape(q.message)}</li>" for q in result.qc if q.severity in ("error", "warning"))
    return (
        "<div class='zeroclick-result'>"
        f"<p><b>CardiacResult</b> <span style='color:{colour}'>{html.escape(result.status)}</span> "
        f"<small>{html.escape(_short_source(result.source, 80))}</small></p>"
        "<table><thead><tr><th style='text-align:left'>measurement</th><th>value</th>"
        "<th style='text-align:left'>unit</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>{phases}"
        + (f"<p>QC</p><ul>{qc}</ul>" if qc else "<p>QC: no warnings or errors</p>")
        + "</div>"
    )


def to_frame(result: Any) -> Any:
    """One-row pandas DataFrame: ``source``, ``status``, ED/ES phases and every measurement (plain floats)."""
    try:
        import pandas as pd
    except ImportError as exc:  # pragma: no cover - pandas is in the 'notebook' and 'test' extras
        raise ImportError("to_frame() needs pandas: pip install 'zeroclick[notebook]' (or pip install pandas)") from exc
    row: dict[str, Any] = {"source": result.source, "status": result.status}
    if result.phases is not None:
        row.update(ed_phase=result.phases.ed_phase, es_phase=result.phases.es_phase)
    row.update(result.measurements)
    row["qc_errors"] = ";".join(q.code for q in result.qc_errors)
    return pd.DataFrame([row])


# ------------------------------------------------------------------------------------------ from JSON
def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild dataclass ``cls`` from its :meth:`to_dict` form, field by field, following the type hints."""
    return _build(cls, data)


def _build(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        for option in options:  # the first that fits (dataclass for dicts, numbers for numbers)
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return _build(option, value)
        return _build(options[0], value) if len(options) == 1 else value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            return None  # e.g. a Volume summary where the object holds pixels: not rebuilt
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: _build(hints[f.name], value[f.name]) for f in dataclasses.fields(tp)
                  if f.init and f.name in value}
        return tp(**kwargs)
    if origin is tuple:
        item = args[0] if args else Any
        return tuple(_build(item, v) for v in value)
    if origin is dict:
        key_t, val_t = args if args else (Any, Any)
        return {(int(k) if key_t is int else k): _build(val_t, v) for k, v in value.items()}
    if origin is typing.Literal:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value
