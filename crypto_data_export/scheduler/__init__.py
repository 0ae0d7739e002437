"""The scheduler: one cycle and its bookkeeping (``manager``), the loop that repeats it, the self-check."""
