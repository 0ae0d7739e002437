"""CSV, the guide's format: one header line, times as ISO-8601 UTC text,
prices and volumes exactly as the exchange sent them.

The rules a file must obey live in ``csv_rules``; ``csv_stream`` applies them
to a file fed piece by piece, ``csv_batch`` to many small files in one parse.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from crypto_data_export.core.atomic_io import atomic_output_at
from crypto_data_export.core.candles import CANDLE_COLUMNS, TIME_COLUMNS
from crypto_data_export.core.errors import InvalidDataError
from crypto_data_export.core.reading import iter_chunks, open_regular
from crypto_data_export.store.formats.base import Approval, CandleChunks, FileFormat, Verdict
from crypto_data_export.store.formats.csv_batch import validate_many
from crypto_data_export.store.formats.csv_rules import CSV_HEADER, check_bytes, format_utc_ms
from crypto_data_export.store.formats.csv_stream import SPLIT_BYTES, StreamCheck, check_stream
from crypto_data_export.store.validation import FileValidation

# Rows formatted as text at once when writing (bounds the text copy of a large chunk).
WRITE_ROWS = 50_000
# The checker of a file being written judges it in blocks this small (split in Python, no
# pandas parse): a backfill writes up to EXPORT_WORKERS files at once and each holds one block
# (peak RSS of 50 symbols x 1 year of 1h: 451 MB with 4 MB blocks, 244 MB with these).
WRITE_CHECK_BYTES = SPLIT_BYTES
# Above this many values times are formatted by numpy, vectorised, not looked up in the cache.
_CACHED_TIMES = 4096
# Recent candle times and their text (epoch ms -> CSV time), emptied when it grows past the limit.
_TIME_TEXTS: dict[int, str] = {}
_CACHE_LIMIT = 1 << 16


def frame_to_csv_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its times as text, ready for ``to_csv``."""
    rows = frame.loc[:, list(CANDLE_COLUMNS)].copy()
    for column in TIME_COLUMNS:
        rows[column] = format_utc_ms(rows[column].to_numpy())
    return rows


def csv_lines(frame: pd.DataFrame) -> str:
    """The frame's rows as CSV text, byte for byte what ``frame_to_csv_rows(frame).to_csv`` writes
    for candles (no header, LF line ends), at a fraction of its fixed cost per call.

    Joined directly, without quoting: a value holding a comma, quote or line
    break comes out as a broken row, which the stream checker every written
    byte goes through refuses, so such a file is never published (``to_csv``
    would have quoted it, and the checker refuses quoted values too).
    """
    if frame.empty:
        return ""
    columns: list[list[str]] = []
    for column in CANDLE_COLUMNS:
        values = frame[column].to_numpy()
        if column in TIME_COLUMNS:
            columns.append(utc_texts(values.astype("int64")))
        else:
            columns.append(list(map(str, values.tolist())))
    return "\n".join(map(",".join, zip(*columns, strict=True))) + "\n"


def utc_texts(values: np.ndarray) -> list[str]:
    """``format_utc_ms`` as a list, through a cache of recent times: every symbol of a cycle
    has the same candle times, so most are formatted once per run; the ones not cached are
    formatted together, in one vectorised call (a backfill's times are all new)."""
    if len(values) > _CACHED_TIMES:
        return list(format_utc_ms(values).tolist())
    cache = _TIME_TEXTS
    times: list[int] = values.tolist()
    found = [cache.get(ms) for ms in times]
    missing = [ms for ms, text in zip(times, found, strict=True) if text is None]
    if not missing:
        return [text for text in found if text is not None]
    fresh = dict(zip(missing, format_utc_ms(np.array(missing, dtype="int64")).tolist(), strict=True))
    if len(cache) > _CACHE_LIMIT:
        cache.clear()  # shared by threads: whole-dict operations only, no lookup after a check
    cache.update(fresh)
    return [text if text is not None else fresh[ms] for ms, text in zip(times, found, strict=True)]


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


def write_candles(target: Path, chunks: CandleChunks, interval: str, approve: Approval | None = None) -> FileValidation:
    """Write candle chunks to ``target`` atomically, only if they are valid; returns the verdict.

    Chunks are written as they come so a long backfill never sits whole in
    memory, and a large chunk (a year of reused candles) is formatted
    ``WRITE_ROWS`` rows at a time, so its text never sits whole either. Every
    byte written is also fed to ``StreamCheck``, the checker that judges
    files on disk, so the verdict is the one a scan would give this file.
    The file only appears (by rename) once every chunk is on disk, the
    verdict is valid and ``approve`` accepted it; otherwise the temp file is
    removed and ``InvalidDataError`` names the first bad candle.
    """
    parts = [chunks] if isinstance(chunks, pd.DataFrame) else chunks
    check = StreamCheck(interval, target, chunk_bytes=WRITE_CHECK_BYTES)
    with atomic_output_at(target) as (handle, temp):
        _write_checked(handle, check, CSV_HEADER + "\n")
        for chunk in parts:
            for start in range(0, len(chunk), WRITE_ROWS):
                part = chunk if len(chunk) <= WRITE_ROWS else chunk.iloc[start : start + WRITE_ROWS]  # a page: whole
                _write_checked(handle, check, csv_lines(part))
        handle.flush()  # so that a bad row can be read back from the temp file
        verdict = _verdict_of_written(check, target, temp)
        if approve is not None:
            approve(verdict)
    return verdict


def _write_checked(handle: IO[str], check: StreamCheck, text: str) -> None:
    check.feed(text.encode("utf-8"))
    handle.write(text)


def _verdict_of_written(check: StreamCheck, target: Path, temp: Path) -> FileValidation:
    """The checker's verdict on what was written; raises InvalidDataError unless valid."""
    finished = check.finish()
    if finished is None:  # a value carried a quote, CR or newline: not a layout we ever publish
        reason = f"a value breaks the CSV layout ({check.undecided_because})"
        raise InvalidDataError(f"new candles fail validation: {reason}; nothing was written")
    verdict = finished[0]
    if verdict.valid:
        return verdict
    where = ""
    if verdict.bad_row is not None:
        opened = _first_field_of_row(temp, verdict.bad_row)
        where = f" at the candle opening {opened}" if opened else ""
    raise InvalidDataError(f"new candles fail validation{where} ({verdict.reason}); nothing was written")


def _first_field_of_row(path: Path, row: int) -> str | None:
    """The open_time text of data row ``row`` (1-based) of a file we just wrote, streamed."""
    fd, _ = open_regular(path)
    try:
        line, seen = bytearray(), 0
        for piece in iter_chunks(fd):
            start = 0
            while True:
                end = piece.find(b"\n", start)
                if seen == row:  # the header is line 0
                    line += piece[start : end if end >= 0 else len(piece)]
                    if end >= 0 or len(line) > 4096:
                        return line[:4096].split(b",", 1)[0].decode("utf-8", "replace")
                if end < 0:
                    break
                seen, start = seen + 1, end + 1
    finally:
        os.close(fd)
    return None


class CsvFormat(FileFormat):
    name = "csv"
    suffix = ".csv"

    def write(
        self, target: Path, chunks: CandleChunks, interval: str, *, approve: Approval | None = None
    ) -> FileValidation:
        return write_candles(target, chunks, interval, approve)

    def read(self, path: Path) -> pd.DataFrame:
        """Lenient and unvalidated: the exporter itself reads previous files only
        through ``FileManager.newest_valid_export``, which validates them first."""
        return text_frame_to_candles(read_export_text(path))

    def read_closes(self, path: Path) -> list[float]:
        """The close column straight from the text: a status page reads one per series after
        every cycle, and a candle frame per file would cost more than the cycle's own writes."""
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines:
            return []
        index = lines[0].split(",").index("close")
        closes: list[float] = []
        for line in lines[1:]:
            fields = line.split(",")
            value = float(fields[index]) if len(fields) > index and fields[index] else math.nan
            if not math.isnan(value):
                closes.append(value)
        return closes

    def check_bytes(self, data: bytes, interval: str, path: Path, *, want_candles: bool = False) -> Verdict:
        # A small file through the stream checker, whose blocks skip pandas' parser (the same
        # verdict, tests compare them); a layout only the whole-file parser reads goes there.
        if len(data) <= SPLIT_BYTES:
            streamed = check_stream([data], interval, path, want_candles=want_candles)
            if streamed is not None:
                return streamed
        return check_bytes(data, interval, path, want_candles=want_candles)

    def stream_checker(self, interval: str, path: Path, *, want_candles: bool = False) -> StreamCheck:
        return StreamCheck(interval, path, want_candles=want_candles)

    def validate_many(self, items: Iterable[tuple[bytes, str, Path]]) -> list[FileValidation]:
        return validate_many(items)
