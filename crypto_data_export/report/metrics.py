"""Prometheus metrics from the status report (so the page, the JSON and the metrics agree): a textfile
for node_exporter (ours only: marked first line, never through a link) and a Pushgateway push."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest, push_to_gateway
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from crypto_data_export.core.atomic_io import atomic_output_at
from crypto_data_export.core.clock import from_iso
from crypto_data_export.core.errors import StorageError
from crypto_data_export.core.reading import open_regular
from crypto_data_export.report.status_page import series_of
from crypto_data_export.settings.settings import METRICS_OFF, Settings
from crypto_data_export.store.layout import ExportFolder

PREFIX = "crypto_exporter_"
MARKER = "# crypto-data-export metrics: rewritten by the exporter after each cycle; do not edit\n"
# Our files written before the marker existed start with our first metric's help line.
OUR_FIRST_LINES = (MARKER.encode(), b"# HELP " + PREFIX.encode())
SERIES_LABELS = ("symbol", "interval", "market")
# Per series: (key, metric name, help).
SERIES = (
    ("last", "last_candle_timestamp_seconds", "open time of the newest closed candle on disk (Unix seconds)"),
    ("rows", "series_rows", "candles in the newest file"),
    ("missing", "series_missing_candles", "candles missing inside the newest file"),
    ("valid", "series_valid", "1 if the newest file is valid, else 0"),
    ("fresh", "series_fresh", "1 if the newest candle is within the health check's freshness limit, else 0"),
    ("stale_after", "series_stale_after_seconds", "age of the newest candle (from its open) that makes it stale"),
)
# Per dataset series (EXPORT_LAYOUT=dataset): (key in the report's dataset entry, metric name, help).
DATASET = (
    ("expected", "dataset_candles_expected", "candles the grid holds from the series' first candle to its last write"),
    ("present", "dataset_candles_present", "candles stored in the dataset"),
    ("missing", "dataset_candles_missing", "candles missing in the dataset (gaps, absent periods)"),
    ("unconfirmed_missing", "dataset_candles_unconfirmed", "missing candles the exchange has not confirmed absent"),
    ("gap_ranges", "dataset_gap_ranges", "runs of missing candles in the dataset"),
    ("complete", "dataset_complete", "1 if every missing candle of the series is confirmed absent, else 0"),
)
# The last cycle's counters in the status report -> (metric name, help).
RUN_COUNTERS = {
    "calls": ("last_run_requests", "HTTP requests the last cycle sent to the exchange"),
    "weight": ("last_run_weight", "request weight the last cycle spent, by the exchange's published costs"),
    "rate_limited": ("last_run_rate_limited_responses", "HTTP 429 answers in the last cycle"),
    "banned": ("last_run_banned_responses", "HTTP 418 (IP ban) answers in the last cycle"),
    "files_removed": ("last_run_files_removed", "files the last cycle removed (retention, duplicates, temp)"),
    "files_quarantined": ("last_run_files_quarantined", "invalid files the last cycle moved to quarantine"),
}
# Moments in the status report -> (metric name, help); 0 when there is none.
MOMENTS = {
    "banned_until": ("ban_end_timestamp_seconds", "end of the exchange's IP ban (Unix seconds; 0 none)"),
    "timestamp": ("status_timestamp_seconds", "when this file was written (Unix seconds)"),
}


def metrics_path(settings: Settings) -> Path | None:
    """Where the metrics go: METRICS_FILE, by default EXPORT_DIR/metrics/exporter.prom; None when off."""
    if settings.metrics_file == METRICS_OFF:
        return None
    return Path(settings.metrics_file) if settings.metrics_file else ExportFolder(settings.export_dir).metrics_file


def _seconds(moment: Any) -> float | None:
    parsed = from_iso(moment)  # None for anything but ISO text
    return None if parsed is None else parsed.timestamp()


def _gauge(name: str, doc: str, value: float | None = None, labels: Sequence[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value, labels=labels)


class ReportCollector(Collector):
    """The metric families of one status report."""

    def __init__(self, report: Mapping[str, Any], interval: str) -> None:
        self.report, self.interval = report, interval

    def collect(self) -> Iterator[Metric]:
        yield from self._series()
        yield from self._dataset()
        yield from self._run()
        yield from self._service()

    def _series(self) -> Iterator[Metric]:
        families = {key: _gauge(name, doc, labels=SERIES_LABELS) for key, name, doc in SERIES}
        for key, entry in (self.report.get("symbols") or {}).items():
            labels = list(series_of(key, entry, self.interval))
            if (last := _seconds(entry.get("last_candle"))) is not None:
                families["last"].add_metric(labels, last)
                if (stale_after := _seconds(entry.get("stale_after"))) is not None:
                    families["stale_after"].add_metric(labels, stale_after - last)
            families["rows"].add_metric(labels, float(entry.get("rows") or 0))
            families["missing"].add_metric(labels, float(entry.get("missing_candles") or 0))
            families["valid"].add_metric(labels, 1.0 if entry.get("valid") else 0.0)
            families["fresh"].add_metric(labels, 1.0 if entry.get("fresh") else 0.0)
        yield from families.values()

    def _dataset(self) -> Iterator[Metric]:
        if "dataset" not in self.report:
            return
        families = [(key, _gauge(name, doc, labels=SERIES_LABELS)) for key, name, doc in DATASET]
        for key, entry in (self.report["dataset"].get("series") or {}).items():
            labels = list(series_of(key, entry, self.interval))
            for field, family in families:
                family.add_metric(labels, float(entry.get(field) or 0))
        yield from (family for _, family in families)

    def _run(self) -> Iterator[Metric]:
        last: Mapping[str, Any] = self.report.get("last_cycle") or {}
        for key, name in (("started", "start"), ("finished", "end")):
            if (moment := _seconds(last.get(key))) is not None:
                yield _gauge(f"last_run_{name}_timestamp_seconds", f"when the last cycle {key} (Unix seconds)", moment)
        if last.get("duration_seconds") is not None:
            yield _gauge("last_run_duration_seconds", "how long the last cycle took", float(last["duration_seconds"]))
        if (result := last.get("result")) is not None:
            yield _gauge("last_run_success", "1 if the last cycle's result was ok, else 0", float(result == "ok"))
            info = _gauge("last_run_result", "the last cycle's result as a label (always 1)", labels=["result"])
            info.add_metric([str(result)[:40]], 1.0)
            yield info
        for key, (name, doc) in RUN_COUNTERS.items():
            if key in last:
                yield _gauge(name, doc, float(last[key]))
        yield _gauge(
            "last_success_timestamp_seconds",
            "when the last cycle that exported at least one symbol ended (Unix seconds; 0 never)",
            _seconds(last.get("last_successful")) or 0.0,
        )

    def _service(self) -> Iterator[Metric]:
        system: Mapping[str, Any] = self.report.get("system_status") or {}
        health = (self.report.get("health") or {}).get("status")
        for key, (name, doc) in MOMENTS.items():
            yield _gauge(name, doc, _seconds(self.report.get(key)) or 0.0)
        healthy = _gauge("health", "1 for the current health status", labels=["status"])
        for status in ("healthy", "degraded", "down"):
            healthy.add_metric([status], 1.0 if health == status else 0.0)
        yield healthy
        yield CounterMetricFamily(
            PREFIX + "exports", "cycles that exported at least one symbol", value=float(system.get("export_count") or 0)
        )
        yield CounterMetricFamily(
            PREFIX + "cleanups", "cleanup passes run", value=float(system.get("cleanup_count") or 0)
        )
        period = float((self.report.get("configuration") or {}).get("export_interval_hours") or 0) * 3600
        yield _gauge("export_period_seconds", "EXPORT_PERIOD_HOURS: the time from one cycle to the next", period)
        stats: Mapping[str, Any] = self.report.get("file_statistics") or {}
        yield _gauge("files", "export files in the folder", float(stats.get("total_files") or 0))
        yield _gauge("files_size_bytes", "their size in bytes", float(stats.get("total_size_bytes") or 0))


def _registry(report: Mapping[str, Any], interval: str) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReportCollector(report, interval))
    return registry


def write_metrics(path: Path, report: Mapping[str, Any], interval: str) -> Path:
    """Write the report's metrics to ``path`` atomically (its folder is made if missing); StorageError
    if it or its folder is a link, or the file there is not ours."""
    if path.parent.is_symlink():
        raise StorageError(f"its folder {path.parent} is a symbolic link; point METRICS_FILE at the real folder")
    try:
        with open(open_regular(path)[0], "rb") as handle:
            ours = handle.read(len(MARKER)).startswith(OUR_FIRST_LINES)
    except FileNotFoundError:
        ours = True
    except OSError as exc:
        raise StorageError(f"it is a symbolic link or not a regular file ({exc.strerror or exc})") from exc
    if not ours:
        raise StorageError("no marker on its first line: another program's file; give METRICS_FILE a file of its own")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output_at(path) as (handle, _):
        os.fchmod(handle.fileno(), 0o644)  # node_exporter reads it as its own user
        handle.write(MARKER + generate_latest(_registry(report, interval)).decode("utf-8"))
    return path


def push_metrics(gateway: str, report: Mapping[str, Any], interval: str) -> None:
    """PUT the report's metrics to a Pushgateway, replacing the job's last push (4 s: a stop ends a run in 5 s)."""
    push_to_gateway(gateway, job="crypto_data_export", registry=_registry(report, interval), timeout=4)
