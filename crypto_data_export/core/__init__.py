"""Building blocks every layer may use: errors, atomic I/O, locks, the UTC clock,
process checks, log files and the candle table. Imports nothing of ours."""
