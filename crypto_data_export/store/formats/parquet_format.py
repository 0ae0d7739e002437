"""Parquet: the same columns as the CSV, typed, for pandas, polars and DuckDB.

Times are ``timestamp[ms, tz=UTC]``, trades int64, prices and volumes ``decimal128(38, 8)``:
the exchange sends (spot) exactly 8 decimals, and a quote volume such as
``123456789012.12345678`` has more significant digits than a double holds, so float64 would
silently change it; decimal128 keeps it exactly and pandas, polars and DuckDB read it. A value
with more than 8 decimals is refused (``InvalidDataError``), never rounded.

Each batch of rows is read back as the candle table and judged by the one rule book. Memory stays
bounded: fed bytes are spooled to a temporary file, the metadata (rows, row-group sizes) is
checked before any row is read, and rows are read in batches, whatever the row groups hold.
"""

from __future__ import annotations

import dataclasses
import io
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crypto_data_export.core.atomic_io import atomic_output_at
from crypto_data_export.core.candles import CANDLE_COLUMNS, CANDLE_SCHEMA, INTEGER_COLUMNS, TIME_COLUMNS, SeriesId
from crypto_data_export.core.errors import InvalidDataError, StorageError
from crypto_data_export.core.rules import column_problem
from crypto_data_export.store.formats.base import Approval, CandleBlocks, CandleChunks, FileFormat, Verdict
from crypto_data_export.store.validation import FileValidation

DECIMAL_SCALE = 8
DECIMAL_TYPE = pa.decimal128(38, DECIMAL_SCALE)
TIME_TYPE = pa.timestamp("ms", tz="UTC")
PARQUET_SCHEMA = pa.schema(
    [
        pa.field(
            column,
            TIME_TYPE if column in TIME_COLUMNS else pa.int64() if column == "number_of_trades" else DECIMAL_TYPE,
        )
        for column in CANDLE_COLUMNS
    ]
)
# Rows per row group when writing; rows per batch when judging (memory bounded whatever the groups).
WRITE_ROWS = 100_000
READ_BATCH_ROWS = 65_536
# Limits for files we judge or read: far beyond ours (a year of 1m candles is 525 600
# rows, ~30 MB), small enough that a forged footer cannot make us allocate gigabytes.
MAX_FILE_BYTES = 1 << 30
MAX_ROWS = 50_000_000
MAX_GROUP_ROWS = 1_000_000
MAX_GROUP_BYTES = 256 << 20
# A footer (the schema and row-group index) larger than this is no export of ours (ours: a few KB).
MAX_FOOTER_BYTES = 16 << 20
# Spooled in memory up to this, then in a temporary file (bounded memory whatever is fed).
SPOOL_MEMORY_BYTES = 8 << 20


class _Unreadable(Exception):
    """The bytes are not a Parquet file we can judge (the message says why)."""


def _table_of(chunk: pa.Table) -> pa.Table:
    """A candle table -> an Arrow table of ``PARQUET_SCHEMA``; raises InvalidDataError
    naming the first value that is not an exact decimal with at most 8 decimals."""
    arrays = [
        pc.cast(chunk.column(f.name), f.type) if f.name in INTEGER_COLUMNS else _decimals(chunk, f.name)
        for f in PARQUET_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=PARQUET_SCHEMA)


def _decimals(chunk: pa.Table, column: str) -> pa.ChunkedArray:
    try:
        return pc.cast(chunk.column(column), DECIMAL_TYPE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        why = _first_inexact(chunk, column)
        raise InvalidDataError(f"new candles fail validation: {why}; nothing was written") from exc


def _first_inexact(chunk: pa.Table, column: str) -> str:
    """Why a decimal column does not convert exactly, at its first bad candle (error path only)."""
    opens = chunk.column("open_time").to_pylist()
    for opened, value in zip(opens, chunk.column(column).to_pylist(), strict=True):
        try:
            pc.cast(pa.array([value], pa.string()), DECIMAL_TYPE)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            when = datetime.fromtimestamp((opened or 0) / 1000, tz=UTC).isoformat()
            return (
                f"{column} {str(value)[:40]!r} of the candle opening {when} is not a decimal "
                f"with at most {DECIMAL_SCALE} decimals (Parquet stores decimal128(38, {DECIMAL_SCALE}))"
            )
    return f"{column} does not fit decimal128(38, {DECIMAL_SCALE})"


def table_to_candles(table: pa.Table) -> pa.Table:
    """An Arrow table of ``PARQUET_SCHEMA`` -> the candle table (decimals as their 8-decimal text)."""
    return pa.Table.from_arrays([pc.cast(table.column(f.name), f.type) for f in CANDLE_SCHEMA], schema=CANDLE_SCHEMA)


def _schema_problem(schema: pa.Schema) -> str | None:
    problem = column_problem("schema", list(schema.names))
    if problem is not None:
        return problem
    for have_field, want_field in zip(schema, PARQUET_SCHEMA, strict=True):
        if not have_field.type.equals(want_field.type):
            return f"wrong schema: {have_field.name} is {have_field.type}, expected {want_field.type}"
    return None


def _check_footer_size(source: IO[bytes]) -> None:
    """The last 8 bytes are the footer's length and ``PAR1``: refuse a forged huge footer
    before pyarrow allocates it."""
    size = source.seek(0, os.SEEK_END)
    if size < 12:
        raise _Unreadable(f"not a readable Parquet file: {size} bytes, too short")
    source.seek(size - 8)
    tail = source.read(8)
    source.seek(0)
    footer = int.from_bytes(tail[:4], "little")
    if tail[4:] == b"PAR1" and footer > MAX_FOOTER_BYTES:
        raise _Unreadable(f"a {footer}-byte footer, more than the {MAX_FOOTER_BYTES} an export may have")


def _open(source: IO[bytes]) -> pq.ParquetFile:
    """Open and check the footer; raises _Unreadable for anything not judged row by row."""
    _check_footer_size(source)
    try:
        parquet = pq.ParquetFile(source)
        metadata = parquet.metadata
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError, TypeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _Unreadable(f"not a readable Parquet file: {first}"[:300]) from exc
    problem = _schema_problem(schema)
    if problem is not None:
        raise _Unreadable(problem)
    if metadata.num_rows > MAX_ROWS:
        raise _Unreadable(f"{metadata.num_rows} rows, more than the {MAX_ROWS} an export may hold")
    for index in range(metadata.num_row_groups):
        group = metadata.row_group(index)
        if group.num_rows > MAX_GROUP_ROWS or group.total_byte_size > MAX_GROUP_BYTES:
            raise _Unreadable(
                f"row group {index + 1} holds {group.num_rows} rows in {group.total_byte_size} bytes, "
                f"more than {MAX_GROUP_ROWS} rows or {MAX_GROUP_BYTES} bytes"
            )
    return parquet


def judge_parquet(source: IO[bytes], interval: str, path: Path, *, candles_from: int | None = None) -> Verdict:
    """The verdict on a Parquet file (never raises on bad content): the footer and schema
    first, then every batch of rows, in order, by the rule book (one batch held at a time)."""
    blocks = CandleBlocks(interval, path, candles_from=candles_from)
    try:
        parquet = _open(source)
        # By batches, not row groups: a valid file may hold one group of MAX_GROUP_ROWS rows.
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False):
            if blocks.breach is not None:
                break
            blocks.add(table_to_candles(pa.Table.from_batches([batch])))
    except _Unreadable as problem:
        return FileValidation(path, False, str(problem)), None
    except (pa.ArrowException, OSError, ValueError) as exc:  # a corrupt page past a sound footer
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return FileValidation(path, False, f"not a readable Parquet file: {first_line}"[:300]), None
    verdict = blocks.verdict(rows=parquet.metadata.num_rows)
    verdict[0].series = _series_of(parquet.schema_arrow.metadata or {})
    return verdict


def _series_of(metadata: dict[bytes, bytes]) -> SeriesId | None:
    """The series a file's key/value metadata names (None: it names none, as files written before it did)."""
    values = [metadata.get(field.name.encode(), b"").decode(errors="replace") for field in dataclasses.fields(SeriesId)]
    return SeriesId(*values) if all(values) else None


class ParquetStreamCheck:
    """Judges a Parquet file fed piece by piece: Parquet's footer is at the end, so the
    pieces are spooled (memory up to ``SPOOL_MEMORY_BYTES``, then a temporary file)
    and judged at ``finish``; past ``MAX_FILE_BYTES`` nothing more is kept."""

    def __init__(self, interval: str, path: Path, *, candles_from: int | None = None) -> None:
        self.interval, self.path, self.candles_from = interval, Path(path), candles_from
        self._spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
        self._size = 0

    def feed(self, piece: bytes) -> None:
        self._size += len(piece)
        if self._size <= MAX_FILE_BYTES:
            self._spool.write(piece)

    def finish(self) -> Verdict:
        try:
            if self._size > MAX_FILE_BYTES:
                reason = f"{self._size} bytes, more than the {MAX_FILE_BYTES} a Parquet export may hold"
                return FileValidation(self.path, False, reason), None
            self._spool.seek(0)
            return judge_parquet(self._spool, self.interval, self.path, candles_from=self.candles_from)
        finally:
            self._spool.close()


class ParquetFormat(FileFormat):
    name = "parquet"
    suffix = ".parquet"

    def write(
        self,
        target: Path,
        chunks: CandleChunks,
        interval: str,
        *,
        approve: Approval | None = None,
        series: SeriesId | None = None,
    ) -> FileValidation:
        """Each chunk is converted (exact decimals or ``InvalidDataError``) and written in row
        groups of ``WRITE_ROWS``; the finished temp file is then read back from disk by the
        checker that judges files in the folder, ``approve`` sees that verdict, and only then is
        the file fsynced and renamed (``atomic_output_at``). ``series`` goes in the key/value metadata."""
        parts = [chunks] if isinstance(chunks, pa.Table) else chunks
        schema = PARQUET_SCHEMA.with_metadata(dataclasses.asdict(series) if series else {})
        with atomic_output_at(target) as (handle, temp):
            assert isinstance(handle, io.TextIOWrapper)  # atomic_io opens text; Parquet writes its binary buffer
            with pq.ParquetWriter(handle.buffer, schema, compression="zstd") as writer:
                for chunk in parts:
                    for start in range(0, len(chunk), WRITE_ROWS):
                        writer.write_table(_table_of(chunk.slice(start, WRITE_ROWS)), row_group_size=WRITE_ROWS)
            handle.buffer.flush()
            with open(temp, "rb") as written:
                verdict = judge_parquet(written, interval, target)[0]
            if not verdict.valid:
                where = ""
                if verdict.bad_row is not None:
                    opened = pq.read_table(temp, columns=["open_time"]).column(0)[verdict.bad_row - 1].as_py()
                    where = f" at the candle opening {opened.isoformat()}"
                raise InvalidDataError(f"new candles fail validation{where} ({verdict.reason}); nothing was written")
            if approve is not None:
                approve(verdict)
        return verdict

    def read(self, path: Path) -> pa.Table:
        """Unvalidated (the exporter reuses files only through ``newest_valid_export``) but
        bounded: the size and footer are checked first."""
        size = os.stat(path).st_size
        if size > MAX_FILE_BYTES:
            raise StorageError(f"{path} is {size} bytes, more than the {MAX_FILE_BYTES} a Parquet export may hold")
        with open(path, "rb") as source:
            try:
                return table_to_candles(_open(source).read())
            except _Unreadable as problem:
                raise InvalidDataError(f"{path}: {problem}") from problem

    def read_closes(self, path: Path) -> list[float]:
        """The close column alone, batch by batch (a sparkline never holds the whole table)."""
        with open(path, "rb") as source:
            batches = _open(source).iter_batches(READ_BATCH_ROWS, columns=["close"], use_threads=False)
            texts = (pc.cast(batch.column(0), pa.string()).to_pylist() for batch in batches)  # exact, then float
            return [float(v) for text in texts for v in text if v is not None]

    def stream_checker(self, interval: str, path: Path, *, candles_from: int | None = None) -> ParquetStreamCheck:
        return ParquetStreamCheck(interval, path, candles_from=candles_from)
