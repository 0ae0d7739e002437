"""EXPORT_LAYOUT=dataset: the status JSON, --status, the page and the metrics show each series' completeness."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from crypto_data_export.core.clock import ms_to_iso
from crypto_data_export.report import console
from crypto_data_export.report.metrics import write_metrics
from crypto_data_export.report.status_page import render_status_page
from crypto_data_export.report.status_report import build_status_report
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import Settings, load_settings
from crypto_data_export.store.dataset import Dataset, read_period_info
from crypto_data_export.store.dataset_completeness import dataset_completeness
from crypto_data_export.store.run_state import RunState
from tests.support import HOUR_MS as H
from tests.support import Y2027, read_json
from tests.support import write_dataset_period as write_period

HOST = "127.0.0.1:1"

NOW = datetime(2027, 1, 1, 6, tzinfo=UTC)


def _holed_report(tmp_path: Path) -> dict:
    """BTCUSDT 1h stored for 2027 with a hole of 2 candles; ETHUSDT whole; both configured."""
    root = tmp_path / "dataset"
    dataset = Dataset(root, HOST, "spot")
    btc, eth = dataset.series_of("BTCUSDT", "1h"), dataset.series_of("ETHUSDT", "1h")
    end = Y2027 + 365 * 24 * H
    write_period(root, btc, Y2027, end, [Y2027, Y2027 + 3 * H, Y2027 + 4 * H], expected=5,
                 gaps=[[Y2027 + H, Y2027 + 2 * H, 2]])  # fmt: skip
    write_period(root, eth, Y2027, end, [Y2027 + i * H for i in range(5)], expected=5)
    settings = Settings(export_dir=tmp_path, symbols=("BTCUSDT", "ETHUSDT"))
    report = build_status_report(
        settings, RunState(), [], {}, "stopped", now=NOW, dataset=dataset_completeness(dataset)
    )
    return json.loads(json.dumps(report))  # as status_report.json holds it


def test_the_status_json_counts_a_hole_and_judges_the_symbols_from_the_dataset(tmp_path):
    report = _holed_report(tmp_path)
    found = report["dataset"]
    assert (found["series_count"], found["complete_series"], found["missing"]) == (2, 1, 2)
    btc = found["series"]["BTCUSDT_1h"]
    assert (btc["first_candle"], btc["last_candle"]) == ("2027-01-01T00:00:00+00:00", "2027-01-01T04:00:00+00:00")
    assert (btc["expected"], btc["present"], btc["missing"], btc["complete"]) == (5, 3, 2, False)
    assert btc["gaps"] == [
        {"first_missing": "2027-01-01T01:00:00+00:00", "last_missing": "2027-01-01T02:00:00+00:00", "missing": 2}
    ]
    assert btc["short_periods"] == {"2027": {"expected": 5, "present": 3, "complete": False}}
    # The guide's per-symbol entries come from the dataset: valid, fresh, their rows and gaps.
    symbol = report["symbols"]["BTCUSDT"]
    assert (symbol["valid"], symbol["rows"], symbol["missing_candles"], symbol["fresh"]) == (True, 3, 2, True)
    assert report["symbols"]["ETHUSDT"]["missing_candles"] == 0


def test_status_text_and_metrics_carry_the_same_numbers(tmp_path, capsys):
    report = _holed_report(tmp_path)
    console.print_status(report, as_json=False)
    text = capsys.readouterr().out
    assert "dataset: 2 series, 1 complete; 8 of 10 candles present, 2 missing" in text
    btc_line = next(line for line in text.splitlines() if line.startswith("BTCUSDT_1h"))
    assert btc_line.split()[3:] == ["0/1", "3", "2", "no"]
    assert "  missing 2027-01-01T01:00:00+00:00 .. 2027-01-01T02:00:00+00:00 (2)" in text
    path = write_metrics(tmp_path / "metrics" / "exporter.prom", report, "1h")
    samples = {
        (s.name, s.labels.get("symbol")): s.value
        for family in text_string_to_metric_families(path.read_text(encoding="utf-8"))
        for s in family.samples
        if s.name.startswith("crypto_exporter_dataset_")
    }
    assert samples[("crypto_exporter_dataset_candles_missing", "BTCUSDT")] == 2
    assert samples[("crypto_exporter_dataset_candles_expected", "BTCUSDT")] == 5
    assert samples[("crypto_exporter_dataset_candles_present", "ETHUSDT")] == 5
    assert samples[("crypto_exporter_dataset_complete", "BTCUSDT")] == 0
    assert samples[("crypto_exporter_dataset_complete", "ETHUSDT")] == 1
    page = render_status_page(report)
    assert "Dataset: 2 series · 1 complete · 2 candles missing" in page and "2027: 3 of 5" in page


def test_the_files_layout_report_has_no_dataset_key(tmp_path):
    report = build_status_report(Settings(export_dir=tmp_path), RunState(), [], {}, "stopped", now=NOW)
    assert "dataset" not in report


def btc_period(folder: Path, open_ms: int) -> Path:
    year = datetime.fromtimestamp(open_ms / 1000, UTC).year
    return folder / "dataset" / "market=spot" / "interval=1h" / "symbol=BTCUSDT" / f"{year}.parquet"


def test_a_cycle_on_an_exchange_with_a_hole_reports_it_everywhere(tmp_path, sandbox_factory, capsys):
    """A real cycle (EXPORT_LAYOUT=dataset, 1 day) on an exchange missing 2 hours of BTCUSDT: the status
    JSON, the metrics, the page and --status agree; the history starts at the look-back's first candle."""
    now = int(time.time() * 1000) // H * H - 4 * H + H // 2
    hole = (now - H // 2 - 9 * H, now - H // 2 - 7 * H)  # [start, end): two candles
    exchange = sandbox_factory(now_ms=now, gaps={"BTCUSDT": [hole]})
    folder = tmp_path / "exports"
    env = {"BINANCE_BASE_URL": exchange.base_url, "EXPORT_DIR": str(folder), "EXPORT_SYMBOLS": "BTCUSDT,ETHUSDT",
           "EXPORT_LOOKBACK_DAYS": "1", "LOG_LEVEL": "WARNING", "EXPORT_LAYOUT": "dataset"}  # fmt: skip
    manager = ScheduledDataManager(load_settings(env, env_file=None))
    cycle = manager.run_cycle()
    assert cycle.exit_code == 0
    console.print_cycle(cycle)
    assert "status: dataset 2 series, 44 candles, 2 missing, health" in capsys.readouterr().out
    found = read_json(folder / "status_report.json")["dataset"]
    btc, eth = found["series"]["BTCUSDT_1h"], found["series"]["ETHUSDT_1h"]
    # The cycle asked for the hole and the exchange served it empty: listed and counted, but confirmed
    # absent (kept in the period's metadata), so no alert fires for the rest of the open period.
    assert (btc["missing"], btc["present"], btc["expected"], btc["unconfirmed_missing"]) == (2, 21, 23, 0)
    assert btc["complete"] and read_period_info(btc_period(folder, hole[0])).confirmed == [(hole[0], hole[0] + H, 2)]
    assert btc["gaps"] == [{"first_missing": ms_to_iso(hole[0]), "last_missing": ms_to_iso(hole[0] + H), "missing": 2}]
    assert (eth["missing"], eth["present"], eth["first_candle"]) == (0, 23, ms_to_iso(now - 23 * H - H // 2))
    metrics = (folder / "metrics" / "exporter.prom").read_text(encoding="utf-8")
    assert 'crypto_exporter_dataset_candles_missing{interval="1h",market="spot",symbol="BTCUSDT"} 2.0' in metrics
    assert 'crypto_exporter_dataset_candles_unconfirmed{interval="1h",market="spot",symbol="BTCUSDT"} 0.0' in metrics
    page = (folder / "status.html").read_text(encoding="utf-8")
    assert "BTCUSDT" in page and page.count('<svg class="spark"') == 2 and "no data" not in page  # from the periods
    (folder / ".dataset_footers.json").unlink()  # the cycle kept the footers it read; --health writes nothing
    console.print_status(manager.write_status(write=False), as_json=False)
    assert not (folder / ".dataset_footers.json").exists()
    out = capsys.readouterr().out
    assert "dataset: 2 series, 2 complete; 44 of 46 candles present, 2 missing" in out
    assert "files: 0" not in out  # the dataset layout keeps no rolling files: no line saying there are none
