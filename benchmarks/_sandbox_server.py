"""``python -m crypto_data_export.sandbox`` CLI plus ``--list-symbols N`` and ``--archive-cache-mb M``.

    python -m benchmarks._sandbox_server --port 0 [sandbox options] [--list-symbols N] [--archive-cache-mb M]

The sandbox's ``--accept-any-symbol`` serves klines for any well-formed
symbol, but its parameterless exchangeInfo lists only the default symbols;
clients that load every market first (ccxt's ``load_markets``) need the
benchmark symbols listed too (SYM0001USDT.. SYM{N}USDT). Its archive keeps
512 MB of built zips; ``--archive-cache-mb`` keeps more (a warmed archive of
a hundred symbol-years of 1m). Everything else is the unchanged sandbox CLI.
"""

from __future__ import annotations

import dataclasses
import sys

import crypto_data_export.sandbox.fake_archive as fa
import crypto_data_export.sandbox.fake_exchange as sx


def _take(argv: list[str], flag: str) -> tuple[list[str], int]:
    if flag not in argv:
        return argv, 0
    i = argv.index(flag)
    return argv[:i] + argv[i + 2 :], int(argv[i + 1])


def main(argv: list[str]) -> int:
    argv, count = _take(argv, "--list-symbols")
    argv, cache_mb = _take(argv, "--archive-cache-mb")
    if cache_mb:
        fa._CACHE_BYTES = cache_mb << 20
    original = sx._config_from_args

    def with_symbols(args):  # type: ignore[no-untyped-def]
        config = original(args)
        extra = tuple(f"SYM{i:04d}USDT" for i in range(1, count + 1))
        return dataclasses.replace(config, extra_symbols=extra)

    sx._config_from_args = with_symbols
    return sx.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
