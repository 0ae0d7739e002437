"""A local Binance-compatible exchange for the demo, the tests and the benchmarks
(standard library only), with knobs for every fault the exchange can show."""
