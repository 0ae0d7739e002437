"""Parquet: the candle columns typed for pandas, polars, DuckDB and freqtrade, plus who they belong to.

One schema for both layouts (the files layout's exports and the dataset's periods): times
``timestamp[ms, UTC]``, trades int64, prices and volumes float64 (what pandas, numpy and freqtrade
compute with; the exchange's text round-trips through a double), or with ``numbers="decimal"``
exact ``decimal128(18, 8)`` prices and ``decimal128(28, 8)`` volumes (narrow enough that
``close / open`` stays within Arrow's precision 38; a value that does not fit is refused
(``InvalidDataError``), never rounded), then ``symbol``, ``interval`` and ``market`` as
dictionary columns (a folder of files read as one table never mixes series). Rows are sorted by
open time, written with sorting metadata, statistics and the series' identity as key/value
metadata. Files of earlier versions (``decimal128(38, 8)``, no label columns) stay valid and readable.

Each batch of rows is read back as the candle table and judged by the one rule book. Memory stays
bounded: fed bytes are spooled to a temporary file, the metadata (rows, row-group sizes) is
checked before any row is read, and rows are read in batches, whatever the row groups hold.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import tempfile
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from crypto_data_export.core.atomic_io import atomic_output_at
from crypto_data_export.core.candles import CANDLE_COLUMNS, CANDLE_SCHEMA, INTEGER_COLUMNS, TIME_COLUMNS, SeriesId
from crypto_data_export.core.errors import InvalidDataError, StorageError
from crypto_data_export.core.rules import column_problem
from crypto_data_export.store.formats.base import Approval, CandleBlocks, CandleChunks, FileFormat, Verdict
from crypto_data_export.store.validation import FileValidation

SCHEMA_VERSION = "2"
DECIMAL_SCALE = 8
TIME_TYPE = pa.timestamp("ms", tz="UTC")
LABEL_TYPE = pa.dictionary(pa.int32(), pa.string())
LABEL_COLUMNS = ("symbol", "interval", "market")
PRICE_COLUMNS = ("open", "high", "low", "close")
# numbers -> (price type, volume type)
NUMBER_TYPES = {
    "float": (pa.float64(), pa.float64()),
    "decimal": (pa.decimal128(18, DECIMAL_SCALE), pa.decimal128(28, DECIMAL_SCALE)),
}


@functools.lru_cache(maxsize=8)
def parquet_schema(numbers: str = "float", *, labels: bool = True) -> pa.Schema:
    """The columns of our Parquet files (``labels``: with symbol, interval and market)."""
    price, volume = NUMBER_TYPES[numbers]

    def kind(column: str) -> Any:
        if column in INTEGER_COLUMNS:
            return TIME_TYPE if column in TIME_COLUMNS else pa.int64()
        return price if column in PRICE_COLUMNS else volume

    return pa.schema([(c, kind(c)) for c in CANDLE_COLUMNS] + [(c, LABEL_TYPE) for c in LABEL_COLUMNS if labels])


PARQUET_SCHEMA = parquet_schema()
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
# Decoding, encoding and judging in memory: one CPU fewer at a time than there are (thirty export workers doing
# it at once spent twice the CPU on hand-offs of the GIL; on 2 CPUs two at once cost a cycle of 400 appends 25 %
# more than one beside the interpreter's other threads); disk and network waits stay outside it.
CPU_BOUND = threading.BoundedSemaphore(max(1, (os.cpu_count() or 1) - 1))


Source = IO[bytes] | pa.NativeFile  # a file, or bytes in memory


class _Unreadable(Exception):
    """The bytes are not a Parquet file we can judge (the message says why)."""


def parquet_table(chunk: pa.Table, series: SeriesId | None = None, numbers: str = "float") -> pa.Table:
    """A candle table -> the Parquet columns (labelled with ``series`` if given): the one conversion of
    both layouts; raises InvalidDataError naming the first value that does not convert exactly."""
    schema = parquet_schema(numbers, labels=series is not None)
    arrays: list[Any] = [
        pc.cast(chunk.column(f.name), f.type) if f.name in INTEGER_COLUMNS else _numbers(chunk, f.name, f.type)
        for f in schema
        if f.name in CANDLE_COLUMNS
    ]
    if series is not None:
        indices = np.zeros(len(chunk), dtype=np.int32)
        labels = (series.symbol, series.interval, series.market)
        arrays += [pa.DictionaryArray.from_arrays(indices, pa.array([label], pa.string())) for label in labels]
    return pa.Table.from_arrays(arrays, schema=schema)


def _numbers(chunk: pa.Table, column: str, kind: pa.DataType) -> pa.ChunkedArray:
    values = chunk.column(column)  # text, or numbers read from a file: of another type through their text
    try:
        if values.type == kind:
            return values
        return pc.cast(values if values.type == pa.string() else pc.cast(values, pa.string()), kind)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        why = _first_inexact(chunk, column, kind)
        raise InvalidDataError(f"new candles fail validation: {why}; nothing was written") from exc


def _first_inexact(chunk: pa.Table, column: str, kind: pa.DataType) -> str:
    """Why a number column does not convert exactly, at its first bad candle (error path only)."""
    opens = chunk.column("open_time").to_pylist()
    for opened, value in zip(opens, chunk.column(column).to_pylist(), strict=True):
        try:
            pc.cast(pa.array([value], pa.string()), kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            when = datetime.fromtimestamp((opened or 0) / 1000, tz=UTC).isoformat()
            return f"{column} {str(value)[:40]!r} of the candle opening {when} does not fit {kind} exactly"
    return f"{column} does not fit {kind}"


def table_to_candles(table: pa.Table) -> pa.Table:
    """Our Parquet columns -> the candle table (decimals as their 8-decimal text, floats as the shortest
    text that reads back as the same double)."""
    return pa.Table.from_arrays([pc.cast(table.column(f.name), f.type) for f in CANDLE_SCHEMA], schema=CANDLE_SCHEMA)


def numeric_candles(table: pa.Table) -> pa.Table:
    """Our Parquet columns -> the candle columns as stored (times as int64 ms, numbers not turned
    into text): what the rule book judges and a dataset merges, with no text round trip."""
    columns = [pc.cast(table.column(c), pa.int64()) if c in TIME_COLUMNS else table.column(c) for c in CANDLE_COLUMNS]
    return pa.Table.from_arrays(columns, names=list(CANDLE_COLUMNS))


def _schema_problem(schema: pa.Schema) -> str | None:
    """None for our schema: either number type, labels or none (the files of earlier versions)."""
    names = list(schema.names)
    labelled = names[len(CANDLE_COLUMNS) :] == list(LABEL_COLUMNS)
    problem = column_problem("schema", names[: len(CANDLE_COLUMNS)] if labelled else names)
    if problem is not None:
        return problem
    for have in schema:
        want = PARQUET_SCHEMA.field(have.name).type
        number = pa.types.is_floating(want) and (
            have.type == pa.float64() or pa.types.is_decimal(have.type) and have.type.scale == DECIMAL_SCALE
        )
        if not (have.type.equals(want) or number):
            return f"wrong schema: {have.name} is {have.type}, expected {want}"
    return None


def _check_footer_size(source: Source) -> int:
    """The last 8 bytes are the footer's length and ``PAR1``: refuse a forged huge footer
    before pyarrow allocates it. Returns the size."""
    # (pyarrow's GCS file reads from where it seeks: the end is out of range)
    size = source.size() if isinstance(source, pa.NativeFile) else source.seek(0, os.SEEK_END)
    if size < 12:
        raise _Unreadable(f"not a readable Parquet file: {size} bytes, too short")
    source.seek(size - 8)
    tail = source.read(8)
    source.seek(0)
    footer = int.from_bytes(tail[:4], "little")
    if tail[4:] == b"PAR1" and footer > MAX_FOOTER_BYTES:
        raise _Unreadable(f"a {footer}-byte footer, more than the {MAX_FOOTER_BYTES} an export may have")
    return size


def _open(source: Source, *, whole: bool = False) -> pq.ParquetFile:
    """Open and check the footer; raises _Unreadable for anything not judged row by row. ``whole``: a
    small file is read at once (pyarrow then decodes it without calling back into Python for its bytes)."""
    if _check_footer_size(source) <= SPOOL_MEMORY_BYTES and whole and not isinstance(source, pa.NativeFile):
        source = pa.BufferReader(source.read())
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


def read_footer(path: Path, source: IO[bytes] | None = None) -> pq.FileMetaData:
    """The footer of one of our Parquet files (read from ``source`` if given), its schema checked, no row
    read; raises InvalidDataError."""
    with open(path, "rb") if source is None else contextlib.nullcontext(source) as opened:
        try:
            return _open(opened).metadata
        except _Unreadable as problem:
            raise InvalidDataError(f"{path.name}: {problem}") from problem


def judge_parquet(
    source: Source,
    interval: str,
    path: Path,
    *,
    candles_from: int | None = None,
    numeric: bool = False,
    judged: bool = False,
) -> Verdict:
    """The verdict on a Parquet file (never raises on bad content): the footer and schema
    first, then every batch of rows, in order, by the rule book (one batch held at a time, its
    numbers judged as stored). The candles kept are the candle table (``numeric``: ``numeric_candles``).
    ``judged``: these very bytes passed the rule book before (the caller knows): only decoded, all at once."""
    blocks = CandleBlocks(interval, path, candles_from=candles_from)
    try:
        parquet = _open(source, whole=True)
        if judged:  # (the verdict says no more than that: the caller has the rest)
            whole = numeric_candles(parquet.read(use_threads=False))
            return FileValidation(path, True, None, len(whole)), whole if numeric else table_to_candles(whole)
        # By batches, not row groups: a valid file may hold one group of MAX_GROUP_ROWS rows.
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, use_threads=False):
            if blocks.breach is not None:
                break
            blocks.add(numeric_candles(pa.Table.from_batches([batch])))
    except _Unreadable as problem:
        return FileValidation(path, False, str(problem)), None
    except (pa.ArrowException, OSError, ValueError) as exc:  # a corrupt page past a sound footer
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return FileValidation(path, False, f"not a readable Parquet file: {first_line}"[:300]), None
    verdict, candles = blocks.verdict(rows=parquet.metadata.num_rows)
    verdict.series = _series_of(parquet.schema_arrow.metadata or {})
    return verdict, candles if candles is None or numeric else table_to_candles(candles)


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

    def __init__(self, numbers: str = "float") -> None:
        if numbers not in NUMBER_TYPES:
            raise ValueError(f"numbers must be one of {sorted(NUMBER_TYPES)}, not {numbers!r}")
        self.numbers = numbers

    def write(
        self,
        target: Path,
        chunks: CandleChunks,
        interval: str,
        *,
        approve: Approval | None = None,
        series: SeriesId | None = None,
        metadata: Mapping[str, str] | None = None,
        compression: Literal["zstd", "none"] = "zstd",
        checked: bool = False,
    ) -> FileValidation:
        """Each chunk is converted (``parquet_table``) and written in row groups of ``WRITE_ROWS``,
        sorted by open time; the finished file is then read back (from the very bytes written) by the
        checker that judges files in the folder, ``approve`` sees that verdict, and only then is the file
        fsynced and renamed (``atomic_output_at``). ``series`` and ``metadata`` go in the key/value metadata;
        ``compression``: zstd (smallest) or none (a file rewritten every cycle: written and read 3x faster).
        ``checked``: a table whose every candle and order the caller has judged by the rule book (a dataset's
        merge): the bytes are read back and must decode to exactly the table encoded."""
        parts = [chunks] if isinstance(chunks, pa.Table) else chunks
        keys = {**(vars(series) if series else {}), **(metadata or {})}  # (asdict deep-copies: slower)
        keys |= {"cdx_schema_version": SCHEMA_VERSION, "cdx_numbers": self.numbers}
        schema = parquet_schema(self.numbers, labels=series is not None).with_metadata(keys)
        sorting = [pq.SortingColumn(0)]
        labels = list(LABEL_COLUMNS)  # dictionaries for the labels only: numbers write faster and smaller without

        def encode(sink: Any) -> pa.Table | None:
            table = None
            with pq.ParquetWriter(
                sink,
                schema,
                compression=compression,
                sorting_columns=sorting,
                use_dictionary=labels,  # type: ignore[arg-type]
                write_statistics=list(TIME_COLUMNS),  # what readers filter on; each other column costs
                column_encoding=dict.fromkeys(INTEGER_COLUMNS, "DELTA_BINARY_PACKED"),  # a grid: a fifth fewer bytes
            ) as writer:
                for chunk in parts:
                    for start in range(0, len(chunk), WRITE_ROWS):
                        table = parquet_table(chunk.slice(start, WRITE_ROWS), series, self.numbers)
                        writer.write_table(table, row_group_size=WRITE_ROWS)
            return table  # (the last group's: a checked table's only one)

        # A table already in memory is encoded and judged in memory, then those very bytes written and fsynced;
        # streamed chunks (a long backfill) go to disk and are read back from it.
        data = None
        if isinstance(chunks, pa.Table):
            with CPU_BOUND:
                table = encode(sink := pa.BufferOutputStream())
                data = sink.getvalue()
                if checked and len(chunks) <= WRITE_ROWS:
                    decoded = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
                    same = table is not None and bool(decoded.equals(table))
                    verdict = FileValidation(target, same, None if same else "the bytes read back differ", len(chunks))
                else:
                    verdict = judge_parquet(pa.BufferReader(data), interval, target)[0]
        with atomic_output_at(target) as (handle, temp):
            assert isinstance(handle, io.TextIOWrapper)  # atomic_io opens text; Parquet writes its binary buffer
            if data is None:
                encode(handle.buffer)
                handle.buffer.flush()
                with open(temp, "rb") as source:
                    verdict = judge_parquet(source, interval, target)[0]
            else:
                handle.buffer.write(data)
                handle.buffer.flush()
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
