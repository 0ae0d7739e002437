"""Many small CSV files judged in a few joint parses (pure: nothing is moved or changed).

A folder of 10 000 small files costs 10 000 ``read_csv`` calls one by one;
parsed together it costs a few, and every verdict equals the one the file
would get alone (``csv_rules.check_bytes``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from crypto_data_export.settings.intervals import is_valid_interval
from crypto_data_export.store.formats.csv_rules import (
    _HEADER_LINE,
    _judge_segments,
    _parse_csv,
    _precheck,
    _Problem,
    check_bytes,
)
from crypto_data_export.store.validation import FileValidation


def validate_bytes(data: bytes, interval: str, path: Path | str) -> FileValidation:
    """Validate raw file content; never raises on bad content."""
    return check_bytes(data, interval, path)[0]


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
    return _validate_bodies(bodies[:half], interval, paths[:half], datas[:half]) + _validate_bodies(
        bodies[half:], interval, paths[half:], datas[half:]
    )


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
            [bodies[i] for i in members],
            interval,
            [Path(items[i][2]) for i in members],
            [items[i][0] for i in members],
        )
        for i, verdict in zip(members, verdicts, strict=True):
            results[i] = verdict
    return [r for r in results if r is not None]
