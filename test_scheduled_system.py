"""Installation self-check: is this machine ready to run the exporter?"""

from crypto_data_export.commands.selftest_cmd import main, run

__all__ = ["main"]

if __name__ == "__main__":
    run()
