"""One cycle and its bookkeeping: the manager, the export job, the run lock, the run
state, the status report and what the CLI prints."""
