"""The scheduled data manager's CLI: the loop, one-shot cycles, status and health."""

from crypto_data_export.commands.manager_cmd import ScheduledDataManager, main, run

__all__ = ["ScheduledDataManager", "main"]

if __name__ == "__main__":
    run()
