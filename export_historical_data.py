"""Backfill: closed klines over a long look-back into one file per symbol."""

from crypto_data_export.commands.backfill_cmd import HistoricalDataExporter, main, run

__all__ = ["HistoricalDataExporter", "main"]

if __name__ == "__main__":
    run()
