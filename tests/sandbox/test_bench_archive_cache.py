"""bench_s3's on-disk cache of the sandbox's archive zips: byte for byte the sandbox's own zips and
checksums, written through on a miss, read from the folder afterwards, and never used for a faulty knob."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks._archive_cache import DiskArchive, archive_url_path, verify, zip_path
from crypto_data_export.sandbox.fake_archive import ArchiveKnobs
from crypto_data_export.sandbox.fake_exchange import SandboxConfig, SandboxExchange


def test_the_cache_serves_the_sandboxs_own_bytes_and_reads_its_folder(tmp_path) -> None:
    plain = SandboxExchange(SandboxConfig(accept_any_symbol=True))
    with SandboxExchange(SandboxConfig(accept_any_symbol=True)) as cached:
        cached.archive = DiskArchive(cached._archive_rows, tmp_path)
        path = archive_url_path("SYM0001USDT", "1d", "2024-10")
        for url_path in (path, path + ".CHECKSUM"):
            now = plain.now_ms()
            assert cached.archive.answer(url_path, ArchiveKnobs(), now) == plain.archive.answer(
                url_path, ArchiveKnobs(), now
            )
        verify(cached.base_url, [("SYM0001USDT", "1d", "2024-10")])
        stored = zip_path(tmp_path, "SYM0001USDT", "1d", "2024-10")
        assert stored.read_bytes() == plain.archive.answer(path, ArchiveKnobs(), now)[1]  # written through

        header = dataclasses.replace(ArchiveKnobs(), header=True)  # a knob: built, not read from the folder
        assert cached.archive.answer(path, header, now) == plain.archive.answer(path, header, now)
        stored.write_bytes(b"not the sandbox's zip")  # read from the folder: a changed file is caught
        with pytest.raises(RuntimeError, match="serves another"):
            verify(cached.base_url, [("SYM0001USDT", "1d", "2024-10")])
