"""The claims report as one self-contained HTML page: the verdict table first, then one section per claim.

Input is the ``claims.json`` dictionary (``ClaimsReport.to_dict()``); figures are embedded as data
URIs so the page can be mailed or archived alone. Nothing is computed here.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any

__all__ = ["render_html", "verdict_counts"]

_COLOURS = {"supported": "#1b7837", "not supported": "#8c6d1f", "contradicted": "#b2182b", "inconclusive": "#555"}

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}td,th{border:1px solid #ccc;padding:.3em .55em;vertical-align:top}
th{background:#f3f3f3;text-align:left}.v{color:#fff;border-radius:3px;padding:.1em .45em;white-space:nowrap;font-weight:600}
code,pre{background:#f6f6f6;padding:.1em .3em;border-radius:3px}pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
img{max-width:100%;border:1px solid #ddd}section{border-top:2px solid #ddd;margin-top:2em}.muted{color:#666}
"""


def _fmt(x: Any, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, (int, float)):
        if isinstance(x, float) and not math.isfinite(x):
            return "–"
        return f"{x:.{digits}g}"
    return html.escape(str(x))


def _interval(ci: Any) -> str:
    if not ci or all(v is None for v in ci):
        return ""
    return f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"


def _badge(verdict: str) -> str:
    return f'<span class="v" style="background:{_COLOURS.get(verdict, "#555")}">{html.escape(verdict)}</span>'


def _image(path: str | None) -> str:
    if not path or not Path(path).is_file():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<p><img alt="figure" src="data:image/png;base64,{data}"></p>'


def verdict_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["verdict"]] = counts.get(row["verdict"], 0) + 1
    return counts


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("<tr><th>claim</th><th>source</th><th>statement</th><th>verdict</th><th>effect [CI]</th>"
            "<th>null / predicted</th><th>p (Holm)</th><th>tests</th></tr>")
    body = []
    for r in rows:
        p = "–" if r.get("p_value") is None else f"{_fmt(r['p_value'], 3)} ({_fmt(r.get('p_adjusted'), 3)})"
        body.append(
            f'<tr><td><a href="#{r["id"]}"><code>{r["id"]}</code></a></td><td>{html.escape(r["source"])}</td>'
            f'<td>{html.escape(r["statement"])}</td><td>{_badge(r["verdict"])}</td>'
            f'<td>{html.escape(r.get("effect_label") or "")} {_fmt(r.get("effect"))}{_interval(r.get("ci"))}</td>'
            f'<td>{html.escape(r.get("null_label") or "")} {_fmt(r.get("null"))}{_interval(r.get("null_ci"))}</td>'
            f"<td>{p}</td><td>{r.get('n_tests', 0)}</td></tr>"
        )
    return f"<table>{head}{''.join(body)}</table>"


def _sensitivity(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return '<p class="muted">No alternative analyst choices recorded for this claim.</p>'
    body = "".join(
        f"<tr><td>{html.escape(s['choice'])}</td><td>{_fmt(s.get('effect'))}</td>"
        f"<td>{_fmt(s.get('p_value'), 3)}</td><td>{_badge(s['verdict'])}</td></tr>"
        for s in rows
    )
    return f"<table><tr><th>choice</th><th>effect</th><th>p</th><th>verdict</th></tr>{body}</table>"


def _numbers(numbers: dict[str, Any]) -> str:
    if not numbers:
        return ""
    body = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{_fmt(v)}</td></tr>" for k, v in numbers.items())
    return f"<table><tr><th>quantity</th><th>value</th></tr>{body}</table>"


def _section(r: dict[str, Any]) -> str:
    pieces = "".join(f"<li><code>{html.escape(name)}</code>: <code>{html.escape(path)}</code></li>"
                     for name, path in (r.get("pieces") or {}).items())
    note = f"<p><b>Note.</b> {html.escape(r['note'])}</p>" if r.get("note") else ""
    test = f"<p><b>Test.</b> {html.escape(r['test'])}</p>" if r.get("test") else ""
    return (
        f'<section id="{r["id"]}"><h2><code>{r["id"]}</code> {_badge(r["verdict"])}</h2>'
        f"<p><b>{html.escape(r['source'])}.</b> {html.escape(r['statement'])}</p>{note}"
        f"<p>{html.escape(r.get('reason') or '')}</p>{test}{_image(r.get('figure'))}"
        f"<h3>Numbers</h3><p>{html.escape(r.get('effect_label') or '')}: {_fmt(r.get('effect'))}{_interval(r.get('ci'))}"
        f"; {html.escape(r.get('null_label') or 'null')}: {_fmt(r.get('null'))}{_interval(r.get('null_ci'))}</p>"
        f"{_numbers(r.get('numbers') or {})}<h3>Sensitivity</h3>{_sensitivity(list(r.get('sensitivity') or []))}"
        f"<h3>Reproduce</h3><pre>{html.escape(r['command'])}</pre>"
        f"<p class=\"muted\">run directory <code>{html.escape(r['run_dir'])}</code>; pieces:</p><ul>{pieces}</ul></section>"
    )


def render_html(report: dict[str, Any], *, command: str = "", timings: dict[str, float] | None = None) -> str:
    """The whole page for a ``claims.json`` dictionary."""
    rows = list(report["claims"])
    counts = ", ".join(f"{n} {v}" for v, n in verdict_counts(rows).items())
    failed = report.get("failed") or {}
    failed_html = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v)}</li>" for k, v in failed.items())
    timing = ""
    if timings:
        timing = "<p class=\"muted\">" + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()) + "</p>"
    return (
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>thermolens claims</title>"
        f"<style>{_STYLE}</style></head><body><h1>The claims of the seed papers, tested</h1>"
        f"<p>Preset <b>{html.escape(report['preset'])}</b>: {len(rows)} claims ({counts}). Family-wise error "
        f"controlled by Holm's step-down at alpha = {report['alpha']} over {report['n_tests']} primary tests; "
        "each claim's alternative analyst choices are decided at the level its primary test met, and a verdict "
        "that flips within them is reported as inconclusive.</p>"
        f"{'<p>Command: <code>' + html.escape(command) + '</code></p>' if command else ''}{timing}"
        f"{'<h3>Failures</h3><ul>' + failed_html + '</ul>' if failed_html else ''}"
        f"{_table(rows)}{''.join(_section(r) for r in rows)}</body></html>"
    )
