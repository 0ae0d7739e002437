"""The sandbox's bulk archive under /data/: the same candles as /api/v3/klines, the real layout and
checksum format, 404 until a period is over, microseconds from 2025, and each fault knob."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, datetime

import pytest
import requests

from crypto_data_export.sandbox.fake_archive import ArchiveKnobs
from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange

SPOT = "/data/spot"


def ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp() * 1000)  # type: ignore[misc]


def get(exchange, path: str) -> requests.Response:
    return requests.get(exchange.base_url + path, timeout=5)


def csv_lines(body: bytes) -> list[str]:
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        (name,) = archive.namelist()
        return archive.read(name).decode().splitlines()


def test_a_daily_zip_holds_exactly_the_klines_rows_and_its_checksum_matches(sandbox_factory) -> None:
    exchange = sandbox_factory(now_ms=ms(2024, 11, 10, 12))
    path = f"{SPOT}/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10-28.zip"
    body = get(exchange, path).content
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.namelist() == ["BTCUSDT-1h-2024-10-28.csv"]
    rest = get(exchange, f"/api/v3/klines?symbol=BTCUSDT&interval=1h&startTime={ms(2024, 10, 28)}&limit=24").json()
    assert csv_lines(body) == [",".join(str(v) for v in row) for row in rest]
    checksum = get(exchange, path + ".CHECKSUM")
    assert checksum.text == f"{hashlib.sha256(body).hexdigest()}  BTCUSDT-1h-2024-10-28.zip\n"
    assert get(exchange, path).content == body  # deterministic bytes


def test_archive_requests_weigh_nothing_and_skip_the_klines_faults() -> None:
    # handle() without a server: no other local process can add requests to the count
    exchange = SandboxExchange(SandboxConfig(now_ms=ms(2024, 11, 10, 12), fail_every_n=1, weight_limit=1))
    answer, _ = exchange.handle(f"{SPOT}/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10-28.zip", "")
    assert answer.status == 200 and answer.content_type == "application/zip"
    assert exchange.used_weight() == 0 and exchange.stats.total == 0 and exchange.stats.failed_5xx == 0


def test_periods_not_over_unknown_symbols_and_marked_months_are_404(sandbox_factory) -> None:
    knobs = ArchiveKnobs(unpublished=frozenset({"2024-09"}))
    exchange = sandbox_factory(SandboxConfig(now_ms=ms(2024, 11, 10, 12), archive=knobs))
    assert get(exchange, f"{SPOT}/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10.zip").status_code == 200
    for path in (
        f"{SPOT}/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-11.zip",  # this month
        f"{SPOT}/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-11-10.zip",  # today
        f"{SPOT}/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-09.zip",  # marked unpublished
        f"{SPOT}/monthly/klines/NOSUCHUSDT/1h/NOSUCHUSDT-1h-2024-10.zip",  # unknown symbol
        f"{SPOT}/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2016-10.zip",  # before the listing
        f"{SPOT}/monthly/klines/BTCUSDT/1M/BTCUSDT-1M-2024-10.zip",  # the archive spells it 1mo
    ):
        assert get(exchange, path).status_code == 404, path
    assert get(exchange, f"{SPOT}/monthly/klines/BTCUSDT/1mo/BTCUSDT-1mo-2024-10.zip").status_code == 200


def test_times_are_microseconds_from_2025_and_a_header_can_be_asked_for(sandbox_factory) -> None:
    exchange = sandbox_factory(SandboxConfig(now_ms=ms(2025, 2, 1), archive=ArchiveKnobs(header=True)))
    december = csv_lines(get(exchange, f"{SPOT}/daily/klines/ETHUSDT/1h/ETHUSDT-1h-2024-12-31.zip").content)
    january = csv_lines(get(exchange, f"{SPOT}/daily/klines/ETHUSDT/1h/ETHUSDT-1h-2025-01-01.zip").content)
    assert december[0].startswith("open_time,") and january[0].startswith("open_time,")
    assert december[1].split(",")[0] == str(ms(2024, 12, 31))
    first = january[1].split(",")
    assert first[0] == f"{ms(2025, 1, 1)}000" and first[6] == f"{ms(2025, 1, 1, 1) - 1}999"


def test_fault_knobs_corrupt_omit_and_break(sandbox_factory) -> None:
    knobs = ArchiveKnobs(
        bad_checksum=frozenset({"BTCUSDT-1h-2024-10-01.zip"}),
        no_checksum=frozenset({"BTCUSDT-1h-2024-10-02.zip"}),
        bad_zip=frozenset({"BTCUSDT-1h-2024-10-03.zip"}),
    )
    exchange = sandbox_factory(SandboxConfig(now_ms=ms(2024, 11, 10), archive=knobs))
    day = f"{SPOT}/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-10-0"
    wrong = get(exchange, day + "1.zip.CHECKSUM").text.split()[0]
    assert wrong != hashlib.sha256(get(exchange, day + "1.zip").content).hexdigest()
    assert get(exchange, day + "2.zip").status_code == 200 and get(exchange, day + "2.zip.CHECKSUM").status_code == 404
    broken = get(exchange, day + "3.zip").content
    assert get(exchange, day + "3.zip.CHECKSUM").text.split()[0] == hashlib.sha256(broken).hexdigest()
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(broken))
