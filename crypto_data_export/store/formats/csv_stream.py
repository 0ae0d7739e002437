"""Validation of one large file piece by piece, holding one block of rows at a time.

A year of minute candles is 50 MB of text; parsed whole it needs several
hundred MB. ``StreamCheck`` gives the same verdict, row numbers and gaps as
the whole-file check in ``csv_rules`` while holding only one block.
"""

from __future__ import annotations

import codecs
import io
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from crypto_data_export.core.candles import CANDLE_COLUMNS, candle_frame
from crypto_data_export.settings.intervals import is_valid_interval
from crypto_data_export.store.formats.csv_rules import (
    _HEADER_LINE,
    CSV_HEADER,
    _apply_rules,
    _Columns,
    _field_count_message,
    _gaps_by_segment,
    _grid_open_ms,
    _header_problem,
    _Judge,
)
from crypto_data_export.store.validation import FileValidation

# Rows are parsed and judged in blocks of about this many bytes.
STREAM_CHUNK_BYTES = 4 << 20
# Blocks up to this size are split in Python, not parsed by pandas: its fixed cost per call
# dominates a small file, and its Arrow text would be copied to Python strings for the rules
# anyway; past this (a file read in 4 MB blocks) its C speed per row wins.
SPLIT_BYTES = 256 << 10
# A first line longer than this is not a header worth holding: the whole-file path judges it.
_HEAD_LIMIT = 1 << 20
# A row longer than this is no candle (ours are < 300 bytes): nothing more is held for it, the
# layout is left to the whole-file path (which a caller takes only for files small enough).
LINE_LIMIT = 1 << 20


class StreamCheck:
    """Validate one file fed piece by piece, holding one block of rows at a time.

    The verdict, gaps, row numbers and candle frame equal ``check_bytes`` on
    the whole content: the whole-file checks (empty, UTF-8, header, NUL) are
    tracked across pieces and take precedence as they do there; rows are
    parsed in blocks of whole lines (``chunk_bytes``) with the header put in
    front, the row offset carried for "row N" reasons and the previous
    block's last open time and grid step carried for the order and gap checks
    across the boundary; every rule keeps its first bad row, and the verdict is
    the first rule broken anywhere, as in the whole-file judge.

    ``finish`` returns None when the layout is one only the whole-file parser
    can judge the same way (quotes, CR, blank lines, a line over
    ``LINE_LIMIT``, a first line of a block with extra fields, an unusual
    parser error): the caller then validates the whole bytes if they are
    small, and otherwise takes the file for junk (``undecided_because`` says
    why). Files we write never take that path. Memory stays bounded whatever
    is fed: about ``chunk_bytes`` plus one line of at most ``LINE_LIMIT``.
    """

    def __init__(
        self, interval: str, path: Path | str, *, want_candles: bool = False, chunk_bytes: int | None = None
    ) -> None:
        self.interval = interval
        self.path = Path(path)
        self.chunk_bytes = max(1, int(STREAM_CHUNK_BYTES if chunk_bytes is None else chunk_bytes))
        self._interval_ok = is_valid_interval(interval)
        self._content = False  # a byte other than whitespace seen: not "empty"
        self._utf8_pending = b""
        self._utf8_offset = 0
        self._utf8_error: int | None = None
        self._nul = False
        self._head: bytearray | None = bytearray()  # until the first newline is seen
        self._header_line: bytes | None = None
        self._header_bad = False
        self._head_too_long = False
        self._pending = bytearray()  # body bytes not parsed yet
        self._undecidable = False
        self.undecided_because: str | None = None
        self._parse_problem: str | None = None
        self._rows = 0
        self._reasons: dict[int, tuple[int, str]] = {}  # rule number -> (first bad row, reason)
        self._first_open: int | None = None
        self._last_open: int | None = None
        self._last_step: int | None = None
        self._gaps: list[tuple[int, int, int]] = []
        self._candles: list[pd.DataFrame] | None = [] if want_candles else None

    @property
    def _parsing(self) -> bool:
        """False once the verdict no longer depends on the rows."""
        return not (
            self._undecidable
            or self._parse_problem is not None
            or self._utf8_error is not None
            or self._nul
            or self._header_bad
        )

    def feed(self, piece: bytes) -> None:
        if not piece:
            return
        if not self._content and piece.strip():
            self._content = True
        self._check_utf8(piece, final=False)
        if not self._nul and b"\x00" in piece:
            self._nul = True
        if self._head is not None:
            self._head += piece
            newline = self._head.find(b"\n")
            if newline < 0:
                if len(self._head) > _HEAD_LIMIT:
                    self._undecided("a first line over 1 MB (no header, or no LF line ends)")
                    self._head_too_long = True
                    self._head = bytearray()  # the verdict is whole-file's; keep nothing
                return
            self._set_header(bytes(self._head[:newline]))
            body = self._head[newline + 1 :]
            self._head = None
            if self._parsing:
                self._pending += body
        elif self._parsing:
            self._pending += piece
        self._parse_ready()

    def finish(self) -> tuple[FileValidation, pd.DataFrame | None] | None:
        """The verdict (and candle frame, if asked and valid); None: judge the whole bytes instead."""
        self._check_utf8(b"", final=True)
        if self._head is not None:  # no newline at all: the whole content is the header line
            if not self._head_too_long:
                self._set_header(bytes(self._head))
            self._head = None
        elif self._parsing and self._pending:
            block = bytes(self._pending)
            self._pending = bytearray()
            self._block(block if block.endswith(b"\n") else block + b"\n")
        path = self.path
        if not self._content:
            return FileValidation(path, False, "no candles (empty file)"), None
        if self._utf8_error is not None:
            return FileValidation(path, False, f"not UTF-8 text (byte {self._utf8_error})"), None
        if self._head_too_long:
            return None
        if self._header_bad:
            assert self._header_line is not None
            head = self._header_line.decode("utf-8", "replace").rstrip("\r")
            return FileValidation(path, False, str(_header_problem(head.split(",")))), None
        if self._nul:
            return FileValidation(path, False, "contains NUL bytes (binary data)"), None
        if self._undecidable:
            return None
        if self._parse_problem is not None:
            return FileValidation(path, False, self._parse_problem), None
        if not self._interval_ok:
            return FileValidation(path, False, f"unknown interval {self.interval!r}", rows=self._rows), None
        if self._rows == 0:
            return FileValidation(path, False, "no candles (header only)", rows=0), None
        if self._reasons:
            bad_row, reason = self._reasons[min(self._reasons)]
            return FileValidation(path, False, reason, rows=self._rows, bad_row=bad_row), None
        candles = None
        if self._candles is not None:
            candles = pd.concat(self._candles, ignore_index=True) if len(self._candles) > 1 else self._candles[0]
            self._candles = None
        return FileValidation(
            path,
            True,
            None,
            rows=self._rows,
            first_open_ms=self._first_open,
            last_open_ms=self._last_open,
            gaps=self._gaps,
            missing_candles=sum(g[2] for g in self._gaps),
        ), candles

    # -- whole-file checks, tracked piece by piece -------------------------------
    def _check_utf8(self, piece: bytes, *, final: bool) -> None:
        if self._utf8_error is not None:
            return
        data = self._utf8_pending + piece if self._utf8_pending else piece
        try:
            _, consumed = codecs.utf_8_decode(data, "strict", final)
        except UnicodeDecodeError as exc:
            self._utf8_error = self._utf8_offset + exc.start
            self._pending = bytearray()
            return
        self._utf8_offset += consumed
        self._utf8_pending = data[consumed:]

    def _set_header(self, line: bytes) -> None:
        self._header_line = line
        if line.endswith(b"\r"):
            self._undecided("CR line ends")  # CRLF: the whole-file parser decides
        self._header_bad = line.decode("utf-8", "replace").rstrip("\r") != CSV_HEADER

    def _undecided(self, why: str) -> None:
        if not self._undecidable:
            self._undecidable, self.undecided_because = True, why

    # -- rows, block by block ----------------------------------------------------
    def _parse_ready(self) -> None:
        while self._parsing and len(self._pending) >= self.chunk_bytes:
            cut = self._pending.rfind(b"\n", 0, self.chunk_bytes)
            if cut < 0:
                cut = self._pending.find(b"\n", self.chunk_bytes)
                if cut < 0:
                    if len(self._pending) > self.chunk_bytes + LINE_LIMIT:
                        self._undecided("a line over 1 MB")
                        self._pending = bytearray()
                    return
            block = bytes(self._pending[: cut + 1])
            del self._pending[: cut + 1]
            self._block(block)
        if not self._parsing:
            self._pending = bytearray()

    def _block(self, block: bytes) -> None:
        """Parse and judge whole lines; anything the joint parse could read differently is undecidable."""
        if not self._parsing:
            return
        first_end = block.find(b"\n")
        if (
            block.startswith(b"\n")
            or b"\n\n" in block
            or b"\r" in block
            or b'"' in block
            or block.count(b",", 0, first_end) >= len(CANDLE_COLUMNS)
        ):
            # blank lines, CR, quotes, or a first line pandas could take as having an index column
            self._undecided("blank lines, CR, quotes or extra fields")
            return
        values = _split_rows(block) if len(block) <= SPLIT_BYTES else None
        text = None
        if values is None:
            text = self._parse_with_pandas(block)
            if text is None:
                return
            values = text.to_numpy(dtype=object)
        if self._interval_ok:
            self._judge(values, text)
        self._rows += len(values)

    def _parse_with_pandas(self, block: bytes) -> pd.DataFrame | None:
        """The rows by pandas' parser, whose errors name the bad row (None: the verdict is set)."""
        try:
            text = pd.read_csv(
                io.BytesIO(_HEADER_LINE + block), dtype=str, keep_default_na=False, na_filter=False, engine="c"
            )
        except (ValueError, pd.errors.ParserError) as exc:
            self._parse_problem = _field_count_message(exc, self._rows)
            if self._parse_problem is None:
                self._undecided("a layout the CSV parser reads differently")
            return None
        if len(text) != block.count(b"\n") or [str(c) for c in text.columns] != list(CANDLE_COLUMNS):
            self._undecided("a layout the CSV parser reads differently")
            return None
        return text

    def _judge(self, values: np.ndarray, text: pd.DataFrame | None) -> None:
        """Apply the rules to ``values`` (``text``: the same rows as pandas read them, if it did)."""
        judge = _Judge(values, np.zeros(1, dtype=np.int64), row_offset=self._rows, collected=self._reasons)
        columns = _apply_rules(values, self.interval, judge, self._last_open)
        open_ms, steps = columns.open_ms, columns.steps
        if self._first_open is None:
            self._first_open = int(open_ms[0])
        if not self._reasons:
            if self._last_step is not None and int(steps[0]) - self._last_step > 1:
                self._gaps.append(
                    (
                        int(_grid_open_ms(np.array([self._last_step + 1]), self.interval)[0]),
                        int(_grid_open_ms(steps[:1] - 1, self.interval)[0]),
                        int(steps[0]) - self._last_step - 1,
                    )
                )
            self._gaps.extend(_gaps_by_segment(steps, self.interval, np.zeros(1, dtype=np.int64)).get(0, []))
        self._last_open, self._last_step = int(open_ms[-1]), int(steps[-1])
        if self._candles is not None:
            if self._reasons:
                self._candles = None  # invalid: no frame will be returned
            else:
                self._candles.append(_candles_of(values, text, columns))


def _candles_of(values: np.ndarray, text: pd.DataFrame | None, columns: _Columns) -> pd.DataFrame:
    """The block's candle frame: its text columns as read (pandas' frame if it parsed the block)."""
    integers = {"open_time": columns.open_ms, "close_time": columns.close_ms, "number_of_trades": columns.trades}
    if text is not None:
        return text.assign(**integers)
    cells = {column: values[:, index] for index, column in enumerate(CANDLE_COLUMNS)}
    return candle_frame({**cells, **integers})


def _split_rows(block: bytes) -> np.ndarray | None:
    """Whole lines of exactly the candle columns, split on commas: what pandas' parser reads
    from them once ``_block`` has ruled out quotes, CR and blank lines, without its fixed cost
    per call (most of a small file's check). None (any other shape, or not UTF-8): pandas
    parses the block, so a bad row gets its exact error.
    """
    try:
        lines = block.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return None
    rows = [line.split(",") for line in lines[:-1]]  # the block ends with a newline
    width = len(CANDLE_COLUMNS)
    if not rows or any(len(row) != width for row in rows):
        return None
    return np.array(rows, dtype=object)


def check_stream(
    pieces: Iterable[bytes],
    interval: str,
    path: Path | str,
    *,
    want_candles: bool = False,
    chunk_bytes: int | None = None,
) -> tuple[FileValidation, pd.DataFrame | None] | None:
    """``StreamCheck`` over an iterable of byte pieces (None: judge the whole bytes)."""
    stream = StreamCheck(interval, path, want_candles=want_candles, chunk_bytes=chunk_bytes)
    for piece in pieces:
        stream.feed(piece)
    return stream.finish()
