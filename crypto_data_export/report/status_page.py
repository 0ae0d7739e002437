"""``status.html``: the status report as one self-contained page for people (docs/monitoring.md).

``render_status_page`` is a pure function of the status report, the sparklines' closes and the
disk use: inline CSS and SVG, no script, nothing fetched; every value escaped."""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from crypto_data_export.core.text import printable

MAX_GAP_RANGES = 3  # per row; the rest are counted
MAX_TEXT = 300  # characters of an error shown in a cell
SPARK_WIDTH, SPARK_HEIGHT = 160, 30

OK, GAPS, STALE, PROBLEM = "ok", "gaps", "stale", "problem"
_RANK = {PROBLEM: 0, STALE: 1, GAPS: 2, OK: 3}
_MOMENT = re.compile(r"(\d{4}-\d\d-\d\d)T(\d\d:\d\d(?::\d\d)?)(?:\.\d+)?(?:\+00:00|Z)?")

Disk = tuple[int, int, int]  # shutil.disk_usage: total, used, free bytes


def disk_of(path: Path) -> Disk | None:
    """The file system holding ``path`` (its folder); None if it cannot be asked."""
    try:
        return shutil.disk_usage(path.parent)
    except OSError:
        return None


def _e(value: Any) -> str:
    """Escaped, printable text of any value (None shows as a dash)."""
    return "–" if value is None else html.escape(printable(str(value), MAX_TEXT), quote=True)


def _t(value: Any) -> str:
    """Escaped text whose UTC moments read ``2026-12-01 00:00:00 UTC``, never broken over two lines."""
    return _MOMENT.sub(lambda found: f"<time>{found[1]} {found[2]} UTC</time>", _e(value))


def series_of(key: str, entry: Mapping[str, Any], interval: str) -> tuple[str, str, str]:
    """(symbol, interval, market) of a report entry; older entries only have their key."""
    return str(entry.get("symbol") or key), str(entry.get("interval") or interval), str(entry.get("market") or "spot")


def verdict(entry: Mapping[str, Any]) -> str:
    """ok: valid, fresh and whole; gaps: candles missing; stale: the newest candle is too old; else problem."""
    if not entry.get("valid") or entry.get("last_error"):
        return PROBLEM
    return STALE if not entry.get("fresh") else (GAPS if entry.get("missing_candles") else OK)


def downsample(values: Sequence[float]) -> list[float]:
    """At most one value per pixel of a sparkline, evenly picked, the last one always kept."""
    if len(values) <= SPARK_WIDTH:
        return list(values)
    step = (len(values) - 1) / (SPARK_WIDTH - 1)
    return [float(values[round(i * step)]) for i in range(SPARK_WIDTH)]


def sparkline_files(report: Mapping[str, Any]) -> dict[str, str]:
    """Per report key, the newest valid file whose closes its sparkline shows."""
    return {
        key: Path(entry["latest_file"]).name
        for key, entry in report.get("symbols", {}).items()
        if entry.get("valid") and isinstance(entry.get("latest_file"), str)
    }


def sparkline(values: Sequence[float]) -> str:
    """An inline SVG polyline of the values, scaled to the box; rising green, falling red."""
    if len(values) < 2:
        return '<span class="muted">no data</span>'
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = SPARK_WIDTH / (len(values) - 1)
    points = " ".join(
        f"{i * step:.1f},{(SPARK_HEIGHT - 2) - (v - low) / span * (SPARK_HEIGHT - 4):.1f}" for i, v in enumerate(values)
    )
    colour = "#1a7f37" if values[-1] >= values[0] else "#cf222e"
    change = (values[-1] - values[0]) / values[0] * 100 if values[0] else 0.0
    return (
        f'<svg class="spark" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}"'
        f' role="img" aria-label="close {low:g} to {high:g}"><polyline fill="none" stroke="{colour}"'
        f' stroke-width="1.5" points="{points}"/></svg><span class="chg" style="color:{colour}">{change:+.1f}%</span>'
    )


def _age(hours: Any) -> str:
    """3 min, 5.2 h, 3.1 d: what a person reads at a glance."""
    if not isinstance(hours, int | float):
        return _e(hours)
    if abs(hours) < 1:
        return f"{hours * 60:.0f} min"
    return f"{hours:.1f} h" if abs(hours) < 48 else f"{hours / 24:.1f} d"


def _freshness_cell(entry: Mapping[str, Any], state: str) -> str:
    last = entry.get("last_candle")
    age, limit = entry.get("newest_close_age_hours"), entry.get("fresh_limit_hours")
    if last is None:
        return '<td class="problem" data-l="newest candle">none</td>'
    if age is None:
        age = entry.get("last_candle_age_hours")
    shown = f"{_age(age)} ago" + (f" <span class='muted'>/ limit {_age(limit)}</span>" if limit is not None else "")
    return f'<td class="{state}" data-l="newest candle">{shown}<br><small title="open time">{_t(last)}</small></td>'


def _gaps_cell(entry: Mapping[str, Any]) -> str:
    gaps = entry.get("gaps") or []
    if not gaps:
        return '<td class="num" data-l="gaps">0</td>'
    count = entry.get("gap_ranges", len(gaps))  # a dataset entry lists some ranges, counts them all
    ranges = "<br>".join(
        f"{_t(g.get('first_missing'))} → {_t(g.get('last_missing'))} ({_e(g.get('missing'))})"
        for g in gaps[:MAX_GAP_RANGES]
        if isinstance(g, Mapping)
    )
    more = f"<br>+{count - MAX_GAP_RANGES} more" if count > MAX_GAP_RANGES else ""
    missing = entry.get("missing_candles", entry.get("missing"))
    return (
        f'<td class="stale" data-l="gaps"><b>{_e(count)}</b> gap(s), {_e(missing)} missing'
        f"<br><small>{ranges}{more}</small></td>"
    )


def _dataset(report: Mapping[str, Any]) -> str:
    """EXPORT_LAYOUT=dataset: each series' history, whether whole, and where it is not."""
    if not isinstance(found := report.get("dataset"), Mapping):
        return ""
    rows = ""
    for key, entry in (found.get("series") or {}).items():
        symbol, interval, market = series_of(key, entry, "")
        state = OK if entry.get("complete") else GAPS
        short = "".join(
            f"<br><small>{_e(name)}: {_e(p.get('present'))} of {_e(p.get('expected'))}</small>"
            for name, p in (entry.get("short_periods") or {}).items()
        )
        rows += (
            f'<tr class="row-{state}"><td><span class="dot {state}"></span><b>{_e(symbol)}</b>'
            f' <span class="muted">{_e(interval)} · {_e(market)}</span></td>'
            f'<td data-l="first candle">{_t(entry.get("first_candle"))}</td>'
            f'<td data-l="last candle">{_t(entry.get("last_candle"))}</td>'
            f'<td class="num" data-l="complete periods">{_e(entry.get("complete_periods"))} of '
            f"{_e(entry.get('periods'))}{short}</td>"
            f'<td class="num" data-l="present">{_e(entry.get("present"))} of {_e(entry.get("expected"))}</td>'
            f'{_gaps_cell(entry)}<td class="{OK if state == OK else STALE}" data-l="complete">'
            f"{'yes' if state == OK else 'no'}</td></tr>"
        )
    return (
        f"<h2>Dataset: {_e(found.get('series_count'))} series · {_e(found.get('complete_series'))} complete · "
        f"{_e(found.get('missing'))} candles missing</h2>"
        '<div class="scroll"><table class="series"><tr><th>series</th><th>first candle</th><th>last candle</th>'
        f"<th>complete periods</th><th>candles present</th><th>gaps</th><th>complete</th></tr>{rows}</table></div>"
    )


def _row(key: str, entry: Mapping[str, Any], interval: str, closes: Sequence[float] | None) -> str:
    symbol, series_interval, market = series_of(key, entry, interval)
    state = verdict(entry)
    valid = "yes" if entry.get("valid") else f"no: {_e(entry.get('reason'))}"
    error = entry.get("last_error")
    error_cell = f'<td class="problem err" data-l="last error">{_t(error)}<br><small>{_t(entry.get("last_error_at"))}'
    return (
        f'<tr class="row-{state}"><td><span class="dot {state}"></span><b>{_e(symbol)}</b>'
        f' <span class="muted">{_e(series_interval)} · {_e(market)}</span></td>'
        f"{_freshness_cell(entry, state)}"
        f'<td class="num" data-l="rows">{_e(entry.get("rows"))}</td>{_gaps_cell(entry)}'
        f'<td class="{"ok" if entry.get("valid") else "problem"}" data-l="valid">{valid}</td>'
        f"{error_cell + '</small></td>' if error else '<td class=hide>–</td>'}"
        f'<td class="sp">{sparkline(closes or [])}</td></tr>'
    )


def _card(title: str, value: str, detail: str = "", state: str = "") -> str:
    return (
        f'<div class="card {state}"><div class="t">{title}</div><div class="v">{value}</div><div>{detail}</div></div>'
    )


def _summary(report: Mapping[str, Any], disk: Disk | None) -> str:
    health = report.get("health", {}).get("status", "unknown")
    system, last = report.get("system_status", {}), report.get("last_cycle", {})
    files = report.get("file_statistics", {})
    health_state = {"healthy": OK, "degraded": STALE}.get(str(health), PROBLEM)
    result = last.get("result")
    cycle_state = OK if result == "ok" else (PROBLEM if result in ("failed", "skipped") else STALE)
    counters = (
        f"{_e(last.get('calls', '–'))} calls · weight {_e(last.get('weight', '–'))}"
        f"<br>rate-limit answers {_e(last.get('rate_limited', '–'))} · IP bans {_e(last.get('banned', '–'))}"
        f"<br>removed {_e(last.get('files_removed', '–'))} · quarantined {_e(last.get('files_quarantined', '–'))}"
    )
    cycle = f"{_t(last.get('started'))}<br>took {_e(last.get('duration_seconds'))} s<br>{counters}"
    sizes = f"{_e(files.get('total_size_mb'))} MB for {_e(files.get('symbols_count'))} symbols"
    service = f"scheduler {_e(system.get('service_status'))}"
    runner = service if report.get("scheduler_in_use", True) else f"last run {_t(last.get('finished') or 'never')}"
    cards = [
        _card("health", _e(health), runner, health_state),
        _card("last cycle", _e(result or "never"), cycle, cycle_state),
        _card("last successful cycle", _t(last.get("last_successful") or "never")),
        _card("files", _e(files.get("total_files")), sizes),
    ]
    total, _, free = disk or (0, 0, 0)
    if total > 0:
        used = 100 * (1 - free / total)
        bar = f'<div class="bar"><div style="width:{used:.0f}%"></div></div>'
        detail = f"{free / 2**30:.1f} GB free of {total / 2**30:.1f} GB{bar}"
        cards.append(_card("disk", f"{used:.0f}% used", detail, PROBLEM if used > 95 else (STALE if used > 85 else OK)))
    if report.get("banned_until"):
        cards.append(_card("banned", "until", _t(report["banned_until"]), PROBLEM))
    return '<div class="cards">' + "".join(cards) + "</div>"


def _checks(report: Mapping[str, Any]) -> str:
    checks: Mapping[str, Mapping[str, Any]] = report.get("health", {}).get("checks", {}) or {}
    rows = "".join(
        f'<tr><td><span class="dot {OK if c.get("passed") else PROBLEM}"></span>{_e(name)}</td>'
        f'<td class="reason">{_t(c.get("reason"))}</td></tr>'
        for name, c in sorted(checks.items(), key=lambda item: (bool(item[1].get("passed")), item[0]))
    )
    return f'<table class="checks"><tr><th>check</th><th>reason</th></tr>{rows}</table>'


_CSS = """
body{font:13px/1.35 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;background:#f6f8fa;color:#1f2328}header{
background:#24292f;color:#fff;padding:12px 20px}header h1{font-size:18px;margin:0}header .muted{color:#c9d1d9}main{
padding:14px 20px}h2{font-size:15px;margin:18px 0 8px}.cards{display:flex;flex-wrap:wrap;gap:10px}.card{background:#fff;
border:1px solid #d0d7de;border-radius:6px;padding:8px 12px;min-width:180px;border-top:4px solid #8c959f}.card .t{
color:#57606a;font-size:11px;text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:20px;font-weight:600;
margin:2px 0}.card.ok{border-top-color:#1a7f37}.card.stale{border-top-color:#bf8700}.card.problem{
border-top-color:#cf222e}.bar{background:#eaeef2;height:6px;border-radius:3px;margin-top:4px}.bar div{
background:#0969da;height:6px;border-radius:3px}table{border-collapse:collapse;background:#fff;border:1px solid #d0d7de;
width:100%}th,td{padding:4px 8px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}th{
background:#f6f8fa;font-size:11px;text-transform:uppercase;color:#57606a;position:sticky;top:0}td.num{text-align:right}
.muted,td.hide{color:#6e7781}small{color:#57606a}td.ok,td.gaps{color:#1a7f37}td.stale{color:#9a6700}td.problem{color:#cf222e}
td.err{min-width:14em;max-width:360px;overflow-wrap:anywhere}tr.row-problem{background:#fff5f5}tr.row-stale,tr.row-gaps{
background:#fffbeb}.dot{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:6px;background:#8c959f}
.dot.ok{background:#1a7f37}.dot.stale,.dot.gaps{background:#bf8700}.dot.problem{background:#cf222e}.spark{
vertical-align:middle}.chg{font-size:11px;margin-left:4px}.checks{max-width:1100px}.reason{overflow-wrap:anywhere}
td.sp,time,.checks td:first-child{white-space:nowrap}.scroll{overflow-x:auto}@media (max-width:700px){main{padding:10px}
.card{flex:1 1 100%}.series,.series tbody,.series tr,.series td{display:block}.series tr:first-child,.series td.hide{
display:none}.series tr{border-bottom:1px solid #d0d7de;padding:4px 0}.series td{border:0;padding:2px 8px;
max-width:none;text-align:left}.series td[data-l]::before{content:attr(data-l) ": ";color:#57606a;font-size:11px}}
"""


def render_status_page(
    report: Mapping[str, Any],
    closes: Mapping[str, Sequence[float]] | None = None,
    *,
    interval: str = "1h",
    disk: Disk | None = None,
) -> str:
    """The whole page; ``interval`` names the series of entries that do not say theirs."""
    closes = closes or {}
    symbols: Mapping[str, Mapping[str, Any]] = report.get("symbols") or {}
    rows = sorted(symbols.items(), key=lambda item: (_RANK[verdict(item[1])], item[0]))
    counts = {state: sum(1 for _, e in rows if verdict(e) == state) for state in _RANK}
    body = "".join(_row(key, entry, interval, closes.get(key)) for key, entry in rows)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>crypto exporter: {_e(report.get('health', {}).get('status'))}</title><style>{_CSS}</style></head>"
        f"<body><header><h1>Crypto klines exporter</h1><span class='muted'>status at {_t(report.get('timestamp'))}"
        "</span></header><main>"
        f"{_summary(report, disk)}<h2>Health checks</h2>{_checks(report)}"
        f"<h2>Series: {len(rows)} · <span style='color:#cf222e'>{counts[PROBLEM]} problem</span> · "
        f"<span style='color:#9a6700'>{counts[STALE]} stale · {counts[GAPS]} with gaps</span> · "
        f"<span style='color:#1a7f37'>{counts[OK]} ok</span></h2>"
        '<div class="scroll"><table class="series"><tr><th>series</th><th>newest closed candle</th><th>rows</th>'
        "<th>gaps</th><th>valid</th><th>last error</th><th>close over the window</th></tr>"
        f"{body}</table></div>{_dataset(report)}</main></body></html>"
    )
