"""freqtrade's own data loader on what ``file_manager.py export-freqtrade`` wrote (a check, not a
test: freqtrade is never a dependency of ours; install it in a venv of its own).

    python3 -m venv /tmp/ft-venv && /tmp/ft-venv/bin/pip install freqtrade
    python file_manager.py export-freqtrade --datadir /tmp/ft/binance
    python -m benchmarks.check_freqtrade --freqtrade-python /tmp/ft-venv/bin/python --datadir /tmp/ft/binance

In freqtrade's interpreter: every pair/timeframe ``ohlcv_get_available_data`` finds (spot and
futures), loaded by ``get_datahandler(datadir, format).ohlcv_load``; one line per pair. Exit 0 if
every pair loads non-empty with float64 prices, 1 if one does not, 0 with "skipped" when that
interpreter has no freqtrade.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

LOADER = r"""
import sys
from pathlib import Path
try:
    from freqtrade.data.history import get_datahandler
    from freqtrade.enums import TradingMode
except ImportError:
    print("skipped: no freqtrade in", sys.executable)
    sys.exit(0)
datadir, fmt = Path(sys.argv[1]), sys.argv[2]
handler = get_datahandler(datadir, fmt)
found = [p for mode in (TradingMode.SPOT, TradingMode.FUTURES) for p in handler.ohlcv_get_available_data(datadir, mode)]
bad = not found
for pair, timeframe, candle_type in found:
    df = handler.ohlcv_load(pair, timeframe, candle_type=candle_type)
    floats = all(str(df[c].dtype) == "float64" for c in ("open", "high", "low", "close", "volume"))
    bad |= df.empty or not floats
    span = "" if df.empty else f"{df['date'].iloc[0]} .. {df['date'].iloc[-1]}"
    print(f"{pair} {timeframe} {candle_type.value}: {len(df)} rows, date {df['date'].dtype}, float64 {floats}, {span}")
if not found:
    print("no pair found in", datadir)
sys.exit(1 if bad else 0)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--freqtrade-python", required=True, help="the interpreter of a venv with freqtrade")
    parser.add_argument("--datadir", required=True, help="the --datadir export-freqtrade wrote")
    parser.add_argument("--format", default="feather", choices=("feather", "parquet"))
    args = parser.parse_args()
    return subprocess.run([args.freqtrade_python, "-c", LOADER, args.datadir, args.format], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
