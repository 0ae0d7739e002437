"""Installation self-check: is this machine ready to run the exporter?

The guide's entry point; the code is ``crypto_data_export.commands.selftest_cmd``, also installed
as the console command ``test-scheduled-system``.
"""

from crypto_data_export.commands.selftest_cmd import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
