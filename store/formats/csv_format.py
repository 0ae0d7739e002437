"""CSV, the guide's format: one header line, times as ISO-8601 UTC text,
prices and volumes exactly as the exchange sent them.

The rules a file must obey live in ``csv_rules``; ``csv_stream`` applies them
to a file fed piece by piece, ``csv_batch`` to many small files in one parse.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic_io import atomic_output
from common.candles import CANDLE_COLUMNS, TIME_COLUMNS
from store.formats.base import CandleChunks, FileFormat, Verdict
from store.formats.csv_batch import validate_many
from store.formats.csv_rules import CSV_HEADER, check_bytes, format_utc_ms
from store.formats.csv_stream import StreamCheck
from store.validation import FileValidation

# Rows formatted as text at once when writing (bounds the text copy of a large chunk).
WRITE_ROWS = 50_000


def frame_to_csv_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its times as text, ready for ``to_csv``."""
    rows = frame.loc[:, list(CANDLE_COLUMNS)].copy()
    for column in TIME_COLUMNS:
        rows[column] = format_utc_ms(rows[column].to_numpy())
    return rows


def parse_utc_text(values: pd.Series) -> np.ndarray:
    """ISO-8601 UTC text -> epoch ms; raises ValueError on anything else."""
    parsed = pd.to_datetime(values, utc=True, format="ISO8601")
    return parsed.dt.as_unit("ms").astype("int64").to_numpy()


def text_frame_to_candles(text: pd.DataFrame) -> pd.DataFrame:
    """A CSV read as strings -> a candle frame (raises ValueError if a value does not parse)."""
    frame = text.copy()
    for column in TIME_COLUMNS:
        frame[column] = parse_utc_text(frame[column])
    frame["number_of_trades"] = pd.to_numeric(frame["number_of_trades"], errors="raise").astype("int64")
    return frame


def read_export_text(path: Path) -> pd.DataFrame:
    """Read an export CSV with every value kept as the exact string on disk."""
    return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, engine="c")


def write_candles(target: Path, chunks: CandleChunks) -> int:
    """Write candle chunks to ``target`` atomically; returns the rows written.

    Chunks are written as they come so a long backfill never sits whole in
    memory, and a large chunk (a year of reused candles) is formatted
    ``WRITE_ROWS`` rows at a time, so its text never sits whole either; the
    file only appears (by rename) once every chunk is on disk.
    """
    parts = [chunks] if isinstance(chunks, pd.DataFrame) else chunks
    rows = 0
    with atomic_output(target) as handle:
        handle.write(CSV_HEADER + "\n")
        for chunk in parts:
            for start in range(0, len(chunk), WRITE_ROWS):
                part = chunk.iloc[start : start + WRITE_ROWS]
                frame_to_csv_rows(part).to_csv(handle, header=False, index=False, lineterminator="\n")
            rows += len(chunk)
    return rows


class CsvFormat(FileFormat):
    name = "csv"
    suffix = ".csv"

    def write(self, target: Path, chunks: CandleChunks) -> int:
        return write_candles(target, chunks)

    def read(self, path: Path) -> pd.DataFrame:
        """Lenient and unvalidated: the exporter itself reads previous files only
        through ``FileManager.newest_valid_export``, which validates them first."""
        return text_frame_to_candles(read_export_text(path))

    def check_bytes(self, data: bytes, interval: str, path: Path, *, want_candles: bool = False) -> Verdict:
        return check_bytes(data, interval, path, want_candles=want_candles)

    def stream_checker(self, interval: str, path: Path, *, want_candles: bool = False) -> StreamCheck:
        return StreamCheck(interval, path, want_candles=want_candles)

    def validate_many(self, items: Iterable[tuple[bytes, str, Path]]) -> list[FileValidation]:
        return validate_many(items)
