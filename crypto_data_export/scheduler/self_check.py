"""The installation self-check's checks: each returns a one-line detail or raises CheckFailed."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from crypto_data_export.exchange.client import ExchangeClient
from crypto_data_export.pipeline.export_job import ExportJob
from crypto_data_export.pipeline.selection import resolve_plan, universe_rule
from crypto_data_export.settings.settings import Settings
from crypto_data_export.store.files import FileManager

MAX_SKEW_SECONDS = 5.0


class CheckFailed(Exception):
    """A check's one-line reason for failing."""


def check_settings(settings: Settings) -> str:
    rule = universe_rule(settings)
    chosen = f"{len(settings.symbols)} symbols" if rule is None else f"{rule.setting} + {len(settings.symbols)} listed"
    period = f"every {settings.export_period_hours:g} h"
    return f"{chosen}, interval {settings.kline_interval}, {period}, host {settings.base_url}"


def check_folder(settings: Settings) -> str:
    folder = settings.export_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".write-probe-"):
            pass
    except OSError as exc:
        raise CheckFailed(f"{folder} is not writable: {exc}; set EXPORT_DIR or fix permissions") from exc
    return f"{folder.resolve()} is writable"


def check_exchange(client: ExchangeClient) -> str:
    client.ping()
    client.sync_clock()  # the client's one measurement of the skew
    skew = client.clock_skew_seconds or 0.0
    if abs(skew) > MAX_SKEW_SECONDS:
        raise CheckFailed(
            f"clock skew {skew:+.1f} s against the exchange (limit {MAX_SKEW_SECONDS:g} s); "
            "closed candles follow the exchange's clock, but fix NTP on this machine"
        )
    return f"{client.base_url} answers; clock skew {skew:+.2f} s"


def check_export(settings: Settings, client: ExchangeClient) -> str:
    # With a symbol universe and nothing listed, the first symbol the universe selects now.
    plan = resolve_plan(settings, client, ()) if not settings.symbols else None
    if plan is not None and not plan.symbols:
        raise CheckFailed(plan.problem or "no symbols to export")
    symbol = plan.symbols[0] if plan is not None else settings.symbols[0]
    with tempfile.TemporaryDirectory(prefix="crypto-selfcheck-") as tmp:
        # One series is enough to prove the set-up: the first interval of this market.
        trial = replace(settings, export_dir=Path(tmp), symbols=(symbol,), kline_intervals=(settings.kline_interval,))
        files = FileManager.from_settings(trial)
        report = ExportJob(trial, files, client).run([symbol])
        (outcome,) = report.outcomes.values()
        if not outcome.ok or outcome.path is None:
            raise CheckFailed(f"{symbol}: {outcome.error}")
        validation = files.validate_file(Path(outcome.path))
        if not validation.valid:
            raise CheckFailed(f"{symbol}: the exported file is invalid: {validation.reason}")
    return f"{symbol}: {outcome.rows} closed candles exported and valid ({outcome.calls} calls)"
