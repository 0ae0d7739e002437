"""Building blocks for every layer (errors, I/O, locks, clock, processes, logs, candles), importing nothing of ours."""
