"""Run the scheduler in the background: start, stop, status, restart, systemd unit."""

from crypto_data_export.commands.service_cmd import DataExportService, main, parse_args, run

__all__ = ["DataExportService", "main", "parse_args"]

if __name__ == "__main__":
    run()
