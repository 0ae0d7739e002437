"""Validation of export CSVs: the entry points (pure: nothing is moved or changed here).

``validate_file`` streams one file (``csv_stream_check``), ``validate_bytes``
judges content in memory, ``validate_many`` judges many small files in a
few joint parses; all give the same verdict a file would get alone. The
rules themselves live in ``csv_rules``.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from config.intervals import is_valid_interval
from csv_rules import (
    _HEADER_LINE,
    FileValidation,
    _judge_segments,
    _parse_csv,
    _precheck,
    _Problem,
    check_bytes,
    check_text_frame,
    iso_utc,
    validate_text_frame,
)
from csv_stream_check import STREAM_CHUNK_BYTES, StreamCheck, check_stream

__all__ = [
    "STREAM_CHUNK_BYTES", "FileValidation", "StreamCheck", "check_bytes", "check_stream", "check_text_frame",
    "iso_utc", "validate_bytes", "validate_file", "validate_many", "validate_text_frame",
]


def validate_bytes(data: bytes, interval: str, path: Path | str) -> FileValidation:
    """Validate raw file content; never raises on bad content."""
    return check_bytes(data, interval, path)[0]


def validate_file(path: Path | str, interval: str) -> FileValidation:
    """Read and validate one file; an unreadable file is invalid, not an exception.

    The file is streamed (never held whole) unless its layout needs the
    whole-file parser (see ``StreamCheck``).
    """
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            stream = StreamCheck(interval, path)
            while piece := handle.read(1 << 20):
                stream.feed(piece)
        verdict = stream.finish()
        if verdict is not None:
            return verdict[0]
        data = path.read_bytes()
    except OSError as exc:
        return FileValidation(path, False, f"cannot read: {exc.strerror or exc}")
    return validate_bytes(data, interval, path)


# --- many files at once -------------------------------------------------------

def _batch_body(data: bytes) -> bytes | None:
    """The data rows, if the file can share one parse with others.

    Only plain files qualify (no quotes, CR or blank lines, which could make
    pandas merge or skip lines); anything else takes the one-file path, so a
    batch never changes a verdict.
    """
    body = data.split(b"\n", 1)[1] if b"\n" in data else b""
    if not body or body.startswith(b"\n") or b"\n\n" in body or b"\r" in body or b'"' in body:
        return None
    return body if body.endswith(b"\n") else body + b"\n"


def _validate_group(bodies: list[bytes], interval: str, paths: list[Path]) -> list[FileValidation] | None:
    """One parse for many files; None when the parse cannot be split back per file."""
    counts = np.array([b.count(b"\n") for b in bodies], dtype=np.int64)
    try:
        text = _parse_csv(b"".join([_HEADER_LINE, *bodies]))
    except _Problem:
        return None
    if len(text) != int(counts.sum()):
        return None
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    return _judge_segments(text, interval, starts, paths)[0]


def _validate_bodies(bodies: list[bytes], interval: str, paths: list[Path], datas: list[bytes]) -> list[FileValidation]:
    """Halve a group whose joint parse fails, so one malformed file costs log(n) parses, not n."""
    verdicts = _validate_group(bodies, interval, paths)
    if verdicts is not None:
        return verdicts
    if len(bodies) == 1:
        return [validate_bytes(datas[0], interval, paths[0])]
    half = len(bodies) // 2
    return (_validate_bodies(bodies[:half], interval, paths[:half], datas[:half])
            + _validate_bodies(bodies[half:], interval, paths[half:], datas[half:]))


def validate_many(items: Iterable[tuple[bytes, str, Path | str]]) -> list[FileValidation]:
    """Validate many (data, interval, path) at once; each verdict equals ``validate_bytes``'s."""
    items = list(items)
    results: list[FileValidation | None] = [None] * len(items)
    groups: dict[str, list[int]] = defaultdict(list)
    bodies: dict[int, bytes] = {}
    for i, (data, interval, path) in enumerate(items):
        body = None
        if is_valid_interval(interval):
            try:
                _precheck(data)
            except _Problem as problem:
                results[i] = FileValidation(Path(path), False, str(problem))
                continue
            body = _batch_body(data)
        if body is None:
            results[i] = validate_bytes(data, interval, path)
        else:
            groups[interval].append(i)
            bodies[i] = body
    for interval, members in groups.items():
        verdicts = _validate_bodies(
            [bodies[i] for i in members], interval,
            [Path(items[i][2]) for i in members], [items[i][0] for i in members],
        )
        for i, verdict in zip(members, verdicts):
            results[i] = verdict
    return [r for r in results if r is not None]
