"""``python -m crypto_data_export.sandbox`` CLI plus ``--list-symbols N``: SYM0001USDT.. SYM{N}USDT in exchangeInfo.

    python -m benchmarks._sandbox_server --port 0 [sandbox options] --list-symbols N

The sandbox's ``--accept-any-symbol`` serves klines for any well-formed
symbol, but its parameterless exchangeInfo lists only the default symbols;
clients that load every market first (ccxt's ``load_markets``) need the
benchmark symbols listed too. Everything else is the unchanged sandbox CLI.
"""

from __future__ import annotations

import dataclasses
import sys

import crypto_data_export.sandbox.fake_exchange as sx


def main(argv: list[str]) -> int:
    count = 0
    if "--list-symbols" in argv:
        i = argv.index("--list-symbols")
        count = int(argv[i + 1])
        argv = argv[:i] + argv[i + 2 :]
    original = sx._config_from_args

    def with_symbols(args):  # type: ignore[no-untyped-def]
        config = original(args)
        extra = tuple(f"SYM{i:04d}USDT" for i in range(1, count + 1))
        return dataclasses.replace(config, extra_symbols=extra)

    sx._config_from_args = with_symbols
    return sx.main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
