"""``export-freqtrade``: every series of the export folder as freqtrade's own data file, which
``freqtrade backtesting`` loads as it is.

Names as freqtrade's ``IDataHandler._pair_data_filename``: ``BTC_USDT-1h.feather``; USD-M futures
``futures/BTC_USDT_USDT-1h-futures.feather`` (pair ``BTC/USDT:USDT``); ``1M`` is ``1Mo``. Columns
``date`` (timestamp[ms, UTC]), ``open, high, low, close, volume`` (float64 of the exchange's text),
sorted, one row per open time. A symbol is split at the longest known quote asset it ends with (the
folder does not keep base/quote assets); one ending in none is refused before anything is written.
Each series replaces only its own pair/timeframe file, atomically; one series is held at a time.
"""

from __future__ import annotations

import functools
import io
import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crypto_data_export.core.atomic_io import atomic_output_at
from crypto_data_export.core.candles import SeriesId, first_open_ms, last_open_ms
from crypto_data_export.core.errors import InvalidDataError
from crypto_data_export.settings.market_names import SPOT
from crypto_data_export.settings.settings import Settings, SettingsError
from crypto_data_export.store.dataset import Dataset, read_period_info
from crypto_data_export.store.files import FileManager
from crypto_data_export.store.listing import scan_exports

logger = logging.getLogger(__name__)

FREQTRADE_FORMATS = ("feather", "parquet")  # feather first: freqtrade's default
# Binance's quote assets, longest first (so BTCFDUSD is BTC/FDUSD, not BTCF/DUSD).
_QUOTES = "USDT USDC FDUSD TUSD BUSD USDP DAI USD1 BTC ETH BNB XRP TRX DOGE TRY EUR AEUR EURI BRL ARS BIDR IDRT JPY"
QUOTE_ASSETS = sorted(f"{_QUOTES} MXN COP CZK NGN PLN RON RUB UAH ZAR GBP AUD".split(), key=len, reverse=True)
PRICES = ("open", "high", "low", "close", "volume")
FREQTRADE_SCHEMA = pa.schema(
    [(c, pa.float64() if c in PRICES else pa.timestamp("ms", tz="UTC")) for c in ("date", *PRICES)]
)
Candles = Callable[[], Iterator[pa.Table]]  # one series' candles, oldest first, chunk by chunk


@dataclass(frozen=True)
class PairFile:
    """One series written (``rows`` 0: it had no valid candle and nothing was written)."""

    series: SeriesId
    path: Path
    rows: int = 0
    first_ms: int = 0
    last_ms: int = 0
    replaced: bool = False


def freqtrade_path(datadir: Path, symbol: str, interval: str, market: str, file_format: str) -> Path:
    """freqtrade's file of this series under ``datadir``; SettingsError if ``symbol`` ends with no known quote."""
    quote = next((q for q in QUOTE_ASSETS if symbol.endswith(q) and len(symbol) > len(q)), None)
    if quote is None:
        raise SettingsError(
            f"cannot name {symbol} for freqtrade: it ends with no known quote ({' '.join(QUOTE_ASSETS)})"
        )
    pair = f"{symbol[: -len(quote)]}_{quote}"  # pair_to_filename("BTC/USDT") = "BTC_USDT"
    timeframe = interval.replace("M", "Mo")
    if market == SPOT:
        return datadir / f"{pair}-{timeframe}.{file_format}"
    return datadir / "futures" / f"{pair}_{quote}-{timeframe}-futures.{file_format}"


def export_sources(settings: Settings) -> tuple[str, list[tuple[SeriesId, Candles]]]:
    """The layout read and every series of the settings' market in it: the dataset (every period) with
    ``EXPORT_LAYOUT=dataset`` or once it exists (it holds the history), else the files layout (each series' newest
    valid file, by content: a file naming another exchange host or series is skipped, nothing is moved)."""
    dataset = Dataset.from_settings(settings, writes=False)
    if settings.export_layout == "dataset" or dataset.store.remote or dataset.root.is_dir():
        series = [s for s in dataset.all_series() if s.market == dataset.market]  # another market: another host
        return "dataset", [(s, functools.partial(_dataset_candles, dataset, s)) for s in series]
    files = FileManager.from_settings(settings)
    found = sorted({(f.symbol, f.interval) for f in scan_exports(files.export_dir, market=files.market)})
    series_files = [(files.for_interval(interval), symbol) for symbol, interval in found]
    return "files", [(f.series_of(symbol), functools.partial(_file_candles, f, symbol)) for f, symbol in series_files]


def _dataset_candles(dataset: Dataset, series: SeriesId) -> Iterator[pa.Table]:
    for path in (p for p, _ in dataset.store.files(dataset.series_folder(series)) if p.suffix == ".parquet"):
        info = read_period_info(path, dataset.store)  # a foreign period is left where it is: this command only reads
        if info is None or info.series != series or path != dataset.period_path(series, info.start_ms):
            named = info.series if info else "no period"
            logger.warning("not exported: %s names %s, not %s (BINANCE_BASE_URL?)", path, named, series)
        elif (period := dataset.read_period(series, info.start_ms)) is not None:
            yield period


def _file_candles(files: FileManager, symbol: str) -> Iterator[pa.Table]:
    kept = files.newest_valid_export(symbol, quarantine=False)
    yield from [kept.candles] if kept is not None else []


def export_freqtrade(
    sources: Iterable[tuple[SeriesId, Candles]], datadir: Path, file_format: str = "feather"
) -> list[PairFile]:
    """Write each series as freqtrade's file under ``datadir`` (created if missing, as freqtrade
    does); every name is checked before the first file is written."""
    if datadir.exists() and not datadir.is_dir():
        raise SettingsError(f"--datadir {datadir} is not a folder")
    planned = [(s, freqtrade_path(datadir, s.symbol, s.interval, s.market, file_format), c) for s, c in sources]
    return [_write(series, path, candles(), file_format) for series, path, candles in planned]


def _write(series: SeriesId, path: Path, chunks: Iterator[pa.Table], file_format: str) -> PairFile:
    chunks = (c for c in chunks if c.num_rows)
    first = next(chunks, None)
    if first is None:  # freqtrade's file, if any, is left as it is
        return PairFile(series, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    replaced, rows, last_ms = path.exists(), 0, first_open_ms(first) - 1
    with atomic_output_at(path) as (handle, _):
        assert isinstance(handle, io.TextIOWrapper)  # atomic_io opens text; both formats write its binary buffer
        writer: pq.ParquetWriter | pa.RecordBatchFileWriter
        if file_format == "parquet":
            writer = pq.ParquetWriter(handle.buffer, FREQTRADE_SCHEMA, compression="zstd")
        else:  # Feather V2 is the Arrow IPC file format; lz4 as freqtrade writes it
            options = pa.ipc.IpcWriteOptions(compression="lz4")
            writer = pa.ipc.new_file(handle.buffer, FREQTRADE_SCHEMA, options=options)
        with writer:
            for candles in itertools.chain([first], chunks):
                if first_open_ms(candles) <= last_ms:  # sources are sorted: a bug, never a silent mix
                    raise InvalidDataError(f"{series.symbol} {series.interval}: candles out of order")
                last_ms, rows = last_open_ms(candles), rows + candles.num_rows
                ohlcv = candles.select(["open_time", *PRICES]).rename_columns(FREQTRADE_SCHEMA.names)
                writer.write_table(ohlcv.cast(FREQTRADE_SCHEMA))  # text -> float64: the exact cast
    return PairFile(series, path, rows, first_open_ms(first), last_ms, replaced)
