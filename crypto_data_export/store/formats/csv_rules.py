"""The rules an export CSV must obey, as vectorised per-row masks (pure: nothing is moved).

A file is trusted (reused by the incremental export, kept by retention) only
if every rule holds, so the checks are strict and every failure names the
first offending 1-based data row. Gaps in the interval grid are a fact of the
market (halts, delistings), so they are reported, never an error.

Every rule is a vectorised per-row mask over a frame that may hold several
files one after the other ("segments"): a folder of 10 000 small files is
parsed in a few ``read_csv`` calls instead of 10 000 (per-call overhead, not
rows, dominates small files), and a year of minutes in one file is the same
code with one segment. Nothing here raises on bad input. The underscored
helpers are shared with ``csv_stream`` and ``csv_batch`` only.
"""

from __future__ import annotations

import io
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from crypto_data_export.core.candles import CANDLE_COLUMNS, DECIMAL_COLUMNS, TIME_COLUMNS
from crypto_data_export.settings.intervals import fixed_length_ms, grid_anchor_ms, is_valid_interval
from crypto_data_export.store.validation import FileValidation

UTC_SUFFIXES: tuple[str, ...] = ("+00:00", "Z")
_MAX_SHOWN = 40
_INDEX = {column: i for i, column in enumerate(CANDLE_COLUMNS)}
_NO_ROW = np.iinfo(np.int64).max
_INT64_LIMIT = 2.0**63
CSV_HEADER = ",".join(CANDLE_COLUMNS)
# Past this many values pandas' vectorised parser is the faster one.
_CANONICAL_MAX_VALUES = 4096
# One value after another (NUL-separated), each exactly as ``format_utc_ms`` writes it.
_CANONICAL_TIMES = re.compile(r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?\+00:00\x00)+")
_HEADER_LINE = (CSV_HEADER + "\n").encode()


class _Problem(Exception):
    """A whole-file problem (header, encoding, layout) found before any row check."""


def format_utc_ms(values: np.ndarray) -> np.ndarray:
    """Epoch ms -> ``2026-11-29 02:00:00+00:00`` (``.999`` kept when present): the CSV's time text."""
    values = np.asarray(values, dtype="int64")
    if values.size == 0:
        return np.array([], dtype="U32")
    text = np.datetime_as_string(values.astype("datetime64[ms]"), unit="ms")
    # ".000" can only stand at the fraction, so dropping it keeps whole seconds plain.
    text = np.char.replace(np.char.replace(text, "T", " "), ".000", "")
    return np.char.add(text, "+00:00")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _header_problem(found: list[str]) -> _Problem:
    """Name the first column that differs: more useful than two long lines."""
    for number, (have, want) in enumerate(zip(found, CANDLE_COLUMNS, strict=False), start=1):
        if have != want:
            return _Problem(f"wrong header: column {number} is {_shown(have)}, expected {want!r}")
    return _Problem(f"wrong header: {len(found)} columns, expected {len(CANDLE_COLUMNS)} ({CSV_HEADER})")


# --- the judge: first broken rule per file ----------------------------------


class _Judge:
    """Applies rules in order; each file keeps the first rule it breaks, at its first bad row.

    In chunk mode (``collected`` given, one segment per call) the first bad row
    of every rule is kept instead, keyed by the rule's number, so that a file
    judged chunk by chunk ends with the same verdict as judged whole: the
    lowest-numbered rule broken anywhere, at its first bad row.
    """

    def __init__(
        self,
        values: np.ndarray,
        starts: np.ndarray,
        *,
        row_offset: int = 0,
        collected: dict[int, tuple[int, str]] | None = None,
    ) -> None:
        self.values = values  # the rows' text, an object matrix (rows x CANDLE_COLUMNS)
        self.starts = starts
        self.reasons: list[str | None] = [None] * len(starts)
        self.bad_rows: list[int | None] = [None] * len(starts)
        self.failed = np.zeros(len(starts), dtype=bool)
        self._row_ids = np.arange(len(values), dtype=np.int64)
        self._rule_number = 0
        self.row_offset = row_offset
        self.collected = collected

    def rule(self, bad_rows: npt.ArrayLike, describe: Callable[[int], str]) -> None:
        """One rule: ``bad_rows`` is a boolean per row (numpy reductions may type it as a scalar)."""
        bad = np.asarray(bad_rows, dtype=bool)
        number = self._rule_number
        self._rule_number += 1
        if self.collected is not None:
            if number not in self.collected and bad.any():
                row = int(np.argmax(bad))
                file_row = row + self.row_offset + 1
                self.collected[number] = (file_row, f"row {file_row}: {describe(row)}")
            return
        if not bad.any():
            return
        firsts = np.minimum.reduceat(np.where(bad, self._row_ids, _NO_ROW), self.starts)
        for segment in np.flatnonzero((firsts != _NO_ROW) & ~self.failed):
            row = int(firsts[segment])
            file_row = row - int(self.starts[segment]) + 1
            self.failed[segment] = True
            self.bad_rows[segment] = file_row
            self.reasons[segment] = f"row {file_row}: {describe(row)}"

    def cell(self, column: str, row: int) -> object:
        return self.values[row, _INDEX[column]]

    def unparsed(self, column: str, kind: str) -> Callable[[int], str]:
        def describe(row: int) -> str:
            value = self.cell(column, row)
            if not isinstance(value, str) or value == "":
                return f"empty {column}"
            return f"{column} {_shown(value)} is not {kind}"

        return describe


@dataclass
class _Columns:
    open_ms: np.ndarray
    close_ms: np.ndarray
    trades: np.ndarray
    steps: np.ndarray


# --- parsing to per-row masks ---------------------------------------------


def _column_values(values: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    """Several columns as one flat object array, column after column: one parse call for all."""
    return values[:, [_INDEX[c] for c in columns]].ravel(order="F")


def _nul_joined(raw: np.ndarray) -> str | None:
    """Every value followed by a NUL, in one string; None unless all are text without a NUL
    (so that the string splits back into exactly these values)."""
    try:
        joined = "\x00".join(raw) + "\x00"
    except TypeError:
        return None
    return joined if joined.count("\x00") == len(raw) else None


def _all_utc_suffixed(raw: np.ndarray) -> bool:
    """Aggregate suffix check: one join and two counts instead of a check per value."""
    joined = _nul_joined(raw)
    if joined is None:
        return False
    return sum(joined.count(suffix + "\x00") for suffix in UTC_SUFFIXES) == len(raw)


def _utc_micros(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Epoch microseconds and a bad mask: ISO-8601 with a UTC offset only."""
    canonical = _canonical_utc_micros(raw)
    if canonical is not None:
        return canonical, np.zeros(len(raw), dtype=bool)
    series = pd.Series(raw, dtype=object)
    parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    moments = parsed.dt.tz_localize(None).to_numpy().astype("datetime64[us]")
    bad = np.isnat(moments)
    if not _all_utc_suffixed(raw):
        bad |= ~series.str.endswith(UTC_SUFFIXES).fillna(False).to_numpy(dtype=bool)
    micros = np.where(bad, 0, moments.view("int64"))
    return micros, bad | (micros % 1000 != 0)


def _canonical_utc_micros(raw: np.ndarray) -> np.ndarray | None:
    """Epoch microseconds if every value is a valid time in the very form this tool writes
    (``format_utc_ms``), else None (then pandas' ISO-8601 parser decides, value by value).

    The form every file we write has, judged at a fraction of ``pd.to_datetime``'s fixed
    cost per call, which dominates a small file (a large one goes to pandas): one regular
    expression over all values, then numpy's parser, which refuses an impossible date or
    time just as pandas does.
    """
    if not 0 < len(raw) <= _CANONICAL_MAX_VALUES:
        return None
    joined = _nul_joined(raw)
    if joined is None or _CANONICAL_TIMES.fullmatch(joined) is None:
        return None
    try:
        moments = np.array([value[: -len(UTC_SUFFIXES[0])] for value in raw], dtype="datetime64[ms]")
    except ValueError:
        return None
    return moments.astype("int64") * 1000


def _times(values: np.ndarray, judge: _Judge) -> tuple[np.ndarray, np.ndarray]:
    rows = len(values)
    micros, bad = _utc_micros(_column_values(values, TIME_COLUMNS))
    for k, column in enumerate(TIME_COLUMNS):
        judge.rule(bad[k * rows : (k + 1) * rows], judge.unparsed(column, "a UTC time in whole milliseconds"))
    ms = micros // 1000
    return ms[:rows], ms[rows:]


def _floats(raw: np.ndarray) -> np.ndarray:
    """``float()`` semantics, vectorised; NaN where a value does not parse.

    pandas is asked first; only the values it refuses are retried one by one,
    so the verdict on a value never depends on the other values parsed with it.
    """
    try:
        return raw.astype("float64")
    except (ValueError, TypeError):
        pass
    numbers = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(dtype="float64", copy=True)
    for i in np.flatnonzero(np.isnan(numbers)):
        numbers[i] = _float_or_nan(raw[i])
    return numbers


def _float_or_nan(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return float("nan")


def _decimals(values: np.ndarray, judge: _Judge) -> np.ndarray:
    """Decimal columns -> float matrix (rows x columns), for comparisons only."""
    rows = len(values)
    matrix = _floats(_column_values(values, DECIMAL_COLUMNS)).reshape(len(DECIMAL_COLUMNS), rows).T
    finite = np.isfinite(matrix)

    def unparsed(row: int) -> str:
        column = DECIMAL_COLUMNS[int(np.argmin(finite[row]))]
        return judge.unparsed(column, "a finite number")(row)

    def negative(row: int) -> str:
        column = DECIMAL_COLUMNS[int(np.argmax(matrix[row] < 0))]
        return f"{column} {judge.cell(column, row)} is negative"

    judge.rule(~finite.all(axis=1), unparsed)
    judge.rule((matrix < 0).any(axis=1), negative)
    return matrix


def _trades(values: np.ndarray, judge: _Judge) -> np.ndarray:
    """Trade counts: ``int()`` semantics (pandas first, refused values one by one), >= 0."""
    raw = values[:, _INDEX["number_of_trades"]]
    try:
        trades = raw.astype("int64")
        ok = trades >= 0
    except (ValueError, TypeError, OverflowError):
        trades, ok = _ints_slowly(raw)
    judge.rule(~ok, judge.unparsed("number_of_trades", "an integer >= 0"))
    return np.where(ok, trades, 0)


def _ints_slowly(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    numbers = pd.to_numeric(pd.Series(raw, dtype=object), errors="coerce").to_numpy(dtype="float64")
    ok = np.isfinite(numbers) & (numbers == np.floor(numbers)) & (numbers >= 0) & (numbers < _INT64_LIMIT)
    trades = np.zeros(len(raw), dtype="int64")
    trades[ok] = numbers[ok].astype("int64")
    for i in np.flatnonzero(~ok):
        try:
            value = int(raw[i])
        except (ValueError, TypeError):
            continue
        if 0 <= value < _INT64_LIMIT:
            trades[i], ok[i] = value, True
    return trades, ok


# --- the interval grid ----------------------------------------------------


def _grid_steps(open_ms: np.ndarray, interval: str) -> np.ndarray:
    """Position of each open time on the grid (whole candles since the anchor)."""
    length = fixed_length_ms(interval)
    if length is None:
        return open_ms.astype("datetime64[ms]").astype("datetime64[M]").astype("int64")
    return (open_ms - grid_anchor_ms(interval)) // length


def _grid_open_ms(steps: np.ndarray, interval: str) -> np.ndarray:
    length = fixed_length_ms(interval)
    if length is None:
        return steps.astype("datetime64[M]").astype("datetime64[ms]").astype("int64")
    return steps * length + grid_anchor_ms(interval)


def _segment_starts_mask(rows: int, starts: np.ndarray) -> np.ndarray:
    mask = np.zeros(rows, dtype=bool)
    mask[starts] = True
    return mask


def _order_and_grid(
    open_ms: np.ndarray, close_ms: np.ndarray, interval: str, judge: _Judge, prev_open: int | None = None
) -> np.ndarray:
    """Order, grid and close-time rules; ``prev_open`` is the open time of the
    row just before this frame (the previous chunk's last), if any."""
    cell = judge.cell
    has_prev = ~_segment_starts_mask(len(open_ms), judge.starts)
    previous = np.empty_like(open_ms)
    previous[1:] = open_ms[:-1]
    if prev_open is not None and len(open_ms):
        previous[0], has_prev[0] = prev_open, True
    not_after = has_prev & (open_ms <= previous)

    def order(row: int) -> str:
        kind = "duplicates" if open_ms[row] == previous[row] else "is before"
        return f"open_time {cell('open_time', row)} {kind} the previous row's"

    judge.rule(not_after, order)
    steps = _grid_steps(open_ms, interval)
    judge.rule(
        _grid_open_ms(steps, interval) != open_ms,
        lambda row: f"open_time {cell('open_time', row)} is not on the {interval} grid",
    )
    expected = _grid_open_ms(steps + 1, interval) - 1
    judge.rule(
        close_ms != expected,
        lambda row: (
            f"close_time {cell('close_time', row)} should be {format_utc_ms(expected[row : row + 1])[0]} for {interval}"
        ),
    )
    return steps


def _prices(decimals: np.ndarray, judge: _Judge) -> None:
    cell = judge.cell
    o, h, lo, c = (decimals[:, DECIMAL_COLUMNS.index(k)] for k in ("open", "high", "low", "close"))
    judge.rule(h < lo, lambda row: f"high {cell('high', row)} < low {cell('low', row)}")
    judge.rule(h < np.maximum(o, c), lambda row: f"high {cell('high', row)} < max(open, close)")
    judge.rule(lo > np.minimum(o, c), lambda row: f"low {cell('low', row)} > min(open, close)")


def _gaps_by_segment(steps: np.ndarray, interval: str, starts: np.ndarray) -> dict[int, list[tuple[int, int, int]]]:
    """Runs of grid candles missing between consecutive rows of the same file."""
    is_start = _segment_starts_mask(len(steps), starts)
    jumps = np.diff(steps)
    at = np.flatnonzero((jumps > 1) & ~is_start[1:])
    found: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    if at.size == 0:
        return found
    segments = np.searchsorted(starts, at, side="right") - 1
    first = _grid_open_ms(steps[at] + 1, interval)
    last = _grid_open_ms(steps[at + 1] - 1, interval)
    counts = jumps[at] - 1
    for segment, a, b, n in zip(segments.tolist(), first.tolist(), last.tolist(), counts.tolist(), strict=True):
        found[segment].append((a, b, n))
    return found


# --- judging segments -------------------------------------------------------


def _apply_rules(values: np.ndarray, interval: str, judge: _Judge, prev_open: int | None = None) -> _Columns:
    """Every rule, in the one order that decides which reason a file gets (``values``: the judge's)."""
    open_ms, close_ms = _times(values, judge)
    decimals = _decimals(values, judge)
    trades = _trades(values, judge)
    steps = _order_and_grid(open_ms, close_ms, interval, judge, prev_open)
    _prices(decimals, judge)
    return _Columns(open_ms, close_ms, trades, steps)


def _judge_segments(
    text: pd.DataFrame, interval: str, starts: np.ndarray, paths: Sequence[Path]
) -> tuple[list[FileValidation], _Columns]:
    """Every rule over all rows at once; one verdict per segment (file)."""
    values = text.to_numpy(dtype=object)
    judge = _Judge(values, starts)
    columns = _apply_rules(values, interval, judge)
    open_ms, steps = columns.open_ms, columns.steps
    gaps = _gaps_by_segment(steps, interval, starts)
    ends = np.append(starts[1:], len(text))
    results = []
    for segment, path in enumerate(paths):
        start, end = int(starts[segment]), int(ends[segment])
        if judge.failed[segment]:
            reason, bad_row = judge.reasons[segment], judge.bad_rows[segment]
            results.append(FileValidation(path, False, reason, rows=end - start, bad_row=bad_row))
            continue
        found = gaps.get(segment, [])
        results.append(
            FileValidation(
                path,
                True,
                None,
                rows=end - start,
                first_open_ms=int(open_ms[start]),
                last_open_ms=int(open_ms[end - 1]),
                gaps=found,
                missing_candles=sum(g[2] for g in found),
            )
        )
    return results, columns


def check_text_frame(
    text: pd.DataFrame, interval: str, path: Path | str, *, want_candles: bool = False
) -> tuple[FileValidation, pd.DataFrame | None]:
    """Validate a CSV read as strings; with ``want_candles`` also return it as a
    candle frame when valid, so a caller that needs the data (the incremental
    export) parses each file once.
    """
    path = Path(path)
    try:
        if not is_valid_interval(interval):
            raise _Problem(f"unknown interval {interval!r}")
        columns = [str(c) for c in text.columns]
        if columns != list(CANDLE_COLUMNS):
            raise _header_problem(columns)
        if len(text) == 0:
            raise _Problem("no candles (header only)")
    except _Problem as problem:
        return FileValidation(path, False, str(problem), rows=len(text)), None
    (result,), columns_ms = _judge_segments(text, interval, np.zeros(1, dtype=np.int64), [path])
    if not (want_candles and result.valid):
        return result, None
    frame = text.assign(
        open_time=columns_ms.open_ms, close_time=columns_ms.close_ms, number_of_trades=columns_ms.trades
    )
    return result, frame.reset_index(drop=True)


def validate_text_frame(text: pd.DataFrame, interval: str, path: Path | str) -> FileValidation:
    """Validate a CSV already read as strings (see ``export_files.read_export_text``)."""
    return check_text_frame(text, interval, path)[0]


# --- bytes ------------------------------------------------------------------


def _precheck(data: bytes) -> None:
    """Whole-file checks that must come before pandas sees the bytes."""
    if not data.strip():
        raise _Problem("no candles (empty file)")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _Problem(f"not UTF-8 text (byte {exc.start})") from exc
    head = decoded.split("\n", 1)[0].rstrip("\r")
    if head != CSV_HEADER:
        raise _header_problem(head.split(","))
    if "\x00" in decoded:
        raise _Problem("contains NUL bytes (binary data)")


def _parse_csv(data: bytes) -> pd.DataFrame:
    try:
        return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False, engine="c")
    except (ValueError, pd.errors.ParserError) as exc:
        raise _Problem(_parser_message(exc)) from exc


def _field_count_message(exc: Exception, row_offset: int = 0) -> str | None:
    """pandas counts the header as line 1; we count data rows (after ``row_offset`` earlier rows)."""
    match = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
    if match is None:
        return None
    expected, line, saw = (int(g) for g in match.groups())
    return f"row {row_offset + line - 1}: expected {expected} fields, saw {saw}"


def _parser_message(exc: Exception) -> str:
    message = _field_count_message(exc)
    if message is not None:
        return message
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"not a readable CSV: {first_line}"[:300]


def check_bytes(
    data: bytes, interval: str, path: Path | str, *, want_candles: bool = False
) -> tuple[FileValidation, pd.DataFrame | None]:
    """Validate raw file content; with ``want_candles`` also the candle frame when valid."""
    try:
        _precheck(data)
        text = _parse_csv(data)
    except _Problem as problem:
        return FileValidation(Path(path), False, str(problem)), None
    return check_text_frame(text, interval, path, want_candles=want_candles)
