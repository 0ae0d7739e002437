"""Issue 16: status.html, the Prometheus textfile metrics and the example alert rules,
checked from outside after real cycles against the sandbox."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from crypto_data_export.report.metrics import DATASET, PREFIX
from crypto_data_export.report.status_page import downsample, render_status_page
from crypto_data_export.settings.settings import SettingsError, load_settings
from crypto_data_export.store.formats import format_for_name
from tests.support import REPO, export_files, manager_env, read_json, run_manager

HOUR_MS = 3_600_000
ALERTS = REPO / "deploy" / "prometheus-alerts.yml"


def _metrics(path: Path) -> dict[str, list[Any]]:
    """Sample name -> its samples, as Prometheus' own parser reads the file."""
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def _newest_open_seconds(path: Path) -> float:
    file_format = format_for_name(path.name)
    assert file_format is not None
    newest = file_format.read(path)["open_time"][-1].as_py()  # the candle table holds epoch milliseconds
    return int(newest) / 1000


@pytest.fixture
def cycled(tmp_path, sandbox_factory) -> dict[str, Any]:
    """One real --manual cycle: two good symbols (one with a gap), one the exchange does not know."""
    now_ms = int(time.time() * 1000)
    gap_start = (now_ms // HOUR_MS - 10) * HOUR_MS
    exchange = sandbox_factory(
        unknown_symbols=frozenset({"NOPEUSDT"}), gaps={"BTCUSDT": [(gap_start, gap_start + 3 * HOUR_MS)]}
    )
    folder = tmp_path / "exports"
    env = manager_env(folder, exchange.base_url, "BTCUSDT,ETHUSDT,NOPEUSDT")
    result = run_manager(env, "--manual")
    assert result.returncode == 1, result.stdout + result.stderr  # NOPEUSDT fails, the others go on
    return {"folder": folder, "env": env, "result": result}


def test_a_manual_cycle_writes_a_page_naming_every_symbol_with_a_sparkline_each(cycled):
    folder = cycled["folder"]
    page = (folder / "status.html").read_text(encoding="utf-8")
    for symbol in ("BTCUSDT", "ETHUSDT", "NOPEUSDT"):
        assert symbol in page
    rows = re.findall(r"<tr class=\"row-(\w+)\">(.*?)</tr>", page)
    assert [state for state, _ in rows][0] == "problem"  # the problems come first
    by_symbol = {re.search(r"<b>(\w+)</b>", row).group(1): row for _, row in rows}  # type: ignore[union-attr]
    assert "<svg" in by_symbol["BTCUSDT"] and "<polyline" in by_symbol["ETHUSDT"]
    assert "does not know this symbol" in by_symbol["NOPEUSDT"]
    assert "3 missing" in by_symbol["BTCUSDT"]  # the gap, with its range
    assert "<script" not in page and "http://" not in page and "https://" not in page
    report = read_json(folder / "status_report.json")
    last = report["last_cycle"]
    assert last["calls"] >= 3 and last["weight"] >= last["calls"] and last["rate_limited"] == 0
    assert f"{last['calls']} calls" in page


def test_a_manual_cycle_writes_metrics_that_parse_and_match_the_newest_rows(cycled):
    folder = cycled["folder"]
    samples = _metrics(folder / "metrics" / "exporter.prom")
    last_candle = {s.labels["symbol"]: s for s in samples["crypto_exporter_last_candle_timestamp_seconds"]}
    files = {p.name.split("_")[0]: p for p in export_files(folder)}
    assert set(files) == {"BTCUSDT", "ETHUSDT"} and set(last_candle) == set(files)
    for symbol, path in files.items():
        assert last_candle[symbol].value == _newest_open_seconds(path), symbol
        assert last_candle[symbol].labels == {"symbol": symbol, "interval": "1h", "market": "spot"}
    valid = {s.labels["symbol"]: s.value for s in samples["crypto_exporter_series_valid"]}
    assert valid == {"BTCUSDT": 1.0, "ETHUSDT": 1.0, "NOPEUSDT": 0.0}
    missing = {s.labels["symbol"]: s.value for s in samples["crypto_exporter_series_missing_candles"]}
    assert missing["BTCUSDT"] == 3.0
    assert samples["crypto_exporter_last_success_timestamp_seconds"][0].value > time.time() - 600
    assert samples["crypto_exporter_last_run_success"][0].value == 0.0  # partial: NOPEUSDT failed
    assert samples["crypto_exporter_ban_end_timestamp_seconds"][0].value == 0.0
    assert samples["crypto_exporter_last_run_requests"][0].value >= 3
    assert samples["crypto_exporter_exports_total"][0].value == 1.0


def test_the_alert_rules_parse_and_name_only_metrics_the_exporter_writes(cycled):
    written = set(_metrics(cycled["folder"] / "metrics" / "exporter.prom"))
    written |= {PREFIX + name for _, name, _ in DATASET}  # with EXPORT_LAYOUT=dataset (test_dataset_status)
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"CryptoExporterSeriesStale", "CryptoExporterCycleFailed", "CryptoExporterBanned"} <= {
        a["alert"] for a in alerts
    }
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
        assert alert["labels"]["severity"] and alert["annotations"]["summary"]
        named = set(re.findall(r"\bcrypto_exporter_\w+", alert["expr"]))
        assert named and named <= written, (alert["alert"], named - written)


def test_status_html_flag_writes_the_page_where_asked_and_metrics_can_be_turned_off(cycled, tmp_path):
    folder, env = cycled["folder"], dict(cycled["env"])
    (folder / "metrics" / "exporter.prom").unlink()
    env["METRICS_FILE"] = "off"
    target = tmp_path / "elsewhere" / "page.html"
    target.parent.mkdir()
    result = run_manager(env, "--status", "--html", str(target))
    assert result.returncode == 0, result.stderr
    assert "BTCUSDT" in target.read_text(encoding="utf-8") and str(target) in result.stdout
    assert not (folder / "metrics" / "exporter.prom").exists()
    refused = run_manager(env, "--status", "--html", str(tmp_path / "missing" / "page.html"))
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    usage = run_manager(env, "--manual", "--html", str(target))
    assert usage.returncode == 2 and "--html goes with --status" in usage.stderr


def test_metrics_file_setting_is_checked(tmp_path):
    assert load_settings({"METRICS_FILE": "off"}, env_file=None).metrics_file == "off"
    assert load_settings({"METRICS_FILE": str(tmp_path / "x.prom")}, env_file=None).metrics_file.endswith("x.prom")
    with pytest.raises(SettingsError, match=r"METRICS_FILE=.*\.prom"):
        load_settings({"METRICS_FILE": str(tmp_path / "x.txt")}, env_file=None)


def test_cleanup_never_touches_the_metrics_folder(cycled):
    """Retention and scans stay out of subfolders: an export-named file in metrics/ survives."""
    folder = cycled["folder"]
    planted = folder / "metrics" / "BTCUSDT_1h_20200101_000000.csv"
    planted.write_bytes(b"not a csv at all")
    result = run_manager(cycled["env"], "--cleanup-only")
    assert result.returncode == 0, result.stderr
    assert planted.read_bytes() == b"not a csv at all"
    assert (folder / "metrics" / "exporter.prom").is_file()


def test_an_unreadable_newest_file_costs_its_sparkline_not_the_cycle(cycled):
    folder = cycled["folder"]
    newest = export_files(folder, "ETHUSDT")[-1]
    newest.chmod(0)  # still listed as valid by the report of the last cycle; the page cannot read it
    try:
        result = run_manager(cycled["env"], "--status")
    finally:
        newest.chmod(0o640)
    assert result.returncode == 0, result.stderr
    assert "ETHUSDT" in (folder / "status.html").read_text(encoding="utf-8")


# -- the page as a pure function ---------------------------------------------------------
def _entry(i: int, **changes: Any) -> dict[str, Any]:
    entry = {
        "symbol": f"S{i:03d}USDT",
        "interval": "1h",
        "market": "spot",
        "latest_file": f"S{i:03d}USDT_1h_20261201_000000.csv",
        "rows": 720,
        "last_candle": "2026-12-01T00:00:00+00:00",
        "gaps": [],
        "missing_candles": 0,
        "valid": True,
        "reason": None,
        "last_error": None,
        "fresh": True,
        "newest_close_age_hours": 0.5,
        "fresh_limit_hours": 3.08,
    }
    entry.update(changes)
    return entry


def _report(symbols: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "timestamp": "2026-12-01T01:00:00+00:00",
        "system_status": {"service_status": "running"},
        "file_statistics": {"total_files": len(symbols), "total_size_mb": 12.5, "symbols_count": len(symbols)},
        "last_cycle": {"result": "partial", "calls": 400, "weight": 800, "rate_limited": 0, "banned": 0},
        "health": {"status": "degraded", "checks": {"symbols_fresh": {"passed": False, "reason": "stale: S001USDT"}}},
        "symbols": symbols,
    }


def test_four_hundred_series_stay_under_two_megabytes_with_the_problems_first():
    symbols = {f"S{i:03d}USDT": _entry(i) for i in range(400)}
    gaps = [{"first_missing": f"2026-11-2{d}T00:00:00+00:00", "last_missing": "x", "missing": 2} for d in range(9)]
    symbols["S397USDT"] = _entry(397, gaps=gaps, missing_candles=18, fresh=False, newest_close_age_hours=9.0)
    symbols["S398USDT"] = _entry(398, valid=False, reason="high < low in row 3", fresh=False)
    closes = {key: [100 + (i % 17) * 1.5 for i in range(1000)] for key in symbols}
    page = render_status_page(_report(symbols), {k: downsample(v) for k, v in closes.items()})
    assert len(page.encode("utf-8")) < 2 * 1024 * 1024
    order = re.findall(r"<b>(S\d{3}USDT)</b>", page)
    assert order[:2] == ["S398USDT", "S397USDT"] and len(order) == 400
    assert page.count("<svg") == 400 and "+6 more" in page
    assert len(downsample(closes["S000USDT"])) <= 200 and downsample([1.0, 2.0]) == [1.0, 2.0]


def test_every_value_is_escaped():
    hostile = "<script>alert('x')</script>&\"'"
    symbols = {
        hostile: _entry(0, symbol=hostile, last_error=hostile + "\x1b[2J", valid=False, reason=hostile),
        "OKUSDT": _entry(1, interval="<b>1h</b>", market='"><img src=x>'),
    }
    report = _report(symbols)
    report["health"]["checks"][hostile] = {"passed": False, "reason": hostile}
    report["last_cycle"]["result"] = hostile
    page = render_status_page(report, {})
    assert "<script" not in page and "<img" not in page and "<b>1h</b>" not in page and "\x1b" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;" in page


def _png_colours(path: Path) -> int:
    """How many distinct pixels a headless screenshot has, decoded with zlib only (8-bit RGB/RGBA)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, channels = 8, b"", 0, 4
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        chunk = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, _height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = 1 + width * channels
    # Unfiltered sampling is enough to tell "one colour" from "a page": count distinct raw bytes per row.
    return len({raw[row : row + stride] for row in range(0, len(raw), stride)})


# Both widths side by side in one window (headless Chromium opens no narrower than 500 px, so
# the phone is an iframe); the script measures what a person would see, Chromium prints it.
LAYOUT_PROBE = r"""<!DOCTYPE html><html><body style="margin:0;display:flex;align-items:flex-start">
<iframe id="wide" src="PAGE" style="width:1400px;height:1000px;border:0"></iframe>
<iframe id="narrow" src="PAGE" style="width:420px;height:1000px;border:0"></iframe>
<script>
const MOMENT = /\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d)?(\.\d+)?( UTC|[+-]\d\d:\d\d)?/g;
window.addEventListener("load", () => {
  const out = {};
  for (const frame of document.querySelectorAll("iframe")) {
    const doc = frame.contentDocument;
    const walker = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
    let broken = 0;
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const match of node.data.matchAll(MOMENT)) {
        const range = doc.createRange();
        range.setStart(node, match.index);
        range.setEnd(node, match.index + match[0].length);
        if (new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size > 1) broken += 1;
      }
    }
    out[frame.id] = {
      overflow: doc.documentElement.scrollWidth - doc.documentElement.clientWidth,
      tallest_cell: Math.max(...[...doc.querySelectorAll("td")].map((td) => td.getBoundingClientRect().height)),
      broken_moments: broken,
    };
  }
  document.body.dataset.layout = JSON.stringify(out);
});
</script></body></html>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_headless_chromium_shows_the_page_whole_at_1400_and_420_px(cycled, tmp_path):
    """No sideways overflow, no cell taller than a screen's third, no time broken over two lines."""
    page = cycled["folder"] / "status.html"
    report = read_json(cycled["folder"] / "status_report.json")
    report["symbols"]["NOPEUSDT"]["last_error"] = "the exchange said no; " * 40  # a long error, as real ones get
    page.write_text(render_status_page(report, {}), encoding="utf-8")
    probe, shot = tmp_path / "probe.html", tmp_path / "status.png"
    probe.write_text(LAYOUT_PROBE.replace("PAGE", page.as_uri()), encoding="utf-8")
    result = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--allow-file-access-from-files",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--screenshot={shot}",
            "--window-size=1820,1000",
            "--dump-dom",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r'data-layout="([^"]*)"', result.stdout)
    assert found, result.stderr[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    for width in ("wide", "narrow"):
        assert layout[width]["overflow"] <= 0, layout
        assert layout[width]["tallest_cell"] < 300, layout
        assert layout[width]["broken_moments"] == 0, layout
    assert shot.is_file() and shot.stat().st_size > 10_000
    assert _png_colours(shot) > 50  # many different rows: text, cards, tables, not one flat colour
