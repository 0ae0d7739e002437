"""Benchmarks of the exporter: scripts, not tests, run as modules from the repo root.

    python -m benchmarks.run_all [--quick] [--with-ccxt]
    python -m benchmarks.bench_export --help

See ``benchmarks/README.md``.
"""
