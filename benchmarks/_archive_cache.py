"""A persistent on-disk cache of the sandbox's monthly archive zips, for bench_s3 at full size.

The sandbox builds a monthly 1m zip in about a second of Python (``generate_candle`` for each of its
~44,000 rows), under one GIL: 100 symbols x 12 months took ~20 minutes of warm-up per run. Here the
zips are built once, by the sandbox's own code (``SandboxExchange``'s archive, default knobs), in a
pool of processes under ``os.nice(19)``, and kept in

    ~/.cache/crypto_data_export/bench_s3_archive/<version>/spot/<interval>/<symbol>/<symbol>-<interval>-<YYYY-MM>.zip

``<version>`` hashes everything the bytes depend on (the candle generator and its helpers, the zip
and CSV layout, the archive's default knobs, the listing date, Python's and zlib's versions), so a
change of any of them starts a new folder. ``DiskArchive`` (the benchmark sandbox's
``--archive-dir``) serves a cached zip as it is, and its ``.CHECKSUM`` from those bytes (the
sandbox's own code: byte for byte what it would build); a zip not in the cache is built as usual and
written through. ``verify`` compares a few served zips and checksums with fresh in-process builds.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import crypto_data_export.sandbox.fake_archive as fa
import crypto_data_export.sandbox.fake_exchange as fx

CACHE_ROOT = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "crypto_data_export"
CACHE_ROOT /= "bench_s3_archive"


def version_key() -> str:
    """A hash of what a zip's bytes depend on (not of whole files: an unrelated knob keeps the cache)."""
    parts: list[Any] = [
        inspect.getsource(obj)
        for obj in (
            fa.SandboxArchive,
            fa._period_bounds,
            fa._csv_text,
            fa._build_zip,
            fx.generate_candle,
            fx._hash_units,
            fx._symbol_profile,
            fx._price_units,
            fx._fmt,
            fx.interval_ms,
            fx._month_index,
            fx._month_open,
            fx.align_open_ms,
            fx.next_open_ms,
            fx._align_up,
            fx._ascending,
            fx._gap_containing,
            fx._corrected,
            fx.SandboxExchange._archive_rows,
            fx.SandboxExchange.is_known,
        )
    ]
    parts += [fa._HEADER, fa.MICROS_FROM_MS, fa.ArchiveKnobs(), fx._ANCHOR_PRICES, fx._PRICE_SCALE]
    parts += [fx._FIXED_INTERVALS, fx.SandboxConfig().listing_ms, sys.version_info[:2], zlib.ZLIB_RUNTIME_VERSION]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def zip_path(folder: Path, symbol: str, interval: str, label: str, market: str = "spot") -> Path:
    return folder / market / interval / symbol / f"{symbol}-{interval}-{label}.zip"


def archive_url_path(symbol: str, interval: str, label: str) -> str:
    return f"/data/spot/monthly/klines/{symbol}/{interval}/{symbol}-{interval}-{label}.zip"


class DiskArchive(fa.SandboxArchive):
    """The sandbox's archive, its zips of default candles read from (and written to) ``folder``."""

    def __init__(self, rows_for: fa.RowsFor, folder: Path) -> None:
        super().__init__(rows_for)
        self.folder = folder

    def _zip(
        self,
        market: str,
        symbol: str,
        interval: str,
        bounds: tuple[int, int],
        csv_name: str,
        knobs: fa.ArchiveKnobs,
        generation: object,
    ) -> bytes | None:
        corrections = generation[1] if isinstance(generation, tuple) else None
        if knobs != fa.ArchiveKnobs() or corrections or market != "spot":  # faults or corrections: not cached
            return super()._zip(market, symbol, interval, bounds, csv_name, knobs, generation)
        path = self.folder / market / (csv_name.split("-")[1]) / symbol / csv_name.replace(".csv", ".zip")
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        data = super()._zip(market, symbol, interval, bounds, csv_name, knobs, generation)
        if data is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            part = path.with_name(f".{path.name}.{os.getpid()}.part")
            part.write_bytes(data)
            part.replace(path)  # whole or absent, for a concurrent reader
        return data


def sandbox_config() -> fx.SandboxConfig:
    """The candles of the benchmark's sandbox (``--accept-any-symbol``, everything else default)."""
    return fx.SandboxConfig(accept_any_symbol=True)


_WORKER: fx.SandboxExchange | None = None


def _start_worker(folder: str) -> None:
    global _WORKER
    os.nice(19)  # the other benchmarks on this machine first
    _WORKER = fx.SandboxExchange(sandbox_config())
    _WORKER.archive = DiskArchive(_WORKER._archive_rows, Path(folder))


def _build(symbol: str, interval: str, label: str) -> int:
    """Build one zip into the cache (in a pool worker); its size."""
    assert _WORKER is not None
    status, body, _ = _WORKER.archive.answer(
        archive_url_path(symbol, interval, label), fa.ArchiveKnobs(), _WORKER.now_ms(), generation=None
    )
    _WORKER.archive.clear()  # the bytes are on disk; keep the worker small
    if status != 200:
        raise RuntimeError(f"the sandbox has no {archive_url_path(symbol, interval, label)} ({status})")
    return len(body)


def prepare(folder: Path, symbols: list[str], labels: list[str], interval: str = "1m", workers: int = 2) -> dict:
    """Build the zips of ``symbols`` x ``labels`` missing from ``folder``: niced processes, in parallel."""
    wanted = [(s, interval, m) for s in symbols for m in labels]
    missing = [w for w in wanted if not zip_path(folder, *w).exists()]
    started = time.perf_counter()
    if missing:
        print(f"building {len(missing)} of {len(wanted)} archive zips into {folder} ({workers} niced processes) ...")
        with ProcessPoolExecutor(workers, initializer=_start_worker, initargs=(str(folder),)) as pool:
            futures = [pool.submit(_build, *w) for w in missing]
            for done, future in enumerate(as_completed(futures), 1):
                future.result()
                if done % 50 == 0 or done == len(missing):
                    print(f"  {done}/{len(missing)} zips, {time.perf_counter() - started:.0f} s", flush=True)
    size = sum(zip_path(folder, *w).stat().st_size for w in wanted)
    return {"built": len(missing), "zips": len(wanted), "build_s": time.perf_counter() - started, "bytes": size}


def verify(base_url: str, samples: list[tuple[str, str, str]]) -> None:
    """The served zips and checksums of ``samples`` equal the plain sandbox's own, built here anew."""
    import requests

    plain = fx.SandboxExchange(sandbox_config())
    for symbol, interval, label in samples:
        path = archive_url_path(symbol, interval, label)
        for url_path in (path, path + ".CHECKSUM"):
            status, body, _ = plain.archive.answer(url_path, fa.ArchiveKnobs(), plain.now_ms(), generation=None)
            served = requests.get(base_url + url_path, timeout=60)
            if (served.status_code, served.content) != (status, body):
                raise RuntimeError(
                    f"the cached archive serves another {url_path} than the sandbox builds "
                    f"({served.status_code}, {len(served.content)} bytes vs {status}, {len(body)}): "
                    f"delete {CACHE_ROOT} and run again"
                )
