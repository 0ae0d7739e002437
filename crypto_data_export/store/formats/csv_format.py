"""CSV, the guide's format: one header line, times as ISO-8601 UTC text, prices and volumes exactly as the
exchange sent them.

Files are read and checked in blocks of whole lines by ``pyarrow.csv`` (every column as text: the decimals stay
the exchange's strings), or split by hand if small and in exactly the text written here (``SPLIT_BYTES``), each
block turned into the candle table and judged by the rule book. The CSV's own thin layer on top: the exact
header, UTF-8 without NUL, 11 fields per line, times as UTC text in whole milliseconds.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import re
from pathlib import Path
from typing import IO, Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from crypto_data_export.core.atomic_io import atomic_output_at
from crypto_data_export.core.candles import (
    CANDLE_COLUMNS,
    CANDLE_SCHEMA,
    TIME_COLUMNS,
    SeriesId,
    candle_frame,
    empty_candle_frame,
    format_utc_ms,
    utc_text,
)
from crypto_data_export.core.errors import InvalidDataError
from crypto_data_export.core.rules import Breach, column_problem, shown
from crypto_data_export.store.formats.base import Approval, CandleBlocks, CandleChunks, FileFormat, Verdict
from crypto_data_export.store.validation import FileValidation

CSV_HEADER = ",".join(CANDLE_COLUMNS)
# Whole lines parsed at once when checking: bounds the memory of one file's check.
BLOCK_BYTES = 4 << 20
# A file being written is checked in smaller blocks: a backfill writes up to EXPORT_WORKERS files at once and each
# holds one block (peak RSS of 50 symbols x 1 y of 1h: 451 MB with 4 MB blocks, 244 MB with 256 KB ones).
WRITE_CHECK_BYTES = 256 << 10
LINE_LIMIT = 1 << 20  # no line of ours comes near this
# Rows formatted as text at once when writing (bounds the text copy of a large chunk); smaller
# chunks (REST pages of 1000) are gathered up to GATHER_ROWS first: formatting costs ~1 ms a call
# whatever the size (a year of 1m from REST: 1.2 s less CPU than page by page).
WRITE_ROWS, GATHER_ROWS = 50_000, 8192
JOIN_ROWS = 256  # up to this many rows, joined in Python (see _joined_lines)
UTC_SUFFIXES = ("+00:00", "Z")
_TIME_TYPE = pa.timestamp("ms", tz="UTC")
# Blocks up to this size, in the exact text ``csv_lines`` writes, are split by hand: one ``read_csv`` call costs
# ~0.35 ms whatever the size, half the check of a 48-row file, and a cycle checks every file it reads or writes
# (cleanup of 10 000 such files: 7.7 s -> 4.2 s, python -m benchmarks.bench_files). Anything else goes to pyarrow,
# which decides; a test (tests/store/test_csv_validation.py) mutates real lines and compares the two readings.
SPLIT_BYTES = 64 << 10
_CANONICAL_TIMES = re.compile(r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?\+00:00\n)*")
_WRITE = pacsv.WriteOptions(include_header=False, quoting_style="none")
# pyarrow's reader, one thread, 1 MB blocks: measured on a year of 1m (60 MB, 2 busy cores)
# 0.21 s against 0.6 s with 4 MB blocks and more with threads.
_READ = pacsv.ReadOptions(column_names=list(CANDLE_COLUMNS), block_size=1 << 20, use_threads=False)
_PARSE = pacsv.ParseOptions(quote_char=False, double_quote=False, escape_char=False, ignore_empty_lines=False)
# Every column as text (exact, and the way to find which value a typed read refused) ...
_TEXT = pacsv.ConvertOptions(column_types=dict.fromkeys(CANDLE_COLUMNS, pa.string()), strings_can_be_null=False)
# ... or trades typed by the reader straight away (the times' text is checked before it is parsed).
_TYPED = pacsv.ConvertOptions(
    column_types={**dict.fromkeys(CANDLE_COLUMNS, pa.string()), "number_of_trades": pa.int64()},
    strings_can_be_null=False,
)

# --- writing ------------------------------------------------------------------------


def csv_lines(candles: pa.Table) -> str:
    """The candles as CSV rows (no header, LF line ends), the decimals exactly as held, times
    as UTC text. It does not quote: a value holding a comma, quote or line break is refused
    (``InvalidDataError``), so such a file is never published."""
    if candles.num_rows == 0:
        return ""
    if candles.num_rows <= JOIN_ROWS and not any(column.null_count for column in candles.columns):
        return _joined_lines(candles)
    text = candles.select(list(CANDLE_COLUMNS))
    for column in TIME_COLUMNS:
        times = utc_text(np.asarray(text.column(column).to_numpy(), dtype="int64"))
        text = text.set_column(text.schema.get_field_index(column), column, times)
    sink = pa.BufferOutputStream()
    try:
        pacsv.write_csv(text, sink, _WRITE)
    except pa.ArrowInvalid as exc:  # a value holding a comma, a quote or a line break
        raise InvalidDataError(f"new candles fail validation ({exc}); nothing was written") from exc
    return sink.getvalue().to_pybytes().decode("utf-8")


def _joined_lines(candles: pa.Table) -> str:
    """``csv_lines`` of a small table, joined in Python: ``write_csv`` costs ~0.2 ms whatever
    the size, and a cycle writes one 48-row file per symbol (this: 0.09 ms)."""
    columns = [_column_texts(candles[c], c) for c in CANDLE_COLUMNS]
    text = "".join(",".join(row) + "\n" for row in zip(*columns, strict=True))
    rows = candles.num_rows
    if text.count(",") != rows * (len(CANDLE_COLUMNS) - 1) or text.count("\n") != rows or '"' in text or "\r" in text:
        what = "a value holds a comma, a quote or a line break"
        raise InvalidDataError(f"new candles fail validation ({what}); nothing was written")
    return text


def _column_texts(values: pa.ChunkedArray, column: str) -> list[Any]:
    """One column of a null-free table as the text its CSV cells hold."""
    if column in TIME_COLUMNS:
        return format_utc_ms(values.to_numpy()).tolist()
    return [str(v) for v in values.to_pylist()] if column == "number_of_trades" else values.to_pylist()


def write_candles(target: Path, chunks: CandleChunks, interval: str, approve: Approval | None = None) -> FileValidation:
    """``FileFormat.write`` for CSV: chunks are written as they come, ``WRITE_ROWS`` rows at a
    time, and every byte is fed to ``CsvCheck`` (the checker of files on disk) on its way."""
    parts = [chunks] if isinstance(chunks, pa.Table) else chunks
    check = CsvCheck(interval, target, block_bytes=WRITE_CHECK_BYTES)
    with atomic_output_at(target) as (handle, _):
        _write_checked(handle, check, CSV_HEADER + "\n")
        held: list[pa.Table] = []
        for chunk in itertools.chain(parts, [None]):  # None: the end, write what is held
            held += [] if chunk is None else [chunk]
            while (rows := sum(table.num_rows for table in held)) >= GATHER_ROWS or (chunk is None and rows):
                gathered = pa.concat_tables(held)
                _write_checked(handle, check, csv_lines(gathered.slice(0, WRITE_ROWS)))
                held = [gathered.slice(WRITE_ROWS)]
        verdict = check.finish()[0]
        if not verdict.valid:
            opened = check.blocks.breach_open_ms
            where = "" if opened is None else f" at the candle opening {format_utc_ms(np.array([opened]))[0]}"
            raise InvalidDataError(f"new candles fail validation{where} ({verdict.reason}); nothing was written")
        if approve is not None:
            approve(verdict)
    return verdict


def _write_checked(handle: IO[str], check: CsvCheck, text: str) -> None:
    data = text.encode("utf-8")
    for start in range(0, len(data), WRITE_CHECK_BYTES):  # one block in memory at a time
        check.feed(data[start : start + WRITE_CHECK_BYTES])
    handle.write(text)


# --- reading and checking --------------------------------------------------------------


class _Refused(Exception):
    """A block breaks a CSV text rule; ``breach`` says where and why."""

    def __init__(self, breach: Breach) -> None:
        super().__init__(str(breach))
        self.breach = breach


def _zero_copy(block: memoryview | bytes) -> IO[bytes]:
    """The block as a file pyarrow reads in place (``io.BytesIO`` of a memoryview would copy it)."""
    return cast(IO[bytes], pa.BufferReader(block))  # a NativeFile: typed by the stubs as a path or IO only


def read_block(block: memoryview | bytes, first_row: int = 1) -> pa.Table:
    """Whole lines -> the candle table; _Refused at the first value the CSV layer refuses."""
    split = split_canonical(block)
    return read_with_pyarrow(block, first_row) if split is None else split


def read_with_pyarrow(block: memoryview | bytes, first_row: int = 1) -> pa.Table:
    """``read_block`` by ``pyarrow.csv``: any block, and the judge of everything ``split_canonical``
    declines (trades typed by the reader; if it refuses one, read again as text to name the row)."""
    try:
        text = pacsv.read_csv(_zero_copy(block), read_options=_READ, parse_options=_PARSE, convert_options=_TYPED)
    except pa.ArrowInvalid:
        text = _text_table(block, first_row)
    return text_to_candles(text, first_row)


def split_canonical(block: memoryview | bytes) -> pa.Table | None:
    """A small block of canonical lines (ASCII, LF, 11 fields, digits for trades, times as
    written) -> the candle table, exactly as pyarrow would read it; None for anything else."""
    if len(block) > SPLIT_BYTES or not block:
        return None
    try:
        text = bytes(block).decode("ascii")
    except UnicodeDecodeError:
        return None
    rows = [line.split(",") for line in text.split("\n")[:-1]]
    if "\r" in text or not text.endswith("\n") or any(len(row) != len(CANDLE_COLUMNS) for row in rows):
        return None  # (pyarrow also ends a line at a lone CR)
    columns: dict[str, Any] = dict(zip(CANDLE_COLUMNS, zip(*rows, strict=True), strict=True))
    if not all(columns["number_of_trades"]) or not "".join(columns["number_of_trades"]).isdigit():
        return None
    for column in TIME_COLUMNS:
        if not _CANONICAL_TIMES.fullmatch("\n".join(columns[column]) + "\n"):
            return None
    try:  # numpy parses the digits and refuses what pyarrow refuses (month 13, 24:00, > int64)
        for column in TIME_COLUMNS:
            columns[column] = np.array([value[:-6] for value in columns[column]], "datetime64[ms]").astype(np.int64)
        columns["number_of_trades"] = np.array(columns["number_of_trades"], np.int64)
    except (ValueError, OverflowError):
        return None
    return candle_frame(columns)


def _text_table(block: memoryview | bytes, first_row: int) -> pa.Table:
    """Whole lines -> every column as text; _Refused names a line without 11 fields."""
    try:
        return pacsv.read_csv(_zero_copy(block), read_options=_READ, parse_options=_PARSE, convert_options=_TEXT)
    except pa.ArrowInvalid as exc:
        for number, line in enumerate(bytes(block).split(b"\n")[:-1]):  # error path only: which line
            fields = line.count(b",") + 1
            if fields != len(CANDLE_COLUMNS):
                raise _Refused(
                    Breach(first_row + number, f"expected {len(CANDLE_COLUMNS)} fields, found {fields}")
                ) from None
        raise _Refused(Breach(first_row, f"not CSV the reader accepts ({str(exc)[:200]})")) from exc


def _converted(text: pa.ChunkedArray, column: str, first_row: int, kind: str) -> pa.ChunkedArray:
    """A text column converted by pyarrow; _Refused names the first value it refuses."""

    def convert(values: pa.ChunkedArray) -> pa.ChunkedArray:
        if column not in TIME_COLUMNS:
            return values if values.type == pa.int64() else pc.cast(values, pa.int64())
        # UTC time text (``+00:00`` or ``Z``) in whole milliseconds -> epoch ms
        if not pc.all(pc.or_(pc.ends_with(values, UTC_SUFFIXES[0]), pc.ends_with(values, UTC_SUFFIXES[1]))).as_py():
            raise pa.ArrowInvalid("a time without a UTC offset")
        return pc.cast(pc.cast(values, _TIME_TYPE), pa.int64())

    try:
        return convert(text)
    except pa.ArrowInvalid:
        pass
    for row, value in enumerate(text.to_pylist()):  # error path only: which value
        try:
            convert(pa.chunked_array([[value]], pa.string()))
        except pa.ArrowInvalid:
            what = f"empty {column}" if value == "" else f"{column} {shown(value)} is not {kind}"
            raise _Refused(Breach(first_row + row, what)) from None
    raise AssertionError("a column failed as a whole but no value failed")  # pragma: no cover


def text_to_candles(text: pa.Table, first_row: int = 1) -> pa.Table:
    """Rows read as text -> the candle table; _Refused at the first value the CSV layer refuses."""
    kinds = {**dict.fromkeys(TIME_COLUMNS, "a UTC time in whole milliseconds"), "number_of_trades": "an integer"}
    columns = [_converted(text[c], c, first_row, kinds[c]) if c in kinds else text[c] for c in CANDLE_COLUMNS]
    return pa.Table.from_arrays(columns, schema=CANDLE_SCHEMA)


class CsvCheck:
    """Judges one CSV file fed piece by piece, in bounded memory (one block of whole lines
    at a time): the verdict and, if asked and valid, its candles."""

    def __init__(
        self, interval: str, path: Path | str, *, candles_from: int | None = None, block_bytes: int | None = None
    ) -> None:
        self.interval, self.path, self.block_bytes = interval, Path(path), block_bytes or BLOCK_BYTES
        self._head: bytearray | None = bytearray()  # until the header line is whole
        self._pending: list[bytes] = []
        self._pending_bytes, self._whole_line = 0, False  # held bytes, and whether they end a line
        self._content = self._nul = False
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._utf8_error: int | None = None
        self._offset = 0
        self._problem: str | None = None  # a whole-file problem (header, long line)
        self._lines_after, self._open_line = 0, False  # lines not parsed once a verdict is set
        self.blocks = CandleBlocks(interval, self.path, candles_from=candles_from)

    def _decided(self) -> bool:
        return self._problem is not None or self.blocks.breach is not None or self._nul or self._utf8_error is not None

    def feed(self, piece: bytes) -> None:
        if not piece:
            return
        self._content = self._content or bool(piece.strip())  # (stays True after the first text)
        # UTF-8 and NUL over every byte fed, even past a verdict: they outrank the rows.
        if self._utf8_error is None and not piece.isascii():
            try:
                self._utf8.decode(piece)
            except UnicodeDecodeError as exc:
                self._utf8_error = self._offset + exc.start
        self._offset += len(piece)
        self._nul = self._nul or b"\x00" in piece
        if self._head is not None:
            self._head += piece
            newline = self._head.find(b"\n")
            if newline < 0:
                if len(self._head) > LINE_LIMIT:
                    self._problem, self._head = "a first line over 1 MB (no header, or no LF line ends)", bytearray()
                return
            self._header(bytes(self._head[:newline]))
            piece, self._head = bytes(self._head[newline + 1 :]), None
        if self._decided():
            self._lines_after += piece.count(b"\n")  # only the row count of an invalid file is left to learn
            self._open_line = bool(piece) and not piece.endswith(b"\n")
            return
        self._pending.append(piece)
        self._pending_bytes += len(piece)
        self._whole_line = self._whole_line or b"\n" in piece
        if self._pending_bytes < self.block_bytes:
            return
        if not self._whole_line:  # one line so far: held (not joined) up to the limit
            if self._pending_bytes > self.block_bytes + LINE_LIMIT:
                self._problem = f"row {self.blocks.rows + 1}: a line over 1 MB"
                self._pending, self._pending_bytes = [], 0
            return
        data = b"".join(self._pending)  # the one copy: the block is read in place
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        self._pending, self._pending_bytes, self._whole_line = [rest], len(rest), False
        self._block(memoryview(data)[:cut])
        if self._decided():
            self._lines_after += rest.count(b"\n")
            self._open_line = bool(rest)
            self._pending, self._pending_bytes = [], 0

    def _header(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").removesuffix("\r")
        if text != CSV_HEADER:
            self._problem = column_problem("header", text.split(","))

    def _block(self, block: memoryview | bytes) -> None:
        """Judge whole lines: the CSV text layer, then the rule book."""
        first_row = self.blocks.rows + 1
        try:
            self.blocks.add(read_block(block, first_row))
        except _Refused as refused:  # a rule broken before the refused value still comes first
            lines = bytes(block).split(b"\n")[: refused.breach.row - first_row]
            with contextlib.suppress(_Refused):
                self.blocks.add(read_block(b"".join(line + b"\n" for line in lines), first_row))
            self.blocks.breach = self.blocks.breach or refused.breach
            self.blocks.rows = first_row - 1 + bytes(block).count(b"\n")

    def finish(self) -> Verdict:
        """The verdict (and the candles, if asked and valid)."""
        if self._head is not None and not self._problem:  # no newline at all: the content is the header
            self._header(bytes(self._head))
            self._head = None
        if self._pending_bytes and not self._decided():
            block = b"".join(self._pending)
            self._block(block if block.endswith(b"\n") else block + b"\n")
        self._pending, self._pending_bytes = [], 0
        problem = self._problem
        if not self._content:
            problem = "no candles (empty file)"
        elif self._utf8_error is not None:
            problem = f"not UTF-8 text (byte {self._utf8_error})"
        elif self._nul and not (problem or "").startswith("wrong header"):
            problem = "contains NUL bytes (binary data)"
        if problem is not None:
            return FileValidation(self.path, False, problem), None
        return self.blocks.verdict(rows=self.blocks.rows + self._lines_after + int(self._open_line))


class CsvFormat(FileFormat):
    name = "csv"
    suffix = ".csv"

    def write(
        self,
        target: Path,
        chunks: CandleChunks,
        interval: str,
        *,
        approve: Approval | None = None,
        series: SeriesId | None = None,
    ) -> FileValidation:
        return write_candles(target, chunks, interval, approve)  # its name holds the series, less the host

    def read(self, path: Path) -> pa.Table:
        """Lenient and unvalidated, streamed in blocks (the exporter itself reads previous files
        only through ``FileManager.newest_valid_export``, which validates them first)."""
        read = pacsv.ReadOptions(column_names=list(CANDLE_COLUMNS), skip_rows=1, block_size=BLOCK_BYTES)
        try:
            with pacsv.open_csv(path, read_options=read, parse_options=_PARSE, convert_options=_TEXT) as reader:
                tables = [text_to_candles(pa.Table.from_batches([batch])) for batch in reader]
        except _Refused as refused:
            raise ValueError(f"{path}: {refused.breach}") from None
        return pa.concat_tables(tables).combine_chunks() if tables else empty_candle_frame()

    def read_closes(self, path: Path) -> list[float]:
        """The close column alone, as numbers (a status page reads one file per series after every
        cycle): a small file is split in Python (0.02 ms for 48 rows, ``read_csv`` 0.25 ms)."""
        closes: list[Any]
        if path.stat().st_size <= SPLIT_BYTES:
            closes = [float(line.split(",", 5)[4]) for line in path.read_text(encoding="utf-8").splitlines()[1:]]
        else:
            options = pacsv.ConvertOptions(include_columns=["close"], column_types={"close": pa.float64()})
            closes = pacsv.read_csv(path, convert_options=options).column("close").drop_null().to_pylist()
        return [value for value in closes if value == value]

    def stream_checker(self, interval: str, path: Path, *, candles_from: int | None = None) -> CsvCheck:
        return CsvCheck(interval, path, candles_from=candles_from)
