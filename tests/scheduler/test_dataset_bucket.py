"""The dataset in a bucket (issue 25), written by a real cycle and read by the README's DuckDB lines for a
bucket as written, against a real S3-protocol server (the `s3` fixture's moto_server process), httpfs loaded offline."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from crypto_data_export.core.intervals import DAY_MS, HOUR_MS
from crypto_data_export.exchange.klines import rows_to_frame
from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange, generate_candle
from crypto_data_export.scheduler.manager import ScheduledDataManager
from crypto_data_export.settings.settings import load_settings
from tests.support import closed_opens

SYMBOLS = ("BTCUSDT", "ETHUSDT")
# The README's DuckDB block for a bucket (section "The dataset"): its endpoint, keys and bucket are the
# placeholders this test replaces with the fixture's; everything else runs as written.
_README_BLOCKS = (Path(__file__).resolve().parents[2] / "README.md").read_text().split("### The dataset\n", 1)[1]
README_BUCKET = next(b.split("```", 1)[0] for b in _README_BLOCKS.split("```python\n")[1:] if "CREATE SECRET" in b)
README_URL = re.search(r"s3://([^'*]+)/\*\*", README_BUCKET)


def _offline_duckdb() -> SimpleNamespace:
    """`duckdb` whose connections find httpfs in the PyPI package duckdb-ext-httpfs (its INSTALL downloads nothing)."""
    import duckdb
    import duckdb_ext

    folder = os.path.join(list(duckdb_ext.__path__)[0], "extensions")
    return SimpleNamespace(connect=lambda: duckdb.connect(config={"extension_directory": folder}))


def _fill_bucket(s3: Any, url: str, tmp_path: Path, now: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cycle of the sandbox's candles into the dataset in the bucket (DATASET_URL, the real cycle)."""
    for name, value in s3.env().items():  # the standard AWS variables, as the store reads them
        monkeypatch.setenv(name, value)
    env = {"EXPORT_DIR": str(tmp_path / "historical_exports"), "EXPORT_SYMBOLS": ",".join(SYMBOLS)}
    env |= {"EXPORT_LOOKBACK_DAYS": "1", "LOG_LEVEL": "WARNING", "EXPORT_LAYOUT": "dataset"}
    env |= {"DATASET_URL": url, "DATASET_ENDPOINT_URL": s3.endpoint}
    with SandboxExchange(SandboxConfig(now_ms=now)) as exchange:
        settings = load_settings({**env, "BINANCE_BASE_URL": exchange.base_url}, env_file=None)
        report = ScheduledDataManager(settings).run_cycle()
        assert report.exit_code == 0, [o.error for o in report.export.outcomes.values()]
    assert not (tmp_path / "historical_exports" / "dataset").exists()  # the periods are in the bucket only


def test_the_readme_duckdb_lines_read_every_candle_of_the_bucket_once(s3, tmp_path, monkeypatch):
    assert README_URL is not None, "the README's bucket block reads no s3://bucket/prefix/**"
    url = f"s3://{s3.bucket}/{README_URL.group(1).split('/', 1)[1]}"  # the README's prefix, the fixture's bucket
    now = int(time.time() * 1000) // HOUR_MS * HOUR_MS - 4 * HOUR_MS + HOUR_MS // 2
    _fill_bucket(s3, url, tmp_path, now, monkeypatch)
    # A lease (a dot-name beside the periods) and a file outside the prefix are no candles.
    s3.client().put_object(
        Bucket=s3.bucket, Key=f"{url.split('/', 3)[3]}/market=spot/interval=1h/symbol=BTCUSDT/.lease", Body=b"{}"
    )
    s3.client().put_object(
        Bucket=s3.bucket, Key="elsewhere/market=spot/interval=1h/symbol=BTCUSDT/2026.parquet", Body=b"x"
    )
    code = README_BUCKET.replace("'127.0.0.1:9000'", repr(s3.endpoint.removeprefix("http://")))
    code = re.sub(r"KEY_ID '[^']*'", f"KEY_ID '{s3.access_key}'", code)
    code = re.sub(r"SECRET '[^']*'", f"SECRET '{s3.secret_key}'", code).replace(
        f"s3://{README_URL.group(1)}/", f"{url}/"
    )
    found: dict[str, Any] = {"duckdb": _offline_duckdb()}
    exec(code, found)
    df = found["df"].sort_values(["symbol", "open_time"])
    opens = closed_opens("1h", now - DAY_MS, now)  # the cycle's window
    expected = rows_to_frame([generate_candle(s, "1h", t) for s in SYMBOLS for t in opens]).to_pandas()
    assert list(zip(df["symbol"].astype(str), df["interval"].astype(str), df["market"].astype(str), strict=True)) == [
        (s, "1h", "spot") for s in SYMBOLS for _ in opens
    ]
    assert [t.value // 1_000_000 for t in df["open_time"]] == [t for _ in SYMBOLS for t in opens]
    assert list(df["close"]) == [float(c) for c in expected["close"]]
